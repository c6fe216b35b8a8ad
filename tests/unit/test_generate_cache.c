/* Decoding with the KV cache must give the logits of a full forward at every position.
 *
 * 1. Against PyTorch: for every base golden (llama GQA, tied llama, qwen2, gpt2) and the adapter goldens
 *    (LoRA, rsLoRA, DoRA, IA3, prompt tuning, prefix tuning; loaded with pc_method_load and left unmerged),
 *    feeding row 0 of the golden batch token by token reproduces golden logits[0, t, :] (after the virtual
 *    rows, for prompt tuning) within the golden tolerance (1e-5 of max|ref|).
 * 2. Against pc_model_forward + pc_model_logits on a longer sequence, with hooks at every other site
 *    attached (virtual input tokens, an attention prefix on some layers, head-output and sublayer hooks):
 *    token-by-token, a multi-token prefill, and a prefill split into chunks all agree at every position.
 *    The same for methods created here with random parameters (serial and parallel bottleneck adapters,
 *    LN tuning, BitFit).
 * 3. The cache refuses what it cannot do (overflow, foreign model, out-of-vocabulary ids, changed hooks). */
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "peft/method.h"
#include "test_support.h"

enum { LOGITS_TOL_PPM = 10 }; /* 1e-5 relative to max|ref|, as the golden README asks */

static const float *golden_f32(const pc_safetensors *g, const char *name) {
    const pc_st_entry *e = pc_safetensors_find(g, name);
    return e && e->dtype == PC_F32 ? e->data : NULL;
}

/* Row 0 of the golden batch through the cache, one token at a time, against golden logits[0, t, :]. */
static void check_golden(const char *case_name, const char *base, const char *adapter) {
    char mdir[4096], gpath[4096], adir[4096];
    const char *src = test_source_dir();
    snprintf(mdir, sizeof mdir, "%s/tests/golden/data/%s/model", src, base);
    snprintf(gpath, sizeof gpath, "%s/tests/golden/data/%s/golden.safetensors", src, case_name);
    snprintf(adir, sizeof adir, "%s/tests/golden/data/%s/adapter", src, case_name);
    pc_error err = {0};
    pc_safetensors g;
    pc_model *m = NULL;
    pc_method *method = NULL;
    if (pc_safetensors_open(&g, gpath, &err) != PC_OK) {
        test_fail_setup("%s", err.msg);
        return;
    }
    if (pc_model_load(&m, mdir, PC_BASE_F32, &err) != PC_OK || (adapter && pc_method_load(&method, m, adir, &err) != PC_OK)) {
        test_fail_setup("%s: %s", case_name, err.msg);
        pc_model_free(m);
        pc_safetensors_close(&g);
        return;
    }
    const pc_st_entry *ids_e = pc_safetensors_find(&g, "input_ids"), *logits_e = pc_safetensors_find(&g, "logits");
    const float *want = golden_f32(&g, "logits");
    int T = (int)ids_e->shape[1], V = m->cfg.vocab_size;
    /* Prompt tuning's logits include its virtual rows first: [2, nv+T, V]. */
    int nv = pc_model_total_len(m, 0), T_total = (int)logits_e->shape[1];
    CHECK(T_total == nv + T, "%s: golden logits have %d rows per sequence, want %d", case_name, T_total, nv + T);
    const int32_t *ids = ids_e->data; /* row 0: T real tokens */
    pc_kv_cache *c = NULL;
    float *logits = pc_malloc(sizeof(float) * (size_t)V);
    CHECK(pc_kv_cache_create(&c, m, T, 1, &err) == PC_OK, "%s: cache: %s", case_name, err.msg);
    double worst = 0;
    for (int t = 0; c && t < T; t++) {
        pc_status st = pc_model_decode_step(m, c, ids[t], logits, &err);
        CHECK(st == PC_OK, "%s: step %d: %s", case_name, t, err.msg);
        if (st != PC_OK) break;
        double rel = max_rel_err(logits, want + (size_t)(nv + t) * V, V);
        worst = rel > worst ? rel : worst;
    }
    CHECK(worst <= LOGITS_TOL_PPM * 1e-6, "%s: cached logits vs PyTorch, worst relative error %.3g", case_name, worst);
    printf("%-18s cached decoding vs PyTorch logits: %.2e\n", case_name, worst);
    pc_free(logits);
    pc_kv_cache_free(c);
    pc_method_free(method);
    pc_model_free(m);
    pc_safetensors_close(&g);
}

