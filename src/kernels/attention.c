/* Causal attention, flash style, with the queries along the vector lanes.
 *
 * Queries are taken ATT_BQ = 64 at a time (a query block) and keys ATT_BK = 64 at a time (a key tile); no
 * T×T matrix exists. A score tile is stored transposed, Sᵀ[key c][query lane r], so that everything a
 * softmax does per query (running maximum m, normaliser l, the exp, lse, D) is plain lane-wise vector
 * arithmetic over the rows of the tile, with no horizontal reductions. Forward keeps an online softmax per
 * lane and saves lse = m + log l; backward recomputes P = exp(S − lse) tile by tile (the standard
 * flash-attention backward with D_r = Σ_j dO_rj·O_rj).
 *
 * Keys are the prefix keys (P of them, attended by every query, placed before position 0) and then the
 * sequence positions s, visible to query t when s ≤ t and (no doc mask or doc[s] == doc[t]). Every query
 * sees at least itself, so every softmax row is non-empty. Prefix keys are tiled on their own, and sequence
 * tiles start at multiples of 64 like the query blocks, so a sequence tile is entirely visible (before
 * the block's diagonal), half visible (on it: the causal triangle) or skipped (after it). On the diagonal
 * the products also skip the masked half at a granularity of 16 lanes / one micro-tile row block; with a
 * doc mask a tile none of whose pairs is visible is skipped whole.
 *
 * Every product (K·Qᵀ, V·dOᵀ, P·V, dS·K, dSᵀ·Q, Pᵀ·dO) is one micro-GEMM (tile_gemm): ATT_MR rows × 64
 * columns of the result stay in registers while one operand is broadcast element by element, so K, V, P
 * and dS are read straight from their row-major tiles and only Q and dO (once per query block) are
 * transposed. When the head dimension hd is a multiple of 16, K, V, Q and dO rows are read in place;
 * otherwise they are copied into tiles zero-padded to hdp (a multiple of 16), whose padding contributes
 * exact zeros. All work is split so that each output element is written by one task in a
 * fixed order: results do not depend on the thread count or timing. */
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels/attention.h"
#include "kernels/simd.h"

/* The vector helpers below return 64-byte vectors; compilers warn that such a call's ABI differs between
 * instruction sets. They are always inlined, so no such call exists. (Helpers that would take vectors as
 * arguments are macros or take pointers: GCC's note about those cannot be silenced from the source.) */
#pragma GCC diagnostic ignored "-Wpsabi"

/* ATT_BQ == ATT_BK keeps sequence tiles aligned with query blocks. ATT_QV: vectors per tile row. ATT_MR:
 * rows of the micro-GEMM's register block (ATT_MR × 4 accumulators of 16 floats, out of 32 registers). */
enum { ATT_BQ = 64, ATT_BK = 64, ATT_QV = ATT_BQ / 16, ATT_MR = 6 };

typedef struct att_dims {
    int B, T, P, H, KVH, hd, hdp; /* hdp: hd rounded up to a multiple of 16 (packed row length) */
    float scale;
} att_dims;

/* Helpers are always inlined into the PC_SIMD_CLONES callers: a helper compiled on its own gets the base
 * instruction set only (the vector types below then become SSE pieces or scalar code, ~100x slower). */
#define ATT_INLINE static inline __attribute__((always_inline))

static inline int pad16(int n) { return (n + 15) & ~15; }

/* 16 lanes; aligned(4) lets them be loaded from and stored to any float address. GCC lowers the arithmetic
 * to whatever the clone's instruction set has (one zmm on AVX-512, two ymm on AVX2). */
typedef float att_vec __attribute__((vector_size(64), aligned(4)));
typedef int att_ivec __attribute__((vector_size(64), aligned(4)));
typedef unsigned att_uvec __attribute__((vector_size(64), aligned(4)));

ATT_INLINE att_vec vec_load(const float *p) { return *(const att_vec *)p; }
#define vec_store(p, x) ((void)(*(att_vec *)(p) = (x)))
ATT_INLINE att_ivec ivec_load(const int *p) { return *(const att_ivec *)p; }
ATT_INLINE att_vec vec_splat(float x) { return (att_vec){0} + x; }
ATT_INLINE att_ivec ivec_splat(int x) { return (att_ivec){0} + x; }
ATT_INLINE att_ivec lane_index(int v) { return (att_ivec){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15} + 16 * v; }
/* Lanes of `yes` where mask is all ones, of `no` where it is zero (masks come from vector comparisons).
 * Statement expressions, so that each argument is evaluated once. */
#define vec_select(mask, yes, no)                                                                             \
    ({                                                                                                        \
        att_ivec mask_ = (mask);                                                                              \
        (att_vec)(((att_ivec)(yes) & mask_) | ((att_ivec)(no) & ~mask_));                                     \
    })
#define vec_max(a, b)                                                                                         \
    ({                                                                                                        \
        att_vec a_ = (a), b_ = (b);                                                                           \
        vec_select(a_ > b_, a_, b_);                                                                          \
    })

/* pc_exp_approx (kernels/simd.h) lane-wise: the same range reduction x = n·ln2 + r and polynomial, for
 * x ≤ 88 (every caller passes a score minus its running maximum or minus lse, ≤ 0, or −inf), built from
 * the constants and polynomial simd.h defines for it. x is clamped to −87 first so 2^n stays normal;
 * exactly 0 below −87 (masked −inf scores give P = 0); NaN stays NaN. */
