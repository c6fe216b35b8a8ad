/* RMSNorm (llama/qwen2, HF LlamaRMSNorm: y = w ⊙ x / sqrt(mean(x²) + eps)) and LayerNorm (gpt2).
 * x, out are [N,C]; statistics saved per row for backward. Backwards accumulate (see matmul.h). */
#ifndef PC_KERNELS_NORM_H
#define PC_KERNELS_NORM_H

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps);
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                      int N, int C); /* dw may be NULL (frozen) */

void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                       int C, float eps);
void layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                        const float *mean, const float *rstd, int N, int C); /* dw, db may be NULL */

#endif
