/* kernels/dropout: the mask's statistics (keep rate within 5 sigma of 1 − p, no correlation between
 * neighbours, keys independent), outputs against the mask, the same mask for any thread count, and the
 * backward against finite differences of Σ w·dropout(x) for a fixed mask. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/alloc.h"
#include "kernels/dropout.h"
#include "test_support.h"

enum { N = 100003 }; /* not a multiple of the kernel's block */

static void test_mask_statistics(void) {
    float *in = pc_malloc(sizeof(float) * N), *out = pc_malloc(sizeof(float) * N);
    uint8_t *keep = pc_malloc(N), *keep2 = pc_malloc(N);
    pc_rng rng;
    pc_rng_seed(&rng, 7);
    test_fill_uniform(&rng, in, N, 0.5f, 2.0f); /* never 0: a zero output means a dropped element */
    const float ps[] = {0.05f, 0.1f, 0.5f, 0.9f};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        float p = ps[k];
        dropout_forward(out, keep, in, N, p, 12345u + k);
        long kept = 0, pairs = 0, bad = 0;
        for (long i = 0; i < N; i++) {
            kept += keep[i];
            if (i) pairs += keep[i] && keep[i - 1];
            float want = keep[i] ? in[i] / (1.0f - p) : 0.0f;
            bad += keep[i] > 1 || fabsf(out[i] - want) > 1e-6f * fabsf(want);
        }
        CHECK(bad == 0, "p=%g: %ld outputs disagree with the mask", p, bad);
        double q = 1.0 - p, sigma = sqrt(N * q * (1 - q));
        CHECK(fabs(kept - N * q) < 5 * sigma, "p=%g: kept %ld of %d, expected %.0f ± %.0f", p, kept, N, N * q, 5 * sigma);
        /* neighbours kept together as often as independence predicts */
        double pair_sigma = sqrt((N - 1) * q * q * (1 - q * q));
        CHECK(fabs(pairs - (N - 1) * q * q) < 5 * pair_sigma, "p=%g: %ld kept neighbour pairs, expected %.0f", p,
              pairs, (N - 1) * q * q);
        /* another key: an independent mask (agreement q² + (1−q)² on average) */
        dropout_forward(out, keep2, in, N, p, 999u + k);
        long same = 0;
        for (long i = 0; i < N; i++) same += keep[i] == keep2[i];
        double agree = q * q + (1 - q) * (1 - q), agree_sigma = sqrt(N * agree * (1 - agree));
        CHECK(fabs(same - N * agree) < 5 * agree_sigma, "p=%g: masks of two keys agree on %ld, expected %.0f", p, same,
              N * agree);
    }
    pc_free(in);
    pc_free(out);
    pc_free(keep);
    pc_free(keep2);
}

static void test_thread_invariance(void) {
    float *in = pc_malloc(sizeof(float) * N), *out1 = pc_malloc(sizeof(float) * N), *out2 = pc_malloc(sizeof(float) * N);
    uint8_t *keep1 = pc_malloc(N), *keep2 = pc_malloc(N);
    pc_rng rng;
    pc_rng_seed(&rng, 8);
    test_fill_uniform(&rng, in, N, -1.0f, 1.0f);
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    dropout_forward(out1, keep1, in, N, 0.3f, 42);
    omp_set_num_threads(threads > 1 ? threads : 3);
    dropout_forward(out2, keep2, in, N, 0.3f, 42);
    omp_set_num_threads(threads);
    CHECK(memcmp(keep1, keep2, N) == 0 && memcmp(out1, out2, sizeof(float) * N) == 0,
          "the mask depends on the thread count");
    pc_free(in);
    pc_free(out1);
    pc_free(out2);
    pc_free(keep1);
    pc_free(keep2);
}

/* f(x) = Σ w·dropout(x) with the mask of key 5 */
typedef struct fd_ctx {
    float *x, *w, *out;
    uint8_t *keep;
    long n;
    float p;
} fd_ctx;

static double weighted_sum(void *vctx) {
    fd_ctx *c = vctx;
    dropout_forward(c->out, c->keep, c->x, (size_t)c->n, c->p, 5);
    double s = 0;
    for (long i = 0; i < c->n; i++) s += (double)c->w[i] * c->out[i];
    return s;
}

static void test_backward(void) {
    enum { M = 300 };
    float x[M], w[M], out[M], din[M], fd[M];
    uint8_t keep[M];
    pc_rng rng;
    pc_rng_seed(&rng, 9);
    test_fill_uniform(&rng, x, M, -1.0f, 1.0f);
    test_fill_uniform(&rng, w, M, -1.0f, 1.0f);
    fd_ctx c = {x, w, out, keep, M, 0.25f};
    finite_diff(weighted_sum, &c, x, M, 1e-2, fd);
    dropout_forward(out, keep, x, M, c.p, 5);
    dropout_backward(din, w, keep, M, c.p, 0);
    expect_close("dropout backward vs finite differences", din, fd, M, 1e-3, 1e-4);
    /* accumulate adds to what is there */
    float acc[M];
    for (int i = 0; i < M; i++) acc[i] = 1.0f;
    dropout_backward(acc, w, keep, M, c.p, 1);
    long bad = 0;
    for (int i = 0; i < M; i++) bad += fabsf(acc[i] - (1.0f + din[i])) > 1e-6f;
    CHECK(bad == 0, "accumulating backward: %ld elements wrong", bad);
}

int main(void) {
    test_mask_statistics();
    test_thread_invariance();
    test_backward();
    return test_finish();
}