ATT_INLINE att_vec vec_exp(const att_vec *xp) {
    att_vec x = *xp;
    att_ivec tiny = x < -87.0f; /* result 0; NaN fails the test and stays NaN */
    att_vec xc = vec_select(tiny, vec_splat(-87.0f), x); /* keeps 2^n normal (n ≥ −126) */
    att_vec shifted = xc * PC_LOG2E + PC_EXP_ROUND;
    att_vec fn = shifted - PC_EXP_ROUND;
    att_vec r = xc - fn * PC_LN2_HI + fn * PC_LN2_LO;
    att_vec p = vec_splat(PC_EXP_C0);
    PC_EXP_HORNER(p, r);
    att_uvec n_biased = (att_uvec)shifted - (0x4B400000u - 127u); /* n + 127 */
    att_vec e = p * (att_vec)(n_biased << 23);
    return (att_vec)((att_ivec)e & ~tiny);
}

/* ---- micro-GEMM ------------------------------------------------------------------------------------- */

/* Which part of a diagonal tile a product may skip (the skipped part's operands are exact zeros, or its
 * results are masked afterwards). Rows i, columns j, inner index k of C[i][j] += Σ_k A(i,k)·B[k][j]. */
enum tile_shape {
    TILE_FULL,
    TILE_COLS_FROM_ROW, /* only j ≥ i is wanted (key rows × query lanes: scores of keys a query can see) */
    TILE_K_FROM_ROW,    /* A(i,k) = 0 for k < i */
    TILE_K_TO_ROW,      /* A(i,k) = 0 for k > i */
};

/* R rows × NV vectors of C over k0 ≤ k < k1, accumulators in registers (R, NV are constants after
 * inlining, so the loops unroll and the arrays become registers). */
