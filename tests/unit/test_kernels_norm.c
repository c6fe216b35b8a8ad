/* kernels/norm: RMSNorm and LayerNorm forwards against hand-computed values and a naive double reference;
 * every backward (dx, dw, db) against central finite differences of that double reference. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "kernels/norm.h"
#include "test_support.h"

static pc_rng rng;

static float *randf(long n, float lo, float hi) {
    float *x = pc_malloc(sizeof(float) * (size_t)n);
    test_fill_uniform(&rng, x, n, lo, hi);
    return x;
}

/* ---- naive double references ---- */
static void naive_rmsnorm(double *y, const float *x, const float *w, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)x[n * C + c] * x[n * C + c];
        double r = 1.0 / sqrt(ss / C + eps);
        for (int c = 0; c < C; c++) y[n * C + c] = w[c] * (x[n * C + c] * r);
    }
}

static void naive_layernorm(double *y, const float *x, const float *w, const float *b, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) m += x[n * C + c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[n * C + c] - m) * (x[n * C + c] - m);
        double r = 1.0 / sqrt(v / C + eps);
        for (int c = 0; c < C; c++) y[n * C + c] = (x[n * C + c] - m) * r * w[c] + b[c];
    }
}

static void test_hand_values(void) {
    /* x = [1 2 3 4]: mean(x²) = 7.5, 1/sqrt(7.5) = 0.3651483717; w = [0.5 1 2 −1] */
    float x[4] = {1, 2, 3, 4}, w[4] = {0.5f, 1, 2, -1}, y[4], r;
    float want[4] = {0.1825741858f, 0.7302967433f, 2.1908902300f, -1.4605934867f};
    rmsnorm_forward(y, &r, x, w, 1, 4, 0.0f);
    expect_close("rmsnorm hand values", y, want, 4, 1e-6, 1e-7);
    CHECK(fabsf(r - 0.3651483717f) < 1e-7f, "rmsnorm rstd %.9g", r);
    /* mean 2.5, biased var 1.25, rstd 0.894427191; w = 2, b = 1 */
    float w2[4] = {2, 2, 2, 2}, b2[4] = {1, 1, 1, 1}, m, ln_want[4] = {-1.6832815730f, 0.1055728090f, 1.8944271910f,
                                                                         3.6832815730f};
    layernorm_forward(y, &m, &r, x, w2, b2, 1, 4, 0.0f);
    expect_close("layernorm hand values", y, ln_want, 4, 1e-6, 1e-6);
    CHECK(m == 2.5f && fabsf(r - 0.894427191f) < 1e-7f, "layernorm mean %.9g rstd %.9g", m, r);
    /* Large offset: a one-pass variance would lose everything here. */
    float big[4] = {10000.5f, 10001.5f, 10002.5f, 10003.5f}, ones[4] = {1, 1, 1, 1}, zeros[4] = {0};
    float big_want[4] = {-1.3416407865f, -0.4472135955f, 0.4472135955f, 1.3416407865f};
    layernorm_forward(y, &m, &r, big, ones, zeros, 1, 4, 1e-5f);
    expect_close("layernorm with a large mean", y, big_want, 4, 1e-4, 1e-5);
}

static void test_forward_random(int N, int C) {
    float *x = randf((long)N * C, -2, 2), *w = randf(C, 0.5f, 1.5f), *b = randf(C, -1, 1);
    float *y = pc_malloc(sizeof(float) * N * C), *want = pc_malloc(sizeof(float) * N * C);
    float *r = pc_malloc(sizeof(float) * N), *m = pc_malloc(sizeof(float) * N);
    double *yd = pc_malloc(sizeof(double) * N * C);
    naive_rmsnorm(yd, x, w, N, C, 1e-6);
    for (long i = 0; i < (long)N * C; i++) want[i] = (float)yd[i];
    rmsnorm_forward(y, r, x, w, N, C, 1e-6f);
    CHECK(expect_close("rmsnorm forward vs naive", y, want, (long)N * C, 1e-5, 1e-6), "N=%d C=%d", N, C);
    naive_layernorm(yd, x, w, b, N, C, 1e-5);
    for (long i = 0; i < (long)N * C; i++) want[i] = (float)yd[i];
    layernorm_forward(y, m, r, x, w, b, N, C, 1e-5f);
    CHECK(expect_close("layernorm forward vs naive", y, want, (long)N * C, 1e-5, 1e-5), "N=%d C=%d", N, C);
    pc_free(x), pc_free(w), pc_free(b), pc_free(y), pc_free(want), pc_free(r), pc_free(m), pc_free(yd);
}

