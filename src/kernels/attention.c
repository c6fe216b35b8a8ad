/* Causal attention, flash style: queries are taken ATT_BQ rows at a time and keys ATT_BK at a time; each
 * key block updates a running row maximum m, normaliser l and output accumulator (online softmax), so only
 * a BQ×BK score tile exists, never T×T. Forward saves lse = m + log l per query row; backward recomputes
 * P = exp(S − lse) tile by tile (standard flash-attention backward with D_i = Σ_d dO_id·O_id).
 *
 * Keys are numbered u = 0 … P+T−1: u < P are the prefix keys (attended by every query, before position
 * 0), u ≥ P is sequence position s = u − P, visible to query t when s ≤ t and (no doc mask or
 * doc[s] == doc[t]). Every query sees at least itself, so every softmax row is non-empty.
 *
 * Inner products are arranged so that the vectorisable loop is never a reduction: scores are Q·Kᵀ with the
 * key tile transposed to [hd][BK] (loop over keys innermost), outputs are Σ_c p_c·v_c (loop over hd
 * innermost). */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kernels/attention.h"
#include "kernels/simd.h"

enum { ATT_BQ = 32, ATT_BK = 64 };

typedef struct att_dims {
    int B, T, P, H, KVH, hd;
    float scale;
} att_dims;

static inline const float *key_row(const float *seq, const float *prefix, const att_dims *d, int b, int u, int kvh) {
    if (u < d->P) return prefix + ((size_t)u * d->KVH + kvh) * d->hd;
    return seq + (((size_t)b * d->T + (u - d->P)) * d->KVH + kvh) * d->hd;
}

/* Kt[j][c] = row_c[j] for the nk keys u0 … u0+nk−1 (transposed tile, row length ATT_BK). */
static inline void load_transposed(float *Kt, const float *seq, const float *prefix, const att_dims *d, int b, int u0,
                                   int nk, int kvh) {
    for (int c = 0; c < nk; c++) {
        const float *row = key_row(seq, prefix, d, b, u0 + c, kvh);
        for (int j = 0; j < d->hd; j++) Kt[j * ATT_BK + c] = row[j];
    }
}

/* S[r][c] = scale · Q[r]·K[c] for r < nq, c < nk, masked entries −inf. Q is [nq][hd], Kt [hd][ATT_BK].
 * The causal limit is a per-row range (no test per element); the doc mask, when present, is checked only
 * for the sequence keys inside that range. */
