/* prefix-tuning: finite-difference gradients (the table; with prefix_projection the MLP's five tensors; and
 * what reaches the token embedding through attention), on llama with grouped-query attention and on gpt2;
 * training lowers the loss; save → load gives the identical loss (with projection: the saved file is PEFT's
 * projected table alone); parity with the PyTorch golden. */
#include "test_method_common.h"

static pc_method *attach(pc_model *m, const char *options_json, uint64_t seed) {
    cJSON *opt = cJSON_Parse(options_json);
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    pc_method *meth = NULL;
    pc_error err = {0};
    pc_status st = pc_method_create(&meth, pc_method_find("prefix-tuning"), m, opt, &rng, &err);
    cJSON_Delete(opt);
    CHECK(st == PC_OK, "prefix-tuning: create: %s", err.msg);
    return st == PC_OK ? meth : NULL;
}

static void test_gradients(const char *config, const char *tag, const char *options, const char *embed_name) {
    pc_model *m = tm_model(config, tag, 1);
    if (!m) return;
    pc_method *meth = attach(m, options, 2);
    if (!meth) return;
    /* Keys at N(0,1) would saturate the softmax; the MLP's output is fine as initialised. */
    if (meth->params.n_views == 1)
        for (size_t i = 0; i < meth->params.count; i++) meth->params.data[i] *= 0.5f;
    tm_batch tb;
    tm_random_batch(&tb, m->cfg.vocab_size, 3);
    tm_upstream emb;
    tm_upstream_begin(&emb, m, embed_name);
    if (tm_backward(m, &tb.b, &meth, 1)) {
        tm_check_method_grads(tag, m, &tb.b, meth, 64, 1e-2);
        tm_check_upstream(tag, m, &tb.b, &emb, 48, 1e-2);
        float *g = pc_params_grad(&meth->params, 0);
        for (size_t i = 0; i < meth->params.views[0].count; i++) g[i] *= 1.1f;
        double r = tm_fd_ratio(m, &tb.b, pc_params_data(&meth->params, 0), g, (long)meth->params.views[0].count, 64, 1e-2);
        CHECK(r > 1.0, "%s: a wrong gradient passed the finite-difference check (ratio %.3g)", tag, r);
    }
    tm_upstream_end(&emb);
    pc_method_free(meth);
    pc_model_free(m);
}

static void test_training_and_save_load(const char *options, const char *tag, int projection) {
    pc_model *m = tm_model(TINY_LLAMA, tag, 5);
    if (!m) return;
    pc_method *meth = attach(m, options, 6);
    if (!meth) return;
    tm_batch tb;
    tm_pattern_batch(&tb, 12);
    double before, after = tm_sgd(m, &tb.b, meth, 30, projection ? 0.2f : 0.5f, &before);
    CHECK(after < before - 0.1, "%s: 30 SGD steps on a repeated pattern: loss %.4f → %.4f", tag, before, after);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", tm_tmpdir(tag));
    pc_error err = {0};
    CHECK(pc_method_save(meth, dir, &err) == PC_OK, "save: %s", err.msg);
    /* 4 virtual tokens × (2 layers · 2 · kv_heads 2 · head_dim 8) */
    tm_key keys[] = {{"prompt_embeddings", 2, {4, 64}}};
    tm_check_saved_keys(dir, keys, 1, 1);
    cJSON *cfg = tm_read_config(dir);
    CHECK(cfg && !strcmp(cJSON_GetObjectItem(cfg, "peft_type")->valuestring, "PREFIX_TUNING") &&
              cJSON_GetObjectItem(cfg, "token_dim")->valueint == 16 && cJSON_GetObjectItem(cfg, "num_attention_heads")->valueint == 2 &&
              cJSON_IsTrue(cJSON_GetObjectItem(cfg, "prefix_projection")) == projection,
          "%s: adapter_config.json: PEFT fields with the grouped-query rewrite", tag);
    cJSON_Delete(cfg);
    pc_method_free(meth);
    pc_model *m2 = tm_model(TINY_LLAMA, tag, 5);
    pc_method *loaded = NULL;
    CHECK(m2 && pc_method_load(&loaded, m2, dir, &err) == PC_OK, "load: %s", err.msg);
    if (loaded) {
        CHECK(loaded->params.n_views == 1, "%s: a loaded prefix is the table alone", tag);
        double reloaded = tm_loss_mean(m2, &tb.b);
        CHECK(fabs(reloaded - after) <= 1e-6 * fabs(after), "%s: save → load: loss %.9g, before saving %.9g", tag, reloaded,
              after);
        pc_method_free(loaded);
    }
    pc_model_free(m2);
    pc_model_free(m);
}

static void test_wrong_model(void) {
    /* A prefix for the golden llama (token_dim 24) refused on the tiny one (16), with the reason. */
    pc_model *m = tm_model(TINY_LLAMA, "pf-wrong", 1);
    if (!m) return;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/golden/data/prefix_tuning_llama/adapter", test_source_dir());
    pc_method *meth = NULL;
    pc_error err = {0};
    CHECK(pc_method_load(&meth, m, dir, &err) == PC_ERR_FORMAT && strstr(err.msg, "token_dim"),
          "a prefix for another model is refused: %s", err.msg);
    pc_model_free(m);
}

int main(void) {
    tm_init();
    test_gradients(TINY_LLAMA, "pf-llama", "{\"num_virtual_tokens\": 3}", "model.embed_tokens.weight");
    test_gradients(TINY_GPT2, "pf-gpt2", "{\"num_virtual_tokens\": 3}", "transformer.wte.weight");
    test_gradients(TINY_LLAMA, "pf-proj", "{\"num_virtual_tokens\": 3, \"prefix_projection\": true, \"encoder_hidden_size\": 12}",
                   "model.embed_tokens.weight");
    test_training_and_save_load("{\"num_virtual_tokens\": 4}", "pf-train", 0);
    test_training_and_save_load("{\"num_virtual_tokens\": 4, \"prefix_projection\": true}", "pf-train-proj", 1);
    test_wrong_model();
    tm_check_golden_case("prefix_tuning_llama", "llama_gqa");
    return test_finish();
}
