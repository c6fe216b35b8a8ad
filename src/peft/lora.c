/* LoRA (Hu et al.), rsLoRA and DoRA at linear sites, with Hugging Face PEFT's semantics and file layout.
 *
 *   y = W x + b + s · B (A · drop(x)),   A [r,in], B [out,r], s = alpha/r (alpha/√r with rsLoRA)
 *   DoRA: g = m / ‖W + s·B·A‖ (row norms, treated as a constant as PEFT does),
 *         y = W x + b + (g − 1) ⊙ (W · drop(x)) + g ⊙ s · B (A · drop(x))
 *
 * The product x·A is computed once per step and reused by backward. A is kaiming-uniform, B zero, m the
 * row norms of W (so the adapter starts as the identity). The rank-r products run in kernels/lowrank.c,
 * which takes each block of rows through every product that reads it (as six GEMM calls, each product read
 * its [N,in] or [N,out] matrix on its own). */
#include <assert.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "io/json.h"
#include "kernels/dora.h"
#include "kernels/dropout.h"
#include "kernels/lowrank.h"
#include "peft/method.h"

typedef struct lora_target {
    pc_linear *lin;
    int r;
    float scale;
    int a, b, mag;          /* parameter indices (mag −1 without DoRA) */
    float *xa;              /* [N,r] drop(x)·Aᵀ, saved for backward */
    float *x_drop;          /* [N,in] dropped input (NULL without dropout) */
    uint8_t *keep;          /* [N,in] the dropout mask of this step, for backward (NULL without dropout) */
    float *d_xa;            /* [N,r] */
    float *adapted_out;     /* DoRA: [N,out] (W + s·B·A)·drop(x), the product before the gain, for dm */
    float *norm;            /* DoRA: [out] ‖W + s·B·A‖ of this step */
    float *gain;            /* DoRA: [out] g = m / norm of this step */
    int gain_reusable;      /* DoRA: norm and gain have been computed since the plan (own buffers, never a twin's) */
    float *merged_g;        /* DoRA: [out] m/‖W+s·B·A‖ of the last merge, which unmerge must divide out */
} lora_target;

typedef struct lora_state {
    int n_targets;
    lora_target *targets;
    float dropout;
    int use_dora, use_rslora;
    double alpha;
    int r_default;
    cJSON *options;         /* a copy, for adapter_config.json */
    int plan_N, plan_threads, plan_shared; /* plan_shared: buffers shared per role (checkpointing) */
    float *arena;           /* one owner for all per-step buffers */
    lowrank_scratch scratch; /* in the arena: the low-rank kernels' working memory, shared by the targets */
    float *dora_rows;       /* in the arena: DoRA's [threads, max in] rows of W + s·B·A, shared by the targets */
    float *dora_scratch;    /* in the arena: DoRA's [N, max out], shared by the targets (one hook runs at a time):
                             * the LoRA branch's output in forward, a scaled output gradient in backward */
} lora_state;

static float lora_scale(double alpha, int r, int rslora) { return (float)(rslora ? alpha / sqrt((double)r) : alpha / r); }

