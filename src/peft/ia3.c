/* IA3 (Liu et al., "(IA)³") at linear sites, with Hugging Face PEFT's IA3 semantics and file layout.
 *
 *   attention-type target:    y = (W x + b) ⊙ l     l = ia3_l [out, 1]   (LINEAR POST: rescale the output)
 *   feed-forward target:      y = W (x ⊙ l) + b     l = ia3_l [1, in]    (LINEAR PRE: replace the input)
 *
 * Vectors start at one, so the adapter starts as the identity. Both kinds fold into W (and b), so IA3 merges:
 * with a weight w the folded factor is 1 + w·(l − 1) (w = 1: exactly l; w = 0: nothing), and unmerge divides it
 * out again. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "io/json.h"
#include "peft/method.h"

typedef struct ia3_target {
    pc_linear *lin;
    int feedforward;
    int l;                 /* parameter index of ia3_l */
    float *saved;          /* [N,out] output before scaling (attention-type) or [N,in] scaled input (feed-forward) */
    const float *x;        /* feed-forward: the input it scaled in the last forward (for backward) */
} ia3_target;

typedef struct ia3_state {
    int n_targets;
    ia3_target *targets;
    cJSON *target_modules, *feedforward_modules; /* owned copies, written back into adapter_config.json */
    int plan_N;
    float *arena;
} ia3_state;

/* PEFT's TRANSFORMERS_MODELS_TO_IA3_(TARGET|FEEDFORWARD)_MODULES_MAPPING for our architectures. */
static const struct {
    const char *model_type, *targets, *feedforward;
} ia3_defaults[] = {
    {"llama", "k_proj,v_proj,down_proj", "down_proj"},
    {"qwen2", "q_proj,v_proj,down_proj", "down_proj"},
    {"gpt2", "c_attn,mlp.c_proj", "mlp.c_proj"},
};

static pc_status resolve_lists(pc_method *m, ia3_state *s, const cJSON *opt, pc_error *err) {
    const cJSON *t = opt ? cJSON_GetObjectItemCaseSensitive(opt, "target_modules") : NULL;
    const cJSON *f = opt ? cJSON_GetObjectItemCaseSensitive(opt, "feedforward_modules") : NULL;
    const char *type = m->model->cfg.arch->model_type;
    int known = -1;
    for (size_t i = 0; i < sizeof ia3_defaults / sizeof ia3_defaults[0]; i++)
        if (!strcmp(ia3_defaults[i].model_type, type)) known = (int)i;
    if ((!t || cJSON_IsNull(t)) && known < 0)
        return pc_fail(err, PC_ERR_USAGE, "ia3: no default target_modules for model type '%s'; give --target-modules", type);
    s->target_modules = t && !cJSON_IsNull(t) ? cJSON_Duplicate(t, 1) : pc_json_csv_array(ia3_defaults[known].targets);
    /* PEFT: feed-forward modules default per architecture only when the targets are the defaults too. */
    if (f && !cJSON_IsNull(f)) s->feedforward_modules = cJSON_Duplicate(f, 1);
    else if (!t || cJSON_IsNull(t)) s->feedforward_modules = pc_json_csv_array(ia3_defaults[known].feedforward);
    else s->feedforward_modules = cJSON_CreateArray();
    if (!s->target_modules || !s->feedforward_modules) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    return PC_OK;
}

static pc_status ia3_attach(pc_method *m, const cJSON *opt, pc_error *err) {
    ia3_state *s = pc_calloc(1, sizeof *s);
    if (!s) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    m->impl = s;
    if (pc_opt_bool(opt, "fan_in_fan_out", m->model->cfg.arch->conv1d) != m->model->cfg.arch->conv1d)
        return pc_fail(err, PC_ERR_FORMAT, "ia3: fan_in_fan_out does not match the model's layer type");
    PC_TRY(resolve_lists(m, s, opt, err));
    int n_lin = pc_model_linear_count(m->model);
    s->targets = pc_calloc((size_t)(n_lin ? n_lin : 1), sizeof *s->targets);
    if (!s->targets) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n_lin; i++) {
        pc_linear *lin = pc_model_linear_at(m->model, i);
        int targeted = pc_target_matches(s->target_modules, lin->name);
        int ff = pc_target_matches(s->feedforward_modules, lin->name);
        if (ff && !targeted)
            return pc_fail(err, PC_ERR_USAGE, "ia3: feedforward_modules must be a subset of target_modules ('%s' is not targeted)",
                           lin->name);
        if (!targeted) continue;
        ia3_target *t = &s->targets[s->n_targets++];
        t->lin = lin;
        t->feedforward = ff;
        int64_t shape[2] = {ff ? 1 : lin->out, ff ? lin->in : 1};
        char key[256];
        pc_peft_key(key, sizeof key, lin->name, "ia3_l");
        PC_TRY(pc_params_declare(&m->params, key, 2, shape, &t->l, err));
    }
    if (s->n_targets == 0)
        return pc_fail(err, PC_ERR_USAGE, "ia3: target_modules matched no module of this %s model", m->model->cfg.arch->model_type);
    return PC_OK;
}

