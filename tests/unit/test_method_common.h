/* Shared by the tests/unit/test_method_*.c files (header-only: each test is its own executable).
 *
 * - tiny random models (llama with GQA, gpt2 with biases, qwen2) from a config.json written to /tmp, F32 base,
 *   weights rescaled to N(0, 0.2) so that gradients are far above finite-difference noise;
 * - a fixed batch, the loss as a function of the numbers the model reads, and central finite differences on
 *   a spread-out subset of a tensor compared with the analytic gradient of pc_model_forward_backward;
 * - a structured "text" (a repeated token pattern) for the training test, plain SGD on a method's parameters;
 * - the PyTorch golden cases (tests/golden/data) for parity.
 */
#ifndef TEST_METHOD_COMMON_H
#define TEST_METHOD_COMMON_H

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "peft/method.h"
#include "test_support.h"

/* The models here are tiny: one thread is fastest, and the machine is shared (threads spinning against other
 * jobs made these tests 50× slower). */
static inline void tm_init(void) { omp_set_num_threads(1); }

/* ---- tiny models ------------------------------------------------------------------------------------ */

static const char *const TINY_LLAMA =
    "{\"model_type\":\"llama\",\"hidden_size\":32,\"intermediate_size\":48,\"num_attention_heads\":4,"
    "\"num_key_value_heads\":2,\"head_dim\":8,\"num_hidden_layers\":2,\"vocab_size\":40,\"max_position_embeddings\":64,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"tie_word_embeddings\":false,\"torch_dtype\":\"float32\"}";
static const char *const TINY_GPT2 =
    "{\"model_type\":\"gpt2\",\"n_embd\":32,\"n_head\":4,\"n_layer\":2,\"n_inner\":null,\"vocab_size\":40,"
    "\"n_positions\":64,\"n_ctx\":64,\"layer_norm_epsilon\":1e-5,\"activation_function\":\"gelu_new\","
    "\"tie_word_embeddings\":true,\"torch_dtype\":\"float32\"}";
static const char *const TINY_QWEN2 =
    "{\"model_type\":\"qwen2\",\"hidden_size\":32,\"intermediate_size\":48,\"num_attention_heads\":4,"
    "\"num_key_value_heads\":2,\"num_hidden_layers\":2,\"vocab_size\":40,\"max_position_embeddings\":64,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"tie_word_embeddings\":false,\"use_sliding_window\":false,"
    "\"torch_dtype\":\"float32\"}";

/* A scratch directory of this process under /tmp (left in place: tiny, and useful after a failure). Each tag
 * has its own buffer slot, so two directories can be held at once. */
static inline const char *tm_tmpdir(const char *tag) {
    static char dirs[16][256];
    static int next;
    char *dir = dirs[next++ % 16];
    snprintf(dir, 256, "/tmp/peftc-test-method-%s-%d", tag, (int)getpid());
    mkdir(dir, 0755);
    return dir;
}

/* Random model from a config text, weights (not norm gains) rescaled ×10 → N(0, 0.2); biases N(0, 0.1). */
static inline pc_model *tm_model(const char *config_text, const char *tag, uint64_t seed) {
    char path[512];
    snprintf(path, sizeof path, "%s/config-%s.json", tm_tmpdir(tag), tag);
    FILE *f = fopen(path, "w");
    if (!f) {
        test_fail_setup("cannot write %s", path);
        return NULL;
    }
    fputs(config_text, f);
    fclose(f);
    pc_model *m = NULL;
    pc_error err = {0};
    if (pc_model_create_random(&m, path, PC_BASE_F32, seed, &err) != PC_OK) {
        test_fail_setup("%s: %s", path, err.msg);
        return NULL;
    }
    pc_rng rng;
    pc_rng_seed(&rng, seed + 1000);
    for (int i = 0; i < m->n_params; i++) {
        pc_param *p = &m->params[i];
        float *d = p->t.data;
        size_t n = (size_t)pc_tensor_numel(&p->t);
        int bias = strstr(p->name, ".bias") != NULL;
        int norm_gain = (strstr(p->name, "norm") || strstr(p->name, "ln_")) && !bias;
        for (size_t k = 0; k < n; k++) {
            if (norm_gain) d[k] = 1.0f + 0.1f * pc_rng_normal(&rng);
            else if (bias) d[k] = 0.1f * pc_rng_normal(&rng);
            else d[k] *= 10.0f;
        }
    }
    return m;
}