static pc_status lora_attach(pc_method *m, const cJSON *opt, pc_error *err) {
    lora_state *s = pc_calloc(1, sizeof *s);
    if (!s) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    m->impl = s;
    s->r_default = (int)pc_opt_number(opt, "r", 8);
    s->alpha = pc_opt_number(opt, "lora_alpha", 8); /* PEFT's LoraConfig default */
    s->dropout = (float)pc_opt_number(opt, "lora_dropout", 0.0);
    s->use_rslora = pc_opt_bool(opt, "use_rslora", 0);
    s->use_dora = pc_opt_bool(opt, "use_dora", 0);
    if (s->r_default <= 0) return pc_fail(err, PC_ERR_USAGE, "lora: r must be positive");
    if (s->dropout < 0 || s->dropout >= 1) return pc_fail(err, PC_ERR_USAGE, "lora: lora_dropout must be in [0,1)");
    if (pc_opt_bool(opt, "fan_in_fan_out", m->model->cfg.arch->conv1d) != m->model->cfg.arch->conv1d)
        return pc_fail(err, PC_ERR_FORMAT, "lora: fan_in_fan_out does not match the model's layer type");
    const char *bias = pc_opt_string(opt, "bias", "none");
    if (strcmp(bias, "none")) return pc_fail(err, PC_ERR_UNSUPPORTED, "lora: bias '%s' is not supported (only \"none\")", bias);
    s->options = opt ? cJSON_Duplicate(opt, 1) : cJSON_CreateObject();
    if (!s->options) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    const cJSON *targets = opt ? cJSON_GetObjectItemCaseSensitive(opt, "target_modules") : NULL;
    if (!targets || cJSON_IsNull(targets)) {
        /* The defaults go into the options copy (adapter_config.json lists them), in place of a null entry
         * (deleting a missing key is a no-op; replacing one failed and leaked the copy). */
        cJSON *defaults = pc_json_csv_array(m->model->cfg.arch->default_lora_targets);
        int failed = 0;
        cJSON_DeleteItemFromObjectCaseSensitive(s->options, "target_modules");
        pc_json_put(s->options, "target_modules", defaults, &failed);
        if (failed) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
        targets = defaults;
    }
    const cJSON *layers = opt ? cJSON_GetObjectItemCaseSensitive(opt, "layers_to_transform") : NULL;
    const cJSON *rank_pattern = opt ? cJSON_GetObjectItemCaseSensitive(opt, "rank_pattern") : NULL;
    const cJSON *alpha_pattern = opt ? cJSON_GetObjectItemCaseSensitive(opt, "alpha_pattern") : NULL;
    int n_lin = pc_model_linear_count(m->model);
    s->targets = pc_calloc((size_t)n_lin, sizeof *s->targets);
    if (!s->targets) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    pc_status st = PC_OK;
    for (int i = 0; i < n_lin && st == PC_OK; i++) {
        pc_linear *lin = pc_model_linear_at(m->model, i);
        if (!pc_target_matches(targets, lin->name) || !pc_layer_selected(layers, lin->layer)) continue;
        lora_target *t = &s->targets[s->n_targets++];
        double r = s->r_default, alpha = s->alpha;
        pc_pattern_lookup(rank_pattern, lin->name, &r);
        pc_pattern_lookup(alpha_pattern, lin->name, &alpha);
        t->lin = lin;
        t->r = (int)r;
        t->scale = lora_scale(alpha, t->r, s->use_rslora);
        t->mag = -1;
        char key[256];
        int64_t a_shape[2] = {t->r, lin->in}, b_shape[2] = {lin->out, t->r}, m_shape[1] = {lin->out};
        pc_peft_key(key, sizeof key, lin->name, "lora_A.weight");
        st = pc_params_declare(&m->params, key, 2, a_shape, &t->a, err);
        pc_peft_key(key, sizeof key, lin->name, "lora_B.weight");
        if (st == PC_OK) st = pc_params_declare(&m->params, key, 2, b_shape, &t->b, err);
        pc_peft_key(key, sizeof key, lin->name, "lora_magnitude_vector");
        if (st == PC_OK && s->use_dora) st = pc_params_declare(&m->params, key, 1, m_shape, &t->mag, err);
    }
    if (st != PC_OK) return st;
    if (s->n_targets == 0)
        return pc_fail(err, PC_ERR_USAGE, "lora: target_modules matched no module of this %s model",
                       m->model->cfg.arch->model_type);
    return PC_OK;
}

/* DoRA's row norms ‖W + s·B·A‖ of one target, with the threads' row buffers in rows. */
static void dora_weight_norm(const lora_target *t, const pc_method *m, float *rows, int threads, float *norm) {
    const pc_linear *lin = t->lin;
    dora_row_norms(norm, lin->weight->t.data, lin->weight->t.dtype, pc_params_data(&m->params, t->a),
                   pc_params_data(&m->params, t->b), t->scale, lin->out, lin->in, t->r, rows, threads);
}

