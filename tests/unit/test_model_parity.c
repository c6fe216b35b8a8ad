/* The model against PyTorch: for each tiny model written by tests/golden/gen_goldens.py (llama with GQA,
 * llama with tied embeddings, qwen2, gpt2, and a BF16 llama), peftc must reproduce the loss and logits
 * within 1e-5 relative and every parameter gradient within 1e-4 relative. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "peft/method.h"
#include "test_support.h"

static const float *golden(const pc_safetensors *g, const char *name, long *count) {
    const pc_st_entry *e = pc_safetensors_find(g, name);
    if (!e || e->dtype != PC_F32) return NULL;
    if (count) *count = (long)(e->nbytes / 4);
    return e->data;
}

static void batch_from_golden(const pc_safetensors *g, pc_model_batch *b) {
    const pc_st_entry *ids = pc_safetensors_find(g, "input_ids"), *labels = pc_safetensors_find(g, "labels");
    b->B = (int)ids->shape[0];
    b->T = (int)ids->shape[1];
    b->ids = ids->data;
    b->labels = labels->data;
    b->pos = b->doc = NULL;
}

static void check_case(const char *name, const char *model_sub, const char *golden_file, double tol_loss) {
    char dir[4096], gpath[4096];
    snprintf(dir, sizeof dir, "%s/tests/golden/data/%s/%s", test_source_dir(), name, model_sub);
    snprintf(gpath, sizeof gpath, "%s/tests/golden/data/%s/%s", test_source_dir(), name, golden_file);
    pc_error err = {0};
    pc_model *m = NULL;
    pc_safetensors g;
    if (pc_safetensors_open(&g, gpath, &err) != PC_OK) {
        test_fail_setup("%s", err.msg);
        return;
    }
    /* Parity is checked in fp32 compute whatever the file dtype: peftc upcasts like the golden does. */
    if (pc_model_load(&m, dir, PC_BASE_F32, &err) != PC_OK) {
        test_fail_setup("%s", err.msg);
        pc_safetensors_close(&g);
        return;
    }
    pc_model_batch b;
    batch_from_golden(&g, &b);
    pc_forward_result res;
    CHECK(pc_model_forward(m, &b, &res, &err) == PC_OK, "%s: forward: %s", name, err.msg);
    float loss = (float)(res.loss_sum / (double)res.n_targets);
    const float *want_loss = golden(&g, "loss", NULL);
    CHECK(want_loss && fabs(loss - want_loss[0]) <= tol_loss * fabs(want_loss[0]), "%s: loss %.9g want %.9g", name, loss,
          want_loss ? want_loss[0] : NAN);
    long n_logits = 0;
    const float *want_logits = golden(&g, "logits", &n_logits);
    if (want_logits) {
        float *logits = pc_malloc(sizeof(float) * (size_t)n_logits);
        pc_model_logits(m, logits, &err);
        double rel = max_rel_err(logits, want_logits, n_logits);
        CHECK(rel <= 1e-5, "%s: logits max relative error %.3g", name, rel);
        pc_free(logits);
    }
    /* Gradients of every tensor: make all of them trainable (full fine-tuning) and run one backward. */
    pc_method *full = NULL;
    pc_rng rng;
    pc_rng_seed(&rng, 1);
    if (pc_method_create(&full, pc_method_find("full"), m, NULL, &rng, &err) != PC_OK) {
        test_fail_setup("%s: %s", name, err.msg);
    } else if (golden(&g, "grad.model.embed_tokens.weight", NULL) || golden(&g, "grad.transformer.wte.weight", NULL)) {
        CHECK(pc_model_forward_backward(m, &b, 1.0f / (float)res.n_targets, &rng, &res, &err) == PC_OK, "%s: backward: %s",
              name, err.msg);
        int checked = 0;
        for (int i = 0; i < full->params.n_views; i++) {
            char key[256];
            snprintf(key, sizeof key, "grad.%s", full->params.views[i].name);
            long n = 0;
            const float *want = golden(&g, key, &n);
            CHECK(want != NULL, "%s: golden has no %s", name, key);
            if (!want) continue;
            const pc_param *p = pc_model_find_param(m, full->params.views[i].name);
            const float *got = pc_params_grad(&full->params, i);
            float *tr = NULL;
            if (p->transposed) { /* golden is in the file's [in,out] layout */
                int64_t rows = p->t.shape[0], cols = p->t.shape[1];
                tr = pc_malloc(sizeof(float) * (size_t)n);
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t c = 0; c < cols; c++) tr[(size_t)c * rows + r] = got[(size_t)r * cols + c];
                got = tr;
            }
            double rel = max_rel_err(got, want, n);
            CHECK(rel <= 1e-4, "%s: %s relative error %.3g", name, key, rel);
            pc_free(tr);
            checked++;
        }
        CHECK(checked == m->n_params, "%s: checked %d of %d gradients", name, checked, m->n_params);
    }
    pc_method_free(full);
    pc_model_free(m);
    pc_safetensors_close(&g);
}

