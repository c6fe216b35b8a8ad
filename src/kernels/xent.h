/* The LM head fused with cross-entropy. logits = h[N,C]·W[V,C]ᵀ are computed a block of rows at a time
 * into caller-provided scratch (chunk_rows·V floats), so [N,V] logits never exist at once; each block's
 * softmax gradient is pushed through the head immediately. */
#ifndef PC_KERNELS_XENT_H
#define PC_KERNELS_XENT_H

#include "kernels/matmul.h"

/* Returns Σ over rows with targets[n] >= 0 of −log softmax(logits_n)[targets[n]] (double accumulation);
 * *count receives the number of such rows. If dh is non-NULL, dh[N,C] += grad_scale · ∂(sum)/∂h; if dW is
 * non-NULL, dW[V,C] += grad_scale · ∂(sum)/∂W. Targets must be < V or negative (ignored). */
double lmhead_xent(pc_matmul *mm, float *dh, float *dW, const float *h, const pc_tensor *W, const int *targets,
                   int N, int C, int V, float grad_scale, float *scratch, int chunk_rows, long *count);

/* Plain logits for rows of h (generation, parity tests): logits[N,V]. */
void lmhead_logits(pc_matmul *mm, float *logits, const float *h, const pc_tensor *W, int N, int C, int V);

#endif