static pc_status lora_init(pc_method *m, pc_rng *rng, pc_error *err) {
    lora_state *s = m->impl;
    int threads = omp_get_max_threads(), max_in = 0;
    for (int i = 0; i < s->n_targets; i++)
        if (s->targets[i].mag >= 0 && s->targets[i].lin->in > max_in) max_in = s->targets[i].lin->in;
    /* DoRA's magnitudes start at ‖W‖ (B = 0): one set of row buffers for every target */
    float *rows = max_in ? pc_malloc(sizeof(float) * (size_t)threads * (size_t)max_in) : NULL;
    if (max_in && !rows) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    for (int i = 0; i < s->n_targets; i++) {
        lora_target *t = &s->targets[i];
        pc_rng_kaiming_uniform(rng, pc_params_data(&m->params, t->a), (long)t->r * t->lin->in, t->lin->in);
        memset(pc_params_data(&m->params, t->b), 0, sizeof(float) * (size_t)t->lin->out * (size_t)t->r);
        if (t->mag >= 0) dora_weight_norm(t, m, rows, threads, pc_params_data(&m->params, t->mag));
    }
    pc_free(rows);
    return PC_OK;
}

/* Under gradient checkpointing every layer's forward is re-run just before its backward, so targets of one
 * role and shape (every layer's q_proj, say) can share their per-step buffers: the dropped input alone is
 * as big as the projection's input, ~730 MB over SmolLM2's 210 targets at 4x256. */
static const lora_target *buffer_twin(const lora_state *s, int i) {
    const lora_target *t = &s->targets[i];
    for (int j = 0; j < i; j++) {
        const lora_target *u = &s->targets[j];
        if (u->lin->role == t->lin->role && u->lin->in == t->lin->in && u->lin->out == t->lin->out &&
            u->r == t->r && (u->mag >= 0) == (t->mag >= 0))
            return u;
    }
    return NULL;
}

static void share_buffers(lora_target *t, const lora_target *twin) {
    t->xa = twin->xa;
    t->d_xa = twin->d_xa;
    t->x_drop = twin->x_drop;
    t->keep = twin->keep;
    t->adapted_out = twin->adapted_out;
}

static pc_status lora_plan(pc_method *m, int B, int T, pc_error *err) {
    lora_state *s = m->impl;
    int N = B * pc_model_total_len(m->model, T), threads = omp_get_max_threads();
    int shared = pc_model_plan_checkpointed(m->model);
    if (s->arena && s->plan_N >= N && s->plan_threads >= threads && s->plan_shared == shared) return PC_OK;
    pc_free(s->arena);
    s->arena = NULL;
    size_t total = 0, scratch = 0, dora_rows = 0, dora_scratch = 0;
    for (int i = 0; i < s->n_targets; i++) {
        const pc_linear *lin = s->targets[i].lin;
        size_t need = lowrank_scratch_floats(lin->in, lin->out, s->targets[i].r, threads);
        scratch = need > scratch ? need : scratch;
        if (s->targets[i].mag >= 0 && (size_t)threads * (size_t)lin->in > dora_rows)
            dora_rows = (size_t)threads * (size_t)lin->in;
        if (s->targets[i].mag >= 0 && (size_t)N * (size_t)lin->out > dora_scratch)
            dora_scratch = (size_t)N * (size_t)lin->out;
    }
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 0;
        for (int i = 0; i < s->n_targets; i++) {
            lora_target *t = &s->targets[i];
            const lora_target *twin = shared ? buffer_twin(s, i) : NULL;
            t->gain_reusable = 0;
            size_t in = (size_t)t->lin->in, out = (size_t)t->lin->out, r = (size_t)t->r, n = (size_t)N;
#define CARVE(field, count)                                              \
    do {                                                                 \
        if (pass) t->field = s->arena + off;                             \
        off += ((count) + 15) & ~(size_t)15;                              \
    } while (0)
            if (t->mag >= 0) { /* per target even for twins: tiny, and reused by a checkpointed recomputation */
                CARVE(norm, out);
                CARVE(gain, out);
            }
            if (twin) {
                if (pass) share_buffers(t, twin);
                continue;
            }
            CARVE(xa, n * r);
            CARVE(d_xa, n * r);
            if (s->dropout > 0) {
                CARVE(x_drop, n * in);
                if (pass) t->keep = (uint8_t *)(s->arena + off); /* bytes, carved as whole floats */
                off += ((n * in + 3) / 4 + 15) & ~(size_t)15;
            }
            if (t->mag >= 0) CARVE(adapted_out, n * out);
#undef CARVE
        }
        if (pass) s->scratch = (lowrank_scratch){s->arena + off, threads, LOWRANK_ISA_AUTO};
        off += scratch;
        if (pass) s->dora_rows = s->arena + off;
        off += (dora_rows + 15) & ~(size_t)15;
        if (pass) s->dora_scratch = s->arena + off;
        off += dora_scratch;
        total = off;
        if (!pass) {
            s->arena = pc_malloc(sizeof(float) * (total ? total : 1));
            if (!s->arena) return pc_fail(err, PC_ERR_NOMEM, "lora: out of memory for step buffers");
        }
    }
    s->plan_N = N;
    s->plan_threads = threads;
    s->plan_shared = shared;
    return PC_OK;
}