/* model_type "mistral" is llama's computation: the llama golden with only the type changed must match. */
static void check_mistral_alias(void) {
    char src[4096], dir[] = "/tmp/peftc_mistral_XXXXXX", path[4200], link_to[4200];
    snprintf(src, sizeof src, "%s/tests/golden/data/llama_gqa/model/config.json", test_source_dir());
    if (!mkdtemp(dir)) {
        test_fail_setup("mkdtemp");
        return;
    }
    FILE *in = fopen(src, "rb");
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *out = fopen(path, "wb");
    char text[8192];
    size_t n = in ? fread(text, 1, sizeof text - 1, in) : 0;
    text[n] = '\0';
    char *type = strstr(text, "\"llama\"");
    if (!in || !out || !type) {
        test_fail_setup("cannot rewrite %s", src);
    } else {
        fwrite(text, 1, (size_t)(type - text), out);
        fputs("\"mistral\"", out);
        fputs(type + 7, out);
    }
    if (in) fclose(in);
    if (out) fclose(out);
    snprintf(link_to, sizeof link_to, "%s/tests/golden/data/llama_gqa/model/model.safetensors", test_source_dir());
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(symlink(link_to, path) == 0, "symlink weights");
    pc_error err = {0};
    pc_model *m = NULL;
    CHECK(pc_model_load(&m, dir, PC_BASE_F32, &err) == PC_OK, "mistral: %s", err.msg);
    if (m) {
        CHECK(strcmp(m->cfg.arch->model_type, "mistral") == 0, "mistral row");
        char gpath[4096];
        snprintf(gpath, sizeof gpath, "%s/tests/golden/data/llama_gqa/golden.safetensors", test_source_dir());
        pc_safetensors g;
        if (pc_safetensors_open(&g, gpath, &err) == PC_OK) {
            pc_model_batch b;
            batch_from_golden(&g, &b);
            pc_forward_result res;
            CHECK(pc_model_forward(m, &b, &res, &err) == PC_OK, "mistral forward: %s", err.msg);
            const float *want = golden(&g, "loss", NULL);
            float loss = (float)(res.loss_sum / (double)res.n_targets);
            CHECK(want && fabs(loss - want[0]) <= 1e-5 * fabs(want[0]), "mistral loss %.9g want %.9g", loss, want ? want[0] : NAN);
            pc_safetensors_close(&g);
        }
        pc_model_free(m);
    }
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    check_mistral_alias();
    check_case("llama_gqa", "model", "golden.safetensors", 1e-5);
    check_case("llama_tied", "model", "golden.safetensors", 1e-5);
    check_case("qwen2", "model", "golden.safetensors", 1e-5);
    check_case("gpt2", "model", "golden.safetensors", 1e-5);
    check_case("llama_gqa", "model_bf16", "golden_bf16.safetensors", 1e-5);
    return test_finish();
}
