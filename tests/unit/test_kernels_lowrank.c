/* kernels/lowrank: LoRA's rank-r products. Forward and backward against a plain double-precision loop on
 * shapes that are not multiples of the 16-column vectors or the 4×4 tiles (r = 1, 3, 8, 17, 64; in or out
 * above the 512-column segments), with 1, 2 and 3 threads; the backward (plain and through a dropout mask)
 * against central finite differences of the double reference. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "kernels/lowrank.h"
#include "test_support.h"

static pc_rng rng;

static float *randf(long n, float lo, float hi) {
    float *x = pc_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    test_fill_uniform(&rng, x, n, lo, hi);
    return x;
}

static float *copyf(const float *src, long n) {
    float *x = pc_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    memcpy(x, src, sizeof(float) * (size_t)n);
    return x;
}

/* ---- the double reference -------------------------------------------------------------------------- */

/* xa = x·Aᵀ and y = y0 + s·xa·Bᵀ (y0 NULL: no base). */
static void naive_forward(double *y, double *xa, const float *y0, const float *x, const float *A, const float *B,
                          double s, int N, int in, int out, int r) {
    for (int n = 0; n < N; n++) {
        for (int j = 0; j < r; j++) {
            double acc = 0;
            for (int i = 0; i < in; i++) acc += (double)x[(long)n * in + i] * A[(long)j * in + i];
            xa[(long)n * r + j] = acc;
        }
        for (int o = 0; o < out; o++) {
            double acc = y0 ? y0[(long)n * out + o] : 0.0;
            for (int j = 0; j < r; j++) acc += s * xa[(long)n * r + j] * B[(long)o * r + j];
            y[(long)n * out + o] = acc;
        }
    }
}

/* dB += s·dyᵀ·xa ; d_xa = s·dy·B ; dA += d_xaᵀ·x ; d_in += keep·keep_scale·(d_xa·A) (keep NULL: unmasked). */
static void naive_backward(double *d_in, double *dA, double *dB, double *d_xa, const float *dy, const float *x,
                           const float *xa, const float *A, const float *B, const uint8_t *keep, double keep_scale,
                           double s, int N, int in, int out, int r) {
    for (int n = 0; n < N; n++)
        for (int j = 0; j < r; j++) {
            double acc = 0;
            for (int o = 0; o < out; o++) acc += (double)dy[(long)n * out + o] * B[(long)o * r + j];
            d_xa[(long)n * r + j] = s * acc;
        }
    for (int o = 0; o < out; o++)
        for (int j = 0; j < r; j++) {
            double acc = 0;
            for (int n = 0; n < N; n++) acc += (double)dy[(long)n * out + o] * xa[(long)n * r + j];
            dB[(long)o * r + j] += s * acc;
        }
    for (int j = 0; j < r; j++)
        for (int i = 0; i < in; i++) {
            double acc = 0;
            for (int n = 0; n < N; n++) acc += d_xa[(long)n * r + j] * x[(long)n * in + i];
            dA[(long)j * in + i] += acc;
        }
    for (int n = 0; n < N; n++)
        for (int i = 0; i < in; i++) {
            double acc = 0;
            for (int j = 0; j < r; j++) acc += d_xa[(long)n * r + j] * A[(long)j * in + i];
            long k = (long)n * in + i;
            d_in[k] += keep ? (keep[k] ? keep_scale * acc : 0.0) : acc;
        }
}

static double *to_double(const float *src, long n) {
    double *d = pc_malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    for (long i = 0; i < n; i++) d[i] = src[i];
    return d;
}

static int close_to(const char *what, const float *got, const double *want, long n, double tol) {
    float *w = pc_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (long i = 0; i < n; i++) w[i] = (float)want[i];
    int ok = expect_close(what, got, w, n, tol, tol);
    pc_free(w);
    return ok;
}

/* ---- kernels against the reference ----------------------------------------------------------------- */