/* Inverted dropout, as torch: kept elements scaled by 1/(1−p). One draw from the step's RNG keys the mask
 * (kernels/dropout.h), so the step's random stream advances by one draw per target whatever the shape, and
 * the mask is drawn by all threads: drawn element by element from the sequential stream it was a serial
 * loop of ~150M draws per SmolLM2 step (all-linear, 4x256) that halved tokens/s. */
static const float *apply_dropout(const lora_state *s, lora_target *t, const pc_site *site) {
    if (!(s->dropout > 0) || !site->training) return site->in;
    dropout_forward(t->x_drop, t->keep, site->in, (size_t)site->N * (size_t)t->lin->in, s->dropout,
                    pc_rng_u64(site->rng));
    return t->x_drop;
}

/* Whether this target's hook is the first at its projection to see the output: hooks registered before it
 * that add to or rescale out (IA3 on k/v, a second LoRA) have already changed it. */
static int first_output_hook(const lora_target *t) {
    const pc_hook_list *hooks = &t->lin->hooks;
    for (int i = 0; i < hooks->count && hooks->hooks[i].state != t; i++)
        if (hooks->hooks[i].phases & PC_PHASE_POST) return 0;
    return 1;
}

/* DoRA's base output W·drop(x), into adapted_out. Without dropout, and when no earlier hook changed out, it
 * is out − b: no second product. With dropout (or behind another method) it is a product of its own, as PEFT
 * computes F.linear(dropout(x), W) when dropout is active. */
static void dora_base_output(lora_target *t, const pc_method *m, const pc_site *site, const float *x) {
    const pc_linear *lin = t->lin;
    if (x != site->in || !first_output_hook(t)) {
        pc_linear_forward(m->model->mm, t->adapted_out, x, &lin->weight->t, NULL, site->N, lin->in, lin->out, 0);
        return;
    }
    const float *bias = lin->bias ? lin->bias->t.data : NULL;
    int out = lin->out;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < site->N; n++) {
        const float *y = site->out + (size_t)n * out;
        float *base = t->adapted_out + (size_t)n * out;
        if (bias)
            for (int o = 0; o < out; o++) base[o] = y[o] - bias[o];
        else
            memcpy(base, y, sizeof(float) * (size_t)out);
    }
}