static inline void score_tile(float *S, const float *Q, const float *Kt, const att_dims *d, const int *doc_b, int q0,
                              int nq, int u0, int nk) {
    for (int r = 0; r < nq; r++) {
        float *srow = S + r * ATT_BK;
        for (int c = 0; c < nk; c++) srow[c] = 0.0f;
        for (int j = 0; j < d->hd; j++) {
            float qj = Q[r * d->hd + j];
            const float *kt = Kt + j * ATT_BK;
            for (int c = 0; c < nk; c++) srow[c] += qj * kt[c];
        }
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
    int hd = d->hd, kvh = h / (d->H / d->KVH);
    const int *doc_b = doc ? doc + (size_t)b * d->T : NULL;
    float Q[ATT_BQ * hd], Kt[hd * ATT_BK], S[ATT_BQ * ATT_BK], acc[ATT_BQ * hd], m[ATT_BQ], l[ATT_BQ];
    for (int r = 0; r < nq; r++) {
        memcpy(Q + r * hd, q + (((size_t)b * d->T + q0 + r) * d->H + h) * hd, sizeof(float) * hd);
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    memset(acc, 0, sizeof(float) * nq * hd);
    int n_keys = d->P + q0 + nq; /* causal: nothing after the block's last query */
    for (int u0 = 0; u0 < n_keys; u0 += ATT_BK) {
        int nk = n_keys - u0 < ATT_BK ? n_keys - u0 : ATT_BK;
        load_transposed(Kt, k, prefix_k, d, b, u0, nk, kvh);
        score_tile(S, Q, Kt, d, doc_b, q0, nq, u0, nk);
        for (int r = 0; r < nq; r++) {
            float *srow = S + r * ATT_BK, block_max = -INFINITY;
            for (int c = 0; c < nk; c++) block_max = srow[c] > block_max ? srow[c] : block_max;
            if (block_max == -INFINITY) continue; /* this row sees none of these keys */
            float m_new = block_max > m[r] ? block_max : m[r];
            float correction = pc_exp_approx(m[r] - m_new), sum = 0.0f; /* exp(−inf) = 0 on a row's first block */
            for (int c = 0; c < nk; c++) {
                srow[c] = pc_exp_approx(srow[c] - m_new);
                sum += srow[c];
            }
            l[r] = l[r] * correction + sum;
            m[r] = m_new;
            float *a = acc + r * hd;
            for (int j = 0; j < hd; j++) a[j] *= correction;
            for (int c = 0; c < nk; c++) {
                if (srow[c] == 0.0f) continue;
                const float *vrow = key_row(v, prefix_v, d, b, u0 + c, kvh);
                float p = srow[c];
                for (int j = 0; j < hd; j++) a[j] += p * vrow[j];
            }
        }
    }
    for (int r = 0; r < nq; r++) {
        float *o = out + (((size_t)b * d->T + q0 + r) * d->H + h) * hd, inv = 1.0f / l[r];
        for (int j = 0; j < hd; j++) o[j] = acc[r * hd + j] * inv;
        lse[((size_t)b * d->H + h) * d->T + q0 + r] = m[r] + logf(l[r]);
    }
}

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const float *prefix_k, const float *prefix_v, const int *doc, int B, int T, int P, int H,
                       int KVH, int hd) {
    att_dims d = {B, T, P, H, KVH, hd, 1.0f / sqrtf((float)hd)};
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
    float *Q, *dO, *dQ; /* [nq][hd] each; dQ accumulates this block's contribution */
    float *Dv, *lse;    /* [nq]: D = Σ dO·O, and the saved lse */
} att_qblock;

/* Keys u0 … u0+nk−1 against one query block: P = exp(S − lse), dS = P ⊙ (dO·Vᵀ − D);
 * dQ += scale·dS·K (if with_dq); dK[c] += scale·Σ_r dS[r][c] Q[r];  dV[c] += Σ_r P[r][c] dO[r]. dK and dV
 * rows are located by dkv_row (NULL = skip). */
static inline void backward_tile(const att_qblock *qb, const float *k, const float *v, const float *prefix_k,
                                 const float *prefix_v, float *dk_seq, float *dv_seq, float *dk_prefix,
                                 float *dv_prefix, int with_dq, const att_dims *d, int u0, int nk, float *Kt, float *Vt,
                                 float *S, float *dS) {
    int hd = d->hd, nq = qb->nq;
    load_transposed(Kt, k, prefix_k, d, qb->b, u0, nk, qb->kvh);
    load_transposed(Vt, v, prefix_v, d, qb->b, u0, nk, qb->kvh);
    score_tile(S, qb->Q, Kt, d, qb->doc_b, qb->q0, nq, u0, nk);
    for (int r = 0; r < nq; r++) {
        float *prow = S + r * ATT_BK, *dsrow = dS + r * ATT_BK;
        for (int c = 0; c < nk; c++) prow[c] = pc_exp_approx(prow[c] - qb->lse[r]); /* masked: exp(−inf) = 0 */
        for (int c = 0; c < nk; c++) dsrow[c] = 0.0f;
        for (int j = 0; j < hd; j++) {
            float g = qb->dO[r * hd + j];
            const float *vt = Vt + j * ATT_BK;
            for (int c = 0; c < nk; c++) dsrow[c] += g * vt[c];
        }
        for (int c = 0; c < nk; c++) dsrow[c] = prow[c] * (dsrow[c] - qb->Dv[r]);
        if (with_dq) {
            float *dq = qb->dQ + r * hd;
            for (int c = 0; c < nk; c++) {
                float g = dsrow[c] * d->scale;
                if (g == 0.0f) continue;
                const float *krow = key_row(k, prefix_k, d, qb->b, u0 + c, qb->kvh);
                for (int j = 0; j < hd; j++) dq[j] += g * krow[j];
            }
        }
    }
    for (int c = 0; c < nk; c++) {
        int u = u0 + c;
        float *dkr, *dvr;
        if (u < d->P) {
            if (!dk_prefix && !dv_prefix) continue;
            dkr = dk_prefix ? dk_prefix + ((size_t)u * d->KVH + qb->kvh) * hd : NULL;
            dvr = dv_prefix ? dv_prefix + ((size_t)u * d->KVH + qb->kvh) * hd : NULL;
        } else {
            if (!dk_seq) continue;
            size_t off = (((size_t)qb->b * d->T + (u - d->P)) * d->KVH + qb->kvh) * hd;
            dkr = dk_seq + off;
            dvr = dv_seq + off;
        }
        for (int r = 0; r < nq; r++) {
            float g = dS[r * ATT_BK + c] * d->scale, p = S[r * ATT_BK + c];
            if (dkr && g != 0.0f)
                for (int j = 0; j < hd; j++) dkr[j] += g * qb->Q[r * hd + j];
            if (dvr && p != 0.0f)
                for (int j = 0; j < hd; j++) dvr[j] += p * qb->dO[r * hd + j];
        }
    }
}

/* Load Q, dO, lse and D for one query block. */
static inline void load_qblock(att_qblock *qb, const float *q, const float *dout, const float *out,
                               const float *lse, const att_dims *d) {
    int hd = d->hd;
    for (int r = 0; r < qb->nq; r++) {
        size_t off = (((size_t)qb->b * d->T + qb->q0 + r) * d->H + qb->h) * hd;
        memcpy(qb->Q + r * hd, q + off, sizeof(float) * hd);
        memcpy(qb->dO + r * hd, dout + off, sizeof(float) * hd);
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
    int hd = d->hd, group = d->H / d->KVH;
    float Q[ATT_BQ * hd], dO[ATT_BQ * hd], dQ[ATT_BQ * hd], Dv[ATT_BQ], L[ATT_BQ];
    float Kt[hd * ATT_BK], Vt[hd * ATT_BK], S[ATT_BQ * ATT_BK], dS[ATT_BQ * ATT_BK];
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        for (int q0 = 0; q0 < d->T; q0 += ATT_BQ) {
            att_qblock qb = {b, h, kvh, q0, d->T - q0 < ATT_BQ ? d->T - q0 : ATT_BQ,
                             doc ? doc + (size_t)b * d->T : NULL, Q, dO, dQ, Dv, L};
            load_qblock(&qb, q, dout, out, lse, d);
            memset(dQ, 0, sizeof(float) * qb.nq * hd);
            int n_keys = d->P + q0 + qb.nq;
            for (int u0 = 0; u0 < n_keys; u0 += ATT_BK)
                backward_tile(&qb, k, v, prefix_k, prefix_v, dk, dv, NULL, NULL, 1, d, u0,
                              n_keys - u0 < ATT_BK ? n_keys - u0 : ATT_BK, Kt, Vt, S, dS);
            for (int r = 0; r < qb.nq; r++) {
                float *dst = dq + (((size_t)b * d->T + q0 + r) * d->H + h) * hd;
                for (int j = 0; j < hd; j++) dst[j] += dQ[r * hd + j];
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
    int hd = d->hd, group = d->H / d->KVH;
    float Q[ATT_BQ * hd], dO[ATT_BQ * hd], Dv[ATT_BQ], L[ATT_BQ];
    float Kt[hd * ATT_BK], Vt[hd * ATT_BK], S[ATT_BQ * ATT_BK], dS[ATT_BQ * ATT_BK];
    for (int b = 0; b < d->B; b++)
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
            for (int q0 = 0; q0 < d->T; q0 += ATT_BQ) {
                att_qblock qb = {b, h, kvh, q0, d->T - q0 < ATT_BQ ? d->T - q0 : ATT_BQ,
                                 doc ? doc + (size_t)b * d->T : NULL, Q, dO, NULL, Dv, L};
                load_qblock(&qb, q, dout, out, lse, d);
                for (int u0 = 0; u0 < d->P; u0 += ATT_BK)
                    backward_tile(&qb, k, v, prefix_k, prefix_v, NULL, NULL, dprefix_k, dprefix_v, 0, d, u0,
                                  d->P - u0 < ATT_BK ? d->P - u0 : ATT_BK, Kt, Vt, S, dS);
            }
}

void attention_backward(float *dq, float *dk, float *dv, float *dprefix_k, float *dprefix_v, const float *dout,
                        const float *out, const float *lse, const float *q, const float *k, const float *v,
                        const float *prefix_k, const float *prefix_v, const int *doc, int B, int T, int P, int H,
                        int KVH, int hd) {
    att_dims d = {B, T, P, H, KVH, hd, 1.0f / sqrtf((float)hd)};
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