static void test_shape(int N, int in, int out, int r, int threads, int masked, lowrank_isa isa) {
    float s = 2.0f / (float)r, keep_scale = 1.0f / 0.75f;
    long nx = (long)N * in, ny = (long)N * out;
    float *x = randf(nx, -1, 1), *A = randf((long)r * in, -1, 1), *B = randf((long)out * r, -1, 1);
    float *y0 = randf(ny, -1, 1), *dy = randf(ny, -1, 1), *din0 = randf(nx, -1, 1);
    float *dA0 = randf((long)r * in, -1, 1), *dB0 = randf((long)out * r, -1, 1);
    uint8_t *keep = NULL;
    if (masked) {
        keep = pc_malloc((size_t)(nx > 0 ? nx : 1));
        for (long k = 0; k < nx; k++) {
            keep[k] = pc_rng_uniform(&rng) < 0.75f;
            if (!keep[k]) x[k] = 0.0f; /* x is the dropped input */
        }
    }
    lowrank_scratch scratch = {pc_malloc(sizeof(float) * lowrank_scratch_floats(in, out, r, threads)), threads, isa};
    lowrank_shape sh = {N, in, out, r, s};
    char where[128];
    snprintf(where, sizeof where, "%s N=%d in=%d out=%d r=%d threads=%d isa=%d", masked ? "masked" : "plain", N, in,
             out, r, threads, (int)isa);
    double *y_want = pc_malloc(sizeof(double) * (size_t)(ny + 1));
    double *xa_want = pc_malloc(sizeof(double) * (size_t)(N * r + 1));

    /* forward, accumulating into y0 and overwriting a y full of NaN */
    float *y = copyf(y0, ny), *xa = randf((long)N * r, -1, 1);
    lowrank_forward(y, xa, x, A, B, &sh, 1, &scratch);
    naive_forward(y_want, xa_want, y0, x, A, B, s, N, in, out, r);
    CHECK(close_to("xa", xa, xa_want, (long)N * r, 1e-5), "%s", where);
    CHECK(close_to("y += s·xa·Bᵀ", y, y_want, ny, 1e-5), "%s", where);
    for (long k = 0; k < ny; k++) y[k] = NAN;
    lowrank_forward(y, xa, x, A, B, &sh, 0, &scratch);
    naive_forward(y_want, xa_want, NULL, x, A, B, s, N, in, out, r);
    CHECK(close_to("y = s·xa·Bᵀ", y, y_want, ny, 1e-5), "%s", where);

    /* backward from the kernel's xa, accumulating into non-zero gradients */
    float *din = copyf(din0, nx), *dA = copyf(dA0, (long)r * in), *dB = copyf(dB0, (long)out * r);
    float *dxa = randf((long)N * r, -1, 1);
    lowrank_backward(din, dA, dB, dxa, dy, x, xa, A, B, keep, keep_scale, &sh, &scratch);
    double *din_want = to_double(din0, nx), *dA_want = to_double(dA0, (long)r * in),
           *dB_want = to_double(dB0, (long)out * r), *dxa_want = pc_malloc(sizeof(double) * (size_t)(N * r + 1));
    naive_backward(din_want, dA_want, dB_want, dxa_want, dy, x, xa, A, B, keep, keep_scale, s, N, in, out, r);
    CHECK(close_to("d_xa", dxa, dxa_want, (long)N * r, 1e-5), "%s", where);
    CHECK(close_to("dB", dB, dB_want, (long)out * r, 1e-5), "%s", where);
    CHECK(close_to("dA", dA, dA_want, (long)r * in, 1e-5), "%s", where);
    CHECK(close_to("d_in", din, din_want, nx, 1e-5), "%s", where);

    pc_free(x), pc_free(A), pc_free(B), pc_free(y0), pc_free(dy), pc_free(din0), pc_free(dA0), pc_free(dB0);
    pc_free(keep), pc_free(scratch.data), pc_free(y_want), pc_free(xa_want), pc_free(y), pc_free(xa);
    pc_free(din), pc_free(dA), pc_free(dB), pc_free(dxa), pc_free(din_want), pc_free(dA_want), pc_free(dB_want);
    pc_free(dxa_want);
}

/* N = 0 touches nothing. */
static void test_empty(void) {
    float canary = 3.0f, scratch_data[64];
    lowrank_scratch scratch = {scratch_data, 1, LOWRANK_ISA_AUTO};
    lowrank_shape sh = {0, 4, 4, 1, 1.0f};
    lowrank_forward(&canary, &canary, &canary, &canary, &canary, &sh, 1, &scratch);
    lowrank_backward(&canary, &canary, &canary, &canary, &canary, &canary, &canary, &canary, &canary, NULL, 1.0f, &sh,
                     &scratch);
    CHECK(canary == 3.0f, "N = 0 wrote %g", canary);
}

/* ---- finite differences: f = Σ G ⊙ y(drop(x), A, B) in double ------------------------------------------ */

typedef struct fd_ctx {
    float *x, *A, *B, *G;
    const uint8_t *keep; /* NULL: no dropout */
    float keep_scale, s;
    int N, in, out, r;
} fd_ctx;