static void lora_forward(void *owner, pc_site *site) {
    pc_method *m = owner;
    lora_state *s = m->impl;
    lora_target *t = site->state;
    const pc_linear *lin = t->lin;
    int N = site->N;
    assert(t->xa && "lora: forward before the model planned its buffers"); /* planners run with every plan */
    const float *A = pc_params_data(&m->params, t->a), *Bm = pc_params_data(&m->params, t->b);
    const float *x = apply_dropout(s, t, site);
    lowrank_shape shape = {N, lin->in, lin->out, t->r, t->scale};
    if (t->mag < 0) {
        lowrank_forward(site->out, t->xa, x, A, Bm, &shape, 1, &s->scratch); /* xa = x·Aᵀ ; out += s·xa·Bᵀ */
        return;
    }
    /* DoRA */
    /* The norms depend on parameters alone: a decode chunk continuing a sequence reuses its first chunk's
     * (per token they would cost r + 1 times the token's own products), a checkpointed layer's recomputation
     * the step's first forward's (a second pass over every W per step). */
    if (!(site->params_unchanged && t->gain_reusable)) {
        const float *mag = pc_params_data(&m->params, t->mag);
        dora_weight_norm(t, m, s->dora_rows, s->plan_threads, t->norm);
        for (int o = 0; o < lin->out; o++) t->gain[o] = mag[o] / t->norm[o];
        t->gain_reusable = 1;
    }
    float *lora_out = s->dora_scratch;
    lowrank_forward(lora_out, t->xa, x, A, Bm, &shape, 0, &s->scratch); /* lora_out = s·xa·Bᵀ */
    dora_base_output(t, m, site, x);
    dora_combine_forward(site->out, t->adapted_out, lora_out, t->gain, N, lin->out); /* adapted_out += lora_out */
}

/* The input gradient of W·x + b + (g−1)⊙(W·x) is Wᵀ·(g⊙dy): when the model's own product reads the same x
 * (no dropout), no hook before this one changed the output (so none reads d_out after this backward) and
 * neither W nor b is trained (their gradients need dy itself), d_out can become g⊙dy in place and the base
 * path costs no product of its own. */
static int dora_folds_into_product(const lora_target *t, int dropped) {
    const pc_linear *lin = t->lin;
    return !dropped && first_output_hook(t) && !lin->weight->grad && !(lin->bias && lin->bias->grad);
}

/* The base path's input gradient Wᵀ·((g−1)⊙dy). With dropout it is the gradient w.r.t. drop(x) and goes
 * through the mask; x_drop, no longer needed once the LoRA branch's backward has run, holds it meanwhile. */
static void dora_base_backward(lora_target *t, const pc_method *m, const pc_site *site, int dropped, float p) {
    const pc_linear *lin = t->lin;
    const lora_state *s = m->impl;
    float *scaled = s->dora_scratch;
    dora_scale_rows(scaled, site->d_out, t->gain, 1.0f, site->N, lin->out);
    if (!dropped) {
        pc_linear_backward_input(m->model->mm, site->d_in, scaled, &lin->weight->t, site->N, lin->in, lin->out);
        return;
    }
    size_t count = (size_t)site->N * (size_t)lin->in;
    memset(t->x_drop, 0, sizeof(float) * count);
    pc_linear_backward_input(m->model->mm, t->x_drop, scaled, &lin->weight->t, site->N, lin->in, lin->out);
    dropout_backward(site->d_in, t->x_drop, t->keep, count, p, 1);
}

static void lora_backward(void *owner, pc_site *site) {
    pc_method *m = owner;
    lora_state *s = m->impl;
    lora_target *t = site->state;
    const pc_linear *lin = t->lin;
    int N = site->N;
    const float *A = pc_params_data(&m->params, t->a), *Bm = pc_params_data(&m->params, t->b);
    float *dA = pc_params_grad(&m->params, t->a), *dB = pc_params_grad(&m->params, t->b);
    int dropped = s->dropout > 0 && site->training;
    const float *x = dropped ? t->x_drop : site->in;
    const float *dy = site->d_out;
    int fold = 0;
    if (t->mag >= 0) { /* DoRA: the LoRA branch sees g⊙dy */
        /* dm = Σ_n dy⊙(base + lora)/norm (the norm is a constant, as in PEFT) */
        dora_magnitude_backward(pc_params_grad(&m->params, t->mag), dy, t->adapted_out, t->norm, N, lin->out);
        fold = dora_folds_into_product(t, dropped);
        float *scaled = fold ? site->d_out : s->dora_scratch;
        dora_scale_rows(scaled, dy, t->gain, 0.0f, N, lin->out);
        dy = scaled;
    }
    /* dB += s·dyᵀ·xa ; d_xa = s·dy·B ; dA += d_xaᵀ·x ; d_in += d_xa·A, with dropout through the mask forward
     * saved (x_drop itself cannot tell a dropped element from a kept zero) */
    lowrank_shape shape = {N, lin->in, lin->out, t->r, t->scale};
    lowrank_backward(site->d_in, dA, dB, t->d_xa, dy, x, t->xa, A, Bm, dropped ? t->keep : NULL,
                     1.0f / (1.0f - s->dropout), &shape, &s->scratch);
    if (t->mag >= 0 && !fold) dora_base_backward(t, m, site, dropped, s->dropout);
}

