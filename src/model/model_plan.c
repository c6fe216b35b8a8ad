/* The activation plan: every buffer a step needs, sized once from (model, hooks, B, T) and carved from
 * one arena. The step loop allocates nothing. */
#include <string.h>

#include "core/alloc.h"
#include "model/model_internal.h"

int pc_model_total_len(const pc_model *m, int T) {
    int n = 0;
    for (int i = 0; i < m->input_hooks.count; i++) n += m->input_hooks.hooks[i].n_virtual;
    return T + n;
}

static int layer_prefix_len(const pc_layer *L) {
    int n = 0;
    for (int i = 0; i < L->attn_kv.count; i++) n += L->attn_kv.hooks[i].n_prefix;
    return n;
}

int pc_model_max_seq_len(const pc_model *m) {
    int n_prefix = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        int p = layer_prefix_len(&m->layers[l]);
        if (p > n_prefix) n_prefix = p;
    }
    return m->cfg.max_positions - pc_model_total_len(m, 0) - n_prefix;
}

void pc_model_plan_free(pc_model *m) {
    if (!m->acts) return;
    pc_arena_free(&m->acts->arena);
    pc_free(m->acts->layers);
    pc_free(m->acts->prefix_k);
    pc_free(m->acts->prefix_v);
    pc_free(m->acts->layer_rng);
    pc_free(m->acts);
    m->acts = NULL;
}

/* The carving is done twice: once with a NULL arena to count bytes, once for real. */
typedef struct carver {
    pc_arena *arena;
    size_t bytes;
    int failed;
} carver;

static void *carve(carver *cv, size_t bytes) {
    cv->bytes += pc_arena_round(bytes);
    if (!cv->arena) return NULL;
    void *p = pc_arena_alloc(cv->arena, bytes);
    if (!p) cv->failed = 1;
    return p;
}

static float *carve_f(carver *cv, size_t n) { return carve(cv, n * sizeof(float)); }

