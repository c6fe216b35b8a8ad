/* Decoding with a key/value cache: the forward of model_forward.c for one sequence, run a chunk of new
 * rows at a time against the keys and values of every earlier row. The order of operations and every hook
 * call mirror model_forward.c line for line, so an adapter that works in training works here unmerged;
 * the parity test (tests/unit/test_generate_cache.c) holds the two paths together.
 *
 * Cache layout per layer: rows [0, n_prefix) hold the ATTN_KV prefix (right-aligned: a layer without a
 * prefix leaves them unused), then one row per position of the extended sequence (virtual tokens first).
 * Positions are numbered as in training: n_prefix + index in the extended sequence.
 *
 * Shapes: R rows in this chunk (R ≤ max_chunk + n_virtual), C hidden, I intermediate, H heads, KVH
 * key/value heads, hd head size, qd = H·hd, kvd = KVH·hd. */
#include <string.h>

#include "core/alloc.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/norm.h"
#include "kernels/rope.h"
#include "kernels/xent.h"
#include "model/model_internal.h"

struct pc_kv_cache {
    const pc_model *model;  /* the model it was sized for */
    int max_len, max_chunk;  /* real tokens: in total, per forward */
    int n_virtual, n_prefix; /* of the hooks attached when the cache was made */
    int cap;                 /* rows per layer: n_prefix + n_virtual + max_len */
    int len;                 /* rows of the extended sequence cached (virtual tokens included) */
    int *prefix_rows;        /* [L] prefix rows of each layer: n_prefix, or 0 when its ATTN_KV hooks gave none */
    float *k, *v;            /* [L, cap, kvd] */
    /* scratch for one chunk of R rows */
    float *x;                /* [R,C] residual stream, updated in place */
    float *ln, *mean, *rstd; /* [R,C], [R] (mean only for LayerNorm) */
    float *q, *att;          /* [R,qd] */
    float *qkv;              /* [R, qd+2kvd] fused projection (gpt2), else NULL */
    float *sub_out;          /* [R,C] */
    float *h1, *h2, *act;    /* [R,I] (h2 only for SwiGLU) */
    int32_t *ids, *pos;      /* [R] */
    pc_arena arena;
};

typedef struct chunk_shape {
    int R;      /* rows in this forward */
    int start;  /* index in the extended sequence of its first row */
    int first;  /* 1 on the prefill chunk: INPUT and ATTN_KV hooks run */
    pc_step_shape step; /* B = 1, T = N = R, inference */
} chunk_shape;

static int max_prefix(const pc_model *m) {
    int p = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        int n = 0;
        for (int i = 0; i < m->layers[l].attn_kv.count; i++) n += m->layers[l].attn_kv.hooks[i].n_prefix;
        p = n > p ? n : p;
    }
    return p;
}

/* ---- the cache object ------------------------------------------------------------------------------ */

/* Carved twice: with a NULL arena to count bytes, then for real (as model_plan.c does). */
static void *carve(pc_arena *arena, size_t *bytes, size_t n) {
    *bytes += pc_arena_round(n);
    return arena ? pc_arena_alloc(arena, n) : NULL;
}

static size_t carve_cache(pc_kv_cache *c, const pc_model *m, pc_arena *arena) {
    const pc_model_config *cf = &m->cfg;
    size_t b = 0, R = (size_t)c->max_chunk + (size_t)c->n_virtual, C = (size_t)cf->hidden, I = (size_t)cf->intermediate;
    size_t qd = (size_t)cf->n_heads * (size_t)cf->head_dim, kvd = (size_t)cf->n_kv_heads * (size_t)cf->head_dim;
    size_t kv = (size_t)cf->n_layers * (size_t)c->cap * kvd * sizeof(float), f = sizeof(float);
    c->prefix_rows = carve(arena, &b, (size_t)cf->n_layers * sizeof(int));
    c->k = carve(arena, &b, kv);
    c->v = carve(arena, &b, kv);
    c->x = carve(arena, &b, R * C * f);
    c->ln = carve(arena, &b, R * C * f);
    c->mean = cf->arch->norm == PC_NORM_LAYER ? carve(arena, &b, R * f) : NULL;
    c->rstd = carve(arena, &b, R * f);
    c->q = carve(arena, &b, R * qd * f);
    c->att = carve(arena, &b, R * qd * f);
    c->qkv = cf->arch->linear_names[PC_LIN_QKV] ? carve(arena, &b, R * (qd + 2 * kvd) * f) : NULL;
    c->sub_out = carve(arena, &b, R * C * f);
    c->h1 = carve(arena, &b, R * I * f);
    c->h2 = cf->arch->mlp == PC_MLP_SWIGLU ? carve(arena, &b, R * I * f) : NULL;
    c->act = carve(arena, &b, R * I * f);
    c->ids = carve(arena, &b, R * sizeof(int32_t));
    c->pos = carve(arena, &b, R * sizeof(int32_t));
    return b;
}

