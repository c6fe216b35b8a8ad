/* Gradient checkpointing (pc_model.gradient_checkpointing) recomputes each layer's forward in backward. It
 * runs the same arithmetic on the same numbers as a plan that keeps every activation, so for every
 * architecture (llama with GQA, gpt2, qwen2) and every kind of site (LoRA with dropout in training mode, DoRA,
 * prefix tuning with and without its projection, prompt tuning, IA3 with PRE and POST hooks, serial and
 * parallel adapters, full fine-tuning, and LoRA with dropout stacked on a projected prefix) the loss and every
 * trainable gradient must be bit-identical, over two accumulated micro-batches; the step RNG must end in the
 * same state (a run draws the same numbers either way); and the activation plan must be smaller. */
#include "test_method_common.h"

/* Three layers, so a recomputed layer sits between two others (the last layer is not recomputed). */
static const char *const LLAMA3 =
    "{\"model_type\":\"llama\",\"hidden_size\":32,\"intermediate_size\":48,\"num_attention_heads\":4,"
    "\"num_key_value_heads\":2,\"head_dim\":8,\"num_hidden_layers\":3,\"vocab_size\":40,\"max_position_embeddings\":64,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"tie_word_embeddings\":false,\"torch_dtype\":\"float32\"}";
static const char *const GPT2_3 =
    "{\"model_type\":\"gpt2\",\"n_embd\":32,\"n_head\":4,\"n_layer\":3,\"n_inner\":null,\"vocab_size\":40,"
    "\"n_positions\":64,\"n_ctx\":64,\"layer_norm_epsilon\":1e-5,\"activation_function\":\"gelu_new\","
    "\"tie_word_embeddings\":true,\"torch_dtype\":\"float32\"}";
static const char *const QWEN2_3 =
    "{\"model_type\":\"qwen2\",\"hidden_size\":32,\"intermediate_size\":48,\"num_attention_heads\":4,"
    "\"num_key_value_heads\":2,\"num_hidden_layers\":3,\"vocab_size\":40,\"max_position_embeddings\":64,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"tie_word_embeddings\":false,\"use_sliding_window\":false,"
    "\"torch_dtype\":\"float32\"}";

typedef struct method_spec {
    const char *name, *options; /* options NULL: the method's defaults */
} method_spec;

typedef struct ckpt_case {
    const char *label;
    method_spec methods[2];
    int n_methods;
} ckpt_case;

static const ckpt_case cases[] = {
    {"lora dropout", {{"lora", "{\"r\":4,\"lora_alpha\":8,\"lora_dropout\":0.25,\"target_modules\":\"all-linear\"}"}}, 1},
    {"dora", {{"lora", "{\"r\":4,\"lora_alpha\":8,\"use_dora\":true,\"target_modules\":\"all-linear\"}"}}, 1},
    {"dora dropout", {{"lora", "{\"r\":4,\"lora_alpha\":8,\"use_dora\":true,\"lora_dropout\":0.2,\"target_modules\":\"all-linear\"}"}}, 1},
    {"ia3 + dora", {{"ia3", NULL}, {"lora", "{\"r\":4,\"lora_alpha\":8,\"use_dora\":true,\"target_modules\":\"all-linear\"}"}}, 2},
    {"prefix", {{"prefix-tuning", "{\"num_virtual_tokens\":3}"}}, 1},
    {"prefix projection", {{"prefix-tuning", "{\"num_virtual_tokens\":3,\"prefix_projection\":true,\"encoder_hidden_size\":8}"}}, 1},
    {"prompt", {{"prompt-tuning", "{\"num_virtual_tokens\":3}"}}, 1},
    {"ia3", {{"ia3", NULL}}, 1},
    {"adapter houlsby", {{"adapter", "{\"adapter_type\":\"houlsby\",\"adapter_dim\":4}"}}, 1},
    {"adapter parallel", {{"adapter", "{\"adapter_type\":\"parallel\",\"adapter_dim\":4}"}}, 1},
    {"full", {{"full", NULL}}, 1},
    {"lora dropout + prefix projection",
     {{"lora", "{\"r\":4,\"lora_alpha\":8,\"lora_dropout\":0.25,\"target_modules\":\"all-linear\"}"},
      {"prefix-tuning", "{\"num_virtual_tokens\":3,\"prefix_projection\":true,\"encoder_hidden_size\":8}"}},
     2},
};