/* ---- batches ------------------------------------------------------------------------------------------ */

typedef struct tm_batch {
    int32_t ids[64], labels[64];
    pc_model_batch b;
} tm_batch;

/* B=2, T=8 random ids in 1…V−1; one masked label, as the goldens do. */
static inline void tm_random_batch(tm_batch *tb, int vocab, uint64_t seed) {
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    for (int i = 0; i < 16; i++) tb->ids[i] = tb->labels[i] = 1 + (int32_t)pc_rng_below(&rng, (uint32_t)(vocab - 1));
    tb->labels[5] = -100;
    tb->b = (pc_model_batch){.B = 2, .T = 8, .ids = tb->ids, .labels = tb->labels};
}

/* A structured "text": a period-5 pattern of ids, each row starting at another phase. */
static inline void tm_pattern_batch(tm_batch *tb, int T) {
    static const int32_t pattern[5] = {3, 17, 8, 29, 11};
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < T; t++) tb->ids[r * T + t] = tb->labels[r * T + t] = pattern[(t + 2 * r) % 5];
    tb->b = (pc_model_batch){.B = 2, .T = T, .ids = tb->ids, .labels = tb->labels};
}

static inline double tm_loss_sum(pc_model *m, const pc_model_batch *b) {
    pc_forward_result res;
    pc_error err = {0};
    if (pc_model_forward(m, b, &res, &err) != PC_OK) {
        CHECK(0, "forward: %s", err.msg);
        return NAN;
    }
    return res.loss_sum;
}

static inline double tm_loss_mean(pc_model *m, const pc_model_batch *b) {
    pc_forward_result res;
    pc_error err = {0};
    if (pc_model_forward(m, b, &res, &err) != PC_OK) {
        CHECK(0, "forward: %s", err.msg);
        return NAN;
    }
    return res.loss_sum / (double)res.n_targets;
}

/* Zero every gradient given, then one forward/backward of Σ CE (grad_scale 1). */
static inline int tm_backward(pc_model *m, const pc_model_batch *b, pc_method **methods, int n_methods) {
    for (int i = 0; i < n_methods; i++) pc_params_zero_grad(&methods[i]->params);
    pc_forward_result res;
    pc_error err = {0};
    pc_rng rng;
    pc_rng_seed(&rng, 7);
    int ok = pc_model_forward_backward(m, b, 1.0f, &rng, &res, &err) == PC_OK;
    CHECK(ok, "forward_backward: %s", err.msg);
    return ok;
}

/* ---- finite differences ------------------------------------------------------------------------------ */

/* Central differences of Σ CE w.r.t. up to max_checks entries of x (spread evenly), against grad. The step is
 * the float-rounded one actually taken. Passes when |fd − g| ≤ atol + rtol·|g| everywhere checked, with atol a
 * fraction of the largest |g| (entries near zero are compared on the tensor's scale). Returns the worst ratio
 * (≤ 1 passes) so a caller can also assert that a broken backward fails. */
static inline double tm_fd_ratio(pc_model *m, const pc_model_batch *b, float *x, const float *grad, long n, int max_checks,
                          double h) {
    long stride = n > max_checks ? n / max_checks : 1;
    double gmax = 0;
    for (long i = 0; i < n; i++) gmax = fmax(gmax, fabs(grad[i]));
    double worst = 0;
    for (long i = 0; i < n; i += stride) {
        float saved = x[i];
        float xp = (float)(saved + h), xm = (float)(saved - h);
        x[i] = xp;
        double fp = tm_loss_sum(m, b);
        x[i] = xm;
        double fm = tm_loss_sum(m, b);
        x[i] = saved;
        double fd = (fp - fm) / ((double)xp - (double)xm);
        double tol = 1e-2 * gmax + 2e-3 + 2e-2 * fabs(grad[i]);
        double r = fabs(fd - grad[i]) / tol;
        if (r > worst) worst = r;
    }
    return worst;
}

/* Check every tensor of a method against finite differences (the method's own gradient buffers must hold the
 * analytic gradient of Σ CE). */
static inline void tm_check_method_grads(const char *what, pc_model *m, const pc_model_batch *b, pc_method *meth, int max_checks,
                                  double h) {
    for (int i = 0; i < meth->params.n_views; i++) {
        const pc_param_view *v = &meth->params.views[i];
        double r = tm_fd_ratio(m, b, pc_params_data(&meth->params, i), pc_params_grad(&meth->params, i), (long)v->count,
                               max_checks, h);
        CHECK(r <= 1.0, "%s: %s: finite differences disagree (worst ratio %.3g)", what, v->name, r);
    }
}

