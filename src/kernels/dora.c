/* DoRA's row norms and element-wise pieces (see dora.h). The loops over rows are OpenMP's; the work on one row
 * (or one block of columns) is a PC_SIMD_CLONES function, so it runs AVX-512-wide where the CPU has it: in
 * lora.c, compiled for the base ISA, the same loops were SSE2 and DoRA cost ~1.5 LoRA steps. */
#include "kernels/dora.h"

#include <assert.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/simd.h"

/* ‖w + s·Σ_k b[k]·A[k,:]‖ with w one row of W (fp32, or bf16 when w_bf16), built in row[0..in). */
PC_SIMD_CLONES static float adapted_row_norm(float *row, const void *w, int w_bf16, const float *A, const float *b,
                                             float s, int in, int r) {
    if (w_bf16) {
        const uint16_t *w16 = w;
        for (int i = 0; i < in; i++) row[i] = pc_bf16_to_f32(w16[i]);
    } else {
        memcpy(row, w, sizeof(float) * (size_t)in);
    }
    for (int k = 0; k < r; k++) {
        float c = s * b[k];
        const float *a = A + (size_t)k * in;
#pragma omp simd
        for (int i = 0; i < in; i++) row[i] += c * a[i];
    }
    float sum = 0.0f; /* summed in vector lanes, as torch's own reduction does: not in index order */
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < in; i++) sum += row[i] * row[i];
    return sqrtf(sum);
}

void dora_row_norms(float *norm, const void *W, pc_dtype w_dtype, const float *A, const float *B, float s, int out,
                    int in, int r, float *rows, int threads) {
    assert((w_dtype == PC_F32 || w_dtype == PC_BF16) && "dora: W in a compute dtype");
    int w_bf16 = w_dtype == PC_BF16;
    size_t w_row_bytes = (size_t)in * pc_dtype_size(w_dtype);
#pragma omp parallel num_threads(threads)
    {
        float *row = rows + (size_t)omp_get_thread_num() * (size_t)in;
#pragma omp for schedule(static)
        for (int o = 0; o < out; o++)
            norm[o] = adapted_row_norm(row, (const char *)W + (size_t)o * w_row_bytes, w_bf16, A, B + (size_t)o * r,
                                       s, in, r);
    }
}

PC_SIMD_CLONES static void combine_row(float *y, float *base, const float *lora, const float *g, int out) {
#pragma omp simd
    for (int o = 0; o < out; o++) {
        y[o] += (g[o] - 1.0f) * base[o] + g[o] * lora[o];
        base[o] += lora[o];
    }
}

void dora_combine_forward(float *y, float *base, const float *lora, const float *gain, int N, int out) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        size_t at = (size_t)n * out;
        combine_row(y + at, base + at, lora + at, gain, out);
    }
}

PC_SIMD_CLONES static void scale_row(float *dst, const float *dy, const float *g, float shift, int out) {
#pragma omp simd
    for (int o = 0; o < out; o++) dst[o] = (g[o] - shift) * dy[o];
}

void dora_scale_rows(float *dst, const float *dy, const float *gain, float shift, int N, int out) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        size_t at = (size_t)n * out;
        scale_row(dst + at, dy + at, gain, shift, out);
    }
}

/* Columns [o0, o0 + width) of dmag: each thread owns whole columns and walks every row, so no reduction
 * across threads is needed and the sum's order does not depend on the thread count. */
enum { DORA_COLUMN_BLOCK = 64 };
PC_SIMD_CLONES static void magnitude_block(float *dmag, const float *dy, const float *adapted, const float *norm,
                                           int N, int out, int o0, int width) {
    double acc[DORA_COLUMN_BLOCK] = {0};
    for (int n = 0; n < N; n++) {
        size_t row = (size_t)n * out + o0;
        const float *d = dy + row, *a = adapted + row;
        for (int j = 0; j < width; j++) acc[j] += (double)d[j] * (double)a[j];
    }
    for (int j = 0; j < width; j++) dmag[o0 + j] += (float)(acc[j] / norm[o0 + j]);
}

void dora_magnitude_backward(float *dmag, const float *dy, const float *adapted, const float *norm, int N, int out) {
    int blocks = (out + DORA_COLUMN_BLOCK - 1) / DORA_COLUMN_BLOCK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < blocks; blk++) {
        int o0 = blk * DORA_COLUMN_BLOCK, width = out - o0 < DORA_COLUMN_BLOCK ? out - o0 : DORA_COLUMN_BLOCK;
        magnitude_block(dmag, dy, adapted, norm, N, out, o0, width);
    }
}
