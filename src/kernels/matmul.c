/* The pc_matmul handle: picks oneDNN or the portable GEMM once (env PEFTC_MATMUL=portable forces the
 * latter), owns the caches and scratch both need, and maps the three nn.Linear products and the general
 * GEMM onto them. Weights are F32 or BF16 in the [out, in] layout; with BF16 weights the activation operand
 * is rounded to bf16 as well (bf16×bf16 products, fp32 accumulation) on both paths, so the two backends
 * agree up to summation order. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "kernels/matmul.h"
#include "kernels/matmul_internal.h"
#include "kernels/simd.h"

struct pc_matmul {
    pm_workspace portable;
#ifdef PEFTC_HAVE_DNNL
    dn_cache *onednn; /* NULL: portable only */
#endif
    uint16_t *bf16_scratch; /* activation operand converted to bf16 for oneDNN; grown, never shrunk */
    size_t bf16_capacity;   /* elements */
};

pc_status pc_matmul_create(pc_matmul **out, pc_error *err) {
    *out = NULL;
    const char *choice = getenv("PEFTC_MATMUL");
    int want_portable = 0;
    if (choice && *choice) {
        if (strcmp(choice, "portable") == 0)
            want_portable = 1;
        else if (strcmp(choice, "onednn") != 0 && strcmp(choice, "auto") != 0)
            return pc_fail(err, PC_ERR_USAGE, "PEFTC_MATMUL: unknown value '%s' (expected portable, onednn or auto)",
                           choice);
    }
    pc_matmul *mm = pc_calloc(1, sizeof *mm);
    if (!mm) return pc_fail(err, PC_ERR_NOMEM, "matmul: out of memory for the handle");
    if (pm_workspace_init(&mm->portable) != 0) {
        pc_free(mm);
        return pc_fail(err, PC_ERR_NOMEM, "matmul: out of memory for the packing buffers");
    }
#ifdef PEFTC_HAVE_DNNL
    /* oneDNN failing to start (no memory, odd CPU) is not an error: the portable path does the same work. */
    if (!want_portable) mm->onednn = dn_cache_create();
#else
    (void)want_portable;
#endif
    *out = mm;
    return PC_OK;
}

void pc_matmul_destroy(pc_matmul *mm) {
    if (!mm) return;
#ifdef PEFTC_HAVE_DNNL
    dn_cache_destroy(mm->onednn);
#endif
    pm_workspace_free(&mm->portable);
    pc_free(mm->bf16_scratch);
    pc_free(mm);
}

const char *pc_matmul_backend(const pc_matmul *mm) {
#ifdef PEFTC_HAVE_DNNL
    if (mm->onednn) return "onednn";
#endif
    return "portable";
}

#ifdef PEFTC_HAVE_DNNL
PC_SIMD_CLONES static void convert_row_to_bf16(uint16_t *dst, const float *src, long n) {
    for (long j = 0; j < n; j++) dst[j] = pc_f32_to_bf16(src[j]);
}

/* rows×cols contiguous fp32 → contiguous bf16 in the handle's scratch; NULL if it cannot grow. */
static const uint16_t *to_bf16_scratch(pc_matmul *mm, const float *src, long rows, long cols) {
    size_t need = (size_t)rows * (size_t)cols;
    if (need > mm->bf16_capacity) {
        uint16_t *grown = pc_malloc(need * sizeof(uint16_t));
        if (!grown) return NULL;
        pc_free(mm->bf16_scratch);
        mm->bf16_scratch = grown;
        mm->bf16_capacity = need;
    }
    uint16_t *dst = mm->bf16_scratch;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < rows; i++) convert_row_to_bf16(dst + i * cols, src + i * cols, cols);
    return dst;
}

/* C[M,N] = A[M,K]·B + beta·C (+bias) through oneDNN with A contiguous fp32; B[k,j] at B + k·b_row + j·b_col in
 * the weight's dtype. Returns 0 if oneDNN did it. */