static pc_method *attach(pc_model *m, const method_spec *spec, uint64_t seed) {
    cJSON *opt = spec->options ? cJSON_Parse(spec->options) : NULL;
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    pc_method *meth = NULL;
    pc_error err = {0};
    if (pc_method_create(&meth, pc_method_find(spec->name), m, opt, &rng, &err) != PC_OK) {
        test_fail_setup("%s: %s", spec->name, err.msg);
        meth = NULL;
    }
    cJSON_Delete(opt);
    return meth;
}

/* Move the parameters away from their identity initialisation (LoRA's B = 0, IA3's ones, adapters' U = 0), so
 * every path of every method carries a gradient. */
static void perturb(pc_method *meth, uint64_t seed) {
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    for (size_t i = 0; i < meth->params.count; i++) meth->params.data[i] += 0.1f * pc_rng_normal(&rng);
}

typedef struct step_out {
    double loss;
    float *grads[2];
    pc_rng rng_after;
    size_t plan_bytes;
} step_out;

/* Two accumulated micro-batches (different batches and RNG draws) with checkpointing on or off. */
static int run_steps(pc_model *m, pc_method **meths, int n, int checkpointing, step_out *out) {
    m->gradient_checkpointing = checkpointing;
    for (int i = 0; i < n; i++) pc_params_zero_grad(&meths[i]->params);
    pc_rng rng;
    pc_rng_seed(&rng, 99);
    out->loss = 0;
    for (int micro = 0; micro < 2; micro++) {
        tm_batch tb;
        tm_random_batch(&tb, m->cfg.vocab_size, 5 + (uint64_t)micro);
        pc_forward_result res;
        pc_error err = {0};
        if (pc_model_forward_backward(m, &tb.b, 0.5f, &rng, &res, &err) != PC_OK) {
            CHECK(0, "forward_backward (checkpointing %d): %s", checkpointing, err.msg);
            return 0;
        }
        out->loss += res.loss_sum;
    }
    for (int i = 0; i < n; i++) {
        size_t bytes = sizeof(float) * meths[i]->params.count;
        out->grads[i] = pc_malloc(bytes ? bytes : 1);
        memcpy(out->grads[i], meths[i]->params.grad, bytes);
    }
    out->rng_after = rng;
    out->plan_bytes = pc_model_plan_bytes(m);
    return 1;
}

static void free_out(step_out *o, int n) {
    for (int i = 0; i < n; i++) pc_free(o->grads[i]);
}

static double worst_rel(const float *a, const float *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]), s = fmax(fabs((double)b[i]), 1e-30);
        if (d / s > worst) worst = d / s;
    }
    return worst;
}

static void check_case(const char *arch, const char *config, const ckpt_case *c) {
    pc_model *m = tm_model(config, arch, 3);
    if (!m) return;
    pc_method *meths[2] = {NULL, NULL};
    for (int i = 0; i < c->n_methods; i++) {
        meths[i] = attach(m, &c->methods[i], 17 + (uint64_t)i);
        if (!meths[i]) goto done;
        if (strcmp(c->methods[i].name, "full")) perturb(meths[i], 23 + (uint64_t)i);
    }
    step_out off = {0}, on = {0}, off_again = {0};
    int ok = run_steps(m, meths, c->n_methods, 0, &off) && run_steps(m, meths, c->n_methods, 1, &on) &&
             run_steps(m, meths, c->n_methods, 0, &off_again);
    if (ok) {
        CHECK(on.loss == off.loss, "%s %s: loss %.17g with checkpointing, %.17g without", arch, c->label, on.loss, off.loss);
        for (int i = 0; i < c->n_methods; i++) {
            size_t n = meths[i]->params.count;
            int same = memcmp(on.grads[i], off.grads[i], sizeof(float) * n) == 0;
            CHECK(same, "%s %s: %s gradients differ with checkpointing (worst relative %.3g)", arch, c->label,
                  meths[i]->ops->name, worst_rel(on.grads[i], off.grads[i], n));
            double gmax = 0;
            for (size_t k = 0; k < n; k++) gmax = fmax(gmax, fabs(off.grads[i][k]));
            CHECK(gmax > 0, "%s %s: %s has no gradient at all (the comparison would be empty)", arch, c->label,
                  meths[i]->ops->name);
        }
        CHECK(!memcmp(&on.rng_after, &off.rng_after, sizeof on.rng_after),
              "%s %s: the step RNG ends elsewhere with checkpointing", arch, c->label);
        CHECK(on.plan_bytes < off.plan_bytes, "%s %s: plan %zu bytes with checkpointing, %zu without", arch, c->label,
              on.plan_bytes, off.plan_bytes);
        CHECK(off_again.plan_bytes == off.plan_bytes && off_again.loss == off.loss,
              "%s %s: turning checkpointing off again did not bring the full plan back", arch, c->label);
    }
    free_out(&off, c->n_methods);
    free_out(&on, c->n_methods);
    free_out(&off_again, c->n_methods);
done:
    for (int i = 0; i < c->n_methods; i++) pc_method_free(meths[i]);
    pc_model_free(m);
}

