/* One forward and one backward for every architecture in the table. The order of operations follows the
 * Hugging Face modeling code; methods act only through the hooks at sites (site.h).
 *
 * Shapes: N = B·T rows (T includes virtual tokens), C hidden, I intermediate, H heads, KVH key/value heads,
 * hd head size, P prefix length. */
#include <math.h>
#include <string.h>

#include "core/timer.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/norm.h"
#include "kernels/rope.h"
#include "kernels/xent.h"
#include "model/model_internal.h"

/* ---- per-phase timers (only when m->profile is set) -------------------------------------------------- */

typedef struct prof_clock {
    double wall, cpu;
} prof_clock;

static prof_clock prof_start(const pc_model *m) {
    return m->profile ? (prof_clock){pc_time_now(), pc_cpu_time_now()} : (prof_clock){0.0, 0.0};
}

/* Adds the wall and CPU time since *t0 to a phase and restarts the clocks. */
static void prof_lap(pc_model *m, int backward, int phase, prof_clock *t0) {
    if (!m->profile) return;
    prof_clock now = prof_start(m);
    pc_step_profile *p = m->profile;
    (backward ? p->backward : p->forward)[phase] += now.wall - t0->wall;
    (backward ? p->backward_cpu : p->forward_cpu)[phase] += now.cpu - t0->cpu;
    *t0 = now;
}

/* ---- norms ---------------------------------------------------------------------------------------- */

/* dx += ∂/∂x; weight and bias gradients only when trainable. */
static void norm_backward(const pc_model *m, float *dx, const float *dout, const float *x, const float *mean,
                          const float *rstd, pc_param *w, pc_param *b, int N) {
    int C = m->cfg.hidden;
    if (m->cfg.arch->norm == PC_NORM_RMS)
        rmsnorm_backward(dx, w->grad, dout, x, w->t.data, rstd, N, C);
    else
        layernorm_backward(dx, w->grad, b->grad, dout, x, w->t.data, mean, rstd, N, C);
}

/* ---- a projection and its hooks -------------------------------------------------------------------- */

static int has_pre_hook(const pc_linear *lin) {
    for (int i = 0; i < lin->hooks.count; i++)
        if (lin->hooks.hooks[i].phases & PC_PHASE_PRE) return 1;
    return 0;
}

/* dy [N,out] may be rewritten by POST hooks; dx [N,in] is accumulated into. */
static void linear_backward(pc_model *m, pc_linear *lin, float *dy, float *dx, const pc_step_shape *s) {
    struct pc_model_acts *a = m->acts;
    int pre = has_pre_hook(lin);
    float *d_used = dx;
    if (pre) {
        d_used = a->d_linear_in;
        memset(d_used, 0, sizeof(float) * (size_t)s->N * (size_t)lin->in);
    }
    pc_site site = pc_site_begin(PC_SITE_LINEAR, lin->layer, lin->role, s);
    site.linear = lin;
    site.in_dim = lin->in;
    site.out_dim = lin->out;
    site.in = lin->saved_in;
    site.d_out = dy;
    site.d_in = d_used;
    pc_hooks_backward(&lin->hooks, &site, PC_PHASE_POST);
    pc_linear_backward_input(m->mm, d_used, dy, &lin->weight->t, s->N, lin->in, lin->out);
    float *dbias = lin->bias ? lin->bias->grad : NULL;
    if (lin->weight->grad || dbias)
        pc_linear_backward_weight(m->mm, lin->weight->grad, dbias, dy, lin->saved_in, s->N, lin->in, lin->out);
    if (pre) {
        /* PRE backward: d_out is the gradient of the replaced input, d_in the original input's (accumulate). */
        site.d_out = d_used;
        site.d_in = dx;
        pc_hooks_backward(&lin->hooks, &site, PC_PHASE_PRE);
    }
}

/* ---- attention sublayer -------------------------------------------------------------------------- */

static void split_qkv(const float *qkv, float *q, float *k, float *v, int N, int qd, int kvd) {
    for (int n = 0; n < N; n++) {
        const float *row = qkv + (size_t)n * (size_t)(qd + 2 * kvd);
        memcpy(q + (size_t)n * qd, row, sizeof(float) * (size_t)qd);
        memcpy(k + (size_t)n * kvd, row + qd, sizeof(float) * (size_t)kvd);
        memcpy(v + (size_t)n * kvd, row + qd + kvd, sizeof(float) * (size_t)kvd);
    }
}