static void ia3_forward(void *owner, pc_site *site);
static void ia3_backward(void *owner, pc_site *site);

static pc_status ia3_register(pc_method *m, pc_error *err) {
    ia3_state *s = m->impl;
    for (int i = 0; i < s->n_targets; i++) {
        ia3_target *t = &s->targets[i];
        pc_hook h = {.owner = m, .state = t, .phases = t->feedforward ? PC_PHASE_PRE : PC_PHASE_POST, .forward = ia3_forward,
                     .backward = ia3_backward};
        PC_TRY(pc_hook_add(&t->lin->hooks, &h, err));
    }
    return PC_OK;
}

static pc_status ia3_init(pc_method *m, pc_rng *rng, pc_error *err) {
    (void)rng;
    for (size_t i = 0; i < m->params.count; i++) m->params.data[i] = 1.0f; /* init_ia3_weights: ones */
    return ia3_register(m, err);
}

static pc_status ia3_plan(pc_method *m, int B, int T, pc_error *err) {
    ia3_state *s = m->impl;
    int N = B * pc_model_total_len(m->model, T);
    if (s->arena && s->plan_N >= N) return PC_OK;
    pc_free(s->arena);
    size_t total = 0;
    for (int i = 0; i < s->n_targets; i++)
        total += (size_t)N * (size_t)(s->targets[i].feedforward ? s->targets[i].lin->in : s->targets[i].lin->out);
    s->arena = pc_malloc(sizeof(float) * (total ? total : 1));
    if (!s->arena) return pc_fail(err, PC_ERR_NOMEM, "ia3: out of memory for step buffers");
    size_t off = 0;
    for (int i = 0; i < s->n_targets; i++) {
        ia3_target *t = &s->targets[i];
        t->saved = s->arena + off;
        off += (size_t)N * (size_t)(t->feedforward ? t->lin->in : t->lin->out);
    }
    s->plan_N = N;
    return PC_OK;
}

/* Feed-forward (PRE): x [N,in] → saved = x ⊙ l, which the product then reads.
 * Attention-type (POST): out [N,out] → saved = out; out ⊙= l. */
static void ia3_forward(void *owner, pc_site *site) {
    pc_method *m = owner;
    ia3_target *t = site->state;
    ia3_state *s = m->impl;
    if (!t->saved || s->plan_N < site->N) return; /* not planned: a programming error the tests catch */
    const float *l = pc_params_data(&m->params, t->l);
    int N = site->N;
    if (t->feedforward) {
        int in = t->lin->in;
        const float *x = site->replaced_in ? site->replaced_in : site->in;
        t->x = x;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < in; i++) t->saved[(size_t)n * in + i] = x[(size_t)n * in + i] * l[i];
        site->replaced_in = t->saved;
    } else {
        int out = t->lin->out;
        memcpy(t->saved, site->out, sizeof(float) * (size_t)N * (size_t)out);
        for (int n = 0; n < N; n++)
            for (int o = 0; o < out; o++) site->out[(size_t)n * out + o] *= l[o];
    }
}

/* Feed-forward (PRE backward): d_out = ∂/∂(x⊙l); dl[i] += Σ_n d_out[n,i]·x[n,i]; d_in[n,i] += d_out[n,i]·l[i].
 * Attention-type (POST backward): dl[o] += Σ_n d_out[n,o]·saved[n,o]; d_out[n,o] ⊙= l[o] (in place). */
