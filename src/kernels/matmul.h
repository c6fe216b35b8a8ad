/* Matrix products. Row-major everywhere. Weights use the torch nn.Linear layout W[out, in] in F32 or BF16
 * (GPT-2 Conv1D weights are transposed to this layout on load). oneDNN does the work where it is
 * available, with primitives created once per shape and cached in the pc_matmul handle; a portable C path
 * (also the test oracle) is used otherwise or when PEFTC_MATMUL=portable is set.
 *
 * Convention for every backward in src/kernels/: gradients are ACCUMULATED (+=) into the outputs, so a
 * tensor read by several consumers (the residual stream, a shared weight) just sums its contributions. */
#ifndef PC_KERNELS_MATMUL_H
#define PC_KERNELS_MATMUL_H

#include "core/error.h"
#include "core/tensor.h"

typedef struct pc_matmul pc_matmul; /* one per model; not shared between threads calling concurrently */

pc_status pc_matmul_create(pc_matmul **out, pc_error *err);
void pc_matmul_destroy(pc_matmul *mm);
const char *pc_matmul_backend(const pc_matmul *mm); /* "onednn" or "portable" */

/* y[N,out] = x[N,in] · W[out,in]ᵀ + bias[out]   (accumulate: y += instead of =; bias may be NULL) */
void pc_linear_forward(pc_matmul *mm, float *y, const float *x, const pc_tensor *W, const float *bias, int N,
                       int in, int out, int accumulate);
/* dx[N,in] += dy[N,out] · W[out,in] */
void pc_linear_backward_input(pc_matmul *mm, float *dx, const float *dy, const pc_tensor *W, int N, int in,
                              int out);
/* dW[out,in] += dyᵀ · x ;  dbias[out] += Σ_n dy[n,:]   (either may be NULL) */
void pc_linear_backward_weight(pc_matmul *mm, float *dW, float *dbias, const float *dy, const float *x, int N,
                               int in, int out);
/* General fp32 product: C[M,N] = alpha·op(A)·op(B) + beta·C, op(X) = Xᵀ when transX. A is [M,K] (or [K,M]
 * transposed) with leading dimension lda, likewise B. */
void pc_gemm(pc_matmul *mm, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);

#endif