static pc_status lora_register_hooks(pc_method *m, pc_error *err) {
    lora_state *s = m->impl;
    for (int i = 0; i < s->n_targets; i++) {
        pc_hook h = {.owner = m, .state = &s->targets[i], .phases = PC_PHASE_POST, .forward = lora_forward,
                     .backward = lora_backward};
        PC_TRY(pc_hook_add(&s->targets[i].lin->hooks, &h, err));
    }
    return PC_OK;
}

static pc_status lora_init_and_hook(pc_method *m, pc_rng *rng, pc_error *err) {
    PC_TRY(lora_init(m, rng, err));
    return lora_register_hooks(m, err);
}

static pc_status lora_config_json(const pc_method *m, cJSON *cfg, pc_error *err) {
    const lora_state *s = m->impl;
    const cJSON *o = s->options;
    /* Duplicate a given pattern, else a fresh {} (duplicating a fresh {} leaked the original). */
    const cJSON *alpha_pattern = cJSON_GetObjectItemCaseSensitive(o, "alpha_pattern");
    const cJSON *rank_pattern = cJSON_GetObjectItemCaseSensitive(o, "rank_pattern");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(o, "layers_to_transform");
    int failed = 0;
    pc_json_put(cfg, "alpha_pattern", alpha_pattern ? cJSON_Duplicate(alpha_pattern, 1) : cJSON_CreateObject(), &failed);
    pc_json_put(cfg, "bias", cJSON_CreateString("none"), &failed);
    pc_json_put(cfg, "fan_in_fan_out", cJSON_CreateBool(m->model->cfg.arch->conv1d), &failed);
    pc_json_put(cfg, "init_lora_weights", cJSON_CreateTrue(), &failed);
    pc_json_put(cfg, "layers_to_transform", layers ? cJSON_Duplicate(layers, 1) : cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "layers_pattern",
                layers ? cJSON_CreateString(m->model->cfg.arch->conv1d ? "h" : "layers") : cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "lora_alpha", cJSON_CreateNumber(s->alpha), &failed);
    pc_json_put(cfg, "lora_dropout", cJSON_CreateNumber(s->dropout), &failed);
    pc_json_put(cfg, "modules_to_save", cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "peft_type", cJSON_CreateString("LORA"), &failed);
    pc_json_put(cfg, "r", cJSON_CreateNumber(s->r_default), &failed);
    pc_json_put(cfg, "rank_pattern", rank_pattern ? cJSON_Duplicate(rank_pattern, 1) : cJSON_CreateObject(), &failed);
    pc_json_put(cfg, "target_modules", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(o, "target_modules"), 1),
                &failed);
    pc_json_put(cfg, "use_dora", cJSON_CreateBool(s->use_dora), &failed);
    pc_json_put(cfg, "use_rslora", cJSON_CreateBool(s->use_rslora), &failed);
    return pc_json_built(failed, "adapter_config.json", err);
}

/* DoRA merge of one target, row by row: W ← W + weight·((g−1)⊙(W+Δ) + Δ), g = m/‖W+Δ‖ (weight 1 gives
 * PEFT's g⊙(W+Δ)). g depends on the unmerged W, so it is kept for unmerge, which solves the same equation
 * for W: W = (W' − weight·g⊙Δ) / (1 + weight·(g−1)). */
