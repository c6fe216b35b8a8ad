/* Portable blocked GEMM: the fallback when oneDNN is absent and the oracle the oneDNN path is tested
 * against. Goto/BLIS structure: for each NC-wide, KC-deep slice of B, the threads pack B into NR-column
 * panels together, then each takes (MC-row block of A, group of B panels) tasks, packs its A block into
 * MR-row panels and runs register tiles. fp32 accumulation throughout. The register tile is written with
 * GNU vector extensions and compiled three times (AVX-512, AVX2+FMA, baseline), picked from CPUID once. */
#include <omp.h>
#include <string.h>

#include "core/alloc.h"
#include "kernels/matmul_internal.h"

typedef float pm_vec __attribute__((vector_size(PM_NR * sizeof(float))));

enum { PM_GROUP_PANELS = 8 }; /* B panels per task: 128 columns */

/* C[mr,nr] += Σ_p Ap[p,:mr] ⊗ Bp[p,:nr]. Ap is PM_MR-interleaved, Bp PM_NR-interleaved and 64-byte aligned. */
static inline __attribute__((always_inline)) void tile_body(int kc, const float *Ap, const float *Bp, float *C,
                                                            long ldc, int mr, int nr) {
    pm_vec acc[PM_MR];
    for (int r = 0; r < PM_MR; r++) acc[r] = (pm_vec){0};
    for (int p = 0; p < kc; p++) {
        pm_vec b = *(const pm_vec *)(Bp + (long)p * PM_NR);
        const float *a = Ap + (long)p * PM_MR;
        for (int r = 0; r < PM_MR; r++) acc[r] += a[r] * b;
    }
    if (nr == PM_NR) {
        for (int r = 0; r < mr; r++) {
            pm_vec c;
            memcpy(&c, C + r * ldc, sizeof c);
            c += acc[r];
            memcpy(C + r * ldc, &c, sizeof c);
        }
    } else {
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < nr; j++) C[r * ldc + j] += acc[r][j];
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static void tile_avx512(int kc, const float *Ap, const float *Bp, float *C,
                                                           long ldc, int mr, int nr) {
    tile_body(kc, Ap, Bp, C, ldc, mr, nr);
}
__attribute__((target("avx2,fma"))) static void tile_avx2(int kc, const float *Ap, const float *Bp, float *C,
                                                          long ldc, int mr, int nr) {
    tile_body(kc, Ap, Bp, C, ldc, mr, nr);
}
#endif
static void tile_plain(int kc, const float *Ap, const float *Bp, float *C, long ldc, int mr, int nr) {
    tile_body(kc, Ap, Bp, C, ldc, mr, nr);
}

int pm_workspace_init(pm_workspace *ws) {
    memset(ws, 0, sizeof *ws);
    ws->nthreads = omp_get_max_threads();
    if (ws->nthreads < 1) ws->nthreads = 1;
    ws->b_packed = pc_malloc(sizeof(float) * PM_KC * PM_NC);
    ws->a_packed = pc_malloc(sizeof(float) * PM_MC * PM_KC * (size_t)ws->nthreads);
    if (!ws->b_packed || !ws->a_packed) {
        pm_workspace_free(ws);
        return -1;
    }
    ws->tile = tile_plain;
    ws->isa = "c";
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        ws->tile = tile_avx512;
        ws->isa = "avx512f";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        ws->tile = tile_avx2;
        ws->isa = "avx2";
    }
#endif
    return 0;
}

void pm_workspace_free(pm_workspace *ws) {
    pc_free(ws->b_packed);
    pc_free(ws->a_packed);
    ws->b_packed = ws->a_packed = NULL;
}

static inline float round_to_bf16(float x) { return pc_bf16_to_f32(pc_f32_to_bf16(x)); }

/* Bp ← op(B)[pc:pc+kc, j0:j0+nr] as one NR-column panel, zero-padded. op(B)[p,j] = B[p,j] or B[j,p]. */
static void pack_b_panel(float *Bp, const void *B, pc_dtype dt, long ldb, int transB, int pc, int kc, int j0,
                         int nr) {
    long step_p = transB ? 1 : ldb, step_j = transB ? ldb : 1; /* element (p, j) at p·step_p + j·step_j */
    long origin = (long)pc * step_p + (long)j0 * step_j;
    for (int p = 0; p < kc; p++) {
        float *dst = Bp + (long)p * PM_NR;
        long at = origin + p * step_p;
        if (dt == PC_BF16) {
            const uint16_t *src = (const uint16_t *)B + at;
            for (int j = 0; j < nr; j++) dst[j] = pc_bf16_to_f32(src[j * step_j]);
        } else {
            const float *src = (const float *)B + at;
            for (int j = 0; j < nr; j++) dst[j] = src[j * step_j];
        }
        for (int j = nr; j < PM_NR; j++) dst[j] = 0.0f;
    }
}