pc_status pc_kv_cache_create(pc_kv_cache **out, const pc_model *m, int max_len, int max_chunk, pc_error *err) {
    *out = NULL;
    if (max_len <= 0 || max_chunk <= 0)
        return pc_fail(err, PC_ERR_USAGE, "kv cache: max_len %d and max_chunk %d must be positive", max_len, max_chunk);
    if (max_chunk > max_len) max_chunk = max_len;
    pc_kv_cache *c = pc_calloc(1, sizeof *c);
    if (!c) return pc_fail(err, PC_ERR_NOMEM, "kv cache: out of memory");
    c->model = m;
    c->max_len = max_len;
    c->max_chunk = max_chunk;
    c->n_virtual = pc_model_total_len(m, 0);
    c->n_prefix = max_prefix(m);
    long positions = (long)c->n_prefix + c->n_virtual + max_len;
    if (positions > m->cfg.max_positions) {
        pc_fail(err, PC_ERR_USAGE,
                "kv cache: %d tokens + %d virtual + %d prefix positions exceed the model's max_position_embeddings %d",
                max_len, c->n_virtual, c->n_prefix, m->cfg.max_positions);
        pc_kv_cache_free(c);
        return PC_ERR_USAGE;
    }
    c->cap = (int)positions;
    size_t bytes = carve_cache(c, m, NULL);
    if (pc_arena_init(&c->arena, bytes, err) != PC_OK) {
        pc_kv_cache_free(c);
        return pc_error_prefix(err, "kv cache for %d tokens: ", max_len);
    }
    carve_cache(c, m, &c->arena);
    *out = c;
    return PC_OK;
}

void pc_kv_cache_free(pc_kv_cache *c) {
    if (!c) return;
    pc_arena_free(&c->arena);
    pc_free(c);
}

void pc_kv_cache_reset(pc_kv_cache *c) { c->len = 0; }

int pc_kv_cache_tokens(const pc_kv_cache *c) { return c->len > 0 ? c->len - c->n_virtual : 0; }

int pc_kv_cache_capacity(const pc_kv_cache *c) { return c->max_len; }

/* Hooks, projections and norms are model_blocks.c's, shared with training. */
static void norm_forward(const pc_model *m, pc_kv_cache *c, const pc_param *w, const pc_param *b, int R) {
    pc_norm_forward(m, c->ln, c->mean, c->rstd, c->x, w, b, R);
}