static void join_qkv(float *qkv, const float *q, const float *k, const float *v, int N, int qd, int kvd) {
    for (int n = 0; n < N; n++) {
        float *row = qkv + (size_t)n * (size_t)(qd + 2 * kvd);
        memcpy(row, q + (size_t)n * qd, sizeof(float) * (size_t)qd);
        memcpy(row + qd, k + (size_t)n * kvd, sizeof(float) * (size_t)kvd);
        memcpy(row + qd + kvd, v + (size_t)n * kvd, sizeof(float) * (size_t)kvd);
    }
}

/* The ATTN_KV hooks of layer l: prefix keys/values, kept per layer (pointers) for backward. A recomputation
 * (checkpointing) does not call them again: their keys/values are still where the first run put them, and a
 * hook may do once-per-step work there (prefix tuning evaluates its projection and clears its gradient at
 * layer 0, which a second call would wipe). The recomputation's RNG copy continues from the draws the hooks
 * made, so the hooks after them still see the first run's numbers. */
static void attention_prefix_forward(pc_model *m, int l, const pc_step_shape *s) {
    struct pc_model_acts *a = m->acts;
    if (s->recompute) {
        if (s->rng) *s->rng = a->layer_rng[2 * l + 1];
        return;
    }
    pc_site kv = pc_site_begin(PC_SITE_ATTN_KV, l, 0, s);
    pc_hooks_forward(&m->layers[l].attn_kv, &kv, PC_PHASE_POST);
    a->prefix_k[l] = kv.prefix_k;
    a->prefix_v[l] = kv.prefix_v;
    if (a->checkpointing && s->rng) a->layer_rng[2 * l + 1] = *s->rng;
}

static void attention_sublayer_forward(pc_model *m, int l, const pc_step_shape *s) {
    const pc_model_config *c = &m->cfg;
    struct pc_model_acts *a = m->acts;
    pc_layer *L = &m->layers[l];
    pc_layer_acts *A = &a->layers[l];
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    if (L->lin[PC_LIN_QKV].in) {
        pc_linear_site_forward(m, &L->lin[PC_LIN_QKV], a->qkv, A->ln1, s);
        split_qkv(a->qkv, A->q, A->k, A->v, s->N, qd, kvd);
    } else {
        pc_linear_site_forward(m, &L->lin[PC_LIN_Q], A->q, A->ln1, s);
        pc_linear_site_forward(m, &L->lin[PC_LIN_K], A->k, A->ln1, s);
        pc_linear_site_forward(m, &L->lin[PC_LIN_V], A->v, A->ln1, s);
    }
    if (c->arch->rope) {
        rope_forward(A->q, a->pos, m->rope_cos, m->rope_sin, s->N, c->n_heads, c->head_dim);
        rope_forward(A->k, a->pos, m->rope_cos, m->rope_sin, s->N, c->n_kv_heads, c->head_dim);
    }
    attention_prefix_forward(m, l, s);
    int P = a->prefix_k[l] ? s->P : 0;
    attention_forward(A->att, A->lse, A->q, A->k, A->v, a->prefix_k[l], a->prefix_v[l], a->has_doc ? a->doc : NULL,
                      s->B, s->T, P, c->n_heads, c->n_kv_heads, c->head_dim);
    pc_site ho = pc_site_begin(PC_SITE_HEAD_OUT, l, 0, s);
    ho.out = A->att;
    ho.out_dim = qd;
    pc_hooks_forward(&L->head_out, &ho, PC_PHASE_POST);
    pc_linear_site_forward(m, &L->lin[PC_LIN_O], a->sub_out, A->att, s);
    pc_sublayer_hooks_forward(m, l, PC_SUBLAYER_ATTN, s, A->ln1, a->sub_out);
}

/* SUBLAYER hooks backward: d_sub (the sublayer output's gradient) may be rewritten, d_ln accumulated into. */
static void sublayer_hooks_backward(pc_model *m, int l, int which, const pc_step_shape *s, const float *in) {
    pc_site sub = pc_site_begin(PC_SITE_SUBLAYER, l, which, s);
    sub.in = in;
    sub.in_dim = sub.out_dim = m->cfg.hidden;
    sub.d_out = m->acts->d_sub;
    sub.d_in = m->acts->d_ln;
    pc_hooks_backward(&m->layers[l].sublayer[which], &sub, PC_PHASE_POST);
}

