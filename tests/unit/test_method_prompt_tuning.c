/* prompt-tuning: finite-difference gradients (its table, and what reaches the token/position embeddings),
 * training lowers the loss, save → load gives the identical loss with PEFT's key and shape, the three
 * initialisations, and parity with the PyTorch golden (PEFT semantics: loss, logits, gradient, one SGD step). */
#include "test_method_common.h"

static pc_method *attach(pc_model *m, const char *options_json, uint64_t seed) {
    cJSON *opt = cJSON_Parse(options_json);
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    pc_method *meth = NULL;
    pc_error err = {0};
    pc_status st = pc_method_create(&meth, pc_method_find("prompt-tuning"), m, opt, &rng, &err);
    cJSON_Delete(opt);
    CHECK(st == PC_OK, "prompt-tuning: create: %s", err.msg);
    return st == PC_OK ? meth : NULL;
}

static void test_gradients(const char *config, const char *tag, const char *embed_name, const char *pos_name) {
    pc_model *m = tm_model(config, tag, 1);
    if (!m) return;
    pc_method *meth = attach(m, "{\"num_virtual_tokens\": 3}", 2);
    if (!meth) return;
    tm_batch tb;
    tm_random_batch(&tb, m->cfg.vocab_size, 3);
    tm_upstream emb, pos;
    tm_upstream_begin(&emb, m, embed_name);
    if (pos_name) tm_upstream_begin(&pos, m, pos_name);
    if (tm_backward(m, &tb.b, &meth, 1)) {
        tm_check_method_grads(tag, m, &tb.b, meth, 96, 1e-2);
        tm_check_upstream(tag, m, &tb.b, &emb, 64, 1e-2);
        if (pos_name) tm_check_upstream(tag, m, &tb.b, &pos, 64, 1e-2);
        /* The check can fail: a 10 % error in the analytic gradient is caught. */
        float *g = pc_params_grad(&meth->params, 0);
        for (size_t i = 0; i < meth->params.count; i++) g[i] *= 1.1f;
        double r = tm_fd_ratio(m, &tb.b, pc_params_data(&meth->params, 0), g, (long)meth->params.count, 96, 1e-2);
        CHECK(r > 1.0, "%s: a wrong gradient passed the finite-difference check (ratio %.3g)", tag, r);
    }
    if (pos_name) tm_upstream_end(&pos);
    tm_upstream_end(&emb);
    pc_method_free(meth);
    pc_model_free(m);
}

static void test_training_and_save_load(void) {
    pc_model *m = tm_model(TINY_LLAMA, "pt-train", 5);
    if (!m) return;
    pc_method *meth = attach(m, "{\"num_virtual_tokens\": 4}", 6);
    if (!meth) return;
    tm_batch tb;
    tm_pattern_batch(&tb, 12);
    double before, after = tm_sgd(m, &tb.b, meth, 30, 0.5f, &before);
    CHECK(after < before - 0.1, "prompt-tuning: 30 SGD steps on a repeated pattern: loss %.4f → %.4f", before, after);
    const char *dir = tm_tmpdir("pt-save");
    pc_error err = {0};
    CHECK(pc_method_save(meth, dir, &err) == PC_OK, "save: %s", err.msg);
    tm_key keys[] = {{"prompt_embeddings", 2, {4, 32}}};
    tm_check_saved_keys(dir, keys, 1, 1);
    cJSON *cfg = tm_read_config(dir);
    CHECK(cfg && !strcmp(cJSON_GetObjectItem(cfg, "peft_type")->valuestring, "PROMPT_TUNING") &&
              cJSON_GetObjectItem(cfg, "num_virtual_tokens")->valueint == 4 &&
              cJSON_GetObjectItem(cfg, "token_dim")->valueint == 32,
          "adapter_config.json: PEFT fields");
    cJSON_Delete(cfg);
    pc_method_free(meth);
    /* A fresh copy of the same base, the adapter loaded from disk: the same loss, bit for bit. */
    pc_model *m2 = tm_model(TINY_LLAMA, "pt-train", 5);
    pc_method *loaded = NULL;
    CHECK(m2 && pc_method_load(&loaded, m2, dir, &err) == PC_OK, "load: %s", err.msg);
    if (loaded) {
        double reloaded = tm_loss_mean(m2, &tb.b);
        CHECK(reloaded == after, "save → load: loss %.9g, before saving %.9g", reloaded, after);
        pc_method_free(loaded);
    }
    pc_model_free(m2);
    pc_model_free(m);
}