static void add_in_place(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* ---- one layer -------------------------------------------------------------------------------------- */

/* Layer l's cache row for sequence index `start` (negative: the prefix rows before position 0). */
static float *cache_rows(const pc_kv_cache *c, float *base, int l, int start, int kvd) {
    long row = (long)l * c->cap + c->n_prefix + start;
    return base + (size_t)row * (size_t)kvd;
}

/* ATTN_KV hooks (prefill only): their prefix [P,KVH,hd] goes into the rows just before position 0. */
static void attn_kv_prefix(pc_model *m, pc_kv_cache *c, int l, const chunk_shape *s, int kvd) {
    pc_site kv = pc_site_begin(PC_SITE_ATTN_KV, l, 0, &s->step);
    pc_hooks_forward(&m->layers[l].attn_kv, &kv, PC_PHASE_POST);
    /* As in training, a layer with a prefix has n_prefix rows of it (the longest over layers). */
    c->prefix_rows[l] = kv.prefix_k ? c->n_prefix : 0;
    if (!kv.prefix_k) return;
    size_t bytes = sizeof(float) * (size_t)c->n_prefix * (size_t)kvd;
    memcpy(cache_rows(c, c->k, l, -c->n_prefix, kvd), kv.prefix_k, bytes);
    memcpy(cache_rows(c, c->v, l, -c->n_prefix, kvd), kv.prefix_v, bytes);
}

static void attention_sublayer(pc_model *m, pc_kv_cache *c, int l, const chunk_shape *s) {
    const pc_model_config *cf = &m->cfg;
    pc_layer *L = &m->layers[l];
    int qd = cf->n_heads * cf->head_dim, kvd = cf->n_kv_heads * cf->head_dim, R = s->R;
    float *k = cache_rows(c, c->k, l, s->start, kvd), *v = cache_rows(c, c->v, l, s->start, kvd);
    if (L->lin[PC_LIN_QKV].in) {
        pc_linear_site_forward(m, &L->lin[PC_LIN_QKV], c->qkv, c->ln, &s->step);
        for (int n = 0; n < R; n++) { /* [q | k | v] per row */
            const float *row = c->qkv + (size_t)n * (size_t)(qd + 2 * kvd);
            memcpy(c->q + (size_t)n * qd, row, sizeof(float) * (size_t)qd);
            memcpy(k + (size_t)n * kvd, row + qd, sizeof(float) * (size_t)kvd);
            memcpy(v + (size_t)n * kvd, row + qd + kvd, sizeof(float) * (size_t)kvd);
        }
    } else {
        pc_linear_site_forward(m, &L->lin[PC_LIN_Q], c->q, c->ln, &s->step);
        pc_linear_site_forward(m, &L->lin[PC_LIN_K], k, c->ln, &s->step);
        pc_linear_site_forward(m, &L->lin[PC_LIN_V], v, c->ln, &s->step);
    }
    if (cf->arch->rope) { /* keys are cached after rotation: each is rotated once, at its own position */
        rope_forward(c->q, c->pos, m->rope_cos, m->rope_sin, R, cf->n_heads, cf->head_dim);
        rope_forward(k, c->pos, m->rope_cos, m->rope_sin, R, cf->n_kv_heads, cf->head_dim);
    }
    if (s->first) attn_kv_prefix(m, c, l, s, kvd);
    int P = c->prefix_rows[l];
    const float *k0 = cache_rows(c, c->k, l, -P, kvd), *v0 = cache_rows(c, c->v, l, -P, kvd);
    attention_cached(c->att, c->q, k0, v0, R, P + s->start + R, cf->n_heads, cf->n_kv_heads, cf->head_dim);
    pc_site ho = pc_site_begin(PC_SITE_HEAD_OUT, l, 0, &s->step);
    ho.out = c->att;
    ho.out_dim = qd;
    pc_hooks_forward(&L->head_out, &ho, PC_PHASE_POST);
    pc_linear_site_forward(m, &L->lin[PC_LIN_O], c->sub_out, c->att, &s->step);
    pc_sublayer_hooks_forward(m, l, PC_SUBLAYER_ATTN, &s->step, c->ln, c->sub_out);
}

static void mlp_sublayer(pc_model *m, pc_kv_cache *c, int l, const chunk_shape *s) {
    pc_mlp_forward(m, l, &s->step, c->ln, c->h1, c->h2, c->act, c->sub_out);
}

static void layer_forward(pc_model *m, pc_kv_cache *c, int l, const chunk_shape *s) {
    pc_layer *L = &m->layers[l];
    size_t RC = (size_t)s->R * (size_t)m->cfg.hidden;
    norm_forward(m, c, L->norm1_w, L->norm1_b, s->R);
    attention_sublayer(m, c, l, s);
    add_in_place(c->x, c->sub_out, RC);
    norm_forward(m, c, L->norm2_w, L->norm2_b, s->R);
    mlp_sublayer(m, c, l, s);
    add_in_place(c->x, c->sub_out, RC);
}

/* ---- a chunk through the whole model ------------------------------------------------------------------ */

/* Token embeddings; on the prefill chunk the INPUT hooks fill the virtual rows in front. */
static void embed_forward(pc_model *m, pc_kv_cache *c, const chunk_shape *s) {
    embedding_forward(c->x, c->ids, &m->embed->t, s->R, m->cfg.hidden, 0);
    if (s->first) pc_input_hooks_forward(m, c->x, &s->step);
    if (m->pos_embed) embedding_forward(c->x, c->pos, &m->pos_embed->t, s->R, m->cfg.hidden, 1);
}

/* Final norm and OUTPUT hooks over the chunk; logits [V] of its last row when asked. */
static void head_forward(pc_model *m, pc_kv_cache *c, const chunk_shape *s, float *logits) {
    norm_forward(m, c, m->final_norm_w, m->final_norm_b, s->R);
    pc_site out = pc_site_begin(PC_SITE_OUTPUT, -1, 0, &s->step);
    out.out = c->ln;
    out.out_dim = m->cfg.hidden;
    pc_hooks_forward(&m->output_hooks, &out, PC_PHASE_POST);
    if (logits)
        lmhead_logits(m->mm, logits, c->ln + (size_t)(s->R - 1) * (size_t)m->cfg.hidden, &m->lm_head->t, 1,
                      m->cfg.hidden, m->cfg.vocab_size);
}

/* n ≤ max_chunk real tokens; on an empty cache the virtual rows go first. */
static void chunk_forward(pc_model *m, pc_kv_cache *c, const int32_t *ids, int n, float *logits) {
    chunk_shape s = {0};
    s.first = c->len == 0;
    s.start = c->len;
    int nv = s.first ? c->n_virtual : 0;
    s.R = nv + n;
    s.step = (pc_step_shape){.B = 1, .T = s.R, .N = s.R, .P = c->n_prefix, .continuing = !s.first};
    for (int i = 0; i < s.R; i++) {
        c->ids[i] = i < nv ? 0 : ids[i - nv]; /* a virtual row's embedding is overwritten by its hook */
        c->pos[i] = c->n_prefix + s.start + i;
    }
    embed_forward(m, c, &s);
    for (int l = 0; l < m->cfg.n_layers; l++) layer_forward(m, c, l, &s);
    head_forward(m, c, &s, logits);
    c->len += s.R;
}

static pc_status check_append(const pc_model *m, const pc_kv_cache *c, const int32_t *ids, int n, pc_error *err) {
    if (c->model != m) return pc_fail(err, PC_ERR_USAGE, "kv cache: made for another model");
    if (!ids || n <= 0) return pc_fail(err, PC_ERR_USAGE, "kv cache: nothing to append");
    if (pc_model_total_len(m, 0) != c->n_virtual || max_prefix(m) != c->n_prefix)
        return pc_fail(err, PC_ERR_USAGE, "kv cache: the model's input/prefix hooks changed since the cache was made");
    int have = pc_kv_cache_tokens(c);
    if ((long)have + n > c->max_len)
        return pc_fail(err, PC_ERR_USAGE, "kv cache: %d tokens + %d new exceed its capacity of %d", have, n, c->max_len);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return pc_fail(err, PC_ERR_FORMAT, "token %d: id %d outside the vocabulary (%d)", have + i, ids[i],
                           m->cfg.vocab_size);
    return PC_OK;
}

pc_status pc_model_decode(pc_model *m, pc_kv_cache *c, const int32_t *ids, int n, float *logits, pc_error *err) {
    PC_TRY(check_append(m, c, ids, n, err));
    /* The decoder has its own activations, but hooks size their per-step buffers through the model's
     * planners; an activation plan for (1, max_chunk) — a no-op when a larger one exists — keeps the two in
     * step (so a method never sees more rows than it was planned for). */
    PC_TRY(pc_model_plan(m, 1, c->max_chunk, 0, err));
    PC_TRY(pc_model_ensure_positions(m, c->cap, err)); /* every position the cache can reach */
    for (int done = 0; done < n;) {
        int k = n - done < c->max_chunk ? n - done : c->max_chunk;
        chunk_forward(m, c, ids + done, k, done + k == n ? logits : NULL);
        done += k;
    }
    return PC_OK;
}

pc_status pc_model_prefill(pc_model *m, pc_kv_cache *c, const int32_t *ids, int n, float *logits, pc_error *err) {
    pc_kv_cache_reset(c);
    return pc_model_decode(m, c, ids, n, logits, err);
}

pc_status pc_model_decode_step(pc_model *m, pc_kv_cache *c, int32_t id, float *logits, pc_error *err) {
    return pc_model_decode(m, c, &id, 1, logits, err);
}