static int onednn_weight_product(pc_matmul *mm, int M, int N, int K, const float *A, const pc_tensor *W, long b_row,
                                 long b_col, const float *bias, float beta, float *C) {
    if (!mm->onednn) return -1;
    if (W->dtype == PC_BF16) {
        const uint16_t *a16 = to_bf16_scratch(mm, A, M, K);
        if (!a16) return -1;
        return dn_gemm(mm->onednn, M, N, K, 1.0f, a16, PC_BF16, K, 1, W->data, PC_BF16, b_row, b_col, bias, beta, C,
                       N);
    }
    return dn_gemm(mm->onednn, M, N, K, 1.0f, A, PC_F32, K, 1, W->data, PC_F32, b_row, b_col, bias, beta, C, N);
}
#endif

/* y[N,out] = x[N,in] · W[out,in]ᵀ + bias[out]   (accumulate: y +=) */
void pc_linear_forward(pc_matmul *mm, float *y, const float *x, const pc_tensor *W, const float *bias, int N,
                       int in, int out, int accumulate) {
    float beta = accumulate ? 1.0f : 0.0f;
#ifdef PEFTC_HAVE_DNNL
    if (N > 0 && onednn_weight_product(mm, N, out, in, x, W, 1, in, bias, beta, y) == 0) return;
#endif
    pm_gemm(&mm->portable, 0, 1, N, out, in, 1.0f, x, in, W->dtype == PC_BF16, W->data, W->dtype, in, beta, y, out);
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < out; o++) y[(long)n * out + o] += bias[o];
    }
}

/* dx[N,in] += dy[N,out] · W[out,in] */
void pc_linear_backward_input(pc_matmul *mm, float *dx, const float *dy, const pc_tensor *W, int N, int in,
                              int out) {
#ifdef PEFTC_HAVE_DNNL
    if (N > 0 && onednn_weight_product(mm, N, in, out, dy, W, in, 1, NULL, 1.0f, dx) == 0) return;
#endif
    pm_gemm(&mm->portable, 0, 0, N, in, out, 1.0f, dy, out, W->dtype == PC_BF16, W->data, W->dtype, in, 1.0f, dx,
            in);
}

/* dW[out,in] += dyᵀ[out,N] · x[N,in] ;  dbias[out] += Σ_n dy[n,:] */
void pc_linear_backward_weight(pc_matmul *mm, float *dW, float *dbias, const float *dy, const float *x, int N,
                               int in, int out) {
    if (dW) {
        int done = 0;
#ifdef PEFTC_HAVE_DNNL
        done = mm->onednn && N > 0 &&
               dn_gemm(mm->onednn, out, in, N, 1.0f, dy, PC_F32, 1, out, x, PC_F32, in, 1, NULL, 1.0f, dW, in) == 0;
#endif
        if (!done) pm_gemm(&mm->portable, 1, 0, out, in, N, 1.0f, dy, out, 0, x, PC_F32, in, 1.0f, dW, in);
    }
    if (dbias) {
        /* Column sums: each thread owns a range of columns and walks the rows, so no reduction is needed. */
#pragma omp parallel for schedule(static)
        for (int o0 = 0; o0 < out; o0 += 64) {
            int o1 = o0 + 64 < out ? o0 + 64 : out;
            float acc[64] = {0};
            for (int n = 0; n < N; n++)
                for (int o = o0; o < o1; o++) acc[o - o0] += dy[(long)n * out + o];
            for (int o = o0; o < o1; o++) dbias[o] += acc[o - o0];
        }
    }
}

/* C[M,N] = alpha·op(A)·op(B) + beta·C */
void pc_gemm(pc_matmul *mm, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc) {
#ifdef PEFTC_HAVE_DNNL
    if (mm->onednn && M > 0 && N > 0 && K > 0) {
        long a_row = transA ? 1 : lda, a_col = transA ? lda : 1;
        long b_row = transB ? 1 : ldb, b_col = transB ? ldb : 1;
        if (dn_gemm(mm->onednn, M, N, K, alpha, A, PC_F32, a_row, a_col, B, PC_F32, b_row, b_col, NULL, beta, C,
                    ldc) == 0)
            return;
    }
#endif
    pm_gemm(&mm->portable, transA, transB, M, N, K, alpha, A, lda, 0, B, PC_F32, ldb, beta, C, ldc);
}

/* For tests: how many oneDNN primitives this handle has created (0 on the portable path). */
int pc_matmul_primitives_created(const pc_matmul *mm) {
#ifdef PEFTC_HAVE_DNNL
    return dn_cache_entries(mm->onednn);
#else
    (void)mm;
    return 0;
#endif
}