static void carve_all(pc_model *m, struct pc_model_acts *a, carver *cv) {
    const pc_model_config *c = &m->cfg;
    size_t N = (size_t)a->B * (size_t)a->T, C = (size_t)c->hidden, I = (size_t)c->intermediate;
    size_t qd = (size_t)c->n_heads * (size_t)c->head_dim, kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    size_t lse = (size_t)a->B * (size_t)c->n_heads * (size_t)a->T;
    int layer_norm = c->arch->norm == PC_NORM_LAYER, swiglu = c->arch->mlp == PC_MLP_SWIGLU;
    /* Training keeps every layer's activations for its backward; checkpointing keeps one layer's, which the
     * layer being differentiated refills by re-running its forward; inference keeps one layer's. */
    int distinct = a->training && !a->checkpointing ? c->n_layers : 1;
    for (int l = 0; l < distinct; l++) {
        pc_layer_acts *L = &a->layers[l];
        L->x_in = carve_f(cv, N * C);
        L->ln1 = carve_f(cv, N * C);
        L->ln1_mean = layer_norm ? carve_f(cv, N) : NULL;
        L->ln1_rstd = carve_f(cv, N);
        L->q = carve_f(cv, N * qd);
        L->k = carve_f(cv, N * kvd);
        L->v = carve_f(cv, N * kvd);
        L->att = carve_f(cv, N * qd);
        L->lse = carve_f(cv, lse);
        L->x_mid = carve_f(cv, N * C);
        L->ln2 = carve_f(cv, N * C);
        L->ln2_mean = layer_norm ? carve_f(cv, N) : NULL;
        L->ln2_rstd = carve_f(cv, N);
        L->h1 = carve_f(cv, N * I);
        L->h2 = swiglu ? carve_f(cv, N * I) : NULL;
        L->act = carve_f(cv, N * I);
    }
    /* Inference and checkpointing: every layer works in the same buffers (inference also updates the residual
     * stream in place, below). */
    for (int l = distinct; l < c->n_layers; l++) a->layers[l] = a->layers[0];
    /* Checkpointing: the residual stream entering each layer is what its recomputation starts from. */
    if (a->checkpointing)
        for (int l = 1; l < c->n_layers; l++) a->layers[l].x_in = carve_f(cv, N * C);
    if (!a->training)
        for (int l = 0; l < c->n_layers; l++) a->layers[l].x_mid = a->layers[l].x_in;
    a->x_out = a->training ? carve_f(cv, N * C) : a->layers[0].x_in;
    a->lnf = carve_f(cv, N * C);
    a->lnf_mean = layer_norm ? carve_f(cv, N) : NULL;
    a->lnf_rstd = carve_f(cv, N);
    a->ids = carve(cv, N * sizeof(int32_t));
    a->targets = carve(cv, N * sizeof(int32_t));
    a->pos = carve(cv, N * sizeof(int32_t));
    a->doc = carve(cv, N * sizeof(int32_t));
    a->qkv = c->arch->linear_names[PC_LIN_QKV] ? carve_f(cv, N * (qd + 2 * kvd)) : NULL;
    a->sub_out = carve_f(cv, N * C);
    /* Rows of logits per head+cross-entropy block: at most ~40M floats of scratch (160 MB), between 64 and
     * 256 rows, and no more rows than the step has. Each block streams the whole head weight twice (forward
     * and backward), so the rows are its reuse: on Qwen2.5-0.5B (V = 151936, 272 MB of bf16 weight) 64-row
     * blocks ran the head at ~350 GFLOP/s, 256-row blocks at ~540 (1.6 → 1.05 s per 4x256 step); 512 rows
     * gained little more. */
    int chunk = (int)((40L << 20) / (c->vocab_size > 0 ? c->vocab_size : 1));
    chunk = chunk < 64 ? 64 : chunk > 256 ? 256 : chunk;
    if ((size_t)chunk > N) chunk = (int)N;
    a->xent_chunk = (chunk + 15) / 16 * 16;
    a->xent_scratch = carve_f(cv, (size_t)a->xent_chunk * (size_t)c->vocab_size);
    if (!a->training) return;
    size_t max_in = I > qd ? I : qd;
    if (C > max_in) max_in = C;
    a->d_resid = carve_f(cv, N * C);
    a->d_ln = carve_f(cv, N * C);
    a->d_sub = carve_f(cv, N * C);
    a->d_lnf = carve_f(cv, N * C);
    a->d_q = carve_f(cv, N * qd);
    a->d_k = carve_f(cv, N * kvd);
    a->d_v = carve_f(cv, N * kvd);
    a->d_qkv = c->arch->linear_names[PC_LIN_QKV] ? carve_f(cv, N * (qd + 2 * kvd)) : NULL;
    a->d_att = carve_f(cv, N * qd);
    a->d_h1 = carve_f(cv, N * I);
    a->d_h2 = swiglu ? carve_f(cv, N * I) : NULL;
    a->d_act = carve_f(cv, N * I);
    a->d_linear_in = carve_f(cv, N * max_in);
    size_t P = (size_t)a->n_prefix;
    a->d_prefix_k = P ? carve_f(cv, P * kvd) : NULL;
    a->d_prefix_v = P ? carve_f(cv, P * kvd) : NULL;
}