/* The gradient a method passes back, seen where it ends up: a base tensor upstream of the method's sites
 * (made trainable by the test with its own buffers). */
typedef struct tm_upstream {
    pc_param *p;
    float *data, *grad;
    long n;
} tm_upstream;

static inline void tm_upstream_begin(tm_upstream *u, pc_model *m, const char *name) {
    memset(u, 0, sizeof *u);
    u->p = pc_model_find_param(m, name);
    if (!u->p) {
        test_fail_setup("no tensor %s", name);
        return;
    }
    u->n = (long)pc_tensor_numel(&u->p->t);
    u->data = pc_malloc(sizeof(float) * (size_t)u->n);
    u->grad = pc_calloc((size_t)u->n, sizeof(float));
    pc_convert_to_f32(u->data, u->p->t.data, u->p->t.dtype, (size_t)u->n);
    pc_model_param_make_trainable(u->p, u->data, u->grad);
}

static inline void tm_upstream_end(tm_upstream *u) {
    if (!u->p) return;
    pc_model_param_restore(u->p);
    pc_free(u->data);
    pc_free(u->grad);
    memset(u, 0, sizeof *u);
}

static inline void tm_check_upstream(const char *what, pc_model *m, const pc_model_batch *b, tm_upstream *u, int max_checks,
                              double h) {
    if (!u->p) return;
    double r = tm_fd_ratio(m, b, u->data, u->grad, u->n, max_checks, h);
    CHECK(r <= 1.0, "%s: gradient reaching %s disagrees with finite differences (worst ratio %.3g)", what, u->p->name, r);
}

/* ---- training ----------------------------------------------------------------------------------------- */

/* steps of plain SGD on the method's parameters (mean-CE gradient); returns the loss after, *before set. */
static inline double tm_sgd(pc_model *m, const pc_model_batch *b, pc_method *meth, int steps, float lr, double *before) {
    pc_rng rng;
    pc_rng_seed(&rng, 11);
    *before = tm_loss_mean(m, b);
    for (int s = 0; s < steps; s++) {
        pc_params_zero_grad(&meth->params);
        pc_forward_result res;
        pc_error err = {0};
        if (pc_model_forward_backward(m, b, 1.0f, &rng, &res, &err) != PC_OK) {
            CHECK(0, "training step: %s", err.msg);
            return NAN;
        }
        float step = lr / (float)res.n_targets;
        for (size_t i = 0; i < meth->params.count; i++) meth->params.data[i] -= step * meth->params.grad[i];
    }
    return tm_loss_mean(m, b);
}

/* ---- saved files -------------------------------------------------------------------------------------- */

/* The adapter file holds exactly `n` tensors, the first few of which are named and shaped as given. */
typedef struct tm_key {
    const char *name;
    int ndim;
    int64_t shape[2];
} tm_key;

