/* Internals of the pc_matmul handle shared by matmul.c (dispatch), matmul_portable.c (blocked C GEMM, the
 * oracle and fallback) and matmul_onednn.c (oneDNN primitives cached per shape). Not part of the contract
 * other layers program against: use kernels/matmul.h. */
#ifndef PC_KERNELS_MATMUL_INTERNAL_H
#define PC_KERNELS_MATMUL_INTERNAL_H

#include <stdint.h>

#include "core/tensor.h"

/* Portable blocking: C is computed in MR×NR register tiles from a packed KC×NC slice of B (shared by the
 * threads) and a packed MC×KC block of A (one per thread). Sizes keep the B slice in L2 and an A block
 * plus a B panel in L1/L2 on current x86 parts. */
enum { PM_MR = 6, PM_NR = 16, PM_MC = 96, PM_KC = 256, PM_NC = 1024 };

/* One register-tile routine: C[mr,nr] += Ap·Bp over kc, Ap packed PM_MR-interleaved, Bp PM_NR-interleaved. */
typedef void (*pm_tile_fn)(int kc, const float *Ap, const float *Bp, float *C, long ldc, int mr, int nr);

typedef struct pm_workspace {
    int nthreads;     /* OpenMP threads the scratch below was sized for */
    float *b_packed;  /* PM_KC × PM_NC */
    float *a_packed;  /* nthreads × PM_MC × PM_KC */
    pm_tile_fn tile;  /* widest instruction set the CPU has, chosen once */
    const char *isa;
} pm_workspace;

int pm_workspace_init(pm_workspace *ws);
void pm_workspace_free(pm_workspace *ws);

/* C[M,N] = alpha·op(A)·op(B) + beta·C. A is fp32; B is fp32 or bf16 (b_dtype). When round_a_bf16 is set,
 * every element of A is rounded to bf16 first, so that a bf16 weight product means bf16×bf16 exactly as
 * oneDNN computes it (the products are exact in fp32; only the summation order differs). beta = 0 never
 * reads C. */
void pm_gemm(pm_workspace *ws, int transA, int transB, int M, int N, int K, float alpha, const float *A, long lda,
             int round_a_bf16, const void *B, pc_dtype b_dtype, long ldb, float beta, float *C, long ldc);

#ifdef PEFTC_HAVE_DNNL
typedef struct dn_cache dn_cache;
dn_cache *dn_cache_create(void); /* NULL if the engine or stream cannot be made */
void dn_cache_destroy(dn_cache *c);
/* The same product through a cached oneDNN primitive. A is fp32 or bf16 (a_dtype), B likewise; C is fp32;
 * bias (fp32 [N]) may be NULL. Strides are in elements: A[i,k] at A + i·a_row + k·a_col, likewise B[k,j].
 * Returns 0 when done, −1 when oneDNN cannot do it (the caller falls back to the portable path). */
int dn_gemm(dn_cache *c, int M, int N, int K, float alpha, const void *A, pc_dtype a_dtype, long a_row, long a_col,
            const void *B, pc_dtype b_dtype, long b_row, long b_col, const float *bias, float beta, float *C,
            long ldc);
int dn_cache_entries(const dn_cache *c); /* primitives created so far (tests check they are reused) */
#endif

/* For tests: how many oneDNN primitives the handle has created so far (0 on the portable path), so a test can
 * check that repeating a shape reuses its primitive. */
typedef struct pc_matmul pc_matmul;
int pc_matmul_primitives_created(const pc_matmul *mm);

#endif
