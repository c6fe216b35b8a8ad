/* kernels/activation: GELU (tanh), SwiGLU and ReLU forwards against PyTorch values and a double reference;
 * every backward against central finite differences (and checked to accumulate). */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "kernels/activation.h"
#include "kernels/simd.h"
#include "test_support.h"

static pc_rng rng;

static double gelu_ref(double x) { return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }
static double silu_ref(double g) { return g / (1.0 + exp(-g)); }

static void test_torch_values(void) {
    /* torch.nn.functional.gelu(x, approximate='tanh') and silu(g)·u, torch 1.13, float32 */
    float x[5] = {1, -1, 2, 0.5f, -3}, y[5];
    float gelu_want[5] = {0.841192007f, -0.158807993f, 1.95459771f, 0.345714003f, -0.00363743305f};
    gelu_tanh_forward(y, x, 5);
    expect_close("gelu_tanh vs torch", y, gelu_want, 5, 2e-6, 1e-7);
    float g[3] = {1, -2, 0.3f}, u[3] = {2, 0.5f, -1.5f}, s[3], swiglu_want[3] = {1.4621172f, -0.119202919f,
                                                                                   -0.258499146f};
    swiglu_forward(s, g, u, 3);
    expect_close("swiglu vs torch", s, swiglu_want, 3, 2e-6, 1e-7);
    /* Extreme gates: no NaN, silu(−100) ≈ 0, silu(100) = 100. */
    float eg[2] = {-100, 100}, eu[2] = {1, 1}, es[2];
    swiglu_forward(es, eg, eu, 2);
    CHECK(fabsf(es[0]) < 1e-30f && es[1] == 100.0f, "swiglu at ±100: %g %g", es[0], es[1]);
    float r_in[4] = {-1, 0, 2, -0.5f}, r_out[4], r_want[4] = {0, 0, 2, 0};
    relu_forward(r_out, r_in, 4);
    expect_close("relu", r_out, r_want, 4, 0, 1e-30);
}

static void test_forward_large(void) {
    long n = 100003; /* several OpenMP chunks and a ragged tail */
    float *x = pc_malloc(sizeof(float) * n), *u = pc_malloc(sizeof(float) * n), *y = pc_malloc(sizeof(float) * n),
          *want = pc_malloc(sizeof(float) * n);
    test_fill_uniform(&rng, x, n, -6, 6);
    test_fill_uniform(&rng, u, n, -2, 2);
    gelu_tanh_forward(y, x, n);
    for (long i = 0; i < n; i++) want[i] = (float)gelu_ref(x[i]);
    expect_close("gelu_tanh forward, 100003 elements", y, want, n, 1e-5, 1e-6);
    swiglu_forward(y, x, u, n);
    for (long i = 0; i < n; i++) want[i] = (float)(silu_ref(x[i]) * u[i]);
    expect_close("swiglu forward, 100003 elements", y, want, n, 1e-5, 1e-6);
    pc_free(x), pc_free(u), pc_free(y), pc_free(want);
}

typedef struct fd_ctx {
    float *x, *u, *G;
    int n, kind; /* 0 gelu, 1 swiglu, 2 relu */
} fd_ctx;

static double objective(void *p) {
    fd_ctx *c = p;
    double f = 0.0;
    for (int i = 0; i < c->n; i++) {
        double y = c->kind == 0 ? gelu_ref(c->x[i]) : c->kind == 1 ? silu_ref(c->x[i]) * c->u[i]
                                                                   : (c->x[i] > 0 ? c->x[i] : 0.0);
        f += y * c->G[i];
    }
    return f;
}

static void test_backward(int kind) {
    enum { N = 40 };
    float x[N], u[N], G[N], dx[N], du[N], base[N], fd[N];
    test_fill_uniform(&rng, x, N, -4, 4);
    test_fill_uniform(&rng, u, N, -2, 2);
    test_fill_uniform(&rng, G, N, -1, 1);
    test_fill_uniform(&rng, base, N, -1, 1);
    if (kind == 2)
        for (int i = 0; i < N; i++)
            if (fabsf(x[i]) < 0.05f) x[i] = 0.5f; /* keep away from the kink */
    memcpy(dx, base, sizeof dx);
    memcpy(du, base, sizeof du);
    if (kind == 0) gelu_tanh_backward(dx, G, x, N);
    if (kind == 1) swiglu_backward(dx, du, G, x, u, N);
    if (kind == 2) relu_backward(dx, G, x, N);
    for (int i = 0; i < N; i++) dx[i] -= base[i], du[i] -= base[i];
    fd_ctx c = {x, u, G, N, kind};
    const char *name = kind == 0 ? "gelu_tanh" : kind == 1 ? "swiglu" : "relu";
    finite_diff(objective, &c, x, N, 1e-3, fd);
    CHECK(expect_close("d(input) vs finite differences", dx, fd, N, 1e-3, 1e-4), "%s", name);
    if (kind == 1) {
        finite_diff(objective, &c, u, N, 1e-3, fd);
        CHECK(expect_close("d(up) vs finite differences", du, fd, N, 1e-3, 1e-4), "swiglu dup");
    }
}

/* The vectorisable exp used by attention and cross-entropy, against double exp over its whole range. */
static void test_exp_approx(void) {
    double worst = 0.0;
    float worst_x = 0.0f;
    for (float x = -87.0f; x < 88.0f; x += 0.00173f) {
        double want = exp((double)x), rel = fabs(pc_exp_approx(x) - want) / want;
        if (rel > worst) worst = rel, worst_x = x;
    }
    CHECK(worst < 3e-7, "pc_exp_approx worst relative error %.3g at x = %g", worst, worst_x);
    CHECK(pc_exp_approx(-INFINITY) == 0.0f && pc_exp_approx(-100.0f) == 0.0f, "pc_exp_approx underflows to 0");
    CHECK(pc_exp_approx(0.0f) == 1.0f, "pc_exp_approx(0) = %.9g", pc_exp_approx(0.0f));
}

int main(void) {
    test_exp_approx();
    pc_rng_seed(&rng, 5);
    test_torch_values();
    test_forward_large();
    for (int kind = 0; kind < 3; kind++) test_backward(kind);
    return test_finish();
}
