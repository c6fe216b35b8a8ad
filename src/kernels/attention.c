/* Causal attention, flash style: queries are taken ATT_BQ rows at a time and keys ATT_BK at a time; each
 * key block updates a running row maximum m, normaliser l and output accumulator (online softmax), so only
 * a BQ×BK score tile exists, never T×T. Forward saves lse = m + log l per query row; backward recomputes
 * P = exp(S − lse) tile by tile (standard flash-attention backward with D_i = Σ_d dO_id·O_id).
 *
 * Keys are numbered u = 0 … P+T−1: u < P are the prefix keys (attended by every query, before position
 * 0), u ≥ P is sequence position s = u − P, visible to query t when s ≤ t and (no doc mask or
 * doc[s] == doc[t]). Every query sees at least itself, so every softmax row is non-empty.
 *
 * Every product inside a tile (Q·Kᵀ, P·V, dO·Vᵀ, dS·K, dSᵀ·Q, Pᵀ·dO) goes through one register-blocked
 * micro-GEMM (tile_gemm): 4 rows × 32 columns of the result stay in registers for the whole inner
 * dimension, so each loaded vector feeds several FMAs (the element-at-a-time loops this replaced loaded and
 * stored an accumulator per FMA and ran at 10–20 GFLOP/s per core). Tiles are copied into contiguous
 * buffers whose head dimension is zero-padded to hdp (a multiple of 16), so the micro-GEMM needs no edge
 * cases in its column loop; the padding contributes exact zeros. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kernels/attention.h"
#include "kernels/simd.h"

enum { ATT_BQ = 32, ATT_BK = 64 };

typedef struct att_dims {
    int B, T, P, H, KVH, hd, hdp; /* hdp: hd rounded up to a multiple of 16 (tile row length) */
    float scale;
} att_dims;

/* Helpers are always inlined into the PC_SIMD_CLONES callers: a helper compiled on its own gets the base
 * instruction set only (the vector type below then becomes SSE pieces or scalar code, ~100x slower). */
#define ATT_INLINE static inline __attribute__((always_inline))

static inline int pad16(int n) { return (n + 15) & ~15; }

ATT_INLINE const float *key_row(const float *seq, const float *prefix, const att_dims *d, int b, int u, int kvh) {
    if (u < d->P) return prefix + ((size_t)u * d->KVH + kvh) * d->hd;
    return seq + (((size_t)b * d->T + (u - d->P)) * d->KVH + kvh) * d->hd;
}

/* 16 floats; aligned(4) lets it be loaded from and stored to any float address. GCC lowers the arithmetic
 * to whatever the clone's instruction set has (one zmm on AVX-512, two ymm on AVX2). */
typedef float att_vec __attribute__((vector_size(64), aligned(4)));

/* C[m×n] += A·B for tiles: A(i,k) = A[i·ars + k·acs] (so Aᵀ is just swapped strides), B row-major [kdim×n]
 * with ldb, C row-major with ldc; n a multiple of 16. */
