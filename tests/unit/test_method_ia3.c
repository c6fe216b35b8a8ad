/* ia3: finite-difference gradients of the scaling vectors and of what reaches the norms upstream (through the
 * rescaled output gradient of k/v and through the feed-forward input scaling), on llama and on gpt2 (biased
 * Conv1D layers); training lowers the loss; save → load gives the identical loss with PEFT's keys and shapes;
 * merge gives the adapter's loss without hooks and unmerge returns the base; PyTorch parity. */
#include "test_method_common.h"

static pc_method *attach(pc_model *m, const char *options_json, uint64_t seed) {
    cJSON *opt = options_json ? cJSON_Parse(options_json) : NULL;
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    pc_method *meth = NULL;
    pc_error err = {0};
    pc_status st = pc_method_create(&meth, pc_method_find("ia3"), m, opt, &rng, &err);
    cJSON_Delete(opt);
    CHECK(st == PC_OK, "ia3: create: %s", err.msg);
    return st == PC_OK ? meth : NULL;
}

/* ia3_l = 1 + N(0, 0.3): away from the identity so every path matters. */
static void perturb(pc_method *meth, uint64_t seed) {
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    for (size_t i = 0; i < meth->params.count; i++) meth->params.data[i] = 1.0f + 0.3f * pc_rng_normal(&rng);
}

static void test_gradients(const char *config, const char *tag, const char *norm1, const char *norm2) {
    pc_model *m = tm_model(config, tag, 1);
    if (!m) return;
    pc_method *meth = attach(m, NULL, 2);
    if (!meth) return;
    perturb(meth, 3);
    tm_batch tb;
    tm_random_batch(&tb, m->cfg.vocab_size, 3);
    tm_upstream u1, u2;
    tm_upstream_begin(&u1, m, norm1);
    tm_upstream_begin(&u2, m, norm2);
    if (tm_backward(m, &tb.b, &meth, 1)) {
        tm_check_method_grads(tag, m, &tb.b, meth, 48, 1e-2);
        tm_check_upstream(tag, m, &tb.b, &u1, 32, 1e-2);
        tm_check_upstream(tag, m, &tb.b, &u2, 32, 1e-2);
        for (int v = 0; v < meth->params.n_views; v++) {
            float *g = pc_params_grad(&meth->params, v);
            long n = (long)meth->params.views[v].count;
            for (long i = 0; i < n; i++) g[i] *= 1.1f;
            double r = tm_fd_ratio(m, &tb.b, pc_params_data(&meth->params, v), g, n, 48, 1e-2);
            CHECK(r > 1.0, "%s: a wrong gradient of %s passed the check (ratio %.3g)", tag, meth->params.views[v].name, r);
        }
    }
    tm_upstream_end(&u2);
    tm_upstream_end(&u1);
    pc_method_free(meth);
    pc_model_free(m);
}

static void test_training_save_load(void) {
    pc_model *m = tm_model(TINY_LLAMA, "ia3-train", 5);
    if (!m) return;
    pc_method *meth = attach(m, NULL, 6);
    if (!meth) return;
    tm_batch tb;
    tm_pattern_batch(&tb, 12);
    double before, after = tm_sgd(m, &tb.b, meth, 30, 0.5f, &before);
    CHECK(after < before - 0.1, "ia3: 30 SGD steps on a repeated pattern: loss %.4f → %.4f", before, after);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", tm_tmpdir("ia3-save"));
    pc_error err = {0};
    CHECK(pc_method_save(meth, dir, &err) == PC_OK, "save: %s", err.msg);
    tm_key keys[] = {
        {"base_model.model.model.layers.0.self_attn.k_proj.ia3_l", 2, {16, 1}},
        {"base_model.model.model.layers.1.self_attn.v_proj.ia3_l", 2, {16, 1}},
        {"base_model.model.model.layers.1.mlp.down_proj.ia3_l", 2, {1, 48}},
    };
    tm_check_saved_keys(dir, keys, 3, 6);
    cJSON *cfg = tm_read_config(dir);
    const cJSON *ff = cfg ? cJSON_GetObjectItem(cfg, "feedforward_modules") : NULL;
    CHECK(cfg && !strcmp(cJSON_GetObjectItem(cfg, "peft_type")->valuestring, "IA3") && cJSON_GetArraySize(ff) == 1 &&
              !strcmp(cJSON_GetArrayItem(ff, 0)->valuestring, "down_proj") &&
              cJSON_GetArraySize(cJSON_GetObjectItem(cfg, "target_modules")) == 3,
          "ia3: adapter_config.json: PEFT's llama defaults");
    cJSON_Delete(cfg);
    pc_method_free(meth);
    pc_model *m2 = tm_model(TINY_LLAMA, "ia3-train", 5);
    pc_method *loaded = NULL;
    CHECK(m2 && pc_method_load(&loaded, m2, dir, &err) == PC_OK, "load: %s", err.msg);
    if (loaded) {
        double reloaded = tm_loss_mean(m2, &tb.b);
        CHECK(reloaded == after, "ia3: save → load: loss %.9g, before saving %.9g", reloaded, after);
        pc_method_free(loaded);
    }
    pc_model_free(m2);
    pc_model_free(m);
}