/* A 3-layer model with one method attached (parameters moved off their start), checkpointing on, and a
 * random batch: the set-up of the single-purpose checks below. NULL (and nothing to free) on failure. */
static pc_method *checkpointed_setup(pc_model **m_out, const char *config, const char *label, const method_spec *spec,
                                     tm_batch *tb) {
    pc_model *m = tm_model(config, label, 3);
    *m_out = m;
    if (!m) return NULL;
    pc_method *meth = attach(m, spec, 17);
    if (!meth) {
        pc_model_free(m);
        *m_out = NULL;
        return NULL;
    }
    perturb(meth, 23);
    m->gradient_checkpointing = 1;
    tm_random_batch(tb, m->cfg.vocab_size, 5);
    return meth;
}

/* Dropout must really draw (else "same RNG state" proves nothing) and the masks must matter: another seed gives
 * other gradients. */
static void check_dropout_draws(void) {
    pc_model *m;
    tm_batch tb;
    pc_method *meth = checkpointed_setup(&m, LLAMA3, "dropout", &cases[0].methods[0], &tb);
    if (!meth) return;
    pc_rng fresh, rng;
    pc_rng_seed(&fresh, 99);
    rng = fresh;
    pc_forward_result res;
    pc_error err = {0};
    pc_params_zero_grad(&meth->params);
    CHECK(pc_model_forward_backward(m, &tb.b, 1.0f, &rng, &res, &err) == PC_OK, "dropout step: %s", err.msg);
    CHECK(memcmp(&rng, &fresh, sizeof rng) != 0, "LoRA dropout drew no random numbers");
    size_t n = meth->params.count;
    float *g1 = pc_malloc(sizeof(float) * n);
    memcpy(g1, meth->params.grad, sizeof(float) * n);
    pc_rng_seed(&rng, 100);
    pc_params_zero_grad(&meth->params);
    CHECK(pc_model_forward_backward(m, &tb.b, 1.0f, &rng, &res, &err) == PC_OK, "dropout step: %s", err.msg);
    CHECK(memcmp(g1, meth->params.grad, sizeof(float) * n) != 0, "another dropout seed gave the same gradients");
    pc_free(g1);
    pc_method_free(meth);
    pc_model_free(m);
}

/* Evaluation after a checkpointed training step reuses its plan and gives the training forward's loss. */
static void check_eval_on_checkpointed_plan(void) {
    pc_model *m;
    tm_batch tb;
    pc_method *meth = checkpointed_setup(&m, QWEN2_3, "eval", &cases[6].methods[0], &tb);
    if (!meth) return;
    pc_rng rng;
    pc_rng_seed(&rng, 1);
    pc_forward_result train, eval;
    pc_error err = {0};
    CHECK(pc_model_forward_backward(m, &tb.b, 1.0f, &rng, &train, &err) == PC_OK, "step: %s", err.msg);
    size_t bytes = pc_model_plan_bytes(m);
    CHECK(pc_model_forward(m, &tb.b, &eval, &err) == PC_OK, "eval: %s", err.msg);
    CHECK(pc_model_plan_bytes(m) == bytes, "evaluation re-planned instead of using the checkpointed training plan");
    CHECK(eval.loss_sum == train.loss_sum, "eval loss %.17g, training forward %.17g", eval.loss_sum, train.loss_sum);
    pc_method_free(meth);
    pc_model_free(m);
}

int main(void) {
    tm_init();
    static const struct {
        const char *name, *config;
    } archs[] = {{"llama", LLAMA3}, {"gpt2", GPT2_3}, {"qwen2", QWEN2_3}};
    for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) check_case(archs[a].name, archs[a].config, &cases[c]);
    check_dropout_draws();
    check_eval_on_checkpointed_plan();
    return test_finish();
}