static void ia3_backward(void *owner, pc_site *site) {
    pc_method *m = owner;
    ia3_target *t = site->state;
    const float *l = pc_params_data(&m->params, t->l);
    float *dl = pc_params_grad(&m->params, t->l);
    int N = site->N;
    if (t->feedforward) {
        int in = t->lin->in;
        for (int n = 0; n < N; n++) {
            const float *dy = site->d_out + (size_t)n * in, *x = t->x + (size_t)n * in;
            float *dx = site->d_in + (size_t)n * in;
            for (int i = 0; i < in; i++) {
                dl[i] += dy[i] * x[i];
                dx[i] += dy[i] * l[i];
            }
        }
    } else {
        int out = t->lin->out;
        for (int n = 0; n < N; n++) {
            float *dy = site->d_out + (size_t)n * out;
            const float *y = t->saved + (size_t)n * out;
            for (int o = 0; o < out; o++) {
                dl[o] += dy[o] * y[o];
                dy[o] *= l[o];
            }
        }
    }
}

static pc_status ia3_config_json(const pc_method *m, cJSON *cfg, pc_error *err) {
    const ia3_state *s = m->impl;
    int failed = 0;
    pc_json_put(cfg, "auto_mapping", cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "exclude_modules", cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "fan_in_fan_out", cJSON_CreateBool(m->model->cfg.arch->conv1d), &failed);
    pc_json_put(cfg, "feedforward_modules", cJSON_Duplicate(s->feedforward_modules, 1), &failed);
    pc_json_put(cfg, "init_ia3_weights", cJSON_CreateTrue(), &failed);
    pc_json_put(cfg, "modules_to_save", cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "target_modules", cJSON_Duplicate(s->target_modules, 1), &failed);
    return pc_json_built(failed, "adapter_config.json", err);
}

/* W[o,:] (and b[o]) ×= f(l[o]) for attention-type targets, W[:,i] ×= f(l[i]) for feed-forward ones, where
 * f = 1 + w·(l − 1) merging and 1 / that unmerging. Done in fp32, rounded back to the compute dtype. */
static pc_status ia3_fold(pc_method *m, float weight, int unmerge, pc_error *err) {
    ia3_state *s = m->impl;
    for (int i = 0; i < s->n_targets; i++) {
        ia3_target *t = &s->targets[i];
        pc_linear *lin = t->lin;
        const float *l = pc_params_data(&m->params, t->l);
        int dim = t->feedforward ? lin->in : lin->out;
        for (int k = 0; k < dim; k++) {
            float f = 1.0f + weight * (l[k] - 1.0f);
            if (unmerge && f == 0.0f)
                return pc_fail(err, PC_ERR_NUMERIC, "ia3: cannot unmerge '%s': a scaling factor is zero", lin->name);
        }
        size_t n = (size_t)lin->out * (size_t)lin->in;
        float *w = pc_malloc(n * sizeof(float));
        if (!w) return pc_fail(err, PC_ERR_NOMEM, "out of memory merging '%s'", lin->name);
        pc_tensor *W = &lin->weight->t;
        pc_convert_to_f32(w, W->data, W->dtype, n);
        for (int o = 0; o < lin->out; o++)
            for (int k = 0; k < lin->in; k++) {
                float f = 1.0f + weight * (l[t->feedforward ? k : o] - 1.0f);
                w[(size_t)o * lin->in + k] = unmerge ? w[(size_t)o * lin->in + k] / f : w[(size_t)o * lin->in + k] * f;
            }
        pc_convert_from_f32(W->data, W->dtype, w, n);
        pc_free(w);
        /* PEFT scales the bias of output-scaled layers too (y = (Wx + b) ⊙ l). */
        if (!t->feedforward && lin->bias) {
            float *b = lin->bias->t.data;
            for (int o = 0; o < lin->out; o++) {
                float f = 1.0f + weight * (l[o] - 1.0f);
                b[o] = unmerge ? b[o] / f : b[o] * f;
            }
        }
    }
    return PC_OK;
}

static pc_status ia3_merge(pc_method *m, float weight, pc_error *err) { return ia3_fold(m, weight, 0, err); }
static pc_status ia3_unmerge(pc_method *m, float weight, pc_error *err) { return ia3_fold(m, weight, 1, err); }

static void ia3_destroy(pc_method *m) {
    ia3_state *s = m->impl;
    if (!s) return;
    cJSON_Delete(s->target_modules);
    cJSON_Delete(s->feedforward_modules);
    pc_free(s->targets);
    pc_free(s->arena);
    pc_free(s);
    m->impl = NULL;
}

const pc_method_ops pc_ia3_ops = {
    .name = "ia3",
    .peft_type = "IA3",
    .attach = ia3_attach,
    .init = ia3_init,
    .plan = ia3_plan,
    .after_load = ia3_register,
    .config_json = ia3_config_json,
    .merge = ia3_merge,
    .unmerge = ia3_unmerge,
    .destroy = ia3_destroy,
};
