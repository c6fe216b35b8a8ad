/* LoRA's backward against central finite differences on tiny random models (llama with GQA, gpt2 with its
 * Conv1D layout): every element of A and B, DoRA's magnitude, and the input gradient (checked through the
 * token embedding, which only sees the LoRA branch's input gradient through the layers above it).
 * DoRA's A/B gradients are not the true derivative by design (PEFT detaches the weight norm), so they are
 * left to the PyTorch parity test.
 *
 * Dropout: with p > 0 the training loss of one fixed mask (the same RNG seed) is a function of the
 * parameters, and backward must differentiate that function — the mask drawn in forward must be the one
 * used in backward, for A, B and the input gradient. Its expected value: with B = 0 the output does not
 * depend on the mask, so dB is linear in it and its mean over many masks must be the dropout-free dB
 * (inverted dropout scales kept inputs by 1/(1−p)); evaluation ignores dropout altogether. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "model/model.h"
#include "peft/method.h"
#include "test_support.h"

static const char *llama_config =
    "{\"model_type\":\"llama\",\"vocab_size\":32,\"hidden_size\":16,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"intermediate_size\":24,\"max_position_embeddings\":16,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"tie_word_embeddings\":false}";
static const char *gpt2_config =
    "{\"model_type\":\"gpt2\",\"vocab_size\":32,\"n_embd\":16,\"n_layer\":2,\"n_head\":2,\"n_inner\":null,"
    "\"n_positions\":16,\"layer_norm_epsilon\":1e-5}";

static const int32_t batch_ids[2 * 6] = {3, 17, 5, 29, 11, 8, 21, 2, 30, 14, 0, 0};
static const int32_t batch_labels[2 * 6] = {3, 17, 5, -100, 11, 8, 21, 2, 30, 14, -100, -100};
static const pc_model_batch batch = {.B = 2, .T = 6, .ids = batch_ids, .labels = batch_labels};

typedef struct fd_ctx {
    pc_model *model;
    uint64_t mask_seed; /* 0: evaluation loss; else the training loss with this dropout mask */
} fd_ctx;

static double loss_of(void *p) {
    fd_ctx *c = p;
    pc_forward_result r;
    pc_error err = {0};
    pc_status st;
    if (c->mask_seed) {
        pc_rng rng;
        pc_rng_seed(&rng, c->mask_seed);
        st = pc_model_forward_backward(c->model, &batch, 0.0f, &rng, &r, &err);
    } else {
        st = pc_model_forward(c->model, &batch, &r, &err);
    }
    return st == PC_OK ? r.loss_sum : NAN;
}

/* A tiny random model whose matrices are N(0, 0.2) rather than 0.02, so every path matters. */
static pc_model *tiny_model(const char *config_json, const char *tmpdir) {
    char path[4096];
    pc_path_join(path, sizeof path, tmpdir, "config.json");
    pc_error err = {0};
    pc_model *m = NULL;
    if (pc_write_file_atomic(path, config_json, strlen(config_json), &err) != PC_OK ||
        pc_model_create_random(&m, path, PC_BASE_F32, 11, &err) != PC_OK) {
        test_fail_setup("tiny model: %s", err.msg);
        return NULL;
    }
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].t.ndim == 2) {
            float *w = m->params[i].t.data;
            for (int64_t k = 0; k < pc_tensor_numel(&m->params[i].t); k++) w[k] *= 10.0f;
        }
    return m;
}

static pc_method *make_method(pc_model *m, const char *name, const char *options_json, uint64_t seed) {
    cJSON *opt = cJSON_Parse(options_json);
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    pc_method *method = NULL;
    pc_error err = {0};
    if (!opt || pc_method_create(&method, pc_method_find(name), m, opt, &rng, &err) != PC_OK ||
        pc_method_plan(method, batch.B, batch.T, &err) != PC_OK) {
        test_fail_setup("%s %s: %s", name, options_json, err.msg);
        pc_method_free(method);
        method = NULL;
    }
    cJSON_Delete(opt);
    return method;
}