ATT_INLINE void gemm_block(const int R, const int NV, int k0, int k1, const float *A, int ars, int acs,
                           const float *B, int ldb, float *C, int ldc, int accumulate) {
    att_vec acc[ATT_MR][ATT_QV];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[r][v] = accumulate ? vec_load(C + (size_t)r * ldc + 16 * v) : vec_splat(0.0f);
    for (int k = k0; k < k1; k++) {
        const float *brow = B + (size_t)k * ldb, *acol = A + (size_t)k * acs;
        att_vec b[ATT_QV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) b[v] = vec_load(brow + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            float a = acol[(size_t)r * ars];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) vec_store(C + (size_t)r * ldc + 16 * v, acc[r][v]);
}

/* One row block of R rows, its columns in chunks of up to ATT_QV vectors. */
ATT_INLINE void gemm_rows(const int R, int n, int j0, int k0, int k1, const float *A, int ars, int acs,
                          const float *B, int ldb, float *C, int ldc, int accumulate) {
    for (int j = j0; j < n; j += 16 * ATT_QV) {
        int nv = (n - j) / 16;
        if (nv >= 4) gemm_block(R, 4, k0, k1, A, ars, acs, B + j, ldb, C + j, ldc, accumulate);
        else if (nv == 3) gemm_block(R, 3, k0, k1, A, ars, acs, B + j, ldb, C + j, ldc, accumulate);
        else if (nv == 2) gemm_block(R, 2, k0, k1, A, ars, acs, B + j, ldb, C + j, ldc, accumulate);
        else gemm_block(R, 1, k0, k1, A, ars, acs, B + j, ldb, C + j, ldc, accumulate);
    }
}

/* C[m×n] (+)= A·B: A(i,k) = A[i·ars + k·acs] (so Aᵀ is just swapped strides), B row-major [kdim×n] with
 * ldb, C row-major with ldc, n a multiple of 16; accumulate = 0 overwrites C. Out of line (its own SIMD
 * clones): every product goes through this one function, called once per tile. */
PC_SIMD_CLONES __attribute__((noinline)) static void tile_gemm(int m, int n, int kdim, const float *A, int ars,
                                                                int acs, const float *B, int ldb, float *C,
                                                                int ldc, enum tile_shape shape, int accumulate) {
    for (int i0 = 0; i0 < m;) {
        int rows = m - i0 >= ATT_MR ? ATT_MR : m - i0 >= 4 ? 4 : 1;
        int k0 = 0, k1 = kdim, j0 = 0;
        if (shape == TILE_K_FROM_ROW) k0 = i0 < kdim ? i0 : kdim;
        if (shape == TILE_K_TO_ROW) k1 = i0 + rows < kdim ? i0 + rows : kdim;
        if (shape == TILE_COLS_FROM_ROW) j0 = i0 & ~15;
        const float *a = A + (size_t)i0 * ars;
        float *c = C + (size_t)i0 * ldc;
        if (rows == ATT_MR) gemm_rows(ATT_MR, n, j0, k0, k1, a, ars, acs, B, ldb, c, ldc, accumulate);
        else if (rows == 4) gemm_rows(4, n, j0, k0, k1, a, ars, acs, B, ldb, c, ldc, accumulate);
        else gemm_rows(1, n, j0, k0, k1, a, ars, acs, B, ldb, c, ldc, accumulate);
        i0 += rows;
    }
}

/* ---- tiles ------------------------------------------------------------------------------------------ */

/* One query block of one head. Qt is the B operand of the score tile (lanes = queries), pre-scaled so
 * that the tile is the scaled score; the other buffers are backward's. */
typedef struct att_qblock {
    int b, h, q0, nq;
    float *Qt;              /* [hdp][ATT_BQ] scale·Qᵀ, zero beyond hd and nq */
    float *dOt;             /* backward: dOᵀ [hdp][ATT_BQ] */
    const float *Q, *dO;    /* backward: Q and dO rows, ld apart (in place when hd is a multiple of 16) */
    int ld;
    float *Qbuf, *dObuf;    /* [ATT_BQ][hdp] room for padded copies */
    float lse[ATT_BQ];      /* backward: saved lse; +inf on padding lanes, so P = 0 there */
    float D[ATT_BQ];        /* backward: Σ_j dO·O */
    int doc[ATT_BQ];        /* doc ids of the queries (doc mask only) */
} att_qblock;

/* One key tile of one kv head: nk keys as rows ld apart, each at least hdp long with zeros after hd. When
 * hd is a multiple of 16 they are the rows of k and v themselves; otherwise copies, zero-padded, in the
 * task's buffers. */
typedef struct att_ktile {
    int nk, diag;         /* diag: the sequence tile whose positions are the query block's own (causal triangle) */
    int ld;               /* row stride of K and V */
    const int *doc;       /* doc ids of the keys, NULL when no doc mask applies (always NULL for prefix keys) */
    const float *K, *V;   /* [nk] rows */
    float *Kbuf, *Vbuf;   /* [ATT_BK][hdp] room for padded copies */
} att_ktile;

/* Lane indices for transpose16: row i takes row i+s's low half of each 2s-lane group (LOW), row i+s takes
 * row i's high half (HIGH); operand b's lanes are numbered 16 … 31. */
#define ATT_LOW8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define ATT_HIGH8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define ATT_LOW4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define ATT_HIGH4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define ATT_LOW2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define ATT_HIGH2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define ATT_LOW1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define ATT_HIGH1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define ATT_TRANSPOSE_LEVEL(rows, s, LOW, HIGH)                                                                  \
    for (int i = 0; i < 16; i++)                                                                              \
        if (!(i & (s))) {                                                                                     \
            att_vec a = rows[i], b = rows[i + (s)];                                                           \
            rows[i] = __builtin_shufflevector(a, b, LOW);                                                     \
            rows[i + (s)] = __builtin_shufflevector(a, b, HIGH);                                              \
        }

/* Transposes the 16×16 block held in rows[0..15] in place. Level s swaps the off-diagonal s×s blocks of
 * every 2s×2s block; after s = 8, 4, 2, 1 every element has moved from (i, j) to (j, i). Each step is one
 * two-source permute per row. */
ATT_INLINE void transpose16(att_vec rows[16]) {
    ATT_TRANSPOSE_LEVEL(rows, 8, ATT_LOW8, ATT_HIGH8)
    ATT_TRANSPOSE_LEVEL(rows, 4, ATT_LOW4, ATT_HIGH4)
    ATT_TRANSPOSE_LEVEL(rows, 2, ATT_LOW2, ATT_HIGH2)
    ATT_TRANSPOSE_LEVEL(rows, 1, ATT_LOW1, ATT_HIGH1)
}

/* Xt[j][r] = scale·x_r[j] for r < n, j < hd; zero elsewhere. x_r = x + r·stride. 16×16 blocks are
 * transposed in registers; a head dimension that is not a multiple of 16 has its last columns copied one
 * element at a time. */
ATT_INLINE void pack_transposed(float *restrict Xt, const float *restrict x, size_t stride, int n, const att_dims *d,
                                float scale) {
    int hd = d->hd, full = hd & ~15;
    if (full < d->hdp) memset(Xt + (size_t)full * ATT_BQ, 0, sizeof(float) * (size_t)(d->hdp - full) * ATT_BQ);
    for (int r0 = 0; r0 < ATT_BQ; r0 += 16)
        for (int j0 = 0; j0 < full; j0 += 16) {
            att_vec blk[16];
            for (int i = 0; i < 16; i++)
                blk[i] = r0 + i < n ? scale * vec_load(x + (size_t)(r0 + i) * stride + j0) : vec_splat(0.0f);
            transpose16(blk);
            for (int i = 0; i < 16; i++) vec_store(Xt + (size_t)(j0 + i) * ATT_BQ + r0, blk[i]);
        }
    for (int r = 0; r < n; r++)
        for (int j = full; j < hd; j++) Xt[j * ATT_BQ + r] = scale * x[(size_t)r * stride + j];
}

/* rows[r][j] = x_r[j] for r < n, zero for hd ≤ j < hdp. */
ATT_INLINE void pack_rows(float *restrict rows, const float *restrict x, size_t stride, int n, const att_dims *d) {
    int hd = d->hd, hdp = d->hdp, full = hd & ~15;
    for (int r = 0; r < n; r++) {
        float *o = rows + (size_t)r * hdp;
        const float *row = x + (size_t)r * stride;
        int j = 0;
        for (; j < full; j += 16) vec_store(o + j, vec_load(row + j));
        for (; j < hd; j++) o[j] = row[j];
        for (; j < hdp; j++) o[j] = 0.0f;
    }
}

/* Keys u0 … u0+nk−1 of kv head kvh: prefix keys when `prefix`, else sequence positions of row b. */
ATT_INLINE void load_key_tile(att_ktile *kt, const float *k, const float *v, const float *prefix_k,
                              const float *prefix_v, const int *doc, const att_dims *d, int b, int kvh, int prefix,
                              int u0, int nk, int diag) {
    size_t stride = (size_t)d->KVH * d->hd;
    size_t off = prefix ? ((size_t)u0 * d->KVH + kvh) * d->hd : (((size_t)b * d->T + u0) * d->KVH + kvh) * d->hd;
    const float *K = (prefix ? prefix_k : k) + off, *V = (prefix ? prefix_v : v) + off;
    if (d->hd == d->hdp) {
        kt->K = K, kt->V = V, kt->ld = (int)stride;
    } else {
        pack_rows(kt->Kbuf, K, stride, nk, d);
        pack_rows(kt->Vbuf, V, stride, nk, d);
        kt->K = kt->Kbuf, kt->V = kt->Vbuf, kt->ld = d->hdp;
    }
    kt->nk = nk;
    kt->diag = diag;
    kt->doc = doc && !prefix ? doc + (size_t)b * d->T + u0 : NULL;
}

/* Whether any real query of the block sees any key of the tile (only a doc mask can make it false). */
ATT_INLINE int tile_visible(const att_ktile *kt, const att_qblock *qb) {
    if (!kt->doc) return 1;
    att_ivec any = ivec_splat(0);
    for (int c = 0; c < kt->nk; c++)
        for (int v = 0; v < ATT_QV; v++) {
            att_ivec lane = lane_index(v), seen = (ivec_load(qb->doc + 16 * v) == kt->doc[c]) & (lane < qb->nq);
            if (kt->diag) seen &= lane >= c;
            any |= seen;
        }
    for (int i = 0; i < 16; i++)
        if (any[i]) return 1;
    return 0;
}

/* Rows (keys) of the tile that lanes 16v … 16v+15 may see: on the diagonal no lane sees a key after
 * itself, so rows ≥ 16v+16 are invisible to the whole vector; every pass below stops there and writes 0
 * (P, dS) for the rest instead of computing exp(−inf). */
ATT_INLINE int lane_rows(const att_ktile *kt, int v) {
    int n = 16 * v + 16;
    return kt->diag && n < kt->nk ? n : kt->nk;
}

/* Sᵀ[c][r] = scale·Q_r·K_c for the tile, −inf where key c is invisible to query r (on the diagonal this
 * covers the columns tile_gemm skipped, whatever they held). Rows past lane_rows are left as they come, and
 * so are padding lanes. */
ATT_INLINE void score_tile(float *S, const att_ktile *kt, const att_qblock *qb, const att_dims *d) {
    tile_gemm(kt->nk, ATT_BQ, d->hdp, kt->K, kt->ld, 1, qb->Qt, ATT_BQ, S, ATT_BQ,
              kt->diag ? TILE_COLS_FROM_ROW : TILE_FULL, 0);
    if (!kt->diag && !kt->doc) return;
    for (int v = 0; v < ATT_QV; v++)
        for (int c = 0; c < lane_rows(kt, v); c++) {
            att_ivec seen = ivec_splat(-1);
            if (kt->diag) seen &= lane_index(v) >= c;
            if (kt->doc) seen &= ivec_load(qb->doc + 16 * v) == kt->doc[c];
            float *s = S + c * ATT_BQ + 16 * v;
            vec_store(s, vec_select(seen, vec_load(s), vec_splat(-INFINITY)));
        }
}

/* ---- forward ---------------------------------------------------------------------------------------- */

/* Running softmax state of a query block, per lane. */
typedef struct att_online {
    float m[ATT_BQ], l[ATT_BQ]; /* running maximum and normaliser */
    float *O;                   /* [ATT_BQ][hdp] unnormalised output rows */
} att_online;

/* Folds one masked score tile into the running state: S becomes P = exp(S − m_new), and the output rows
 * are rescaled by exp(m_old − m_new) before P·V is added. A lane that has seen no visible key yet keeps
 * m = −inf; it shifts by 0 so that −inf − (−inf) never makes a NaN. */
ATT_INLINE void online_softmax_tile(att_online *st, float *S, const att_ktile *kt, const att_qblock *qb,
                                    const att_dims *d) {
    float corr[ATT_BQ];
    att_ivec rescale = ivec_splat(0); /* lanes whose maximum moved */
    for (int v = 0; v < ATT_QV; v++) {
        /* four running maxima: one would be a chain of dependent compare-and-blends */
        att_vec mx[4] = {vec_splat(-INFINITY), vec_splat(-INFINITY), vec_splat(-INFINITY), vec_splat(-INFINITY)};
        int c = 0, rows = lane_rows(kt, v);
        for (; c + 4 <= rows; c += 4)
            for (int i = 0; i < 4; i++) mx[i] = vec_max(mx[i], vec_load(S + (c + i) * ATT_BQ + 16 * v));
        for (; c < rows; c++) mx[0] = vec_max(mx[0], vec_load(S + c * ATT_BQ + 16 * v));
        att_vec tile_max = vec_max(vec_max(mx[0], mx[1]), vec_max(mx[2], mx[3]));
        att_vec m_old = vec_load(st->m + 16 * v), m_new = vec_max(m_old, tile_max);
        att_vec shift = vec_select(m_new == -INFINITY, vec_splat(0.0f), m_new), sum = vec_splat(0.0f);
        att_vec moved = m_old - shift, cr = vec_exp(&moved); /* 0 on a lane's first visible tile */
        for (c = 0; c < rows; c++) {
            float *s = S + c * ATT_BQ + 16 * v;
            att_vec shifted = vec_load(s) - shift, p = vec_exp(&shifted);
            vec_store(s, p);
            sum += p;
        }
        for (; c < kt->nk; c++) vec_store(S + c * ATT_BQ + 16 * v, vec_splat(0.0f));
        vec_store(st->l + 16 * v, vec_load(st->l + 16 * v) * cr + sum);
        vec_store(st->m + 16 * v, m_new);
        vec_store(corr + 16 * v, cr);
        rescale |= cr != 1.0f;
    }
    int any_rescale = 0; /* once the maxima settle, O·1 would change nothing: skip it */
    for (int i = 0; i < 16; i++) any_rescale |= rescale[i];
    for (int r = 0; r < qb->nq && any_rescale; r++)
        for (int j = 0; j < d->hdp; j += 16) vec_store(st->O + r * d->hdp + j, vec_load(st->O + r * d->hdp + j) * corr[r]);
    /* O += P·V, P read as Pᵀ's columns */
    tile_gemm(qb->nq, d->hdp, kt->nk, S, 1, ATT_BQ, kt->V, kt->ld, st->O, d->hdp,
              kt->diag ? TILE_K_TO_ROW : TILE_FULL, 1);
}

/* One (batch b, head h, query block q0 …): prefix tiles, then the sequence tiles up to the diagonal. */
PC_SIMD_CLONES static void forward_block(float *out, float *lse, const float *q, const float *k, const float *v,
                                         const float *prefix_k, const float *prefix_v, const int *doc,
                                         const att_dims *d, int b, int h, int q0) {
    int hd = d->hd, hdp = d->hdp, kvh = h / (d->H / d->KVH), copies = hd == hdp ? 1 : ATT_BK * hdp;
    float Qt[hdp * ATT_BQ], Kr[copies], Vr[copies], O[ATT_BQ * hdp], S[ATT_BK * ATT_BQ];
    att_qblock qb = {b, h, q0, d->T - q0 < ATT_BQ ? d->T - q0 : ATT_BQ, Qt, NULL, NULL, NULL, 0, NULL, NULL, {0}, {0}, {0}};
    att_ktile kt = {0, 0, 0, NULL, NULL, NULL, Kr, Vr};
    att_online st;
    st.O = O;
    const float *qrow0 = q + (((size_t)b * d->T + q0) * d->H + h) * hd;
    pack_transposed(Qt, qrow0, (size_t)d->H * hd, qb.nq, d, d->scale);
    if (doc)
        for (int r = 0; r < ATT_BQ; r++) qb.doc[r] = doc[(size_t)b * d->T + q0 + (r < qb.nq ? r : 0)];
    for (int r = 0; r < ATT_BQ; r++) st.m[r] = -INFINITY, st.l[r] = 0.0f;
    memset(O, 0, sizeof O);
    for (int u0 = 0; u0 < d->P; u0 += ATT_BK) {
        load_key_tile(&kt, k, v, prefix_k, prefix_v, doc, d, b, kvh, 1, u0, d->P - u0 < ATT_BK ? d->P - u0 : ATT_BK, 0);
        score_tile(S, &kt, &qb, d);
        online_softmax_tile(&st, S, &kt, &qb, d);
    }
    for (int s0 = 0; s0 <= q0; s0 += ATT_BK) {
        load_key_tile(&kt, k, v, prefix_k, prefix_v, doc, d, b, kvh, 0, s0, d->T - s0 < ATT_BK ? d->T - s0 : ATT_BK,
                      s0 == q0);
        if (!tile_visible(&kt, &qb)) continue;
        score_tile(S, &kt, &qb, d);
        online_softmax_tile(&st, S, &kt, &qb, d);
    }
    for (int r = 0; r < qb.nq; r++) {
        float *o = out + (((size_t)b * d->T + q0 + r) * d->H + h) * hd, inv = 1.0f / st.l[r];
        int j = 0;
        for (; j + 16 <= hd; j += 16) vec_store(o + j, vec_load(O + r * hdp + j) * inv);
        for (; j < hd; j++) o[j] = O[r * hdp + j] * inv;
        lse[((size_t)b * d->H + h) * d->T + q0 + r] = st.m[r] + logf(st.l[r]);
    }
}

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const float *prefix_k, const float *prefix_v, const int *doc, int B, int T, int P, int H,
                       int KVH, int hd) {
    att_dims d = {B, T, P, H, KVH, hd, pad16(hd), 1.0f / sqrtf((float)hd)};
    int n_qblocks = (T + ATT_BQ - 1) / ATT_BQ;
    long tasks = (long)B * H * n_qblocks;
    /* Later query blocks see more keys: dynamic scheduling, largest blocks first. */
#pragma omp parallel for schedule(dynamic, 1)
    for (long task = 0; task < tasks; task++) {
        int qblock = n_qblocks - 1 - (int)(task / ((long)B * H));
        int bh = (int)(task % ((long)B * H));
        forward_block(out, lse, q, k, v, prefix_k, prefix_v, doc, &d, bh / H, bh % H, qblock * ATT_BQ);
    }
}

