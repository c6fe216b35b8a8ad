/* Methods compose: the MAM adapter of He et al. (prefix tuning at the attention + a scaled parallel adapter at
 * the FFN) and a deliberately crowded stack (prompt tuning + IA3 + LoRA on the same projections + Houlsby
 * adapter + LN tuning) attached to one model at once. Finite differences of every tensor of every method,
 * training of both MAM halves together lowers the loss, and each half saved and loaded on its own gives back
 * the identical loss. */
#include "test_method_common.h"

static pc_method *attach(pc_model *m, const char *method, const char *options_json, uint64_t seed) {
    cJSON *opt = options_json ? cJSON_Parse(options_json) : NULL;
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    pc_method *meth = NULL;
    pc_error err = {0};
    pc_status st = pc_method_create(&meth, pc_method_find(method), m, opt, &rng, &err);
    cJSON_Delete(opt);
    CHECK(st == PC_OK, "%s: create: %s", method, err.msg);
    return st == PC_OK ? meth : NULL;
}

static void randomize(pc_method *meth, float lo, float hi, uint64_t seed) {
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    pc_rng_fill_uniform(&rng, meth->params.data, (long)meth->params.count, lo, hi);
}

static void test_mam(void) {
    pc_model *m = tm_model(TINY_LLAMA, "mam", 1);
    if (!m) return;
    pc_method *ms[2] = {attach(m, "prefix-tuning", "{\"num_virtual_tokens\": 3}", 2),
                        attach(m, "adapter", "{\"adapter_type\": \"scaled-parallel\", \"adapter_dim\": 4}", 3)};
    if (!ms[0] || !ms[1]) return;
    randomize(ms[0], -1.0f, 1.0f, 4);
    randomize(ms[1], -0.5f, 0.5f, 5);
    tm_batch tb;
    tm_random_batch(&tb, m->cfg.vocab_size, 6);
    tm_upstream emb;
    tm_upstream_begin(&emb, m, "model.embed_tokens.weight");
    if (tm_backward(m, &tb.b, ms, 2)) {
        tm_check_method_grads("mam/prefix", m, &tb.b, ms[0], 48, 1e-3);
        tm_check_method_grads("mam/adapter", m, &tb.b, ms[1], 32, 1e-3);
        tm_check_upstream("mam", m, &tb.b, &emb, 48, 1e-3);
    }
    tm_upstream_end(&emb);
    /* Train both halves together. */
    tm_batch pat;
    tm_pattern_batch(&pat, 12);
    double before = tm_loss_mean(m, &pat.b);
    pc_rng rng;
    pc_rng_seed(&rng, 9);
    for (int step = 0; step < 30; step++) {
        pc_params_zero_grad(&ms[0]->params);
        pc_params_zero_grad(&ms[1]->params);
        pc_forward_result res;
        pc_error err = {0};
        if (pc_model_forward_backward(m, &pat.b, 1.0f, &rng, &res, &err) != PC_OK) break;
        for (int k = 0; k < 2; k++)
            for (size_t i = 0; i < ms[k]->params.count; i++) ms[k]->params.data[i] -= 0.3f / (float)res.n_targets * ms[k]->params.grad[i];
    }
    double after = tm_loss_mean(m, &pat.b);
    CHECK(after < before - 0.1, "mam: 30 SGD steps on both halves: loss %.4f → %.4f", before, after);
    char d0[256], d1[256];
    snprintf(d0, sizeof d0, "%s", tm_tmpdir("mam-prefix"));
    snprintf(d1, sizeof d1, "%s", tm_tmpdir("mam-adapter"));
    pc_error err = {0};
    CHECK(pc_method_save(ms[0], d0, &err) == PC_OK && pc_method_save(ms[1], d1, &err) == PC_OK, "mam: save: %s", err.msg);
    pc_method_free(ms[1]);
    pc_method_free(ms[0]);
    pc_model *m2 = tm_model(TINY_LLAMA, "mam", 1);
    pc_method *l0 = NULL, *l1 = NULL;
    CHECK(m2 && pc_method_load(&l0, m2, d0, &err) == PC_OK && pc_method_load(&l1, m2, d1, &err) == PC_OK, "mam: load: %s",
          err.msg);
    if (l0 && l1) {
        double reloaded = tm_loss_mean(m2, &pat.b);
        CHECK(reloaded == after, "mam: save → load: loss %.9g, before saving %.9g", reloaded, after);
    }
    pc_method_free(l1);
    pc_method_free(l0);
    pc_model_free(m2);
    pc_model_free(m);
}

static void test_crowded_stack(void) {
    pc_model *m = tm_model(TINY_LLAMA, "stack", 11);
    if (!m) return;
    pc_method *ms[5] = {
        attach(m, "prompt-tuning", "{\"num_virtual_tokens\": 2}", 12),
        attach(m, "ia3", NULL, 13),
        attach(m, "lora", "{\"r\": 2, \"target_modules\": [\"v_proj\", \"down_proj\"]}", 14),
        attach(m, "adapter", "{\"adapter_type\": \"houlsby\", \"adapter_dim\": 3}", 15),
        attach(m, "ln-tuning", NULL, 16),
    };
    for (int k = 0; k < 5; k++)
        if (!ms[k]) return;
    randomize(ms[1], 0.7f, 1.3f, 17);
    randomize(ms[2], -0.4f, 0.4f, 18);
    randomize(ms[3], -0.5f, 0.5f, 19);
    tm_batch tb;
    tm_random_batch(&tb, m->cfg.vocab_size, 20);
    if (tm_backward(m, &tb.b, ms, 5)) {
        static const char *names[5] = {"stack/prompt", "stack/ia3", "stack/lora", "stack/adapter", "stack/ln"};
        /* A small step: the adapter's ReLU kinks sit downstream of every layer-0 tensor here, and the error
         * of a difference across a kink grows with the step (measured: worst ratio 8.6 at h = 1e-2, 2.3 at
         * 1e-3, below 1 at 3e-4 — linear in h, a kink, not a wrong derivative). */
        for (int k = 0; k < 5; k++) tm_check_method_grads(names[k], m, &tb.b, ms[k], 24, 3e-4);
    }
    for (int k = 4; k >= 0; k--) pc_method_free(ms[k]);
    pc_model_free(m);
}

int main(void) {
    tm_init();
    test_mam();
    test_crowded_stack();
    return test_finish();
}