/* ---- hooks at the other sites (test doubles of prompt tuning, prefix tuning, LoFiT, adapters) ---------- */

typedef struct test_hooks {
    int C, kvd, qd, nv, P;
    float *virt;         /* [nv, C] rows for the virtual tokens */
    float *pk, *pv;      /* [P, kvd] */
    float *head_scale;   /* [qd] */
    float *adapter_w;    /* [C] */
} test_hooks;

static void virtual_rows(void *owner, pc_site *s) {
    test_hooks *h = owner;
    for (int b = 0; b < s->B; b++)
        memcpy(s->out + ((size_t)b * s->T + s->virtual_offset) * h->C, h->virt, sizeof(float) * (size_t)h->nv * h->C);
}

static void prefix_kv(void *owner, pc_site *s) {
    test_hooks *h = owner;
    s->prefix_k = h->pk;
    s->prefix_v = h->pv;
}

static void scale_heads(void *owner, pc_site *s) {
    test_hooks *h = owner;
    for (int n = 0; n < s->N; n++)
        for (int j = 0; j < h->qd; j++) s->out[(size_t)n * h->qd + j] *= h->head_scale[j];
}

/* A row-wise nonlinear adapter: out += w ⊙ tanh(in). */
static void tanh_adapter(void *owner, pc_site *s) {
    test_hooks *h = owner;
    for (int n = 0; n < s->N; n++)
        for (int j = 0; j < h->C; j++) {
            size_t i = (size_t)n * h->C + j;
            s->out[i] += h->adapter_w[j] * tanhf(s->in[i]);
        }
}

static void attach_test_hooks(pc_model *m, test_hooks *h, pc_rng *rng) {
    pc_error err = {0};
    const pc_model_config *c = &m->cfg;
    h->C = c->hidden;
    h->kvd = c->n_kv_heads * c->head_dim;
    h->qd = c->n_heads * c->head_dim;
    h->nv = 3;
    h->P = 4;
    h->virt = pc_malloc(sizeof(float) * (size_t)h->nv * h->C);
    h->pk = pc_malloc(sizeof(float) * (size_t)h->P * h->kvd);
    h->pv = pc_malloc(sizeof(float) * (size_t)h->P * h->kvd);
    h->head_scale = pc_malloc(sizeof(float) * (size_t)h->qd);
    h->adapter_w = pc_malloc(sizeof(float) * (size_t)h->C);
    test_fill_uniform(rng, h->virt, (long)h->nv * h->C, -1.0f, 1.0f);
    test_fill_uniform(rng, h->pk, (long)h->P * h->kvd, -1.5f, 1.5f);
    test_fill_uniform(rng, h->pv, (long)h->P * h->kvd, -1.5f, 1.5f);
    test_fill_uniform(rng, h->head_scale, h->qd, 0.5f, 1.5f);
    test_fill_uniform(rng, h->adapter_w, h->C, -0.5f, 0.5f);
    pc_hook in = {.owner = h, .phases = PC_PHASE_POST, .forward = virtual_rows, .n_virtual = h->nv};
    pc_hook kv = {.owner = h, .phases = PC_PHASE_POST, .forward = prefix_kv, .n_prefix = h->P};
    pc_hook ho = {.owner = h, .phases = PC_PHASE_POST, .forward = scale_heads};
    pc_hook ad = {.owner = h, .phases = PC_PHASE_POST, .forward = tanh_adapter};
    int ok = pc_hook_add(&m->input_hooks, &in, &err) == PC_OK;
    ok &= pc_hook_add(&m->layers[0].attn_kv, &kv, &err) == PC_OK; /* layer 0 only: other layers keep P = 0 */
    ok &= pc_hook_add(&m->layers[c->n_layers - 1].head_out, &ho, &err) == PC_OK;
    ok &= pc_hook_add(&m->layers[0].sublayer[PC_SUBLAYER_MLP], &ad, &err) == PC_OK;
    ok &= pc_hook_add(&m->layers[c->n_layers - 1].sublayer[PC_SUBLAYER_ATTN], &ad, &err) == PC_OK;
    CHECK(ok, "attach test hooks: %s", err.msg);
}