pc_status pc_model_plan(pc_model *m, int B, int T, int training, pc_error *err) {
    struct pc_model_acts *a = m->acts;
    int Ttot = pc_model_total_len(m, T);
    int n_prefix = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        int p = layer_prefix_len(&m->layers[l]);
        if (p > n_prefix) n_prefix = p;
    }
    int checkpointing = training && m->gradient_checkpointing;
    /* A plan is reused only while the hooks that shape it (virtual tokens, prefixes) are the same; any
     * training plan serves inference, but training needs one of the current checkpointing setting. */
    if (a && a->B >= B && a->T_real >= T && a->T - a->T_real == Ttot - T && a->n_prefix == n_prefix &&
        (training ? a->training && a->checkpointing == checkpointing : 1))
        return PC_OK;
    pc_model_plan_free(m);
    if (B <= 0 || T <= 0) return pc_fail(err, PC_ERR_USAGE, "batch shape %dx%d is empty", B, T);
    long max_pos = (long)Ttot + n_prefix;
    if (max_pos > m->cfg.max_positions)
        return pc_fail(err, PC_ERR_USAGE, "sequence of %ld positions exceeds the model's max_position_embeddings %d",
                       max_pos, m->cfg.max_positions);
    PC_TRY(pc_model_ensure_positions(m, (int)max_pos, err));
    a = pc_calloc(1, sizeof *a);
    if (!a) return pc_fail(err, PC_ERR_NOMEM, "out of memory: activation plan");
    m->acts = a;
    a->B = B;
    a->T = Ttot;
    a->T_real = T;
    a->n_virtual = Ttot - T;
    a->n_prefix = n_prefix;
    a->training = training;
    a->checkpointing = checkpointing;
    a->layers = pc_calloc((size_t)m->cfg.n_layers, sizeof *a->layers);
    a->prefix_k = pc_calloc((size_t)m->cfg.n_layers, sizeof *a->prefix_k);
    a->prefix_v = pc_calloc((size_t)m->cfg.n_layers, sizeof *a->prefix_v);
    a->layer_rng = checkpointing ? pc_calloc(2 * (size_t)m->cfg.n_layers, sizeof *a->layer_rng) : NULL;
    if (!a->layers || !a->prefix_k || !a->prefix_v || (checkpointing && !a->layer_rng)) {
        pc_model_plan_free(m);
        return pc_fail(err, PC_ERR_NOMEM, "out of memory: activation plan");
    }
    carver count = {0};
    carve_all(m, a, &count);
    pc_status st = pc_arena_init(&a->arena, count.bytes, err);
    if (st != PC_OK) {
        pc_model_plan_free(m);
        return pc_error_prefix(err, "activations for batch %dx%d: ", B, Ttot);
    }
    carver real = {&a->arena, 0, 0};
    carve_all(m, a, &real);
    if (real.failed) {
        pc_model_plan_free(m);
        return pc_fail(err, PC_ERR_INTERNAL, "activation plan: carving overflowed its arena");
    }
    for (int i = 0; i < m->n_planners; i++) {
        st = m->planners[i].fn(m->planners[i].owner, B, T, err);
        if (st != PC_OK) {
            pc_model_plan_free(m);
            return st;
        }
    }
    return PC_OK;
}

size_t pc_model_plan_bytes(const pc_model *m) { return m->acts ? m->acts->arena.size : 0; }

int pc_model_plan_checkpointed(const pc_model *m) { return m->acts && m->acts->checkpointing; }

pc_status pc_model_add_planner(pc_model *m, void *owner, pc_plan_fn fn, pc_error *err) {
    if (m->n_planners == m->cap_planners) {
        int cap = m->cap_planners ? 2 * m->cap_planners : 4;
        pc_planner *p = pc_realloc(m->planners, sizeof *p * (size_t)m->cap_planners, sizeof *p * (size_t)cap);
        if (!p) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
        m->planners = p;
        m->cap_planners = cap;
    }
    m->planners[m->n_planners++] = (pc_planner){owner, fn};
    pc_model_plan_free(m); /* the next forward plans again, with this planner */
    return PC_OK;
}

void pc_model_remove_planner(pc_model *m, void *owner) {
    for (int i = 0; i < m->n_planners; i++)
        if (m->planners[i].owner == owner) {
            memmove(&m->planners[i], &m->planners[i + 1], sizeof *m->planners * (size_t)(m->n_planners - i - 1));
            m->n_planners--;
            i--;
        }
}
