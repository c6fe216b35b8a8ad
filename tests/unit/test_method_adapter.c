/* adapter: for each type (houlsby, pfeiffer, parallel, scaled-parallel) finite-difference gradients of every
 * tensor and of what reaches the norms upstream (serial adapters rewrite the sublayer's output gradient,
 * parallel ones add to its input gradient); a fresh adapter is the identity; training lowers the loss;
 * save → load gives the identical loss with the documented keys; merging is refused. */
#include "test_method_common.h"

static pc_method *attach(pc_model *m, const char *options_json, uint64_t seed) {
    cJSON *opt = options_json ? cJSON_Parse(options_json) : NULL;
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    pc_method *meth = NULL;
    pc_error err = {0};
    pc_status st = pc_method_create(&meth, pc_method_find("adapter"), m, opt, &rng, &err);
    cJSON_Delete(opt);
    CHECK(st == PC_OK, "adapter: create %s: %s", options_json ? options_json : "", err.msg);
    return st == PC_OK ? meth : NULL;
}

/* Every tensor U(−0.5, 0.5): the up projection non-zero, so every path carries gradient. */
static void randomize(pc_method *meth, uint64_t seed) {
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    pc_rng_fill_uniform(&rng, meth->params.data, (long)meth->params.count, -0.5f, 0.5f);
}

static void test_gradients(const char *config, const char *tag, const char *options, const char *norm1, const char *norm2) {
    pc_model *m = tm_model(config, tag, 1);
    if (!m) return;
    pc_method *meth = attach(m, options, 2);
    if (!meth) return;
    tm_batch tb;
    tm_random_batch(&tb, m->cfg.vocab_size, 3);
    double base = tm_loss_sum(m, &tb.b);
    pc_model *plain = tm_model(config, tag, 1);
    if (plain) {
        double without = tm_loss_sum(plain, &tb.b);
        CHECK(base == without, "%s: a fresh adapter is the identity (loss %.9g, without %.9g)", tag, base, without);
        pc_model_free(plain);
    }
    randomize(meth, 4);
    tm_upstream u1, u2;
    tm_upstream_begin(&u1, m, norm1);
    tm_upstream_begin(&u2, m, norm2);
    if (tm_backward(m, &tb.b, &meth, 1)) {
        tm_check_method_grads(tag, m, &tb.b, meth, 40, 1e-3);
        tm_check_upstream(tag, m, &tb.b, &u1, 32, 1e-3);
        tm_check_upstream(tag, m, &tb.b, &u2, 32, 1e-3);
        float *g = pc_params_grad(&meth->params, 0);
        long n = (long)meth->params.views[0].count;
        for (long i = 0; i < n; i++) g[i] *= 1.1f;
        double r = tm_fd_ratio(m, &tb.b, pc_params_data(&meth->params, 0), g, n, 40, 1e-3);
        CHECK(r > 1.0, "%s: a wrong gradient passed the check (ratio %.3g)", tag, r);
    }
    tm_upstream_end(&u2);
    tm_upstream_end(&u1);
    pc_method_free(meth);
    pc_model_free(m);
}