/* Reads a->d_sub (gradient of the sublayer output); accumulates the gradient of ln1 into a->d_ln. */
static void attention_sublayer_backward(pc_model *m, int l, const pc_step_shape *s) {
    const pc_model_config *c = &m->cfg;
    struct pc_model_acts *a = m->acts;
    pc_layer *L = &m->layers[l];
    pc_layer_acts *A = &a->layers[l];
    size_t N = (size_t)s->N;
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    sublayer_hooks_backward(m, l, PC_SUBLAYER_ATTN, s, A->ln1);
    memset(a->d_att, 0, sizeof(float) * N * (size_t)qd);
    linear_backward(m, &L->lin[PC_LIN_O], a->d_sub, a->d_att, s);
    pc_site ho = pc_site_begin(PC_SITE_HEAD_OUT, l, 0, s);
    ho.out_dim = qd;
    ho.d_out = a->d_att;
    pc_hooks_backward(&L->head_out, &ho, PC_PHASE_POST);
    memset(a->d_q, 0, sizeof(float) * N * (size_t)qd);
    memset(a->d_k, 0, sizeof(float) * N * (size_t)kvd);
    memset(a->d_v, 0, sizeof(float) * N * (size_t)kvd);
    int P = a->prefix_k[l] ? s->P : 0;
    if (P) {
        memset(a->d_prefix_k, 0, sizeof(float) * (size_t)P * (size_t)kvd);
        memset(a->d_prefix_v, 0, sizeof(float) * (size_t)P * (size_t)kvd);
    }
    attention_backward(a->d_q, a->d_k, a->d_v, P ? a->d_prefix_k : NULL, P ? a->d_prefix_v : NULL, a->d_att, A->att,
                       A->lse, A->q, A->k, A->v, a->prefix_k[l], a->prefix_v[l], a->has_doc ? a->doc : NULL, s->B,
                       s->T, P, c->n_heads, c->n_kv_heads, c->head_dim);
    if (P) {
        pc_site kv = pc_site_begin(PC_SITE_ATTN_KV, l, 0, s);
        kv.d_prefix_k = a->d_prefix_k;
        kv.d_prefix_v = a->d_prefix_v;
        pc_hooks_backward(&L->attn_kv, &kv, PC_PHASE_POST);
    }
    if (c->arch->rope) {
        rope_backward(a->d_q, a->pos, m->rope_cos, m->rope_sin, s->N, c->n_heads, c->head_dim);
        rope_backward(a->d_k, a->pos, m->rope_cos, m->rope_sin, s->N, c->n_kv_heads, c->head_dim);
    }
    if (L->lin[PC_LIN_QKV].in) {
        join_qkv(a->d_qkv, a->d_q, a->d_k, a->d_v, s->N, qd, kvd);
        linear_backward(m, &L->lin[PC_LIN_QKV], a->d_qkv, a->d_ln, s);
    } else {
        linear_backward(m, &L->lin[PC_LIN_Q], a->d_q, a->d_ln, s);
        linear_backward(m, &L->lin[PC_LIN_K], a->d_k, a->d_ln, s);
        linear_backward(m, &L->lin[PC_LIN_V], a->d_v, a->d_ln, s);
    }
}

/* ---- MLP sublayer ------------------------------------------------------------------------------------ */

static void mlp_sublayer_forward(pc_model *m, int l, const pc_step_shape *s) {
    pc_layer_acts *A = &m->acts->layers[l];
    pc_mlp_forward(m, l, s, A->ln2, A->h1, A->h2, A->act, m->acts->sub_out);
}

static void mlp_sublayer_backward(pc_model *m, int l, const pc_step_shape *s) {
    const pc_model_config *c = &m->cfg;
    struct pc_model_acts *a = m->acts;
    pc_layer *L = &m->layers[l];
    pc_layer_acts *A = &a->layers[l];
    long n = (long)s->N * c->intermediate;
    sublayer_hooks_backward(m, l, PC_SUBLAYER_MLP, s, A->ln2);
    memset(a->d_act, 0, sizeof(float) * (size_t)n);
    linear_backward(m, &L->lin[PC_LIN_DOWN], a->d_sub, a->d_act, s);
    memset(a->d_h1, 0, sizeof(float) * (size_t)n);
    if (c->arch->mlp == PC_MLP_SWIGLU) {
        memset(a->d_h2, 0, sizeof(float) * (size_t)n);
        swiglu_backward(a->d_h1, a->d_h2, a->d_act, A->h1, A->h2, n);
        linear_backward(m, &L->lin[PC_LIN_GATE], a->d_h1, a->d_ln, s);
        linear_backward(m, &L->lin[PC_LIN_UP], a->d_h2, a->d_ln, s);
    } else {
        gelu_tanh_backward(a->d_h1, a->d_act, A->h1, n);
        linear_backward(m, &L->lin[PC_LIN_UP], a->d_h1, a->d_ln, s);
    }
}

