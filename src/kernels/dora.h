/* DoRA's own kernels (weight-decomposed low-rank adaptation, Liu et al. 2024). DoRA's output is
 * m ⊙ (W + s·B·A)·x / ‖W + s·B·A‖ (row norms); with the norm treated as a constant, as PEFT does, and
 * g = m/‖·‖ one gain per output row, it is base + (g − 1)⊙base + g⊙lora, where base = W·x and lora = s·B·A·x
 * are the model's and kernels/lowrank's products. What is left is here: the row norms and the element-wise
 * pieces, forward and backward side by side. Rows are [N, out], row-major. */
#ifndef PC_KERNELS_DORA_H
#define PC_KERNELS_DORA_H

#include "core/tensor.h"

/* norm[o] = ‖W[o,:] + s·B[o,:]·A‖₂ for o < out: W [out,in] in fp32 or bf16, A [r,in], B [out,r]. Each row is
 * built in fp32 (W's row converted, then s·B[o,k]·A[k,:] added for k in order) and its squares summed in fp32,
 * as PyTorch forms W + s·B·A and takes its norm; no [out,in] matrix is stored. rows: scratch of threads × in
 * floats (one row per thread); threads: how many to use. */
void dora_row_norms(float *norm, const void *W, pc_dtype w_dtype, const float *A, const float *B, float s, int out,
                    int in, int r, float *rows, int threads);

/* y[n,:] += (g − 1)⊙base[n,:] + g⊙lora[n,:] — DoRA's output from the plain one (y = base + bias) — and
 * base[n,:] += lora[n,:]: the adapted product, all that backward needs of the two (so the caller can keep
 * one [N,out] buffer per target, not two). */
void dora_combine_forward(float *y, float *base, const float *lora, const float *gain, int N, int out);

/* dst[n,:] = (g − shift)⊙dy[n,:] (dst may be dy): shift 0 gives the LoRA branch's output gradient, shift 1 the
 * base path's extra part. */
void dora_scale_rows(float *dst, const float *dy, const float *gain, float shift, int N, int out);

/* dmag[o] += Σ_n dy[n,o]·adapted[n,o] / norm[o], adapted = base + lora (dora_combine_forward leaves it),
 * summed over n in double (N can be large). */
void dora_magnitude_backward(float *dmag, const float *dy, const float *adapted, const float *norm, int N, int out);

#endif