static void test_training_save_load(void) {
    pc_model *m = tm_model(TINY_LLAMA, "ad-train", 5);
    if (!m) return;
    pc_method *meth = attach(m, "{\"adapter_type\": \"houlsby\", \"adapter_dim\": 4}", 6);
    if (!meth) return;
    tm_batch tb;
    tm_pattern_batch(&tb, 12);
    double before, after = tm_sgd(m, &tb.b, meth, 30, 0.5f, &before);
    CHECK(after < before - 0.1, "adapter: 30 SGD steps on a repeated pattern: loss %.4f → %.4f", before, after);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", tm_tmpdir("ad-save"));
    pc_error err = {0};
    CHECK(pc_method_save(meth, dir, &err) == PC_OK, "save: %s", err.msg);
    tm_key keys[] = {
        {"base_model.model.model.layers.0.self_attn.adapter_down.weight", 2, {4, 32}},
        {"base_model.model.model.layers.0.self_attn.adapter_down.bias", 1, {4}},
        {"base_model.model.model.layers.1.mlp.adapter_up.weight", 2, {32, 4}},
        {"base_model.model.model.layers.1.mlp.adapter_up.bias", 1, {32}},
    };
    tm_check_saved_keys(dir, keys, 4, 16);
    cJSON *cfg = tm_read_config(dir);
    CHECK(cfg && !strcmp(cJSON_GetObjectItem(cfg, "peft_type")->valuestring, "PEFTC_ADAPTER") &&
              !strcmp(cJSON_GetObjectItem(cfg, "adapter_type")->valuestring, "houlsby") &&
              cJSON_GetObjectItem(cfg, "adapter_dim")->valueint == 4,
          "adapter: adapter_config.json");
    cJSON_Delete(cfg);
    CHECK(meth->ops->merge == NULL, "adapter: not mergeable");
    pc_method_free(meth);
    pc_model *m2 = tm_model(TINY_LLAMA, "ad-train", 5);
    pc_method *loaded = NULL;
    CHECK(m2 && pc_method_load(&loaded, m2, dir, &err) == PC_OK, "load: %s", err.msg);
    if (loaded) {
        double reloaded = tm_loss_mean(m2, &tb.b);
        CHECK(reloaded == after, "adapter: save → load: loss %.9g, before saving %.9g", reloaded, after);
        pc_method_free(loaded);
    }
    pc_model_free(m2);
    pc_model_free(m);
}

static void test_options(void) {
    pc_model *m = tm_model(TINY_LLAMA, "ad-opt", 1);
    if (!m) return;
    static const struct {
        const char *options;
        int tensors;
    } cases[] = {
        {"{\"adapter_type\": \"houlsby\", \"adapter_dim\": 4}", 16},
        {"{\"adapter_type\": \"pfeiffer\", \"adapter_dim\": 4}", 8},
        {"{\"adapter_type\": \"parallel\", \"adapter_dim\": 4}", 16},
        {"{\"adapter_type\": \"scaled-parallel\", \"adapter_dim\": 4}", 8},
        {"{\"adapter_type\": \"parallel\", \"adapter_sites\": \"attn\"}", 8},
        {"{\"adapter_type\": \"houlsby\", \"layers_to_transform\": [1]}", 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pc_method *meth = attach(m, cases[i].options, 1);
        if (!meth) continue;
        CHECK(meth->params.n_views == cases[i].tensors, "%s: %d tensors, want %d", cases[i].options, meth->params.n_views,
              cases[i].tensors);
        pc_method_free(meth);
    }
    pc_rng rng;
    pc_rng_seed(&rng, 1);
    pc_error err = {0};
    pc_method *meth = NULL;
    cJSON *opt = cJSON_Parse("{\"adapter_type\": \"sideways\"}");
    CHECK(pc_method_create(&meth, pc_method_find("adapter"), m, opt, &rng, &err) == PC_ERR_USAGE && strstr(err.msg, "sideways"),
          "an unknown adapter_type is a usage error: %s", err.msg);
    cJSON_Delete(opt);
    pc_model_free(m);
}

int main(void) {
    tm_init();
    const char *l1 = "model.layers.0.input_layernorm.weight", *l2 = "model.layers.0.post_attention_layernorm.weight";
    test_gradients(TINY_LLAMA, "ad-houlsby", "{\"adapter_type\": \"houlsby\", \"adapter_dim\": 4}", l1, l2);
    test_gradients(TINY_LLAMA, "ad-pfeiffer", "{\"adapter_type\": \"pfeiffer\", \"adapter_dim\": 4}", l1, l2);
    test_gradients(TINY_LLAMA, "ad-parallel", "{\"adapter_type\": \"parallel\", \"adapter_dim\": 4}", l1, l2);
    test_gradients(TINY_LLAMA, "ad-scaled", "{\"adapter_type\": \"scaled-parallel\", \"adapter_dim\": 4}", l1, l2);
    test_gradients(TINY_GPT2, "ad-gpt2", "{\"adapter_type\": \"houlsby\", \"adapter_dim\": 4}", "transformer.h.0.ln_1.bias",
                   "transformer.h.0.ln_2.weight");
    test_training_save_load();
    test_options();
    return test_finish();
}