/* gpt2: biased layers, so merging must scale the bias of output-scaled targets as PEFT does. */
static void test_merge(const char *config, const char *tag) {
    pc_model *m = tm_model(config, tag, 7);
    if (!m) return;
    tm_batch tb;
    tm_random_batch(&tb, m->cfg.vocab_size, 8);
    double base = tm_loss_mean(m, &tb.b);
    pc_method *meth = attach(m, NULL, 9);
    if (!meth) return;
    perturb(meth, 10);
    double adapted = tm_loss_mean(m, &tb.b);
    CHECK(fabs(adapted - base) > 1e-3, "%s: the perturbed adapter changes the loss", tag);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", tm_tmpdir(tag));
    pc_error err = {0};
    CHECK(pc_method_save(meth, dir, &err) == PC_OK, "save: %s", err.msg);
    CHECK(meth->ops->merge && meth->ops->merge(meth, 1.0f, &err) == PC_OK, "%s: merge: %s", tag, err.msg);
    pc_method_free(meth); /* hooks gone, weights folded */
    double merged = tm_loss_mean(m, &tb.b);
    CHECK(fabs(merged - adapted) <= 1e-5 * fabs(adapted), "%s: merged loss %.9g, with the adapter %.9g", tag, merged, adapted);
    pc_method *again = NULL;
    CHECK(pc_method_load(&again, m, dir, &err) == PC_OK, "%s: load: %s", tag, err.msg);
    if (again) {
        CHECK(again->ops->unmerge(again, 1.0f, &err) == PC_OK, "%s: unmerge: %s", tag, err.msg);
        pc_method_free(again);
        double restored = tm_loss_mean(m, &tb.b);
        CHECK(fabs(restored - base) <= 1e-5 * fabs(base), "%s: unmerged loss %.9g, base %.9g", tag, restored, base);
    }
    pc_model_free(m);
}

static void test_bad_options(void) {
    pc_model *m = tm_model(TINY_LLAMA, "ia3-bad", 1);
    if (!m) return;
    pc_rng rng;
    pc_rng_seed(&rng, 1);
    pc_error err = {0};
    pc_method *meth = NULL;
    cJSON *opt = cJSON_Parse("{\"target_modules\": [\"k_proj\"], \"feedforward_modules\": [\"down_proj\"]}");
    CHECK(pc_method_create(&meth, pc_method_find("ia3"), m, opt, &rng, &err) == PC_ERR_USAGE && strstr(err.msg, "subset"),
          "feed-forward modules outside the targets are refused: %s", err.msg);
    cJSON_Delete(opt);
    opt = cJSON_Parse("{\"target_modules\": [\"no_such_proj\"]}");
    CHECK(pc_method_create(&meth, pc_method_find("ia3"), m, opt, &rng, &err) == PC_ERR_USAGE, "no matching target: %s", err.msg);
    cJSON_Delete(opt);
    pc_model_free(m);
}

int main(void) {
    tm_init();
    test_gradients(TINY_LLAMA, "ia3-llama", "model.layers.0.input_layernorm.weight",
                   "model.layers.0.post_attention_layernorm.weight");
    test_gradients(TINY_GPT2, "ia3-gpt2", "transformer.h.0.ln_1.weight", "transformer.h.0.ln_2.bias");
    test_training_save_load();
    test_merge(TINY_LLAMA, "ia3-merge-llama");
    test_merge(TINY_GPT2, "ia3-merge-gpt2");
    test_bad_options();
    tm_check_golden_case("ia3_llama", "llama_gqa");
    return test_finish();
}