/* ---- backward --------------------------------------------------------------------------------------- */

/* Loads everything one query block needs in backward: Qᵀ (scaled, exactly as forward had it, so the
 * recomputed scores match the saved lse), Q and dO as rows, dOᵀ, lse and D = Σ_j dO·O. */
ATT_INLINE void load_query_block(att_qblock *qb, const float *q, const float *dout, const float *out,
                                 const float *lse, const int *doc, const att_dims *d, int b, int h, int q0) {
    int hd = d->hd;
    size_t stride = (size_t)d->H * hd, off = (((size_t)b * d->T + q0) * d->H + h) * hd;
    qb->b = b, qb->h = h, qb->q0 = q0, qb->nq = d->T - q0 < ATT_BQ ? d->T - q0 : ATT_BQ;
    pack_transposed(qb->Qt, q + off, stride, qb->nq, d, d->scale);
    if (d->hd == d->hdp) {
        qb->Q = q + off, qb->dO = dout + off, qb->ld = (int)stride;
    } else {
        pack_rows(qb->Qbuf, q + off, stride, qb->nq, d);
        pack_rows(qb->dObuf, dout + off, stride, qb->nq, d);
        qb->Q = qb->Qbuf, qb->dO = qb->dObuf, qb->ld = d->hdp;
    }
    pack_transposed(qb->dOt, dout + off, stride, qb->nq, d, 1.0f);
    for (int r = 0; r < ATT_BQ; r++) {
        qb->lse[r] = INFINITY, qb->D[r] = 0.0f;
        if (doc) qb->doc[r] = doc[(size_t)b * d->T + q0 + (r < qb->nq ? r : 0)];
    }
    for (int r = 0; r < qb->nq; r++) {
        const float *o = out + off + (size_t)r * stride, *g = dout + off + (size_t)r * stride;
        att_vec part = vec_splat(0.0f);
        float D = 0.0f;
        int j = 0;
        for (; j + 16 <= hd; j += 16) part += vec_load(g + j) * vec_load(o + j);
        for (; j < hd; j++) D += g[j] * o[j];
        for (int i = 0; i < 16; i++) D += part[i];
        qb->D[r] = D;
        qb->lse[r] = lse[((size_t)b * d->H + h) * d->T + q0 + r];
    }
}