static void free_test_hooks(test_hooks *h) {
    pc_free(h->virt);
    pc_free(h->pk);
    pc_free(h->pv);
    pc_free(h->head_scale);
    pc_free(h->adapter_w);
}

/* Full forward logits [nv+T, V] of one sequence (the reference). */
static float *full_logits(pc_model *m, const int32_t *ids, int T, pc_error *err) {
    pc_model_batch b = {.B = 1, .T = T, .ids = ids, .labels = ids};
    pc_forward_result res;
    if (pc_model_forward(m, &b, &res, err) != PC_OK) return NULL;
    float *out = pc_malloc(sizeof(float) * (size_t)pc_model_total_len(m, T) * (size_t)m->cfg.vocab_size);
    if (out && pc_model_logits(m, out, err) != PC_OK) {
        pc_free(out);
        return NULL;
    }
    return out;
}

/* Prefill `first` tokens in chunks of `chunk`, then one token at a time; every returned logit row against
 * the full forward. */
static double decode_against(pc_model *m, const int32_t *ids, int T, int first, int chunk,
                             const float *ref, const char *what) {
    pc_error err = {0};
    int V = m->cfg.vocab_size, nv = pc_model_total_len(m, 0);
    pc_kv_cache *c = NULL;
    float *logits = pc_malloc(sizeof(float) * (size_t)V);
    if (pc_kv_cache_create(&c, m, T, chunk, &err) != PC_OK) {
        CHECK(0, "%s: cache: %s", what, err.msg);
        pc_free(logits);
        return INFINITY;
    }
    double worst = 0;
    pc_status st = pc_model_prefill(m, c, ids, first, logits, &err);
    for (int t = first - 1; st == PC_OK && t < T; t++) {
        worst = fmax(worst, max_rel_err(logits, ref + (size_t)(nv + t) * V, V));
        CHECK(pc_kv_cache_tokens(c) == t + 1, "%s: cache holds %d tokens, want %d", what, pc_kv_cache_tokens(c), t + 1);
        if (t + 1 < T) st = pc_model_decode_step(m, c, ids[t + 1], logits, &err);
    }
    CHECK(st == PC_OK, "%s: decode: %s", what, err.msg);
    CHECK(worst <= LOGITS_TOL_PPM * 1e-6, "%s: worst relative error %.3g", what, worst);
    printf("%-40s %.2e\n", what, worst);
    pc_kv_cache_free(c);
    pc_free(logits);
    return worst;
}

