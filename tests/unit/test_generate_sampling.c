/* Sampling and the generation loop.
 *   - The distributions of temperature, top-k and top-p (alone and combined, in HF's order) against
 *     probabilities derived by hand from small logit vectors; draws follow them (binomial bounds).
 *   - Greedy generation equals, step by step, the argmax of a full forward over prompt + tokens so far
 *     (llama GQA, gpt2, and llama with a LoRA adapter attached).
 *   - A seed reproduces a sampled continuation; another seed gives another one; stop ids end it.
 *   - Every allocation failure inside generation (cache, plan, method buffers, scratch) is a clean NOMEM. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "eval/generate.h"
#include "peft/method.h"
#include "test_support.h"

/* ---- distributions ------------------------------------------------------------------------------------ */

static void check_probs(const char *what, const float *logits, int V, pc_sampling s, const double *want) {
    float probs[16];
    void *scratch = pc_malloc(pc_sample_scratch_bytes(V));
    pc_sample_probs(logits, V, &s, probs, scratch);
    float w[16];
    for (int i = 0; i < V; i++) w[i] = (float)want[i];
    expect_close(what, probs, w, V, 1e-6, 1e-7);
    pc_free(scratch);
}

/* Logits whose softmax is exactly the given probabilities (log p), so the expected sets are by hand. */
static void log_of(const double *p, float *logits, int V) {
    for (int i = 0; i < V; i++) logits[i] = (float)log(p[i]);
}

static void check_warpers(void) {
    /* p = [0.05, 0.5, 0.15, 0.3] (ids 0..3). Descending: 1 (0.5), 3 (0.3), 2 (0.15), 0 (0.05). */
    const double p[4] = {0.05, 0.5, 0.15, 0.3};
    float lg[4];
    log_of(p, lg, 4);
    check_probs("temperature 1 is softmax", lg, 4, (pc_sampling){1.0f, 0, 1.0f}, p);
    /* top-p 0.7: 0.5 < 0.7 keeps id 3; mass before id 2 is 0.8 ≥ 0.7: dropped. → {1: 0.5/0.8, 3: 0.3/0.8} */
    check_probs("top-p 0.7", lg, 4, (pc_sampling){1.0f, 0, 0.7f}, (double[4]){0, 0.625, 0, 0.375});
    /* top-p 0.85: mass before id 2 is 0.8 < 0.85 → kept; before id 0 is 0.95 → dropped. */
    check_probs("top-p 0.85", lg, 4, (pc_sampling){1.0f, 0, 0.85f}, (double[4]){0, 0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95});
    /* top-p tiny: the most likely token alone. */
    check_probs("top-p 0.01", lg, 4, (pc_sampling){1.0f, 0, 0.01f}, (double[4]){0, 1, 0, 0});
    check_probs("top-k 2", lg, 4, (pc_sampling){1.0f, 2, 1.0f}, (double[4]){0, 0.625, 0, 0.375});
    check_probs("top-k 4 = off", lg, 4, (pc_sampling){1.0f, 4, 1.0f}, p);
    /* temperature 2: p_i^(1/2) normalised. sqrt: .2236 .7071 .3873 .5477, Σ = 1.8657. */
    double t2[4], z = 0;
    for (int i = 0; i < 4; i++) z += sqrt(p[i]);
    for (int i = 0; i < 4; i++) t2[i] = sqrt(p[i]) / z;
    check_probs("temperature 2", lg, 4, (pc_sampling){2.0f, 0, 1.0f}, t2);
    /* HF order: temperature first, then top-p on the tempered probabilities. At T = 2 the sorted tempered
     * probs are .379 (id 1) .294 (id 3) .208 (id 2) .120 (id 0): top-p 0.7 keeps three (mass before id 2 is
     * .673 < .7), where at T = 1 it keeps two. */
    check_probs("temperature 2 then top-p 0.7", lg, 4, (pc_sampling){2.0f, 0, 0.7f},
                (double[4]){0, t2[1] / (t2[1] + t2[3] + t2[2]), t2[2] / (t2[1] + t2[3] + t2[2]),
                            t2[3] / (t2[1] + t2[3] + t2[2])});
    /* top-k then top-p: top-k 3 renormalises {.5,.3,.15} to {.526,.316,.158}; top-p 0.8: before id 2 is .842
     * ≥ .8 → {1, 3} renormalised: .625/.375. */
    check_probs("top-k 3 then top-p 0.8", lg, 4, (pc_sampling){1.0f, 3, 0.8f}, (double[4]){0, 0.625, 0, 0.375});
    /* top-k keeps every token tied with the k-th largest (HF compares with the k-th value): k 1 keeps both 3s. */
    float tied[4] = {1, 3, 3, 0};
    check_probs("top-k 1 keeps ties", tied, 4, (pc_sampling){1.0f, 1, 1.0f}, (double[4]){0, 0.5, 0.5, 0});
    /* Greedy: argmax, the lower id on a tie. */
    check_probs("greedy", lg, 4, (pc_sampling){0.0f, 0, 1.0f}, (double[4]){0, 1, 0, 0});
    void *scratch = pc_malloc(pc_sample_scratch_bytes(4));
    pc_rng rng;
    pc_rng_seed(&rng, 1);
    CHECK(pc_sample_token(tied, 4, &(pc_sampling){0.0f, 0, 1.0f}, &rng, scratch) == 1, "greedy tie: lowest id");
    pc_free(scratch);
}