/* Scratch of one backward task: the two tiles Pᵀ and scale·dSᵀ, [ATT_BK][ATT_BQ] each. */
typedef struct att_bscratch {
    float *S, *dS;
} att_bscratch;

/* Where one tile's gradients go. tile_gemm accumulates straight into the gradient tensors when their rows
 * need no padding (hd a multiple of 16); otherwise into zero-padded scratch rows (ld = hdp) that the caller
 * adds with add_rows. NULL: not wanted. */
typedef struct att_grad_dst {
    float *dQ;      /* [nq] rows, ldq apart */
    float *dK, *dV; /* [nk] rows, ldkv apart */
    int ldq, ldkv, kv_accumulate; /* kv_accumulate = 0: dK, dV are scratch and are overwritten */
} att_grad_dst;

/* One key tile against one query block: Pᵀ = exp(Sᵀ − lse), dSᵀ = Pᵀ ⊙ (V·dOᵀ − D) (with the scale);
 * dQ += scale·dS·K, dK (+)= scale·dSᵀ·Q, dV (+)= Pᵀ·dO. */
ATT_INLINE void backward_tile(const att_qblock *qb, const att_ktile *kt, const att_dims *d, const att_bscratch *w,
                              const att_grad_dst *g) {
    int hdp = d->hdp, nk = kt->nk;
    score_tile(w->S, kt, qb, d);
    for (int v = 0; v < ATT_QV; v++) {
        att_vec L = vec_load(qb->lse + 16 * v);
        int c = 0;
        for (; c < lane_rows(kt, v); c++) {
            float *s = w->S + c * ATT_BQ + 16 * v;
            att_vec shifted = vec_load(s) - L;
            vec_store(s, vec_exp(&shifted)); /* masked: exp(−inf) = 0 */
        }
        for (; c < nk; c++) vec_store(w->S + c * ATT_BQ + 16 * v, vec_splat(0.0f));
    }
    tile_gemm(nk, ATT_BQ, hdp, kt->V, kt->ld, 1, qb->dOt, ATT_BQ, w->dS, ATT_BQ,
              kt->diag ? TILE_COLS_FROM_ROW : TILE_FULL, 0); /* dPᵀ = V·dOᵀ */
    for (int v = 0; v < ATT_QV; v++) {
        att_vec D = vec_load(qb->D + 16 * v);
        int c = 0;
        for (; c < lane_rows(kt, v); c++) {
            float *ds = w->dS + c * ATT_BQ + 16 * v;
            att_vec p = vec_load(w->S + c * ATT_BQ + 16 * v);
            /* 0 where P = 0, also over the diagonal tile's skipped (never written) columns of dPᵀ */
            vec_store(ds, vec_select(p != 0.0f, d->scale * p * (vec_load(ds) - D), vec_splat(0.0f)));
        }
        for (; c < nk; c++) vec_store(w->dS + c * ATT_BQ + 16 * v, vec_splat(0.0f));
    }
    if (g->dQ) /* dQ += scale·dS·K, dS read as dSᵀ's columns */
        tile_gemm(qb->nq, hdp, nk, w->dS, 1, ATT_BQ, kt->K, kt->ld, g->dQ, g->ldq, kt->diag ? TILE_K_TO_ROW : TILE_FULL, 1);
    enum tile_shape krow = kt->diag ? TILE_K_FROM_ROW : TILE_FULL;
    if (g->dK) tile_gemm(nk, hdp, qb->nq, w->dS, ATT_BQ, 1, qb->Q, qb->ld, g->dK, g->ldkv, krow, g->kv_accumulate);
    if (g->dV) tile_gemm(nk, hdp, qb->nq, w->S, ATT_BQ, 1, qb->dO, qb->ld, g->dV, g->ldkv, krow, g->kv_accumulate);
}