/* Ap ← alpha · op(A)[ic:ic+mc, pc:pc+kc] in MR-row panels, zero-padded. */
static void pack_a_block(float *Ap, const float *A, long lda, int transA, int round_bf16, float alpha, int ic,
                         int mc, int pc, int kc) {
    for (int i0 = 0; i0 < mc; i0 += PM_MR) {
        int mr = mc - i0 < PM_MR ? mc - i0 : PM_MR;
        float *panel = Ap + (long)i0 * kc;
        for (int p = 0; p < kc; p++) {
            float *dst = panel + (long)p * PM_MR;
            for (int r = 0; r < mr; r++) {
                long row = ic + i0 + r, col = pc + p;
                float a = transA ? A[col * lda + row] : A[row * lda + col];
                if (round_bf16) a = round_to_bf16(a);
                dst[r] = alpha * a;
            }
            for (int r = mr; r < PM_MR; r++) dst[r] = 0.0f;
        }
    }
}

static void scale_c(float *C, long ldc, int M, int N, float beta) {
    if (beta == 1.0f) return;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        float *row = C + (long)i * ldc;
        if (beta == 0.0f)
            memset(row, 0, sizeof(float) * (size_t)N);
        else
            for (int j = 0; j < N; j++) row[j] *= beta;
    }
}

void pm_gemm(pm_workspace *ws, int transA, int transB, int M, int N, int K, float alpha, const float *A, long lda,
             int round_a_bf16, const void *B, pc_dtype b_dtype, long ldb, float beta, float *C, long ldc) {
    if (M <= 0 || N <= 0) return;
    scale_c(C, ldc, M, N, beta);
    if (K <= 0 || alpha == 0.0f) return;
    int n_ic = (M + PM_MC - 1) / PM_MC;
    for (int jc = 0; jc < N; jc += PM_NC) {
        int nc = N - jc < PM_NC ? N - jc : PM_NC;
        int n_panels = (nc + PM_NR - 1) / PM_NR;
        int n_groups = (n_panels + PM_GROUP_PANELS - 1) / PM_GROUP_PANELS;
        for (int pc = 0; pc < K; pc += PM_KC) {
            int kc = K - pc < PM_KC ? K - pc : PM_KC;
#pragma omp parallel num_threads(ws->nthreads)
            {
                float *Ap = ws->a_packed + (size_t)omp_get_thread_num() * PM_MC * PM_KC;
                int packed_ic = -1;
#pragma omp for schedule(static)
                for (int jp = 0; jp < n_panels; jp++) {
                    int j0 = jc + jp * PM_NR, nr = N - j0 < PM_NR ? N - j0 : PM_NR;
                    pack_b_panel(ws->b_packed + (long)jp * kc * PM_NR, B, b_dtype, ldb, transB, pc, kc, j0, nr);
                }
#pragma omp for schedule(static)
                for (int task = 0; task < n_ic * n_groups; task++) {
                    int ib = task / n_groups, g = task % n_groups;
                    int ic = ib * PM_MC, mc = M - ic < PM_MC ? M - ic : PM_MC;
                    if (packed_ic != ic) { /* consecutive tasks of one thread usually share the A block */
                        pack_a_block(Ap, A, lda, transA, round_a_bf16, alpha, ic, mc, pc, kc);
                        packed_ic = ic;
                    }
                    int jp_end = (g + 1) * PM_GROUP_PANELS < n_panels ? (g + 1) * PM_GROUP_PANELS : n_panels;
                    for (int jp = g * PM_GROUP_PANELS; jp < jp_end; jp++) {
                        int j0 = jc + jp * PM_NR, nr = N - j0 < PM_NR ? N - j0 : PM_NR;
                        const float *Bp = ws->b_packed + (long)jp * kc * PM_NR;
                        for (int i0 = 0; i0 < mc; i0 += PM_MR) {
                            int mr = mc - i0 < PM_MR ? mc - i0 : PM_MR;
                            ws->tile(kc, Ap + (long)i0 * kc, Bp, C + (long)(ic + i0) * ldc + j0, ldc, mr, nr);
                        }
                    }
                }
            }
        }
    }
}
