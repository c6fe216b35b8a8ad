/* kernels/rope: tables against values produced by transformers' float32 recipe in PyTorch; forward against a
 * double reference of the rotate-half formula; backward against finite differences and as the exact
 * inverse (rotation by −angle). */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "kernels/rope.h"
#include "test_support.h"

static pc_rng rng;

/* torch 1.13: inv_freq = 1/(theta ** (arange(0,hd,2).float()/hd)); freqs = outer(arange(pos+1).float(), inv_freq);
 * cos/sin at [pos, i] for i in {0, 1, 5, hd/2−1}. */
typedef struct rope_golden {
    int hd;
    float theta;
    int pos;
    float cos_v[4], sin_v[4];
} rope_golden;

static const rope_golden goldens[] = {
    {64, 10000.0f, 17, {-0.275163352f, 0.983514309f, -0.629611969f, 0.999997437f},
     {-0.961397529f, 0.180830449f, -0.776909769f, 0.00226698467f}},
    {64, 10000.0f, 1000, {0.562379062f, -0.584592879f, -0.0528610758f, 0.991121769f},
     {0.826879561f, 0.811326802f, -0.998601854f, 0.132957265f}},
    {64, 10000.0f, 4095, {-0.0659759939f, -0.0900463611f, -0.947527826f, 0.854568422f},
     {-0.997821212f, -0.995937586f, -0.31967333f, 0.519338846f}},
    {128, 1000000.0f, 1000, {0.562379062f, -0.0237062536f, 0.863400638f, 0.999999225f},
     {0.826879561f, 0.999718964f, 0.504518926f, 0.00124093739f}},
    {128, 1000000.0f, 4095, {-0.0659759939f, 0.313858807f, -0.987344682f, 0.999987125f},
     {-0.997821212f, 0.949469686f, 0.158588961f, 0.0050816182f}},
};

static void test_tables(void) {
    for (size_t g = 0; g < sizeof goldens / sizeof goldens[0]; g++) {
        const rope_golden *t = &goldens[g];
        int half = t->hd / 2, max_pos = t->pos + 1;
        float *c = pc_malloc(sizeof(float) * (size_t)max_pos * half), *s = pc_malloc(sizeof(float) * (size_t)max_pos * half);
        rope_table_init(c, s, max_pos, t->hd, t->theta);
        int idx[4] = {0, 1, 5, half - 1};
        float got_c[4], got_s[4];
        for (int i = 0; i < 4; i++) got_c[i] = c[(size_t)t->pos * half + idx[i]], got_s[i] = s[(size_t)t->pos * half + idx[i]];
        /* Same float32 angle as torch ⇒ agreement to cos/sin rounding, even at position 4095 where one ulp
         * of the angle would already move cos by ~5e-4. */
        CHECK(expect_close("rope cos vs torch", got_c, t->cos_v, 4, 0, 2e-6), "hd=%d theta=%g pos=%d", t->hd,
              t->theta, t->pos);
        CHECK(expect_close("rope sin vs torch", got_s, t->sin_v, 4, 0, 2e-6), "hd=%d theta=%g pos=%d", t->hd,
              t->theta, t->pos);
        pc_free(c), pc_free(s);
    }
}

enum { N = 6, HEADS = 3, HD = 8, MAXPOS = 50 };

static void rope_ref(double *y, const float *x, const int *pos, const float *c, const float *s) {
    int half = HD / 2;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < HEADS; h++) {
            const float *xv = x + (n * HEADS + h) * HD;
            double *yv = y + (n * HEADS + h) * HD;
            for (int i = 0; i < half; i++) {
                double cc = c[pos[n] * half + i], ss = s[pos[n] * half + i];
                yv[i] = xv[i] * cc - xv[i + half] * ss;
                yv[i + half] = xv[i + half] * cc + xv[i] * ss;
            }
        }
}

typedef struct fd_ctx {
    float *x, *G, *c, *s;
    int *pos;
} fd_ctx;

static double objective(void *p) {
    fd_ctx *ctx = p;
    double y[N * HEADS * HD], f = 0.0;
    rope_ref(y, ctx->x, ctx->pos, ctx->c, ctx->s);
    for (int i = 0; i < N * HEADS * HD; i++) f += y[i] * ctx->G[i];
    return f;
}

static void test_forward_backward(void) {
    float c[MAXPOS * HD / 2], s[MAXPOS * HD / 2], x[N * HEADS * HD], y[N * HEADS * HD], G[N * HEADS * HD],
        fd[N * HEADS * HD], want[N * HEADS * HD];
    double yd[N * HEADS * HD];
    int pos[N] = {0, 1, 7, 49, 3, 3};
    rope_table_init(c, s, MAXPOS, HD, 10000.0f);
    test_fill_uniform(&rng, x, N * HEADS * HD, -1, 1);
    test_fill_uniform(&rng, G, N * HEADS * HD, -1, 1);
    memcpy(y, x, sizeof y);
    rope_forward(y, pos, c, s, N, HEADS, HD);
    rope_ref(yd, x, pos, c, s);
    for (int i = 0; i < N * HEADS * HD; i++) want[i] = (float)yd[i];
    expect_close("rope forward vs reference", y, want, N * HEADS * HD, 1e-6, 1e-7);
    expect_close("rope at position 0 is the identity", y, x, HEADS * HD, 0, 1e-30);
    float dx[N * HEADS * HD];
    memcpy(dx, G, sizeof dx);
    rope_backward(dx, pos, c, s, N, HEADS, HD);
    fd_ctx ctx = {x, G, c, s, pos};
    finite_diff(objective, &ctx, x, N * HEADS * HD, 1e-2, fd);
    expect_close("rope backward vs finite differences", dx, fd, N * HEADS * HD, 1e-3, 1e-5);
    rope_backward(y, pos, c, s, N, HEADS, HD); /* rotating back recovers x */
    expect_close("rope backward inverts forward", y, x, N * HEADS * HD, 1e-5, 1e-6);
}

int main(void) {
    pc_rng_seed(&rng, 11);
    test_tables();
    test_forward_backward();
    return test_finish();
}