/* dst_c += rows[c] for the n rows of a scratch tile (dst rows `stride` apart). */
ATT_INLINE void add_rows(float *restrict dst, size_t stride, const float *restrict rows, int n, const att_dims *d) {
    int hd = d->hd, hdp = d->hdp, full = hd & ~15;
    for (int c = 0; c < n; c++) {
        float *o = dst + (size_t)c * stride;
        const float *x = rows + (size_t)c * hdp;
        int j = 0;
        for (; j < full; j += 16) vec_store(o + j, vec_load(o + j) + vec_load(x + j));
        for (; j < hd; j++) o[j] += x[j];
    }
}

/* Gradient destinations for a tile whose key rows start at dk_rows / dv_rows (NULL: not wanted). */
ATT_INLINE att_grad_dst kv_grad_dst(float *dk_rows, float *dv_rows, float *dK_scratch, float *dV_scratch,
                                    const att_dims *d) {
    int direct = d->hd == d->hdp;
    att_grad_dst g = {NULL, NULL, NULL, 0, direct ? d->KVH * d->hd : d->hdp, direct};
    if (dk_rows) g.dK = direct ? dk_rows : dK_scratch;
    if (dv_rows) g.dV = direct ? dv_rows : dV_scratch;
    return g;
}

/* What one pass-1 task owns, in 64-row blocks: dq of query blocks [q_lo, q_hi) and dk, dv of key tiles
 * [k_lo, k_hi), for kv head kvh of batch row b and the query heads that read it. A whole group owns both
 * ranges entirely. */
typedef struct att_part {
    int b, kvh, q_lo, q_hi, k_lo, k_hi;
} att_part;