/* Draws follow the distribution: each count within 5 binomial standard deviations. */
static void check_draws(const char *what, const float *logits, int V, pc_sampling s, uint64_t seed) {
    enum { DRAWS = 40000 };
    float probs[16];
    long counts[16] = {0};
    void *scratch = pc_malloc(pc_sample_scratch_bytes(V));
    pc_sample_probs(logits, V, &s, probs, scratch);
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    for (int i = 0; i < DRAWS; i++) {
        int32_t id = pc_sample_token(logits, V, &s, &rng, scratch);
        if (id >= 0 && id < V) counts[id]++;
    }
    int ok = 1;
    for (int i = 0; i < V; i++) {
        double mean = DRAWS * (double)probs[i], sd = sqrt(DRAWS * (double)probs[i] * (1 - probs[i]));
        if (probs[i] == 0 ? counts[i] != 0 : fabs(counts[i] - mean) > 5 * sd + 1) ok = 0;
    }
    CHECK(ok, "%s: draws follow the distribution (counts %ld %ld %ld %ld ...)", what, counts[0], counts[1], counts[2],
          counts[3]);
    pc_free(scratch);
}

static void check_sampling_draws(void) {
    const double p[6] = {0.05, 0.4, 0.15, 0.25, 0.1, 0.05};
    float lg[6];
    log_of(p, lg, 6);
    check_draws("temperature 1", lg, 6, (pc_sampling){1.0f, 0, 1.0f}, 11);
    check_draws("temperature 0.7", lg, 6, (pc_sampling){0.7f, 0, 1.0f}, 12);
    check_draws("top-p 0.8", lg, 6, (pc_sampling){1.0f, 0, 0.8f}, 13);
    check_draws("top-k 3 temperature 1.5", lg, 6, (pc_sampling){1.5f, 3, 1.0f}, 14);
}

/* ---- generation against the full forward ---------------------------------------------------------------- */

static pc_model *load(const char *base, const char *adapter_case, pc_method **method) {
    char dir[4096];
    pc_error err = {0};
    pc_model *m = NULL;
    snprintf(dir, sizeof dir, "%s/tests/golden/data/%s/model", test_source_dir(), base);
    if (pc_model_load(&m, dir, PC_BASE_F32, &err) != PC_OK) {
        test_fail_setup("%s", err.msg);
        return NULL;
    }
    if (adapter_case) {
        snprintf(dir, sizeof dir, "%s/tests/golden/data/%s/adapter", test_source_dir(), adapter_case);
        if (pc_method_load(method, m, dir, &err) != PC_OK) {
            test_fail_setup("%s", err.msg);
            pc_model_free(m);
            return NULL;
        }
    }
    return m;
}

