/* Embedding lookup (row gather from an F32, BF16 or F16 table) and its scatter-add backward. */
#include <stddef.h>
#include <stdint.h>

#include "kernels/embedding.h"
#include "kernels/simd.h"

enum { EMB_COLS = 256 }; /* column range per task in the backward */

static void gather_row(float *out, const pc_tensor *table, long row, int C, int accumulate) {
    size_t base = (size_t)row * C;
    switch (table->dtype) {
    case PC_BF16: {
        const uint16_t *src = (const uint16_t *)table->data + base;
        for (int c = 0; c < C; c++) out[c] = (accumulate ? out[c] : 0.0f) + pc_bf16_to_f32(src[c]);
        break;
    }
    case PC_F16: {
        const uint16_t *src = (const uint16_t *)table->data + base;
        for (int c = 0; c < C; c++) out[c] = (accumulate ? out[c] : 0.0f) + pc_f16_to_f32(src[c]);
        break;
    }
    default: { /* F32: the model loader accepts no other dtype for embeddings */
        const float *src = (const float *)table->data + base;
        for (int c = 0; c < C; c++) out[c] = (accumulate ? out[c] : 0.0f) + src[c];
    }
    }
}

/* out[N,C] (=|+=) table[ids[n],:] */
void embedding_forward(float *out, const int *ids, const pc_tensor *table, int N, int C, int accumulate) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) gather_row(out + (size_t)n * C, table, ids[n], C, accumulate);
}

PC_SIMD_CLONES static void scatter_columns(float *dtable, const float *dout, const int *ids, int N, int C, int c0,
                                           int c1) {
    for (int n = 0; n < N; n++) {
        float *dst = dtable + (size_t)ids[n] * C;
        const float *src = dout + (size_t)n * C;
        for (int c = c0; c < c1; c++) dst[c] += src[c];
    }
}

/* dtable[ids[n],:] += dout[n,:]. Repeated ids would race if threads split rows, so each thread owns a range
 * of columns and walks every row: no atomics, and the summation order is fixed (deterministic). */
void embedding_backward(float *dtable, const float *dout, const int *ids, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += EMB_COLS)
        scatter_columns(dtable, dout, ids, N, C, c0, c0 + EMB_COLS < C ? c0 + EMB_COLS : C);
}