/* Pass 1: every (query block, key tile) pair whose dq rows or dk/dv rows the part owns, in the same order
 * as for a whole group, so each gradient element receives its terms in the same sequence however the
 * group is split. Prefix keys contribute to dq here; their own gradients are pass 2's. */
PC_SIMD_CLONES static void backward_part(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                         const float *lse, const float *q, const float *k, const float *v,
                                         const float *prefix_k, const float *prefix_v, const int *doc,
                                         const att_dims *d, att_part part) {
    int hd = d->hd, hdp = d->hdp, group = d->H / d->KVH, direct = hd == hdp, b = part.b, kvh = part.kvh;
    int copies = direct ? 1 : ATT_BK * hdp; /* padded copies and scratch gradients: only when not direct */
    size_t kv_stride = (size_t)d->KVH * hd;
    float Qt[hdp * ATT_BQ], Qr[copies], dOt[hdp * ATT_BQ], dOr[copies], dQ[copies];
    float Kr[copies], Vr[copies], dK[copies], dV[copies], S[ATT_BK * ATT_BQ], dS[ATT_BK * ATT_BQ];
    att_qblock qb = {0, 0, 0, 0, Qt, dOt, NULL, NULL, 0, Qr, dOr, {0}, {0}, {0}};
    att_ktile kt = {0, 0, 0, NULL, NULL, NULL, Kr, Vr};
    att_bscratch w = {S, dS};
    for (int h = kvh * group; h < (kvh + 1) * group; h++)
        for (int qi = 0; qi * ATT_BQ < d->T; qi++) {
            int own_q = qi >= part.q_lo && qi < part.q_hi;
            if (!own_q && qi < part.k_lo) continue; /* no pair of this block is ours */
            int q0 = qi * ATT_BQ;
            load_query_block(&qb, q, dout, out, lse, doc, d, b, h, q0);
            float *dq_rows = dq + (((size_t)b * d->T + q0) * d->H + h) * hd;
            att_grad_dst only_dq = {NULL, NULL, NULL, direct ? d->H * hd : hdp, 0, 0};
            if (own_q) only_dq.dQ = direct ? dq_rows : dQ;
            if (own_q && !direct) memset(dQ, 0, sizeof dQ);
            for (int u0 = 0; u0 < d->P && own_q; u0 += ATT_BK) {
                load_key_tile(&kt, k, v, prefix_k, prefix_v, doc, d, b, kvh, 1, u0,
                              d->P - u0 < ATT_BK ? d->P - u0 : ATT_BK, 0);
                backward_tile(&qb, &kt, d, &w, &only_dq);
            }
            for (int ki = 0; ki <= qi; ki++) {
                int own_k = ki >= part.k_lo && ki < part.k_hi, s0 = ki * ATT_BK;
                if (!own_q && !own_k) continue;
                load_key_tile(&kt, k, v, prefix_k, prefix_v, doc, d, b, kvh, 0, s0,
                              d->T - s0 < ATT_BK ? d->T - s0 : ATT_BK, ki == qi);
                if (!tile_visible(&kt, &qb)) continue;
                size_t koff = (((size_t)b * d->T + s0) * d->KVH + kvh) * hd;
                float *dk_rows = dk && own_k ? dk + koff : NULL, *dv_rows = dv && own_k ? dv + koff : NULL;
                att_grad_dst g = kv_grad_dst(dk_rows, dv_rows, dK, dV, d);
                g.dQ = only_dq.dQ, g.ldq = only_dq.ldq;
                if (!g.dQ && !g.dK && !g.dV) continue;
                backward_tile(&qb, &kt, d, &w, &g);
                if (!direct && dk_rows) add_rows(dk_rows, kv_stride, dK, kt.nk, d);
                if (!direct && dv_rows) add_rows(dv_rows, kv_stride, dV, kt.nk, d);
            }
            if (own_q && !direct) add_rows(dq_rows, (size_t)d->H * hd, dQ, qb.nq, d);
        }
}

/* Where to split a group of n blocks in two parts of similar cost: the low part owns blocks [0, s) as
 * queries and keys, the high part [s, n). A pair (query block ≥ s, key tile < s) is then computed by
 * both: by the low part for dk, dv (four of the five products) and by the high part for dq (three), so a
 * split group costs more in total; it pays when it lets both threads finish together. Costs in units of
 * one product of a pair. */
static int split_block(int n) {
    int best = 1;
    long best_cost = -1;
    for (int s = 1; s < n; s++) {
        long low = 5L * s * (s + 1) / 2 + 4L * (n - s) * s, high = 5L * (n - s) * (n - s + 1) / 2 + 3L * (n - s) * s;
        long cost = low > high ? low : high;
        if (best_cost < 0 || cost < best_cost) best = s, best_cost = cost;
    }
    return best;
}

/* Pass 2, one task per kv head: prefix key/value gradients summed over every batch row and query head that
 * reads them (they are shared across the batch, so per-(b, kvh) tasks would race). */
