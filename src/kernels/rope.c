/* Rotary position embedding, HF rotate-half layout. The tables are built the way transformers builds them
 * in float32: inv_freq_i = 1 / theta^(2i/hd) (exponent and power in float), angle = float(pos)·inv_freq_i
 * (one float product), then cos and sin of that float angle, so positions far out match torch bit-for-bit
 * up to the last ulp of cos/sin. */
#include <math.h>
#include <stddef.h>

#include "kernels/rope.h"
#include "kernels/simd.h"

/* cos_table, sin_table [max_pos, hd/2] */
void rope_table_init(float *cos_table, float *sin_table, int max_pos, int hd, float theta) {
    int half = hd / 2;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < max_pos; p++) {
        for (int i = 0; i < half; i++) {
            float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
            float angle = (float)p * inv_freq;
            cos_table[(size_t)p * half + i] = cosf(angle);
            sin_table[(size_t)p * half + i] = sinf(angle);
        }
    }
}

/* Rotate every head of one row by the angles (c, s): sign = +1 forward, −1 for the transpose (backward).
 *   y[i] = x[i]·c − sign·x[i+h]·s,   y[i+h] = x[i+h]·c + sign·x[i]·s */
PC_SIMD_CLONES static void rotate_row(float *x, const float *c, const float *s, float sign, int heads, int hd) {
    int half = hd / 2;
    for (int h = 0; h < heads; h++) {
        float *lo = x + (size_t)h * hd, *hi = lo + half;
        for (int i = 0; i < half; i++) {
            float a = lo[i], b = hi[i];
            lo[i] = a * c[i] - sign * b * s[i];
            hi[i] = b * c[i] + sign * a * s[i];
        }
    }
}

/* x [N, heads, hd] in place; pos [N] */
void rope_forward(float *x, const int *pos, const float *cos_table, const float *sin_table, int N, int heads,
                  int hd) {
    int half = hd / 2;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        rotate_row(x + (size_t)n * heads * hd, cos_table + (size_t)pos[n] * half, sin_table + (size_t)pos[n] * half,
                   1.0f, heads, hd);
}

/* dx [N, heads, hd] in place: a rotation's transpose is the rotation by −angle. */
void rope_backward(float *dx, const int *pos, const float *cos_table, const float *sin_table, int N, int heads,
                   int hd) {
    int half = hd / 2;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        rotate_row(dx + (size_t)n * heads * hd, cos_table + (size_t)pos[n] * half, sin_table + (size_t)pos[n] * half,
                   -1.0f, heads, hd);
}