ATT_INLINE void tile_gemm(int m, int n, int kdim, const float *A, int ars, int acs, const float *B, int ldb,
                             float *C, int ldc) {
    int i = 0;
    for (; i + 4 <= m; i += 4) {
        const float *a0 = A + (size_t)i * ars, *a1 = a0 + ars, *a2 = a1 + ars, *a3 = a2 + ars;
        int j = 0;
        for (; j + 32 <= n; j += 32) {
            float *c0 = C + (size_t)i * ldc + j, *c1 = c0 + ldc, *c2 = c1 + ldc, *c3 = c2 + ldc;
            att_vec x00 = *(att_vec *)c0, x01 = *(att_vec *)(c0 + 16), x10 = *(att_vec *)c1, x11 = *(att_vec *)(c1 + 16);
            att_vec x20 = *(att_vec *)c2, x21 = *(att_vec *)(c2 + 16), x30 = *(att_vec *)c3, x31 = *(att_vec *)(c3 + 16);
            for (int k = 0; k < kdim; k++) {
                const float *brow = B + (size_t)k * ldb + j;
                att_vec b0 = *(const att_vec *)brow, b1 = *(const att_vec *)(brow + 16);
                float v0 = a0[(size_t)k * acs], v1 = a1[(size_t)k * acs], v2 = a2[(size_t)k * acs], v3 = a3[(size_t)k * acs];
                x00 += v0 * b0, x01 += v0 * b1, x10 += v1 * b0, x11 += v1 * b1;
                x20 += v2 * b0, x21 += v2 * b1, x30 += v3 * b0, x31 += v3 * b1;
            }
            *(att_vec *)c0 = x00, *(att_vec *)(c0 + 16) = x01, *(att_vec *)c1 = x10, *(att_vec *)(c1 + 16) = x11;
            *(att_vec *)c2 = x20, *(att_vec *)(c2 + 16) = x21, *(att_vec *)c3 = x30, *(att_vec *)(c3 + 16) = x31;
        }
        for (; j < n; j += 16) {
            float *c0 = C + (size_t)i * ldc + j, *c1 = c0 + ldc, *c2 = c1 + ldc, *c3 = c2 + ldc;
            att_vec x0 = *(att_vec *)c0, x1 = *(att_vec *)c1, x2 = *(att_vec *)c2, x3 = *(att_vec *)c3;
            for (int k = 0; k < kdim; k++) {
                att_vec b0 = *(const att_vec *)(B + (size_t)k * ldb + j);
                x0 += a0[(size_t)k * acs] * b0, x1 += a1[(size_t)k * acs] * b0;
                x2 += a2[(size_t)k * acs] * b0, x3 += a3[(size_t)k * acs] * b0;
            }
            *(att_vec *)c0 = x0, *(att_vec *)c1 = x1, *(att_vec *)c2 = x2, *(att_vec *)c3 = x3;
        }
    }
    for (; i < m; i++) {
        const float *a0 = A + (size_t)i * ars;
        for (int j = 0; j < n; j += 16) {
            float *c0 = C + (size_t)i * ldc + j;
            att_vec x0 = *(att_vec *)c0;
            for (int k = 0; k < kdim; k++) x0 += a0[(size_t)k * acs] * *(const att_vec *)(B + (size_t)k * ldb + j);
            *(att_vec *)c0 = x0;
        }
    }
}

/* Tile loads for keys u0 … u0+nk−1. Kt[j][c] = key_c[j] ([hdp][ATT_BK], zero beyond hd and beyond nk);
 * rows[c][j] = key_c[j] ([nk][hdp], zero beyond hd). */
ATT_INLINE void load_transposed(float *Kt, const float *seq, const float *prefix, const att_dims *d, int b, int u0,
                                   int nk, int kvh) {
    memset(Kt, 0, sizeof(float) * (size_t)d->hdp * ATT_BK);
    for (int c = 0; c < nk; c++) {
        const float *row = key_row(seq, prefix, d, b, u0 + c, kvh);
        for (int j = 0; j < d->hd; j++) Kt[j * ATT_BK + c] = row[j];
    }
}

ATT_INLINE void load_rows(float *rows, const float *seq, const float *prefix, const att_dims *d, int b, int u0,
                             int nk, int kvh) {
    for (int c = 0; c < nk; c++) {
        memcpy(rows + (size_t)c * d->hdp, key_row(seq, prefix, d, b, u0 + c, kvh), sizeof(float) * d->hd);
        memset(rows + (size_t)c * d->hdp + d->hd, 0, sizeof(float) * (d->hdp - d->hd));
    }
}

/* S[r][c] = scale · Q[r]·K[c] for r < nq, c < nk, masked entries −inf. Q is [nq][hdp], Kt [hdp][ATT_BK].
 * The causal limit is a per-row range (no test per element); the doc mask, when present, is checked only
 * for the sequence keys inside that range. */