/* ---- whole model ------------------------------------------------------------------------------------- */

static void add_rows(float *out, const float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = x[i] + y[i];
}

/* A recomputation (s->recompute) is timed as backward and does not write the layer's output: the next
 * layer's saved input already holds it. */
static void layer_forward(pc_model *m, int l, const pc_step_shape *s) {
    struct pc_model_acts *a = m->acts;
    pc_layer *L = &m->layers[l];
    pc_layer_acts *A = &a->layers[l];
    size_t NC = (size_t)s->N * (size_t)m->cfg.hidden;
    prof_clock t = prof_start(m);
    if (a->checkpointing && s->rng && !s->recompute) a->layer_rng[2 * l] = *s->rng;
    pc_norm_forward(m, A->ln1, A->ln1_mean, A->ln1_rstd, A->x_in, L->norm1_w, L->norm1_b, s->N);
    attention_sublayer_forward(m, l, s);
    add_rows(A->x_mid, A->x_in, a->sub_out, NC);
    prof_lap(m, s->recompute, PC_PROF_ATTN, &t);
    pc_norm_forward(m, A->ln2, A->ln2_mean, A->ln2_rstd, A->x_mid, L->norm2_w, L->norm2_b, s->N);
    mlp_sublayer_forward(m, l, s);
    if (!s->recompute) add_rows(l + 1 < m->cfg.n_layers ? a->layers[l + 1].x_in : a->x_out, A->x_mid, a->sub_out, NC);
    prof_lap(m, s->recompute, PC_PROF_MLP, &t);
}

/* Gradient checkpointing: refill the shared layer buffers — and the hooks' per-site state (LoRA's x·A and
 * dropout masks, adapters' activations, IA3's saved products), and every projection's saved input — with
 * layer l's forward, re-run from its saved input on a copy of the RNG as the first run found it. The same
 * arithmetic on the same numbers: backward then gives exactly the gradients of a plan that kept everything.
 * The step's own RNG is not touched, so a run draws the same numbers with and without checkpointing. */
static void layer_recompute(pc_model *m, int l, const pc_step_shape *s) {
    double t = m->profile ? pc_time_now() : 0.0;
    pc_rng rng = {{0}};
    pc_step_shape again = *s;
    again.recompute = 1;
    if (s->rng) {
        rng = m->acts->layer_rng[2 * l];
        again.rng = &rng;
    }
    layer_forward(m, l, &again);
    if (m->profile) m->profile->recompute += pc_time_now() - t;
}

/* a->d_resid holds ∂/∂(layer output) on entry and ∂/∂(layer input) on return. */
static void layer_backward(pc_model *m, int l, const pc_step_shape *s) {
    struct pc_model_acts *a = m->acts;
    pc_layer *L = &m->layers[l];
    pc_layer_acts *A = &a->layers[l];
    size_t NC = (size_t)s->N * (size_t)m->cfg.hidden;
    prof_clock t = prof_start(m);
    memcpy(a->d_sub, a->d_resid, sizeof(float) * NC);
    memset(a->d_ln, 0, sizeof(float) * NC);
    mlp_sublayer_backward(m, l, s);
    norm_backward(m, a->d_resid, a->d_ln, A->x_mid, A->ln2_mean, A->ln2_rstd, L->norm2_w, L->norm2_b, s->N);
    prof_lap(m, 1, PC_PROF_MLP, &t);
    memcpy(a->d_sub, a->d_resid, sizeof(float) * NC);
    memset(a->d_ln, 0, sizeof(float) * NC);
    attention_sublayer_backward(m, l, s);
    norm_backward(m, a->d_resid, a->d_ln, A->x_in, A->ln1_mean, A->ln1_rstd, L->norm1_w, L->norm1_b, s->N);
    prof_lap(m, 1, PC_PROF_ATTN, &t);
}