/* Logits of the last position of a full forward over seq[n]. */
static int full_last_logits(pc_model *m, const int32_t *seq, int n, float *out, float *all) {
    pc_error err = {0};
    pc_model_batch b = {.B = 1, .T = n, .ids = seq, .labels = seq};
    pc_forward_result res;
    if (pc_model_forward(m, &b, &res, &err) != PC_OK || pc_model_logits(m, all, &err) != PC_OK) {
        CHECK(0, "full forward: %s", err.msg);
        return 0;
    }
    int V = m->cfg.vocab_size;
    memcpy(out, all + (size_t)(pc_model_total_len(m, n) - 1) * V, sizeof(float) * (size_t)V);
    return 1;
}

static void check_greedy(const char *base, const char *adapter_case) {
    pc_method *method = NULL;
    pc_model *m = load(base, adapter_case, &method);
    if (!m) return;
    enum { PROMPT = 5, NEW = 30 };
    int V = m->cfg.vocab_size;
    int32_t seq[PROMPT + NEW] = {5, 17, 99, 3, 42}, out[NEW];
    pc_generate_opts o = {.max_new_tokens = NEW, .sampling = {0.0f, 0, 1.0f}};
    int n = 0;
    pc_error err = {0};
    CHECK(pc_generate(m, seq, PROMPT, &o, out, &n, &err) == PC_OK, "%s greedy: %s", base, err.msg);
    CHECK(n == NEW, "%s greedy: %d tokens, want %d", base, n, NEW);
    float *last = pc_malloc(sizeof(float) * (size_t)V), *all = pc_malloc(sizeof(float) * (size_t)(PROMPT + NEW) * V);
    int agree = 0;
    for (int k = 0; k < n; k++) {
        if (!full_last_logits(m, seq, PROMPT + k, last, all)) break;
        int best = 0;
        for (int i = 1; i < V; i++) best = last[i] > last[best] ? i : best;
        /* A near-tie may legitimately flip with rounding; then either token is an argmax. */
        int ok = out[k] == best || fabsf(last[out[k]] - last[best]) <= 1e-5f * fabsf(last[best]);
        agree += ok;
        CHECK(ok, "%s%s greedy step %d: generated %d, full-forward argmax %d", base, adapter_case ? "+lora" : "", k, out[k],
              best);
        seq[PROMPT + k] = out[k];
    }
    printf("%s%s: greedy agrees with the full forward's argmax at %d of %d steps\n", base,
           adapter_case ? "+lora" : "", agree, n);
    pc_free(last);
    pc_free(all);
    pc_method_free(method);
    pc_model_free(m);
}

static int generate_seeded(pc_model *m, uint64_t seed, pc_sampling s, int32_t *out, int max_new) {
    const int32_t prompt[3] = {7, 8, 9};
    pc_generate_opts o = {.max_new_tokens = max_new, .sampling = s, .seed = seed};
    int n = 0;
    pc_error err = {0};
    CHECK(pc_generate(m, prompt, 3, &o, out, &n, &err) == PC_OK, "sampled generation: %s", err.msg);
    return n;
}

static void record_token(void *ctx, int32_t id) {
    int *count = ctx;
    (void)id;
    (*count)++;
}