PC_SIMD_CLONES static void backward_prefix(float *dprefix_k, float *dprefix_v, const float *dout, const float *out,
                                           const float *lse, const float *q, const float *k, const float *v,
                                           const float *prefix_k, const float *prefix_v, const int *doc,
                                           const att_dims *d, int kvh) {
    int hd = d->hd, hdp = d->hdp, group = d->H / d->KVH, direct = hd == hdp;
    int copies = direct ? 1 : ATT_BK * hdp; /* padded copies and scratch gradients: only when not direct */
    size_t kv_stride = (size_t)d->KVH * hd;
    float Qt[hdp * ATT_BQ], Qr[copies], dOt[hdp * ATT_BQ], dOr[copies];
    float Kr[copies], Vr[copies], dK[copies], dV[copies], S[ATT_BK * ATT_BQ], dS[ATT_BK * ATT_BQ];
    att_qblock qb = {0, 0, 0, 0, Qt, dOt, NULL, NULL, 0, Qr, dOr, {0}, {0}, {0}};
    att_ktile kt = {0, 0, 0, NULL, NULL, NULL, Kr, Vr};
    att_bscratch w = {S, dS};
    for (int b = 0; b < d->B; b++)
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
            for (int q0 = 0; q0 < d->T; q0 += ATT_BQ) {
                load_query_block(&qb, q, dout, out, lse, doc, d, b, h, q0);
                for (int u0 = 0; u0 < d->P; u0 += ATT_BK) {
                    load_key_tile(&kt, k, v, prefix_k, prefix_v, doc, d, b, kvh, 1, u0,
                                  d->P - u0 < ATT_BK ? d->P - u0 : ATT_BK, 0);
                    size_t poff = ((size_t)u0 * d->KVH + kvh) * hd;
                    att_grad_dst g = kv_grad_dst(dprefix_k ? dprefix_k + poff : NULL,
                                                 dprefix_v ? dprefix_v + poff : NULL, dK, dV, d);
                    backward_tile(&qb, &kt, d, &w, &g);
                    if (!direct && dprefix_k) add_rows(dprefix_k + poff, kv_stride, dK, kt.nk, d);
                    if (!direct && dprefix_v) add_rows(dprefix_v + poff, kv_stride, dV, kt.nk, d);
                }
            }
}

void attention_backward(float *dq, float *dk, float *dv, float *dprefix_k, float *dprefix_v, const float *dout,
                        const float *out, const float *lse, const float *q, const float *k, const float *v,
                        const float *prefix_k, const float *prefix_v, const int *doc, int B, int T, int P, int H,
                        int KVH, int hd) {
    att_dims d = {B, T, P, H, KVH, hd, pad16(hd), 1.0f / sqrtf((float)hd)};
    /* Pass 1 has one task per (b, kv head) group. When the groups do not divide among the threads and there
     * are few rounds of them (B = 1 with 3 kv heads on 2 threads: one thread would get two groups, the other
     * one), the last groups % threads groups are split in two parts each, run last. */
    int groups = B * KVH, n_blocks = (T + ATT_BQ - 1) / ATT_BQ, threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    int n_split = groups < 4 * threads && n_blocks >= 2 ? groups % threads : 0, s = split_block(n_blocks);
    int tasks = groups + n_split;
#pragma omp parallel for schedule(dynamic, 1)
    for (int task = 0; task < tasks; task++) {
        int whole = groups - n_split, g = task < whole ? task : whole + (task - whole) / 2;
        att_part part = {g / KVH, g % KVH, 0, n_blocks, 0, n_blocks};
        if (task >= whole && (task - whole) % 2 == 0) part.q_hi = part.k_hi = s;
        if (task >= whole && (task - whole) % 2 == 1) part.q_lo = part.k_lo = s;
        backward_part(dq, dk, dv, dout, out, lse, q, k, v, prefix_k, prefix_v, doc, &d, part);
    }
    if (P > 0 && (dprefix_k || dprefix_v)) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int kvh = 0; kvh < KVH; kvh++)
            backward_prefix(dprefix_k, dprefix_v, dout, out, lse, q, k, v, prefix_k, prefix_v, doc, &d, kvh);
    }
}

/* ---- decoding with a KV cache ----------------------------------------------------------------------- */

enum { CACHED_BK = 256 };

static inline float dot(const float *a, const float *b, int n) {
    float part[16] = {0}, s = 0.0f;
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) part[j] += a[i + j] * b[i + j];
    for (; i < n; i++) s += a[i] * b[i];
    for (int j = 0; j < 16; j++) s += part[j];
    return s;
}

/* One query row against keys 0 … n_keys−1, online softmax over blocks of CACHED_BK keys. */
PC_SIMD_CLONES static void cached_row(float *o, const float *qrow, const float *kcache, const float *vcache,
                                      int n_keys, int KVH, int kvh, int hd, float scale) {
    float s[CACHED_BK], m = -INFINITY, l = 0.0f;
    for (int j = 0; j < hd; j++) o[j] = 0.0f;
    for (int u0 = 0; u0 < n_keys; u0 += CACHED_BK) {
        int nk = n_keys - u0 < CACHED_BK ? n_keys - u0 : CACHED_BK;
        float block_max = -INFINITY;
        for (int c = 0; c < nk; c++) {
            s[c] = scale * dot(qrow, kcache + ((size_t)(u0 + c) * KVH + kvh) * hd, hd);
            block_max = s[c] > block_max ? s[c] : block_max;
        }
        float m_new = block_max > m ? block_max : m, correction = pc_exp_approx(m - m_new), sum = 0.0f;
        for (int j = 0; j < hd; j++) o[j] *= correction;
        for (int c = 0; c < nk; c++) {
            float p = pc_exp_approx(s[c] - m_new);
            sum += p;
            const float *vrow = vcache + ((size_t)(u0 + c) * KVH + kvh) * hd;
            for (int j = 0; j < hd; j++) o[j] += p * vrow[j];
        }
        l = l * correction + sum;
        m = m_new;
    }
    float inv = 1.0f / l;
    for (int j = 0; j < hd; j++) o[j] *= inv;
}

void attention_cached(float *out, const float *q, const float *kcache, const float *vcache, int Tn, int S, int H,
                      int KVH, int hd) {
    float scale = 1.0f / sqrtf((float)hd);
    int group = H / KVH;
#pragma omp parallel for schedule(static)
    for (int task = 0; task < Tn * H; task++) {
        int i = task / H, h = task % H;
        size_t off = ((size_t)i * H + h) * hd;
        cached_row(out + off, q + off, kcache, vcache, S - Tn + i + 1, KVH, h / group, hd, scale);
    }
}
