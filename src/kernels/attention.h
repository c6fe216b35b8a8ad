/* Causal scaled-dot-product attention with grouped-query heads, optional prefix keys/values and optional
 * document masks for packed rows. Tiled (flash-style): no T×T matrix is stored; the per-row log-sum-exp is
 * kept for backward.
 *   q [B,T,H,hd]; k, v [B,T,KVH,hd]; head h reads kv head h / (H/KVH).
 *   prefix_k, prefix_v [P,KVH,hd] or NULL (P = 0): shared by every row of the batch, attended by every
 *     query, placed before position 0 (prefix tuning's cache).
 *   doc [B,T] or NULL: query t attends key s ≤ t only when doc[b,s] == doc[b,t] (packing).
 *   out [B,T,H,hd]; lse [B,H,T]. Scale 1/sqrt(hd). */
#ifndef PC_KERNELS_ATTENTION_H
#define PC_KERNELS_ATTENTION_H

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const float *prefix_k, const float *prefix_v, const int *doc, int B, int T, int P, int H,
                       int KVH, int hd);
/* Accumulates into dq, dk, dv and (if non-NULL) dprefix_k, dprefix_v. */
void attention_backward(float *dq, float *dk, float *dv, float *dprefix_k, float *dprefix_v, const float *dout,
                        const float *out, const float *lse, const float *q, const float *k, const float *v,
                        const float *prefix_k, const float *prefix_v, const int *doc, int B, int T, int P, int H,
                        int KVH, int hd);

/* Decoding with a KV cache (batch 1): q [Tn,H,hd] are the newest Tn tokens; kcache, vcache [S,KVH,hd] hold
 * all S keys including those Tn (and any prefix at the front). Query i attends keys 0 … S−Tn+i. */
void attention_cached(float *out, const float *q, const float *kcache, const float *vcache, int Tn, int S, int H,
                      int KVH, int hd);

#endif