static double objective(void *p) {
    fd_ctx *c = p;
    enum { MAX = 256 };
    float xd[MAX];
    double y[MAX], xa[MAX], f = 0.0;
    for (int k = 0; k < c->N * c->in; k++) xd[k] = c->keep ? (c->keep[k] ? c->x[k] * c->keep_scale : 0.0f) : c->x[k];
    naive_forward(y, xa, NULL, xd, c->A, c->B, c->s, c->N, c->in, c->out, c->r);
    for (int k = 0; k < c->N * c->out; k++) f += y[k] * c->G[k];
    return f;
}

static void test_finite_differences(int masked) {
    enum { N = 5, IN = 19, OUT = 17, R = 3 };
    float keep_scale = 1.0f / 0.6f, s = 1.5f;
    float *x = randf(N * IN, -1, 1), *A = randf(R * IN, -1, 1), *B = randf(OUT * R, -1, 1), *G = randf(N * OUT, -1, 1);
    uint8_t keep[N * IN];
    float xd[N * IN];
    for (int k = 0; k < N * IN; k++) {
        keep[k] = pc_rng_uniform(&rng) < 0.6f;
        xd[k] = masked ? (keep[k] ? x[k] * keep_scale : 0.0f) : x[k];
    }
    float y[N * OUT], xa[N * R], dxa[N * R], din[N * IN] = {0}, dA[R * IN] = {0}, dB[OUT * R] = {0};
    float fd_x[N * IN], fd_A[R * IN], fd_B[OUT * R];
    lowrank_scratch scratch = {pc_malloc(sizeof(float) * lowrank_scratch_floats(IN, OUT, R, 2)), 2, LOWRANK_ISA_AUTO};
    lowrank_shape sh = {N, IN, OUT, R, s};
    lowrank_forward(y, xa, xd, A, B, &sh, 0, &scratch);
    lowrank_backward(din, dA, dB, dxa, G, xd, xa, A, B, masked ? keep : NULL, keep_scale, &sh, &scratch);
    fd_ctx c = {x, A, B, G, masked ? keep : NULL, keep_scale, s, N, IN, OUT, R};
    const char *mode = masked ? "through the dropout mask" : "plain";
    finite_diff(objective, &c, x, N * IN, 1e-2, fd_x);
    CHECK(expect_close("d_in vs finite differences", din, fd_x, N * IN, 1e-3, 1e-4), "%s", mode);
    finite_diff(objective, &c, A, R * IN, 1e-2, fd_A);
    CHECK(expect_close("dA vs finite differences", dA, fd_A, R * IN, 1e-3, 1e-4), "%s", mode);
    finite_diff(objective, &c, B, OUT * R, 1e-2, fd_B);
    CHECK(expect_close("dB vs finite differences", dB, fd_B, OUT * R, 1e-3, 1e-4), "%s", mode);
    pc_free(x), pc_free(A), pc_free(B), pc_free(G), pc_free(scratch.data);
}

/* The variants this CPU can run: every one of them is checked, not only the one AUTO picks. */
static int isa_runs(lowrank_isa isa) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    if (isa == LOWRANK_ISA_AVX512) return __builtin_cpu_supports("avx512f");
    if (isa == LOWRANK_ISA_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return 1;
#else
    return isa == LOWRANK_ISA_PLAIN || isa == LOWRANK_ISA_AUTO;
#endif
}

int main(void) {
    pc_rng_seed(&rng, 2024);
    test_empty();
    static const int ranks[] = {1, 3, 8, 17, 64};
    static const int shapes[][3] = {{7, 37, 23}, {13, 50, 19}, {33, 100, 70}, {6, 530, 9}, {9, 21, 531}};
    static const lowrank_isa isas[] = {LOWRANK_ISA_AUTO, LOWRANK_ISA_PLAIN, LOWRANK_ISA_AVX2, LOWRANK_ISA_AVX512};
    for (int v = 0; v < 4; v++) {
        if (!isa_runs(isas[v])) continue;
        for (int t = 1; t <= 3; t++) {
            omp_set_num_threads(t);
            for (int k = 0; k < 5; k++)
                for (int q = 0; q < 5; q++)
                    test_shape(shapes[q][0], shapes[q][1], shapes[q][2], ranks[k], t, 0, isas[v]);
            test_shape(33, 100, 70, 8, t, 1, isas[v]);
            test_shape(13, 530, 19, 17, t, 1, isas[v]);
        }
    }
    /* More threads offered than the scratch was sized for: the call uses fewer. */
    omp_set_num_threads(3);
    test_shape(33, 100, 70, 8, 1, 0, LOWRANK_ISA_AUTO);
    test_finite_differences(0);
    test_finite_differences(1);
    return test_finish();
}