static inline void tm_check_saved_keys(const char *dir, const tm_key *keys, int n_keys, int n_total) {
    char path[1024];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    pc_safetensors st;
    pc_error err = {0};
    if (pc_safetensors_open(&st, path, &err) != PC_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    CHECK(st.count == n_total, "%s: %d tensors, want %d", path, st.count, n_total);
    for (int i = 0; i < n_keys; i++) {
        const pc_st_entry *e = pc_safetensors_find(&st, keys[i].name);
        CHECK(e != NULL, "%s: no tensor %s", path, keys[i].name);
        if (!e) continue;
        int same = e->ndim == keys[i].ndim && e->dtype == PC_F32;
        for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == keys[i].shape[d];
        CHECK(same, "%s: %s has the wrong shape or dtype", path, keys[i].name);
    }
    pc_safetensors_close(&st);
}

/* adapter_config.json's field `key` as a string (or NULL). The returned JSON must be freed by the caller. */
static inline cJSON *tm_read_config(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return cJSON_Parse(buf);
}

/* ---- PyTorch goldens ---------------------------------------------------------------------------------- */

static inline const float *tm_golden(const pc_safetensors *g, const char *name, long *count) {
    const pc_st_entry *e = pc_safetensors_find(g, name);
    if (!e || e->dtype != PC_F32) return NULL;
    if (count) *count = (long)(e->nbytes / 4);
    return e->data;
}

/* Load the base model and the golden adapter of case `name`, and check loss, logits, every adapter gradient
 * and one SGD step (p − lr·g against sgd.<key>). */
static inline void tm_check_golden_case(const char *name, const char *base) {
    char model_dir[4096], adapter_dir[4096], gpath[4096];
    const char *src = test_source_dir();
    snprintf(model_dir, sizeof model_dir, "%s/tests/golden/data/%s/model", src, base);
    snprintf(adapter_dir, sizeof adapter_dir, "%s/tests/golden/data/%s/adapter", src, name);
    snprintf(gpath, sizeof gpath, "%s/tests/golden/data/%s/golden.safetensors", src, name);
    pc_error err = {0};
    pc_safetensors g;
    if (pc_safetensors_open(&g, gpath, &err) != PC_OK) {
        test_fail_setup("%s", err.msg);
        return;
    }
    pc_model *m = NULL;
    pc_method *meth = NULL;
    if (pc_model_load(&m, model_dir, PC_BASE_F32, &err) != PC_OK || pc_method_load(&meth, m, adapter_dir, &err) != PC_OK) {
        test_fail_setup("%s: %s", name, err.msg);
        pc_model_free(m);
        pc_safetensors_close(&g);
        return;
    }
    const pc_st_entry *ids = pc_safetensors_find(&g, "input_ids"), *labels = pc_safetensors_find(&g, "labels");
    pc_model_batch b = {.B = (int)ids->shape[0], .T = (int)ids->shape[1], .ids = ids->data, .labels = labels->data};
    pc_forward_result res;
    CHECK(pc_model_forward(m, &b, &res, &err) == PC_OK, "%s: forward: %s", name, err.msg);
    double loss = res.loss_sum / (double)res.n_targets;
    const float *want_loss = tm_golden(&g, "loss", NULL);
    CHECK(want_loss && fabs(loss - want_loss[0]) <= 1e-5 * fabs(want_loss[0]), "%s: loss %.9g want %.9g", name, loss,
          want_loss ? want_loss[0] : NAN);
    long n_logits = 0;
    const float *want_logits = tm_golden(&g, "logits", &n_logits);
    if (want_logits) {
        float *logits = pc_malloc(sizeof(float) * (size_t)n_logits);
        CHECK(pc_model_logits(m, logits, &err) == PC_OK, "%s: logits: %s", name, err.msg);
        double rel = max_rel_err(logits, want_logits, n_logits);
        CHECK(rel <= 1e-5, "%s: logits max relative error %.3g", name, rel);
        pc_free(logits);
    }
    pc_rng rng;
    pc_rng_seed(&rng, 1);
    pc_params_zero_grad(&meth->params);
    CHECK(pc_model_forward_backward(m, &b, 1.0f / (float)res.n_targets, &rng, &res, &err) == PC_OK, "%s: backward: %s", name,
          err.msg);
    const float *lr = tm_golden(&g, "lr", NULL);
    for (int i = 0; i < meth->params.n_views; i++) {
        const pc_param_view *v = &meth->params.views[i];
        char key[256];
        long n = 0;
        snprintf(key, sizeof key, "grad.%s", v->name);
        const float *want = tm_golden(&g, key, &n);
        CHECK(want && n == (long)v->count, "%s: golden has no %s of %zu values", name, key, v->count);
        if (!want || n != (long)v->count) continue;
        double rel = max_rel_err(pc_params_grad(&meth->params, i), want, n);
        CHECK(rel <= 1e-4, "%s: %s relative error %.3g", name, key, rel);
        snprintf(key, sizeof key, "sgd.%s", v->name);
        const float *want_sgd = tm_golden(&g, key, NULL);
        CHECK(want_sgd && lr, "%s: golden has no %s", name, key);
        if (!want_sgd || !lr) continue;
        float *stepped = pc_malloc(sizeof(float) * v->count);
        for (size_t k = 0; k < v->count; k++) stepped[k] = pc_params_data(&meth->params, i)[k] - lr[0] * pc_params_grad(&meth->params, i)[k];
        rel = max_rel_err(stepped, want_sgd, n);
        CHECK(rel <= 1e-4, "%s: one SGD step on %s: relative error %.3g", name, v->name, rel);
        pc_free(stepped);
    }
    pc_method_free(meth);
    pc_model_free(m);
    pc_safetensors_close(&g);
}

#endif