static void check_against_forward(const char *base, const char *adapter_case, int with_hooks) {
    char mdir[4096], adir[4096], what[256];
    snprintf(mdir, sizeof mdir, "%s/tests/golden/data/%s/model", test_source_dir(), base);
    snprintf(adir, sizeof adir, "%s/tests/golden/data/%s/adapter", test_source_dir(), adapter_case ? adapter_case : "");
    pc_error err = {0};
    pc_model *m = NULL;
    pc_method *method = NULL;
    if (pc_model_load(&m, mdir, PC_BASE_F32, &err) != PC_OK ||
        (adapter_case && pc_method_load(&method, m, adir, &err) != PC_OK)) {
        test_fail_setup("%s: %s", base, err.msg);
        pc_model_free(m);
        return;
    }
    pc_rng rng;
    pc_rng_seed(&rng, 7);
    test_hooks h = {0};
    if (with_hooks) attach_test_hooks(m, &h, &rng);
    /* 40 tokens: longer than one attention key block of the cached kernel is not needed at this size, but it
     * crosses the 32-query block of the full forward. Positions: 40 + 3 virtual + 4 prefix ≤ 64. */
    enum { T = 40 };
    int32_t ids[T];
    for (int t = 0; t < T; t++) ids[t] = 1 + (int32_t)pc_rng_below(&rng, (uint32_t)m->cfg.vocab_size - 1);
    float *ref = full_logits(m, ids, T, &err);
    CHECK(ref != NULL, "%s: full forward: %s", base, err.msg);
    const char *label = adapter_case ? adapter_case : base;
    const char *hooks = with_hooks ? "+hooks" : "";
    if (ref) {
        snprintf(what, sizeof what, "%s%s token by token", label, hooks);
        decode_against(m, ids, T, 1, 1, ref, what);
        snprintf(what, sizeof what, "%s%s prefill 13", label, hooks);
        decode_against(m, ids, T, 13, 13, ref, what);
        snprintf(what, sizeof what, "%s%s prefill 29 in chunks of 5", label, hooks);
        decode_against(m, ids, T, 29, 5, ref, what);
    }
    pc_free(ref);
    pc_method_free(method);
    pc_model_free(m);
    if (with_hooks) free_test_hooks(&h);
}

/* A method created here (not from a golden) with every parameter drawn at random, so that it is far from
 * the identity it starts as: decoding against the full forward. */
static void check_created_method(const char *base, const char *method_name, const char *options_json) {
    char mdir[4096], what[256];
    snprintf(mdir, sizeof mdir, "%s/tests/golden/data/%s/model", test_source_dir(), base);
    pc_error err = {0};
    pc_model *m = NULL;
    pc_method *method = NULL;
    pc_rng rng;
    pc_rng_seed(&rng, 11);
    cJSON *opt = cJSON_Parse(options_json);
    if (pc_model_load(&m, mdir, PC_BASE_F32, &err) != PC_OK ||
        pc_method_create(&method, pc_method_find(method_name), m, opt, &rng, &err) != PC_OK) {
        test_fail_setup("%s %s: %s", base, method_name, err.msg);
        cJSON_Delete(opt);
        pc_model_free(m);
        return;
    }
    cJSON_Delete(opt);
    for (size_t i = 0; i < method->params.count; i++) method->params.data[i] += 0.3f * pc_rng_normal(&rng);
    enum { T = 24 };
    int32_t ids[T];
    for (int t = 0; t < T; t++) ids[t] = 1 + (int32_t)pc_rng_below(&rng, (uint32_t)m->cfg.vocab_size - 1);
    float *ref = full_logits(m, ids, T, &err);
    CHECK(ref != NULL, "%s %s: full forward: %s", base, method_name, err.msg);
    if (ref) {
        snprintf(what, sizeof what, "%s+%s %s token by token", base, method_name, options_json);
        decode_against(m, ids, T, 1, 1, ref, what);
        snprintf(what, sizeof what, "%s+%s %s prefill 9 in chunks of 4", base, method_name, options_json);
        decode_against(m, ids, T, 9, 4, ref, what);
    }
    pc_free(ref);
    pc_method_free(method);
    pc_model_free(m);
}

/* ---- refusals ----------------------------------------------------------------------------------------- */