/* Token ids, shifted targets, positions and documents for the extended sequence (virtual tokens first). */
static pc_status prepare_inputs(pc_model *m, const pc_model_batch *b, pc_step_shape *s, pc_error *err) {
    struct pc_model_acts *a = m->acts;
    int nv = a->n_virtual, V = m->cfg.vocab_size;
    s->B = b->B;
    s->T = b->T + nv;
    s->N = s->B * s->T;
    s->P = a->n_prefix;
    a->has_doc = b->doc != NULL;
    a->cur_B = s->B;
    a->cur_T = s->T;
    a->cur_N = s->N;
    for (int r = 0; r < b->B; r++) {
        for (int t = 0; t < s->T; t++) {
            size_t i = (size_t)r * (size_t)s->T + (size_t)t;
            int j = t - nv; /* index in the real sequence */
            int32_t id = j >= 0 ? b->ids[(size_t)r * b->T + j] : 0;
            if (id < 0 || id >= V)
                return pc_fail(err, PC_ERR_FORMAT, "batch row %d position %d: token id %d outside the vocabulary (%d)",
                               r, j, id, V);
            a->ids[i] = id;
            int pos_real = j >= 0 ? (b->pos ? b->pos[(size_t)r * b->T + j] : j) : 0;
            a->pos[i] = (j >= 0 ? pos_real + nv : t) + s->P;
            a->doc[i] = j >= 0 && b->doc ? b->doc[(size_t)r * b->T + j] : (b->doc ? b->doc[(size_t)r * b->T] : 0);
            /* HF shift: position t predicts the label at t+1; virtual positions carry −100 labels. */
            int jn = j + 1;
            int32_t label = (t + 1 < s->T && jn >= 0) ? b->labels[(size_t)r * b->T + jn] : -100;
            if (label != -100 && (label < 0 || label >= V))
                return pc_fail(err, PC_ERR_FORMAT, "batch row %d position %d: label %d outside the vocabulary (%d)", r,
                               jn, label, V);
            a->targets[i] = label == -100 ? -1 : label;
        }
    }
    return PC_OK;
}

static void embed_forward(pc_model *m, const pc_step_shape *s) {
    struct pc_model_acts *a = m->acts;
    float *x = a->layers[0].x_in;
    embedding_forward(x, a->ids, &m->embed->t, s->N, m->cfg.hidden, 0);
    pc_input_hooks_forward(m, x, s);
    if (m->pos_embed) embedding_forward(x, a->pos, &m->pos_embed->t, s->N, m->cfg.hidden, 1);
}

static void embed_backward(pc_model *m, const pc_step_shape *s) {
    struct pc_model_acts *a = m->acts;
    if (m->pos_embed && m->pos_embed->grad) embedding_backward(m->pos_embed->grad, a->d_resid, a->pos, s->N, m->cfg.hidden);
    pc_site in = pc_site_begin(PC_SITE_INPUT, -1, 0, s);
    in.d_out = a->d_resid;
    in.out_dim = m->cfg.hidden;
    int offset = pc_model_total_len(m, 0);
    for (int i = m->input_hooks.count - 1; i >= 0; i--) {
        const pc_hook *h = &m->input_hooks.hooks[i];
        offset -= h->n_virtual;
        in.virtual_offset = offset;
        in.state = h->state;
        in.phase = PC_PHASE_POST;
        if (h->backward) h->backward(h->owner, &in);
    }
    if (m->embed->grad) {
        /* Virtual rows are not tokens: their gradient went to the input hooks. */
        int nv = a->n_virtual, C = m->cfg.hidden;
        for (int r = 0; r < s->B; r++) {
            size_t row0 = (size_t)r * (size_t)s->T + (size_t)nv;
            embedding_backward(m->embed->grad, a->d_resid + row0 * (size_t)C, a->ids + row0, s->T - nv, C);
        }
    }
}