/* ---- finite differences: f = Σ G ⊙ norm(x) in double ---- */
typedef struct fd_ctx {
    float *x, *w, *b, *G;
    int N, C, layer; /* layer = 1: LayerNorm */
} fd_ctx;

static double objective(void *p) {
    fd_ctx *c = p;
    double y[64], f = 0.0; /* test shapes are tiny */
    for (int n = 0; n < c->N; n++) {
        if (c->layer)
            naive_layernorm(y, c->x + n * c->C, c->w, c->b, 1, c->C, 1e-5);
        else
            naive_rmsnorm(y, c->x + n * c->C, c->w, 1, c->C, 1e-5);
        for (int i = 0; i < c->C; i++) f += y[i] * c->G[n * c->C + i];
    }
    return f;
}

static void test_backward(int layer) {
    enum { N = 5, C = 13 };
    float *x = randf(N * C, -2, 2), *w = randf(C, 0.5f, 1.5f), *b = randf(C, -1, 1), *G = randf(N * C, -1, 1);
    float y[N * C], r[N], m[N], fd[N * C];
    /* Start the gradients from non-zero values: the backward must add, not overwrite. */
    float dx[N * C], dw[C], db[C], dx0[N * C], dw0[C], db0[C];
    test_fill_uniform(&rng, dx0, N * C, -1, 1);
    test_fill_uniform(&rng, dw0, C, -1, 1);
    test_fill_uniform(&rng, db0, C, -1, 1);
    memcpy(dx, dx0, sizeof dx), memcpy(dw, dw0, sizeof dw), memcpy(db, db0, sizeof db);
    if (layer) {
        layernorm_forward(y, m, r, x, w, b, N, C, 1e-5f);
        layernorm_backward(dx, dw, db, G, x, w, m, r, N, C);
    } else {
        rmsnorm_forward(y, r, x, w, N, C, 1e-5f);
        rmsnorm_backward(dx, dw, G, x, w, r, N, C);
    }
    for (int i = 0; i < N * C; i++) dx[i] -= dx0[i];
    for (int i = 0; i < C; i++) dw[i] -= dw0[i], db[i] -= db0[i];
    fd_ctx c = {x, w, b, G, N, C, layer};
    const char *name = layer ? "layernorm" : "rmsnorm";
    finite_diff(objective, &c, x, N * C, 1e-3, fd);
    CHECK(expect_close("dx vs finite differences", dx, fd, N * C, 1e-3, 1e-4), "%s dx", name);
    finite_diff(objective, &c, w, C, 1e-3, fd);
    CHECK(expect_close("dw vs finite differences", dw, fd, C, 1e-3, 1e-4), "%s dw", name);
    if (layer) {
        finite_diff(objective, &c, b, C, 1e-3, fd);
        CHECK(expect_close("db vs finite differences", db, fd, C, 1e-3, 1e-4), "%s db", name);
    }
    /* Frozen weights: dw = NULL still gives the same dx. */
    float dx_frozen[N * C];
    memcpy(dx_frozen, dx0, sizeof dx_frozen);
    if (layer)
        layernorm_backward(dx_frozen, NULL, NULL, G, x, w, m, r, N, C);
    else
        rmsnorm_backward(dx_frozen, NULL, G, x, w, r, N, C);
    for (int i = 0; i < N * C; i++) dx_frozen[i] -= dx0[i];
    CHECK(expect_close("dx with frozen weights", dx_frozen, dx, N * C, 1e-6, 1e-7), "%s", name);
    pc_free(x), pc_free(w), pc_free(b), pc_free(G);
}

int main(void) {
    pc_rng_seed(&rng, 77);
    test_hand_values();
    test_forward_random(7, 13);
    test_forward_random(33, 576);
    test_forward_random(3, 1000);
    test_backward(0);
    test_backward(1);
    return test_finish();
}