static void check_errors(void) {
    char mdir[4096];
    snprintf(mdir, sizeof mdir, "%s/tests/golden/data/llama_gqa/model", test_source_dir());
    pc_error err = {0};
    pc_model *m = NULL, *other = NULL;
    if (pc_model_load(&m, mdir, PC_BASE_F32, &err) != PC_OK || pc_model_load(&other, mdir, PC_BASE_F32, &err) != PC_OK) {
        test_fail_setup("%s", err.msg);
        pc_model_free(m);
        return;
    }
    pc_kv_cache *c = NULL;
    CHECK(pc_kv_cache_create(&c, m, 65, 1, &err) == PC_ERR_USAGE && strstr(err.msg, "max_position_embeddings"),
          "a cache longer than the model's positions is refused: %s", err.msg);
    CHECK(pc_kv_cache_create(&c, m, 0, 1, &err) == PC_ERR_USAGE, "an empty cache is refused");
    CHECK(pc_kv_cache_create(&c, m, 4, 2, &err) == PC_OK, "cache: %s", err.msg);
    int32_t ids[5] = {1, 2, 3, 4, 5}, bad = 128;
    float *logits = pc_malloc(sizeof(float) * 128);
    CHECK(pc_model_prefill(m, c, ids, 5, logits, &err) == PC_ERR_USAGE && strstr(err.msg, "capacity"),
          "more tokens than the capacity are refused: %s", err.msg);
    CHECK(pc_model_prefill(m, c, ids, 4, logits, &err) == PC_OK, "prefill to capacity: %s", err.msg);
    CHECK(pc_model_decode_step(m, c, 6, logits, &err) == PC_ERR_USAGE, "a full cache refuses a step");
    pc_kv_cache_reset(c);
    CHECK(pc_kv_cache_tokens(c) == 0, "reset empties the cache");
    CHECK(pc_model_decode_step(m, c, bad, logits, &err) == PC_ERR_FORMAT && strstr(err.msg, "vocabulary"),
          "an id outside the vocabulary is refused: %s", err.msg);
    CHECK(pc_model_decode_step(other, c, 1, logits, &err) == PC_ERR_USAGE, "another model's cache is refused");
    test_hooks h = {0};
    pc_rng rng;
    pc_rng_seed(&rng, 3);
    attach_test_hooks(m, &h, &rng);
    CHECK(pc_model_decode_step(m, c, 1, logits, &err) == PC_ERR_USAGE && strstr(err.msg, "hooks changed"),
          "hooks added after the cache was made are detected: %s", err.msg);
    pc_model_clear_hooks(m);
    free_test_hooks(&h);
    pc_free(logits);
    pc_kv_cache_free(c);
    pc_model_free(m);
    pc_model_free(other);
}

int main(void) {
    check_golden("llama_gqa", "llama_gqa", NULL);
    check_golden("llama_tied", "llama_tied", NULL);
    check_golden("qwen2", "qwen2", NULL);
    check_golden("gpt2", "gpt2", NULL);
    check_golden("lora_llama", "llama_gqa", "adapter");
    check_golden("lora_llama_all", "llama_gqa", "adapter");
    check_golden("lora_llama_dora", "llama_gqa", "adapter");
    check_golden("lora_qwen2", "qwen2", "adapter");
    check_golden("lora_gpt2", "gpt2", "adapter");
    check_golden("lora_gpt2_dora", "gpt2", "adapter");
    check_golden("lora_llama_rslora", "llama_tied", "adapter");
    check_golden("prompt_tuning_llama", "llama_gqa", "adapter");
    check_golden("prefix_tuning_llama", "llama_gqa", "adapter");
    check_golden("ia3_llama", "llama_gqa", "adapter");
    check_against_forward("llama_gqa", NULL, 0);
    check_against_forward("llama_gqa", NULL, 1);
    check_against_forward("qwen2", NULL, 1);
    check_against_forward("gpt2", NULL, 1);
    check_against_forward("llama_gqa", "lora_llama", 1);
    check_created_method("llama_gqa", "adapter", "{\"adapter_type\": \"houlsby\"}");
    check_created_method("gpt2", "adapter", "{\"adapter_type\": \"parallel\"}");
    check_created_method("llama_gqa", "ln-tuning", "{}");
    check_created_method("gpt2", "bitfit", "{}");
    check_errors();
    return test_finish();
}