ATT_INLINE void score_tile(float *S, const float *Q, const float *Kt, const att_dims *d, const int *doc_b, int q0,
                              int nq, int u0, int nk) {
    int ncols = pad16(nk);
    for (int r = 0; r < nq; r++) memset(S + r * ATT_BK, 0, sizeof(float) * ncols);
    tile_gemm(nq, ncols, d->hdp, Q, d->hdp, 1, Kt, ATT_BK, S, ATT_BK);
    for (int r = 0; r < nq; r++) {
        float *srow = S + r * ATT_BK;
        int t = q0 + r, limit = d->P + t + 1 - u0; /* keys u0 … u0+limit−1 pass the causal rule */
        if (limit > nk) limit = nk;
        if (limit < 0) limit = 0;
        for (int c = 0; c < limit; c++) srow[c] *= d->scale;
        for (int c = limit; c < nk; c++) srow[c] = -INFINITY;
        if (doc_b)
            for (int c = d->P > u0 ? d->P - u0 : 0; c < limit; c++)
                if (doc_b[u0 + c - d->P] != doc_b[t]) srow[c] = -INFINITY;
    }
}

/* ---- forward ---------------------------------------------------------------------------------------- */

/* One (batch b, head h, query block q0 … q0+nq−1). */
PC_SIMD_CLONES static void forward_block(float *out, float *lse, const float *q, const float *k, const float *v,
                                         const float *prefix_k, const float *prefix_v, const int *doc,
                                         const att_dims *d, int b, int h, int q0, int nq) {
    int hd = d->hd, hdp = d->hdp, kvh = h / (d->H / d->KVH);
    const int *doc_b = doc ? doc + (size_t)b * d->T : NULL;
    float Q[ATT_BQ * hdp], Kt[hdp * ATT_BK], Vr[ATT_BK * hdp], S[ATT_BQ * ATT_BK], acc[ATT_BQ * hdp], m[ATT_BQ],
        l[ATT_BQ];
    for (int r = 0; r < nq; r++) {
        memcpy(Q + r * hdp, q + (((size_t)b * d->T + q0 + r) * d->H + h) * hd, sizeof(float) * hd);
        memset(Q + r * hdp + hd, 0, sizeof(float) * (hdp - hd));
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    memset(acc, 0, sizeof(float) * nq * hdp);
    int n_keys = d->P + q0 + nq; /* causal: nothing after the block's last query */
    for (int u0 = 0; u0 < n_keys; u0 += ATT_BK) {
        int nk = n_keys - u0 < ATT_BK ? n_keys - u0 : ATT_BK;
        load_transposed(Kt, k, prefix_k, d, b, u0, nk, kvh);
        load_rows(Vr, v, prefix_v, d, b, u0, nk, kvh);
        score_tile(S, Q, Kt, d, doc_b, q0, nq, u0, nk);
        for (int r = 0; r < nq; r++) {
            float *srow = S + r * ATT_BK, block_max = -INFINITY;
            for (int c = 0; c < nk; c++) block_max = srow[c] > block_max ? srow[c] : block_max;
            if (block_max == -INFINITY) { /* this row sees none of these keys: P = 0 */
                memset(srow, 0, sizeof(float) * nk);
                continue;
            }
            float m_new = block_max > m[r] ? block_max : m[r];
            float correction = pc_exp_approx(m[r] - m_new), sum = 0.0f; /* exp(−inf) = 0 on a row's first block */
            for (int c = 0; c < nk; c++) {
                srow[c] = pc_exp_approx(srow[c] - m_new);
                sum += srow[c];
            }
            l[r] = l[r] * correction + sum;
            m[r] = m_new;
            float *a = acc + r * hdp;
            for (int j = 0; j < hdp; j++) a[j] *= correction;
        }
        tile_gemm(nq, hdp, nk, S, ATT_BK, 1, Vr, hdp, acc, hdp); /* acc += P·V */
    }
    for (int r = 0; r < nq; r++) {
        float *o = out + (((size_t)b * d->T + q0 + r) * d->H + h) * hd, inv = 1.0f / l[r];
        for (int j = 0; j < hd; j++) o[j] = acc[r * hdp + j] * inv;
        lse[((size_t)b * d->H + h) * d->T + q0 + r] = m[r] + logf(l[r]);
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
        int qb = n_qblocks - 1 - (int)(task % n_qblocks);
        int bh = (int)(task / n_qblocks), b = bh / H, h = bh % H;
        int q0 = qb * ATT_BQ, nq = T - q0 < ATT_BQ ? T - q0 : ATT_BQ;
        forward_block(out, lse, q, k, v, prefix_k, prefix_v, doc, &d, b, h, q0, nq);
    }
}

/* ---- backward --------------------------------------------------------------------------------------- */

/* Everything one query block of one head needs, loaded once and reused over the key blocks. */
typedef struct att_qblock {
    int b, h, kvh, q0, nq;
    const int *doc_b;
    float *Q, *dO, *dQ; /* [nq][hdp] each; dQ accumulates this block's contribution */
    float *Dv, *lse;    /* [nq]: D = Σ dO·O, and the saved lse */
} att_qblock;

/* Per-task scratch for backward tiles (one set per thread, on its stack). */
typedef struct att_scratch {
    float *Kt, *Vt, *Kr;  /* [hdp][ATT_BK] transposed keys and values; [ATT_BK][hdp] keys as rows */
    float *S, *dS;        /* [ATT_BQ][ATT_BK]: P and scale·dS */
    float *dKr, *dVr;     /* [ATT_BK][hdp] this tile's key/value gradient rows */
} att_scratch;

/* Adds a tile's gradient rows to the key/value gradients they belong to (dst NULL = not wanted). */
ATT_INLINE void scatter_rows(float *dst_seq, float *dst_prefix, const float *rows, const att_dims *d, int b,
                                int u0, int nk, int kvh) {
    for (int c = 0; c < nk; c++) {
        int u = u0 + c;
        float *dst = u < d->P ? (dst_prefix ? dst_prefix + ((size_t)u * d->KVH + kvh) * d->hd : NULL)
                              : (dst_seq ? dst_seq + (((size_t)b * d->T + (u - d->P)) * d->KVH + kvh) * d->hd : NULL);
        if (!dst) continue;
        const float *src = rows + (size_t)c * d->hdp;
        for (int j = 0; j < d->hd; j++) dst[j] += src[j];
    }
}

/* Keys u0 … u0+nk−1 against one query block: P = exp(S − lse), dS = P ⊙ (dO·Vᵀ − D);
 * dQ += scale·dS·K (if with_dq); dK += scale·dSᵀ·Q;  dV += Pᵀ·dO, into the sequence rows (dk_seq, dv_seq)
 * and/or the prefix rows (dk_prefix, dv_prefix); a NULL destination is skipped. */
ATT_INLINE void backward_tile(const att_qblock *qb, const float *k, const float *v, const float *prefix_k,
                                 const float *prefix_v, float *dk_seq, float *dv_seq, float *dk_prefix,
                                 float *dv_prefix, int with_dq, const att_dims *d, int u0, int nk,
                                 const att_scratch *w) {
    int hdp = d->hdp, nq = qb->nq, ncols = pad16(nk);
    load_transposed(w->Kt, k, prefix_k, d, qb->b, u0, nk, qb->kvh);
    load_transposed(w->Vt, v, prefix_v, d, qb->b, u0, nk, qb->kvh);
    score_tile(w->S, qb->Q, w->Kt, d, qb->doc_b, qb->q0, nq, u0, nk);
    for (int r = 0; r < nq; r++) {
        float *prow = w->S + r * ATT_BK, *dsrow = w->dS + r * ATT_BK;
        for (int c = 0; c < nk; c++) prow[c] = pc_exp_approx(prow[c] - qb->lse[r]); /* masked: exp(−inf) = 0 */
        for (int c = nk; c < ncols; c++) prow[c] = 0.0f;
        memset(dsrow, 0, sizeof(float) * ncols);
    }
    tile_gemm(nq, ncols, hdp, qb->dO, hdp, 1, w->Vt, ATT_BK, w->dS, ATT_BK); /* dP = dO·Vᵀ */
    for (int r = 0; r < nq; r++) {
        float *prow = w->S + r * ATT_BK, *dsrow = w->dS + r * ATT_BK, D = qb->Dv[r];
        for (int c = 0; c < ncols; c++) dsrow[c] = d->scale * prow[c] * (dsrow[c] - D); /* 0 where P = 0 */
    }
    if (with_dq) {
        load_rows(w->Kr, k, prefix_k, d, qb->b, u0, nk, qb->kvh);
        tile_gemm(nq, hdp, nk, w->dS, ATT_BK, 1, w->Kr, hdp, qb->dQ, hdp); /* dQ += scale·dS·K */
    }
    int want_k = u0 < d->P ? (dk_prefix || dv_prefix) : 0;
    want_k = want_k || (u0 + nk > d->P && dk_seq);
    if (!want_k) return;
    memset(w->dKr, 0, sizeof(float) * (size_t)nk * hdp);
    memset(w->dVr, 0, sizeof(float) * (size_t)nk * hdp);
    tile_gemm(nk, hdp, nq, w->dS, 1, ATT_BK, qb->Q, hdp, w->dKr, hdp); /* scale·dSᵀ·Q */
    tile_gemm(nk, hdp, nq, w->S, 1, ATT_BK, qb->dO, hdp, w->dVr, hdp); /* Pᵀ·dO */
    scatter_rows(dk_seq, dk_prefix, w->dKr, d, qb->b, u0, nk, qb->kvh);
    scatter_rows(dv_seq, dv_prefix, w->dVr, d, qb->b, u0, nk, qb->kvh);
}

/* Load Q, dO (zero-padded to hdp), lse and D for one query block. */
ATT_INLINE void load_qblock(att_qblock *qb, const float *q, const float *dout, const float *out,
                               const float *lse, const att_dims *d) {
    int hd = d->hd, hdp = d->hdp;
    for (int r = 0; r < qb->nq; r++) {
        size_t off = (((size_t)qb->b * d->T + qb->q0 + r) * d->H + qb->h) * hd;
        memcpy(qb->Q + r * hdp, q + off, sizeof(float) * hd);
        memcpy(qb->dO + r * hdp, dout + off, sizeof(float) * hd);
        memset(qb->Q + r * hdp + hd, 0, sizeof(float) * (hdp - hd));
        memset(qb->dO + r * hdp + hd, 0, sizeof(float) * (hdp - hd));
        float D = 0.0f;
        for (int j = 0; j < hd; j++) D += dout[off + j] * out[off + j];
        qb->Dv[r] = D;
        qb->lse[r] = lse[((size_t)qb->b * d->H + qb->h) * d->T + qb->q0 + r];
    }
}

/* Pass 1, one task per (b, kv head): it alone writes dk, dv of that kv head in row b and dq of the query
 * heads that read it. Prefix keys contribute to dq here; their own gradients are pass 2's. */
PC_SIMD_CLONES static void backward_group(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                          const float *lse, const float *q, const float *k, const float *v,
                                          const float *prefix_k, const float *prefix_v, const int *doc,
                                          const att_dims *d, int b, int kvh) {
    int hd = d->hd, hdp = d->hdp, group = d->H / d->KVH;
    float Q[ATT_BQ * hdp], dO[ATT_BQ * hdp], dQ[ATT_BQ * hdp], Dv[ATT_BQ], L[ATT_BQ];
    float Kt[hdp * ATT_BK], Vt[hdp * ATT_BK], Kr[ATT_BK * hdp], S[ATT_BQ * ATT_BK], dS[ATT_BQ * ATT_BK];
    float dKr[ATT_BK * hdp], dVr[ATT_BK * hdp];
    att_scratch w = {Kt, Vt, Kr, S, dS, dKr, dVr};
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        for (int q0 = 0; q0 < d->T; q0 += ATT_BQ) {
            att_qblock qb = {b, h, kvh, q0, d->T - q0 < ATT_BQ ? d->T - q0 : ATT_BQ,
                             doc ? doc + (size_t)b * d->T : NULL, Q, dO, dQ, Dv, L};
            load_qblock(&qb, q, dout, out, lse, d);
            memset(dQ, 0, sizeof(float) * qb.nq * hdp);
            int n_keys = d->P + q0 + qb.nq;
            for (int u0 = 0; u0 < n_keys; u0 += ATT_BK)
                backward_tile(&qb, k, v, prefix_k, prefix_v, dk, dv, NULL, NULL, 1, d, u0,
                              n_keys - u0 < ATT_BK ? n_keys - u0 : ATT_BK, &w);
            for (int r = 0; r < qb.nq; r++) {
                float *dst = dq + (((size_t)b * d->T + q0 + r) * d->H + h) * hd;
                for (int j = 0; j < hd; j++) dst[j] += dQ[r * hdp + j];
            }
        }
    }
}

