/* RMSNorm and LayerNorm over the last dimension, forward and backward side by side.
 * Rows are independent, so forwards and the dx part of backwards are parallel over rows; the weight and
 * bias gradients are sums over rows, done in a second pass parallel over column ranges so that no two
 * threads write the same element (deterministic, no atomics, no per-thread buffers).
 * The per-row work lives in PC_SIMD_CLONES functions (OpenMP outlines the loop bodies, so the clones must
 * be the callees, not the public functions). */
#include <math.h>
#include <stddef.h>

#include "kernels/norm.h"
#include "kernels/simd.h"

enum { NORM_COLS = 64 }; /* column range per task in the weight-gradient passes */

/* Σ x and Σ (x − shift)² with 16 independent partial sums, so the loops vectorise without reassociation. */
static inline float sum_of(const float *x, int n) {
    float part[16] = {0}, s = 0.0f;
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) part[j] += x[i + j];
    for (; i < n; i++) s += x[i];
    for (int j = 0; j < 16; j++) s += part[j];
    return s;
}
static inline float sum_of_squares(const float *x, float shift, int n) {
    float part[16] = {0}, s = 0.0f;
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) part[j] += (x[i + j] - shift) * (x[i + j] - shift);
    for (; i < n; i++) s += (x[i] - shift) * (x[i] - shift);
    for (int j = 0; j < 16; j++) s += part[j];
    return s;
}

/* ---- RMSNorm ---------------------------------------------------------------------------------------- */

/* One row: y = w ⊙ (x · r), r = 1/sqrt(mean(x²) + eps), in HF LlamaRMSNorm's order. Returns r. */
PC_SIMD_CLONES static float rms_row_forward(float *y, const float *x, const float *w, int C, float eps) {
    float r = 1.0f / sqrtf(sum_of_squares(x, 0.0f, C) / (float)C + eps);
    for (int c = 0; c < C; c++) y[c] = w[c] * (x[c] * r);
    return r;
}

/* y_c = w_c x_c r with ∂r/∂x_k = −r³ x_k / C, so dx_k += r w_k g_k − (r³/C) x_k Σ_c g_c w_c x_c. */
PC_SIMD_CLONES static void rms_row_backward(float *dx, const float *g, const float *x, const float *w, float r,
                                            int C) {
    float part[16] = {0}, dot = 0.0f;
    int c = 0;
    for (; c + 16 <= C; c += 16)
        for (int j = 0; j < 16; j++) part[j] += g[c + j] * w[c + j] * x[c + j];
    for (; c < C; c++) dot += g[c] * w[c] * x[c];
    for (int j = 0; j < 16; j++) dot += part[j];
    float k = r * r * r * dot / (float)C;
    for (c = 0; c < C; c++) dx[c] += r * w[c] * g[c] - k * x[c];
}

/* dw[c0:c1] += Σ_n g[n,c] x[n,c] r[n] */
PC_SIMD_CLONES static void rms_weight_grad(float *dw, const float *dout, const float *x, const float *rstd, int N,
                                           int C, int c0, int c1) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *gr = dout + (size_t)n * C;
        float r = rstd[n];
        for (int c = c0; c < c1; c++) dw[c] += gr[c] * xr[c] * r;
    }
}

/* x, out [N,C]; w [C]; rstd [N] */
void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) rstd[n] = rms_row_forward(out + (size_t)n * C, x + (size_t)n * C, w, C, eps);
}

/* dx [N,C] +=, dw [C] += (dw may be NULL: frozen norm) */
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                      int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        rms_row_backward(dx + (size_t)n * C, dout + (size_t)n * C, x + (size_t)n * C, w, rstd[n], C);
    if (!dw) return;
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += NORM_COLS)
        rms_weight_grad(dw, dout, x, rstd, N, C, c0, c0 + NORM_COLS < C ? c0 + NORM_COLS : C);
}

/* ---- LayerNorm -------------------------------------------------------------------------------------- */

/* One row: μ, r = 1/sqrt(biased var + eps) (two-pass variance, stable when |μ| ≫ σ), y = w ⊙ x̂ + b. */
PC_SIMD_CLONES static void ln_row_forward(float *y, float *mean, float *rstd, const float *x, const float *w,
                                          const float *b, int C, float eps) {
    float m = sum_of(x, C) / (float)C;
    float r = 1.0f / sqrtf(sum_of_squares(x, m, C) / (float)C + eps);
    for (int c = 0; c < C; c++) y[c] = (w ? w[c] : 1.0f) * ((x[c] - m) * r) + (b ? b[c] : 0.0f);
    *mean = m;
    *rstd = r;
}

/* With g' = g ⊙ w:  dx += r (g' − mean(g') − x̂ · mean(g' ⊙ x̂)). */
PC_SIMD_CLONES static void ln_row_backward(float *dx, const float *g, const float *x, const float *w, float m,
                                           float r, int C) {
    float sum_g = 0.0f, sum_gx = 0.0f;
    for (int c = 0; c < C; c++) {
        float gw = g[c] * (w ? w[c] : 1.0f);
        sum_g += gw;
        sum_gx += gw * (x[c] - m) * r;
    }
    sum_g /= (float)C;
    sum_gx /= (float)C;
    for (int c = 0; c < C; c++) dx[c] += r * (g[c] * (w ? w[c] : 1.0f) - sum_g - (x[c] - m) * r * sum_gx);
}

/* dw[c0:c1] += Σ_n g x̂ ;  db[c0:c1] += Σ_n g */
PC_SIMD_CLONES static void ln_param_grads(float *dw, float *db, const float *dout, const float *x, const float *mean,
                                          const float *rstd, int N, int C, int c0, int c1) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *gr = dout + (size_t)n * C;
        float m = mean[n], r = rstd[n];
        if (dw)
            for (int c = c0; c < c1; c++) dw[c] += gr[c] * (xr[c] - m) * r;
        if (db)
            for (int c = c0; c < c1; c++) db[c] += gr[c];
    }
}

/* x, out [N,C]; w, b [C] (NULL = 1, 0); mean, rstd [N] */
void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                       int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        ln_row_forward(out + (size_t)n * C, mean + n, rstd + n, x + (size_t)n * C, w, b, C, eps);
}

/* dx [N,C] +=, dw, db [C] += (either may be NULL) */
void layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                        const float *mean, const float *rstd, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        ln_row_backward(dx + (size_t)n * C, dout + (size_t)n * C, x + (size_t)n * C, w, mean[n], rstd[n], C);
    if (!dw && !db) return;
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += NORM_COLS)
        ln_param_grads(dw, db, dout, x, mean, rstd, N, C, c0, c0 + NORM_COLS < C ? c0 + NORM_COLS : C);
}
