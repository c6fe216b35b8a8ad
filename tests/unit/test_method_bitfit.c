/* bitfit: a model without biases (llama) is a clear usage error; on qwen2 (q/k/v biases) and gpt2 (every
 * projection and LayerNorm bias) finite-difference gradients of every bias and of the token embedding below
 * them; training lowers the loss; save → load gives the identical loss with the documented keys; merging
 * reproduces the loss without the method. */
#include "test_method_common.h"

static pc_method *attach(pc_model *m, pc_error *err) {
    pc_rng rng;
    pc_rng_seed(&rng, 1);
    pc_method *meth = NULL;
    return pc_method_create(&meth, pc_method_find("bitfit"), m, NULL, &rng, err) == PC_OK ? meth : NULL;
}

static void test_no_biases(void) {
    pc_model *m = tm_model(TINY_LLAMA, "bf-llama", 1);
    if (!m) return;
    pc_error err = {0};
    pc_method *meth = attach(m, &err);
    CHECK(meth == NULL && err.status == PC_ERR_USAGE && strstr(err.msg, "no bias"), "llama: a clear usage error: %s", err.msg);
    pc_method_free(meth);
    pc_model_free(m);
}

static void test_gradients(const char *config, const char *tag, const char *embed, int want_tensors) {
    pc_model *m = tm_model(config, tag, 1);
    if (!m) return;
    pc_error err = {0};
    pc_method *meth = attach(m, &err);
    CHECK(meth != NULL, "%s: create: %s", tag, err.msg);
    if (!meth) return;
    CHECK(meth->params.n_views == want_tensors, "%s: %d bias tensors, want %d", tag, meth->params.n_views, want_tensors);
    tm_batch tb;
    tm_random_batch(&tb, m->cfg.vocab_size, 3);
    tm_upstream emb;
    tm_upstream_begin(&emb, m, embed);
    if (tm_backward(m, &tb.b, &meth, 1)) {
        tm_check_method_grads(tag, m, &tb.b, meth, 32, 1e-2);
        tm_check_upstream(tag, m, &tb.b, &emb, 48, 1e-2);
        float *g = pc_params_grad(&meth->params, 0);
        long n = (long)meth->params.views[0].count;
        for (long i = 0; i < n; i++) g[i] *= 1.1f;
        double r = tm_fd_ratio(m, &tb.b, pc_params_data(&meth->params, 0), g, n, 32, 1e-2);
        CHECK(r > 1.0, "%s: a wrong gradient passed the check (ratio %.3g)", tag, r);
    }
    tm_upstream_end(&emb);
    pc_method_free(meth);
    pc_model_free(m);
}

static void test_training_save_load(const char *config, const char *tag, const tm_key *keys, int n_keys, int n_total) {
    pc_model *m = tm_model(config, tag, 5);
    if (!m) return;
    pc_error err = {0};
    pc_method *meth = attach(m, &err);
    CHECK(meth != NULL, "%s: create: %s", tag, err.msg);
    if (!meth) return;
    tm_batch tb;
    tm_pattern_batch(&tb, 12);
    double before, after = tm_sgd(m, &tb.b, meth, 30, 0.5f, &before);
    CHECK(after < before - 0.1, "%s: 30 SGD steps on a repeated pattern: loss %.4f → %.4f", tag, before, after);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", tm_tmpdir(tag));
    CHECK(pc_method_save(meth, dir, &err) == PC_OK, "save: %s", err.msg);
    tm_check_saved_keys(dir, keys, n_keys, n_total);
    cJSON *cfg = tm_read_config(dir);
    CHECK(cfg && !strcmp(cJSON_GetObjectItem(cfg, "peft_type")->valuestring, "PEFTC_BITFIT"), "%s: peft_type PEFTC_BITFIT", tag);
    cJSON_Delete(cfg);
    pc_method_free(meth);
    pc_model *m2 = tm_model(config, tag, 5);
    pc_method *loaded = NULL;
    CHECK(m2 && pc_method_load(&loaded, m2, dir, &err) == PC_OK, "load: %s", err.msg);
    if (loaded) {
        double reloaded = tm_loss_mean(m2, &tb.b);
        CHECK(reloaded == after, "%s: save → load: loss %.9g, before saving %.9g", tag, reloaded, after);
        CHECK(loaded->ops->merge(loaded, 1.0f, &err) == PC_OK, "%s: merge: %s", tag, err.msg);
        pc_method_free(loaded);
        double merged = tm_loss_mean(m2, &tb.b);
        CHECK(fabs(merged - after) <= 1e-6 * fabs(after), "%s: merged loss %.9g, with the method %.9g", tag, merged, after);
    }
    pc_model_free(m2);
    pc_model_free(m);
}

int main(void) {
    tm_init();
    test_no_biases();
    test_gradients(TINY_QWEN2, "bf-qwen2", "model.embed_tokens.weight", 6);
    test_gradients(TINY_GPT2, "bf-gpt2", "transformer.wte.weight", 13);
    tm_key qwen_keys[] = {
        {"base_model.model.model.layers.0.self_attn.q_proj.bias", 1, {32}},
        {"base_model.model.model.layers.1.self_attn.k_proj.bias", 1, {16}},
    };
    test_training_save_load(TINY_QWEN2, "bf-train-qwen2", qwen_keys, 2, 6);
    tm_key gpt2_keys[] = {
        {"base_model.model.transformer.h.0.attn.c_attn.bias", 1, {96}},
        {"base_model.model.transformer.h.1.mlp.c_fc.bias", 1, {128}},
        {"base_model.model.transformer.ln_f.bias", 1, {32}},
    };
    test_training_save_load(TINY_GPT2, "bf-train-gpt2", gpt2_keys, 3, 13);
    return test_finish();
}