static pc_method *make_lora(pc_model *m, const char *options_json, uint64_t seed) {
    return make_method(m, "lora", options_json, seed);
}

static float max_abs(const float *x, long n) {
    float m = 0;
    for (long i = 0; i < n; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

/* Analytic gradient of x (already computed into grad) against central differences of the loss. */
static void compare_fd(const char *what, fd_ctx *ctx, float *x, const float *grad, long n) {
    float *fd = pc_malloc(sizeof(float) * (size_t)n);
    finite_diff(loss_of, ctx, x, n, 2e-3, fd);
    /* Per-tensor metric: fp32 forwards put noise of ~1e-5 of the largest entry into the differences. */
    CHECK(max_abs(grad, n) > 1e-3f, "%s: gradient is not trivially zero (max %.3g)", what, max_abs(grad, n));
    expect_close(what, grad, fd, n, 2e-2, 2e-3 * max_abs(fd, n));
    pc_free(fd);
}

typedef struct method_spec {
    const char *name, *options;
} method_spec;

/* Every adapter tensor (except DoRA's A/B) and the embedding, for one configuration. With `under`, another
 * method is attached first and its parameters are checked too: IA3 (random scaling vectors) makes LoRA's hooks
 * run behind an output scaling on the same projections — DoRA's W·x must then be its own product, not the
 * (already scaled) output minus the bias; BitFit trains the biases, whose gradient needs d_out unscaled. */
static void check_config_on(const char *name, const char *config_json, const char *options, method_spec under,
                            const char *tmpdir, uint64_t mask_seed) {
    pc_model *m = tiny_model(config_json, tmpdir);
    if (!m) return;
    pc_method *first = under.name ? make_method(m, under.name, under.options, 3) : NULL;
    pc_method *lora = (first || !under.name) ? make_lora(m, options, 5) : NULL;
    if (!lora) {
        pc_method_free(first);
        pc_model_free(m);
        return;
    }
    pc_rng rng;
    pc_rng_seed(&rng, 99);
    if (first && !strcmp(under.name, "ia3")) test_fill_uniform(&rng, first->params.data, (long)first->params.count, 0.5f, 1.5f);
    /* Non-zero B (and A, magnitude) so that every gradient and the branch's input gradient are non-trivial. */
    int dora = 0;
    for (int i = 0; i < lora->params.n_views; i++) {
        const pc_param_view *v = &lora->params.views[i];
        float *p = pc_params_data(&lora->params, i);
        if (strstr(v->name, "lora_magnitude_vector")) {
            dora = 1;
            for (size_t k = 0; k < v->count; k++) p[k] *= 1.0f + 0.3f * (pc_rng_uniform(&rng) - 0.5f);
        } else {
            test_fill_uniform(&rng, p, (long)v->count, -0.5f, 0.5f);
        }
    }
    pc_param *embed = m->embed;
    long n_embed = (long)pc_tensor_numel(&embed->t);
    float *e_data = pc_malloc(sizeof(float) * (size_t)n_embed), *e_grad = pc_calloc((size_t)n_embed, sizeof(float));
    memcpy(e_data, embed->t.data, sizeof(float) * (size_t)n_embed);
    pc_model_param_make_trainable(embed, e_data, e_grad);

    fd_ctx ctx = {.model = m, .mask_seed = mask_seed};
    pc_rng mask_rng;
    pc_rng_seed(&mask_rng, ctx.mask_seed);
    pc_forward_result r;
    pc_error err = {0};
    CHECK(pc_model_forward_backward(m, &batch, 1.0f, &mask_rng, &r, &err) == PC_OK, "%s: backward: %s", name, err.msg);
    for (int i = 0; i < lora->params.n_views; i++) {
        const pc_param_view *v = &lora->params.views[i];
        int is_mag = strstr(v->name, "lora_magnitude_vector") != NULL;
        if (dora && !is_mag) continue;
        char what[300];
        snprintf(what, sizeof what, "%s: %s", name, v->name);
        compare_fd(what, &ctx, pc_params_data(&lora->params, i), pc_params_grad(&lora->params, i), (long)v->count);
    }
    for (int i = 0; first && i < first->params.n_views; i++) {
        char what[300];
        snprintf(what, sizeof what, "%s: %s", name, first->params.views[i].name);
        compare_fd(what, &ctx, pc_params_data(&first->params, i), pc_params_grad(&first->params, i),
                   (long)first->params.views[i].count);
    }
    char what[300];
    snprintf(what, sizeof what, "%s: input gradient (embedding)", name);
    compare_fd(what, &ctx, e_data, e_grad, n_embed);
    pc_model_param_restore(embed);
    pc_free(e_data);
    pc_free(e_grad);
    pc_method_free(lora);
    pc_method_free(first);
    pc_model_free(m);
}

static void check_config(const char *name, const char *config_json, const char *options, const char *tmpdir,
                         uint64_t mask_seed) {
    check_config_on(name, config_json, options, (method_spec){0}, tmpdir, mask_seed);
}

/* E[dB] over masks equals the dropout-free dB when B = 0 (so the forward does not see the mask). */
static void check_dropout_expectation(const char *tmpdir) {
    pc_model *m = tiny_model(llama_config, tmpdir);
    if (!m) return;
    const char *plain = "{\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"q_proj\",\"v_proj\",\"down_proj\"]}";
    const char *dropped =
        "{\"r\":4,\"lora_alpha\":8,\"lora_dropout\":0.3,\"target_modules\":[\"q_proj\",\"v_proj\",\"down_proj\"]}";
    pc_method *ref = make_lora(m, plain, 5);
    pc_error err = {0};
    pc_forward_result r_ref, r_eval;
    pc_rng rng;
    pc_rng_seed(&rng, 1);
    if (!ref) {
        pc_model_free(m);
        return;
    }
    CHECK(pc_model_forward_backward(m, &batch, 1.0f, &rng, &r_ref, &err) == PC_OK, "reference backward: %s", err.msg);
    size_t n = ref->params.count;
    float *want = pc_malloc(sizeof(float) * n);
    memcpy(want, ref->params.grad, sizeof(float) * n);
    pc_method_free(ref);

    pc_method *drop = make_lora(m, dropped, 5); /* same seed: the same A, and B = 0 */
    if (!drop) {
        pc_free(want);
        pc_model_free(m);
        return;
    }
    CHECK(pc_model_forward(m, &batch, &r_eval, &err) == PC_OK && r_eval.loss_sum == r_ref.loss_sum,
          "evaluation ignores dropout: %.9g vs %.9g", r_eval.loss_sum, r_ref.loss_sum);
    enum { K = 400 };
    double *sum = pc_calloc(n, sizeof(double)), *sum2 = pc_calloc(n, sizeof(double));
    int differs = 0;
    for (int k = 0; k < K; k++) {
        pc_params_zero_grad(&drop->params);
        pc_rng_seed(&rng, 1000 + (uint64_t)k);
        pc_forward_result r;
        if (pc_model_forward_backward(m, &batch, 1.0f, &rng, &r, &err) != PC_OK) {
            CHECK(0, "dropout backward: %s", err.msg);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            double g = drop->params.grad[i];
            sum[i] += g;
            sum2[i] += g * g;
            differs |= fabs(g - want[i]) > 1e-3 * fabs(want[i]) + 1e-6;
        }
    }
    CHECK(differs, "dropout changes a single step's gradient");
    /* Every mean within 5 standard errors of the expectation (plus float noise). */
    int worst_i = -1, checked = 0;
    double worst = 0;
    for (int i = 0; i < drop->params.n_views; i++) {
        const pc_param_view *v = &drop->params.views[i];
        if (!strstr(v->name, "lora_B")) continue;
        for (size_t k = v->offset; k < v->offset + v->count; k++) {
            double mean = sum[k] / K, var = sum2[k] / K - mean * mean;
            double se = sqrt(var > 0 ? var / (K - 1) : 0);
            double z = fabs(mean - want[k]) / (5 * se + 1e-5 * fabs(want[k]) + 1e-7);
            if (z > worst) worst = z, worst_i = (int)k;
            checked++;
        }
    }
    CHECK(checked > 0 && worst <= 1.0, "mean dB over %d masks: worst element %d at %.3g of 5 standard errors", K, worst_i,
          worst);
    pc_free(sum);
    pc_free(sum2);
    pc_free(want);
    pc_method_free(drop);
    pc_model_free(m);
}

int main(void) {
    /* Tiny matrices: threads only add contention on a shared machine. */
    omp_set_num_threads(1);
    char tmpdir[] = "/tmp/peftc_lora_grad_XXXXXX";
    if (!mkdtemp(tmpdir)) {
        test_fail_setup("mkdtemp failed");
        return test_finish();
    }
    const char *all_llama = "{\"r\":2,\"lora_alpha\":4,\"target_modules\":\"all-linear\"}";
    check_config("llama all-linear", llama_config, all_llama, tmpdir, 0);
    check_config("llama rslora + patterns", llama_config,
                 "{\"r\":3,\"lora_alpha\":6,\"use_rslora\":true,\"target_modules\":[\"k_proj\",\"o_proj\",\"up_proj\"],"
                 "\"rank_pattern\":{\"up_proj\":2},\"alpha_pattern\":{\"layers.0.self_attn.k_proj\":12}}",
                 tmpdir, 0);
    check_config("llama dora", llama_config,
                 "{\"r\":2,\"lora_alpha\":4,\"use_dora\":true,\"target_modules\":[\"q_proj\",\"v_proj\",\"down_proj\"]}",
                 tmpdir, 0);
    check_config("gpt2", gpt2_config, "{\"r\":2,\"lora_alpha\":4,\"target_modules\":[\"c_attn\",\"c_proj\",\"c_fc\"]}",
                 tmpdir, 0);
    check_config("gpt2 dora", gpt2_config,
                 "{\"r\":2,\"lora_alpha\":4,\"use_dora\":true,\"target_modules\":[\"c_attn\",\"c_fc\"]}", tmpdir, 0);
    check_config("llama dropout 0.4, one mask", llama_config,
                 "{\"r\":2,\"lora_alpha\":4,\"lora_dropout\":0.4,\"target_modules\":[\"q_proj\",\"v_proj\",\"up_proj\"]}",
                 tmpdir, 12345);
    check_config("llama dora dropout 0.3, one mask", llama_config,
                 "{\"r\":2,\"lora_alpha\":4,\"use_dora\":true,\"lora_dropout\":0.3,"
                 "\"target_modules\":[\"q_proj\",\"v_proj\",\"down_proj\"]}",
                 tmpdir, 777);
    check_config("gpt2 dora dropout 0.2, one mask", gpt2_config,
                 "{\"r\":2,\"lora_alpha\":4,\"use_dora\":true,\"lora_dropout\":0.2,\"target_modules\":[\"c_attn\",\"c_fc\"]}",
                 tmpdir, 4242);
    method_spec ia3_kv = {"ia3", "{\"target_modules\":[\"k_proj\",\"v_proj\",\"down_proj\"],\"feedforward_modules\":[\"down_proj\"]}"};
    check_config_on("llama dora behind ia3", llama_config,
                    "{\"r\":2,\"lora_alpha\":4,\"use_dora\":true,\"target_modules\":[\"k_proj\",\"v_proj\",\"down_proj\"]}",
                    ia3_kv, tmpdir, 0);
    check_config_on("llama dora dropout behind ia3", llama_config,
                    "{\"r\":2,\"lora_alpha\":4,\"use_dora\":true,\"lora_dropout\":0.25,"
                    "\"target_modules\":[\"k_proj\",\"v_proj\",\"down_proj\"]}",
                    ia3_kv, tmpdir, 99);
    check_config_on("gpt2 dora with bitfit", gpt2_config,
                    "{\"r\":2,\"lora_alpha\":4,\"use_dora\":true,\"target_modules\":[\"c_attn\",\"c_fc\"]}",
                    (method_spec){"bitfit", "{}"}, tmpdir, 0);
    check_dropout_expectation(tmpdir);
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", tmpdir);
    unlink(path);
    rmdir(tmpdir);
    return test_finish();
}