static pc_status run_forward(pc_model *m, const pc_model_batch *b, pc_step_shape *s, pc_error *err) {
    prof_clock t = prof_start(m);
    PC_TRY(prepare_inputs(m, b, s, err));
    struct pc_model_acts *a = m->acts;
    embed_forward(m, s);
    prof_lap(m, 0, PC_PROF_EMBED, &t);
    for (int l = 0; l < m->cfg.n_layers; l++) layer_forward(m, l, s);
    t = prof_start(m);
    pc_norm_forward(m, a->lnf, a->lnf_mean, a->lnf_rstd, a->x_out, m->final_norm_w, m->final_norm_b, s->N);
    pc_site out = pc_site_begin(PC_SITE_OUTPUT, -1, 0, s);
    out.out = a->lnf;
    out.out_dim = m->cfg.hidden;
    pc_hooks_forward(&m->output_hooks, &out, PC_PHASE_POST);
    prof_lap(m, 0, PC_PROF_HEAD, &t);
    return PC_OK;
}

static pc_status check_batch(pc_model *m, const pc_model_batch *b, int training, pc_error *err) {
    if (!b->ids || !b->labels || b->B <= 0 || b->T <= 0) return pc_fail(err, PC_ERR_USAGE, "empty batch");
    return pc_model_plan(m, b->B, b->T, training, err);
}

pc_status pc_model_forward(pc_model *m, const pc_model_batch *b, pc_forward_result *res, pc_error *err) {
    PC_TRY(check_batch(m, b, 0, err));
    pc_step_shape s = {0};
    PC_TRY(run_forward(m, b, &s, err));
    struct pc_model_acts *a = m->acts;
    res->loss_sum = lmhead_xent(m->mm, NULL, NULL, a->lnf, &m->lm_head->t, a->targets, s.N, m->cfg.hidden,
                                m->cfg.vocab_size, 1.0f, a->xent_scratch, a->xent_chunk, &res->n_targets);
    if (!isfinite(res->loss_sum)) return pc_fail(err, PC_ERR_NUMERIC, "the loss is not finite");
    return PC_OK;
}

pc_status pc_model_forward_backward(pc_model *m, const pc_model_batch *b, float grad_scale, pc_rng *rng,
                                    pc_forward_result *res, pc_error *err) {
    PC_TRY(check_batch(m, b, 1, err));
    pc_step_shape s = {0};
    s.training = 1;
    s.rng = rng;
    PC_TRY(run_forward(m, b, &s, err));
    struct pc_model_acts *a = m->acts;
    size_t NC = (size_t)s.N * (size_t)m->cfg.hidden;
    /* The head and the cross-entropy are fused (forward and backward in one pass): timed as head backward. */
    prof_clock t = prof_start(m);
    memset(a->d_lnf, 0, sizeof(float) * NC);
    res->loss_sum = lmhead_xent(m->mm, a->d_lnf, m->lm_head->grad, a->lnf, &m->lm_head->t, a->targets, s.N,
                                m->cfg.hidden, m->cfg.vocab_size, grad_scale, a->xent_scratch, a->xent_chunk,
                                &res->n_targets);
    if (!isfinite(res->loss_sum)) return pc_fail(err, PC_ERR_NUMERIC, "the loss is not finite");
    pc_site out = pc_site_begin(PC_SITE_OUTPUT, -1, 0, &s);
    out.out_dim = m->cfg.hidden;
    out.d_out = a->d_lnf;
    pc_hooks_backward(&m->output_hooks, &out, PC_PHASE_POST);
    memset(a->d_resid, 0, sizeof(float) * NC);
    norm_backward(m, a->d_resid, a->d_lnf, a->x_out, a->lnf_mean, a->lnf_rstd, m->final_norm_w, m->final_norm_b, s.N);
    prof_lap(m, 1, PC_PROF_HEAD, &t);
    for (int l = m->cfg.n_layers - 1; l >= 0; l--) {
        /* The last layer's forward is still in the shared buffers: nothing ran in them since. */
        if (a->checkpointing && l < m->cfg.n_layers - 1) layer_recompute(m, l, &s);
        layer_backward(m, l, &s);
    }
    t = prof_start(m);
    embed_backward(m, &s);
    prof_lap(m, 1, PC_PROF_EMBED, &t);
    return PC_OK;
}

pc_status pc_model_logits(pc_model *m, float *logits, pc_error *err) {
    struct pc_model_acts *a = m->acts;
    if (!a) return pc_fail(err, PC_ERR_USAGE, "no forward has run");
    /* The last forward's geometry: B rows of T, as recorded in the plan's current batch. */
    lmhead_logits(m->mm, logits, a->lnf, &m->lm_head->t, a->cur_N, m->cfg.hidden, m->cfg.vocab_size);
    return PC_OK;
}