static void check_seeded_and_stops(void) {
    pc_method *method = NULL;
    pc_model *m = load("llama_gqa", "lora_llama", &method);
    if (!m) return;
    enum { NEW = 24 };
    int32_t a[NEW], b[NEW], c[NEW];
    pc_sampling s = {1.3f, 0, 0.9f};
    int na = generate_seeded(m, 42, s, a, NEW), nb = generate_seeded(m, 42, s, b, NEW), nc = generate_seeded(m, 43, s, c, NEW);
    CHECK(na == NEW && nb == NEW && memcmp(a, b, sizeof a) == 0, "the same seed reproduces the sampled tokens");
    CHECK(nc == NEW && memcmp(a, c, sizeof a) != 0, "another seed samples other tokens");
    int32_t k[NEW];
    int nk = generate_seeded(m, 42, (pc_sampling){1.3f, 5, 1.0f}, k, NEW);
    CHECK(nk == NEW && memcmp(a, k, sizeof a) != 0, "top-k 5 changes the draw");
    /* Stop at the 4th token of run a: it is produced, then generation ends. */
    const int32_t prompt[3] = {7, 8, 9};
    int32_t out[NEW], stop = a[3];
    int first = 0;
    while (a[first] != stop) first++;
    int seen = 0;
    pc_generate_opts o = {.max_new_tokens = NEW, .sampling = s, .seed = 42, .stop_ids = &stop, .n_stop_ids = 1,
                          .on_token = record_token, .on_token_ctx = &seen};
    int n = 0;
    pc_error err = {0};
    CHECK(pc_generate(m, prompt, 3, &o, out, &n, &err) == PC_OK, "stop: %s", err.msg);
    CHECK(n == first + 1 && out[n - 1] == stop && memcmp(out, a, sizeof(int32_t) * (size_t)n) == 0,
          "generation ends after the stop token (%d tokens, want %d)", n, first + 1);
    CHECK(seen == n, "the callback saw every token (%d of %d)", seen, n);
    /* Too long for the model's 64 positions; 0 new tokens is nothing. */
    o = (pc_generate_opts){.max_new_tokens = 63, .sampling = s};
    CHECK(pc_generate(m, prompt, 3, &o, out, &n, &err) == PC_ERR_USAGE, "prompt + new tokens beyond the positions refused");
    o.max_new_tokens = 62; /* 3 + 62 − 1 = 64 rows: fits exactly */
    int32_t *many = pc_malloc(sizeof(int32_t) * 62);
    CHECK(pc_generate(m, prompt, 3, &o, many, &n, &err) == PC_OK && n == 62, "generation up to the last position: %s",
          err.msg);
    pc_free(many);
    o.max_new_tokens = 0;
    CHECK(pc_generate(m, prompt, 3, &o, out, &n, &err) == PC_OK && n == 0, "zero new tokens");
    o = (pc_generate_opts){.max_new_tokens = 4, .sampling = {1.0f, 0, 0.0f}};
    CHECK(pc_generate(m, prompt, 3, &o, out, &n, &err) == PC_ERR_USAGE, "top_p 0 refused");
    pc_method_free(method);
    pc_model_free(m);
}

/* Fail allocation k = 0, 1, … until generation succeeds; every failure must be PC_ERR_NOMEM. */
static void fail_each_allocation(pc_model *m, const char *what) {
    const int32_t prompt[4] = {3, 1, 4, 1};
    int32_t out[6];
    pc_generate_opts o = {.max_new_tokens = 6, .sampling = {0.8f, 0, 0.95f}, .seed = 1};
    int n = 0, bad = 0, k;
    pc_status st = PC_ERR_NOMEM;
    for (k = 0; k < 200 && st != PC_OK; k++) {
        pc_error err = {0};
        pc_alloc_fail_after(k);
        st = pc_generate(m, prompt, 4, &o, out, &n, &err);
        pc_alloc_fail_after(-1);
        if (st != PC_OK && st != PC_ERR_NOMEM) bad++;
    }
    CHECK(st == PC_OK && bad == 0 && k > 1, "%s: %d non-NOMEM statuses, success after %d failed allocations", what, bad,
          k - 1);
}

static void check_allocation_failures(void) {
    pc_method *method = NULL;
    pc_model *m = load("llama_gqa", "lora_llama", &method);
    if (!m) return;
    fail_each_allocation(m, "allocation failures on a fresh model (activation plan, LoRA buffers)");
    fail_each_allocation(m, "allocation failures with the plan in place (cache, logits, scratch)");
    pc_method_free(method);
    pc_model_free(m);
}

int main(void) {
    check_warpers();
    check_sampling_draws();
    check_greedy("llama_gqa", NULL);
    check_greedy("gpt2", NULL);
    check_greedy("qwen2", NULL);
    check_greedy("llama_gqa", "lora_llama");
    check_seeded_and_stops();
    check_allocation_failures();
    return test_finish();
}
