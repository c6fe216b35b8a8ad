/* ln-tuning: finite-difference gradients of every norm tensor it trains (RMSNorm gains on llama, LayerNorm
 * gains and biases on gpt2) and of the token embedding below them; training lowers the loss; save → load gives
 * the identical loss with PEFT's LN_TUNING keys; target_modules narrows the set; merging reproduces the loss
 * without the method; a norm trained by another method is refused. */
#include "test_method_common.h"

static pc_method *attach_named(pc_model *m, const char *method, const char *options_json, pc_error *err) {
    cJSON *opt = options_json ? cJSON_Parse(options_json) : NULL;
    pc_rng rng;
    pc_rng_seed(&rng, 1);
    pc_method *meth = NULL;
    pc_status st = pc_method_create(&meth, pc_method_find(method), m, opt, &rng, err);
    cJSON_Delete(opt);
    return st == PC_OK ? meth : NULL;
}

static pc_method *attach(pc_model *m, const char *options_json) {
    pc_error err = {0};
    pc_method *meth = attach_named(m, "ln-tuning", options_json, &err);
    CHECK(meth != NULL, "ln-tuning: create: %s", err.msg);
    return meth;
}

static void test_gradients(const char *config, const char *tag, const char *embed, int want_tensors) {
    pc_model *m = tm_model(config, tag, 1);
    if (!m) return;
    pc_method *meth = attach(m, NULL);
    if (!meth) return;
    CHECK(meth->params.n_views == want_tensors, "%s: %d norm tensors, want %d", tag, meth->params.n_views, want_tensors);
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
    pc_method *meth = attach(m, NULL);
    if (!meth) return;
    tm_batch tb;
    tm_pattern_batch(&tb, 12);
    double before, after = tm_sgd(m, &tb.b, meth, 30, 0.5f, &before);
    CHECK(after < before - 0.1, "%s: 30 SGD steps on a repeated pattern: loss %.4f → %.4f", tag, before, after);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", tm_tmpdir(tag));
    pc_error err = {0};
    CHECK(pc_method_save(meth, dir, &err) == PC_OK, "save: %s", err.msg);
    tm_check_saved_keys(dir, keys, n_keys, n_total);
    cJSON *cfg = tm_read_config(dir);
    CHECK(cfg && !strcmp(cJSON_GetObjectItem(cfg, "peft_type")->valuestring, "LN_TUNING"), "%s: peft_type LN_TUNING", tag);
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

static void test_targets_and_conflicts(void) {
    pc_model *m = tm_model(TINY_LLAMA, "ln-targets", 1);
    if (m) {
        pc_method *meth = attach(m, "{\"target_modules\": [\"norm\"]}");
        CHECK(meth && meth->params.n_views == 1 && !strcmp(meth->params.views[0].name, "base_model.model.model.norm.ln_tuning_layers.weight"),
              "target_modules [norm] selects the final norm only");
        pc_method_free(meth);
        pc_model_free(m);
    }
    m = tm_model(TINY_GPT2, "ln-conflict", 1);
    if (!m) return;
    pc_error err = {0};
    pc_method *bitfit = attach_named(m, "bitfit", NULL, &err);
    CHECK(bitfit != NULL, "bitfit on gpt2: %s", err.msg);
    pc_method *ln = attach_named(m, "ln-tuning", NULL, &err);
    CHECK(ln == NULL && strstr(err.msg, "already trained"), "ln-tuning over bitfit's LayerNorm biases is refused: %s", err.msg);
    pc_method_free(ln);
    pc_method_free(bitfit);
    pc_model_free(m);
}

int main(void) {
    tm_init();
    test_gradients(TINY_LLAMA, "ln-llama", "model.embed_tokens.weight", 5);
    test_gradients(TINY_GPT2, "ln-gpt2", "transformer.wte.weight", 10);
    tm_key llama_keys[] = {
        {"base_model.model.model.layers.0.input_layernorm.ln_tuning_layers.weight", 1, {32}},
        {"base_model.model.model.layers.1.post_attention_layernorm.ln_tuning_layers.weight", 1, {32}},
        {"base_model.model.model.norm.ln_tuning_layers.weight", 1, {32}},
    };
    test_training_save_load(TINY_LLAMA, "ln-train-llama", llama_keys, 3, 5);
    tm_key gpt2_keys[] = {
        {"base_model.model.transformer.h.0.ln_1.ln_tuning_layers.weight", 1, {32}},
        {"base_model.model.transformer.h.1.ln_2.ln_tuning_layers.bias", 1, {32}},
        {"base_model.model.transformer.ln_f.ln_tuning_layers.bias", 1, {32}},
    };
    test_training_save_load(TINY_GPT2, "ln-train-gpt2", gpt2_keys, 3, 10);
    test_targets_and_conflicts();
    return test_finish();
}