/* Pass 2, one task per kv head: prefix key/value gradients summed over every batch row and query head that
 * reads them (they are shared across the batch, so per-(b, kvh) tasks would race). */
PC_SIMD_CLONES static void backward_prefix(float *dprefix_k, float *dprefix_v, const float *dout, const float *out,
                                           const float *lse, const float *q, const float *k, const float *v,
                                           const float *prefix_k, const float *prefix_v, const int *doc,
                                           const att_dims *d, int kvh) {
    int hdp = d->hdp, group = d->H / d->KVH;
    float Q[ATT_BQ * hdp], dO[ATT_BQ * hdp], Dv[ATT_BQ], L[ATT_BQ];
    float Kt[hdp * ATT_BK], Vt[hdp * ATT_BK], S[ATT_BQ * ATT_BK], dS[ATT_BQ * ATT_BK];
    float dKr[ATT_BK * hdp], dVr[ATT_BK * hdp];
    att_scratch w = {Kt, Vt, NULL, S, dS, dKr, dVr};
    for (int b = 0; b < d->B; b++)
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
            for (int q0 = 0; q0 < d->T; q0 += ATT_BQ) {
                att_qblock qb = {b, h, kvh, q0, d->T - q0 < ATT_BQ ? d->T - q0 : ATT_BQ,
                                 doc ? doc + (size_t)b * d->T : NULL, Q, dO, NULL, Dv, L};
                load_qblock(&qb, q, dout, out, lse, d);
                for (int u0 = 0; u0 < d->P; u0 += ATT_BK)
                    backward_tile(&qb, k, v, prefix_k, prefix_v, NULL, NULL, dprefix_k, dprefix_v, 0, d, u0,
                                  d->P - u0 < ATT_BK ? d->P - u0 : ATT_BK, &w);
            }
}

void attention_backward(float *dq, float *dk, float *dv, float *dprefix_k, float *dprefix_v, const float *dout,
                        const float *out, const float *lse, const float *q, const float *k, const float *v,
                        const float *prefix_k, const float *prefix_v, const int *doc, int B, int T, int P, int H,
                        int KVH, int hd) {
    att_dims d = {B, T, P, H, KVH, hd, pad16(hd), 1.0f / sqrtf((float)hd)};
#pragma omp parallel for schedule(dynamic, 1)
    for (int task = 0; task < B * KVH; task++)
        backward_group(dq, dk, dv, dout, out, lse, q, k, v, prefix_k, prefix_v, doc, &d, task / KVH, task % KVH);
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