static void test_inits(void) {
    pc_model *m = tm_model(TINY_LLAMA, "pt-init", 8);
    if (!m) return;
    int C = m->cfg.hidden, V = m->cfg.vocab_size;
    const float *E = m->embed->t.data;
    pc_method *meth = attach(m, "{\"num_virtual_tokens\": 6, \"prompt_init\": \"vocab\"}", 9);
    if (meth) {
        const float *P = pc_params_data(&meth->params, 0);
        int all_rows = 1;
        for (int j = 0; j < 6; j++) {
            int found = 0;
            for (int v = 0; v < V && !found; v++) found = !memcmp(P + (size_t)j * C, E + (size_t)v * C, sizeof(float) * (size_t)C);
            all_rows &= found;
        }
        CHECK(all_rows, "SAMPLE_VOCAB: every virtual row is a row of the token embedding");
        pc_method_free(meth);
    }
    meth = attach(m, "{\"num_virtual_tokens\": 50, \"prompt_tuning_init\": \"RANDOM\"}", 10);
    if (meth) {
        double s2 = 0;
        for (size_t i = 0; i < meth->params.count; i++) s2 += (double)meth->params.data[i] * meth->params.data[i];
        double sd = sqrt(s2 / (double)meth->params.count);
        CHECK(fabs(sd - 1.0) < 0.05, "RANDOM: N(0,1) as torch.nn.Embedding (std %.3f)", sd);
        pc_method_free(meth);
    }
    /* Bad options are errors, not crashes. */
    cJSON *opt = cJSON_Parse("{\"prompt_init\": \"sometimes\"}");
    pc_rng rng;
    pc_rng_seed(&rng, 1);
    pc_error err = {0};
    CHECK(pc_method_create(&meth, pc_method_find("prompt-tuning"), m, opt, &rng, &err) == PC_ERR_USAGE,
          "an unknown --prompt-init is a usage error");
    cJSON_Delete(opt);
    opt = cJSON_Parse("{\"prompt_init\": \"text:hello\", \"tokenizer_name_or_path\": \"/nonexistent/tokenizer.json\"}");
    CHECK(pc_method_create(&meth, pc_method_find("prompt-tuning"), m, opt, &rng, &err) != PC_OK && strstr(err.msg, "prompt-tuning"),
          "text init without a readable tokenizer is a clear error (%s)", err.msg);
    cJSON_Delete(opt);
    pc_model_free(m);
}

/* TEXT: a small byte-level-free BPE tokenizer written here; the rows are the embeddings of its ids, repeated. */
static void test_text_init(void) {
    const char *dir = tm_tmpdir("pt-text");
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs("{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[],\"normalizer\":null,"
          "\"pre_tokenizer\":null,\"post_processor\":null,\"decoder\":null,"
          "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
          "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,"
          "\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3},\"merges\":[\"a b\"]}}",
          f);
    fclose(f);
    pc_model *m = tm_model(TINY_LLAMA, "pt-text", 12);
    if (!m) return;
    char opts[1024];
    snprintf(opts, sizeof opts, "{\"num_virtual_tokens\": 5, \"prompt_init\": \"text:abc\", \"tokenizer_name_or_path\": \"%s\"}",
             path);
    cJSON *opt = cJSON_Parse(opts);
    pc_rng rng;
    pc_rng_seed(&rng, 1);
    pc_error err = {0};
    pc_method *meth = NULL;
    pc_status st = pc_method_create(&meth, pc_method_find("prompt-tuning"), m, opt, &rng, &err);
    cJSON_Delete(opt);
    CHECK(st == PC_OK, "text init: %s", err.msg);
    if (meth) {
        /* "abc" → [ab, c] = [3, 2], repeated to 5 rows: 3 2 3 2 3. */
        static const int want[5] = {3, 2, 3, 2, 3};
        int C = m->cfg.hidden, ok = 1;
        const float *E = m->embed->t.data, *P = pc_params_data(&meth->params, 0);
        for (int j = 0; j < 5; j++) ok &= !memcmp(P + (size_t)j * C, E + (size_t)want[j] * C, sizeof(float) * (size_t)C);
        CHECK(ok, "text init: rows are the embeddings of the text's tokens, repeated");
        pc_method_free(meth);
    }
    pc_model_free(m);
}

int main(void) {
    tm_init();
    test_gradients(TINY_LLAMA, "pt-llama", "model.embed_tokens.weight", NULL);
    test_gradients(TINY_GPT2, "pt-gpt2", "transformer.wte.weight", "transformer.wpe.weight");
    test_training_and_save_load();
    test_inits();
    test_text_init();
    tm_check_golden_case("prompt_tuning_llama", "llama_gqa");
    return test_finish();
}