static pc_status dora_fold_rows(lora_target *t, const float *mag, float *w, const float *delta, float weight, int sign,
                                pc_error *err) {
    const pc_linear *lin = t->lin;
    if (sign < 0 && !t->merged_g)
        return pc_fail(err, PC_ERR_USAGE, "lora: '%s': unmerge of a DoRA adapter that was not merged", lin->name);
    if (sign > 0 && !t->merged_g && !(t->merged_g = pc_malloc(sizeof(float) * (size_t)lin->out)))
        return pc_fail(err, PC_ERR_NOMEM, "out of memory merging '%s'", lin->name);
    for (int o = 0; o < lin->out; o++) {
        float *row = w + (size_t)o * lin->in;
        const float *d = delta + (size_t)o * lin->in;
        if (sign > 0) {
            double sum = 0;
            for (int k = 0; k < lin->in; k++) sum += ((double)row[k] + d[k]) * ((double)row[k] + d[k]);
            t->merged_g[o] = mag[o] / (float)sqrt(sum);
        }
        double g = t->merged_g[o], keep = 1.0 + weight * (g - 1.0);
        if (sign < 0 && fabs(keep) < 1e-12)
            return pc_fail(err, PC_ERR_NUMERIC, "lora: '%s': row %d cannot be unmerged (weight·(g−1) = −1)", lin->name, o);
        for (int k = 0; k < lin->in; k++)
            row[k] = sign > 0 ? (float)(keep * row[k] + weight * g * d[k]) : (float)((row[k] - weight * g * d[k]) / keep);
    }
    return PC_OK;
}

/* W ← W + weight·ΔW, ΔW = s·B·A (sign −1 subtracts it again); DoRA see dora_fold_rows. Done in fp32 and
 * rounded back to the compute dtype. */
static pc_status lora_fold(pc_method *m, float weight, int sign, pc_error *err) {
    lora_state *s = m->impl;
    for (int i = 0; i < s->n_targets; i++) {
        lora_target *t = &s->targets[i];
        pc_linear *lin = t->lin;
        size_t n = (size_t)lin->out * lin->in;
        float *delta = pc_malloc(n * sizeof(float)), *w = pc_malloc(n * sizeof(float));
        if (!delta || !w) {
            pc_free(delta);
            pc_free(w);
            return pc_fail(err, PC_ERR_NOMEM, "out of memory merging '%s'", lin->name);
        }
        pc_tensor *W = &lin->weight->t;
        pc_convert_to_f32(w, W->data, W->dtype, n);
        pc_gemm(m->model->mm, 0, 0, lin->out, lin->in, t->r, t->scale, pc_params_data(&m->params, t->b), t->r,
                pc_params_data(&m->params, t->a), lin->in, 0.0f, delta, lin->in);
        pc_status st = PC_OK;
        if (t->mag >= 0)
            st = dora_fold_rows(t, pc_params_data(&m->params, t->mag), w, delta, weight, sign, err);
        else
            for (size_t k = 0; k < n; k++) w[k] += (float)sign * weight * delta[k];
        if (st == PC_OK) pc_convert_from_f32(W->data, W->dtype, w, n);
        pc_free(delta);
        pc_free(w);
        if (st != PC_OK) return st;
    }
    return PC_OK;
}

static pc_status lora_merge(pc_method *m, float weight, pc_error *err) { return lora_fold(m, weight, +1, err); }
static pc_status lora_unmerge(pc_method *m, float weight, pc_error *err) { return lora_fold(m, weight, -1, err); }

static void lora_destroy(pc_method *m) {
    lora_state *s = m->impl;
    if (!s) return;
    cJSON_Delete(s->options);
    for (int i = 0; i < s->n_targets; i++) pc_free(s->targets[i].merged_g);
    pc_free(s->targets);
    pc_free(s->arena);
    pc_free(s);
    m->impl = NULL;
}

const pc_method_ops pc_lora_ops = {
    .name = "lora",
    .peft_type = "LORA",
    .attach = lora_attach,
    .init = lora_init_and_hook,
    .plan = lora_plan,
    .after_load = lora_register_hooks,
    .config_json = lora_config_json,
    .merge = lora_merge,
    .unmerge = lora_unmerge,
    .destroy = lora_destroy,
};
