/* kernels/matmul: every product against a naive double-precision reference written here, on both backends
 * (oneDNN when built with it, and the portable path forced by PEFTC_MATMUL=portable); bf16 weights against a
 * reference that rounds both operands to bf16; the linear backwards against central finite differences;
 * primitive reuse; handle errors. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/tensor.h"
#include "kernels/matmul.h"
#include "kernels/matmul_internal.h"
#include "test_support.h"

static pc_rng rng;

static float *randf(long n) {
    float *x = pc_malloc(sizeof(float) * (size_t)(n ? n : 1));
    test_fill_uniform(&rng, x, n, -1.0f, 1.0f);
    return x;
}

static float bf16_round(float x) { return pc_bf16_to_f32(pc_f32_to_bf16(x)); }

/* C = alpha·op(A)·op(B) + beta·C in double; beta == 0 ignores C (it may hold NaN). */
static void naive_gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int p = 0; p < K; p++) {
                double a = transA ? A[(long)p * lda + i] : A[(long)i * lda + p];
                double b = transB ? B[(long)j * ldb + p] : B[(long)p * ldb + j];
                s += a * b;
            }
            double c = beta == 0.0f ? 0.0 : (double)beta * C[(long)i * ldc + j];
            C[(long)i * ldc + j] = (float)(alpha * s + c);
        }
}

static pc_matmul *make_handle(const char *choice) {
    if (choice)
        setenv("PEFTC_MATMUL", choice, 1);
    else
        unsetenv("PEFTC_MATMUL");
    pc_matmul *mm = NULL;
    pc_error err = {0};
    pc_status st = pc_matmul_create(&mm, &err);
    CHECK(st == PC_OK, "pc_matmul_create(%s): %s", choice ? choice : "default", err.msg);
    unsetenv("PEFTC_MATMUL");
    return mm;
}

static void check_gemm_case(pc_matmul *mm, const char *backend, int tA, int tB, int M, int N, int K, float alpha,
                            float beta, int pad) {
    int lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
    long a_rows = tA ? K : M, b_rows = tB ? N : K;
    float *A = randf(a_rows * lda), *B = randf(b_rows * ldb), *C = randf((long)M * ldc);
    float *want = pc_malloc(sizeof(float) * (size_t)M * ldc);
    if (beta == 0.0f)
        for (long i = 0; i < (long)M * ldc; i++) C[i] = NAN; /* beta = 0 must not read C */
    memcpy(want, C, sizeof(float) * (size_t)M * ldc);
    naive_gemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, want, ldc);
    pc_gemm(mm, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    double worst = 0.0;
    for (int i = 0; i < M; i++) {
        double e = max_rel_err(C + (long)i * ldc, want + (long)i * ldc, N);
        worst = e > worst ? e : worst;
    }
    CHECK(worst < 2e-5, "%s gemm tA=%d tB=%d %dx%dx%d alpha=%g beta=%g pad=%d: rel err %.3g", backend, tA, tB, M, N,
          K, alpha, beta, pad, worst);
    pc_free(A), pc_free(B), pc_free(C), pc_free(want);
}

static void test_gemm(pc_matmul *mm, const char *backend) {
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++) {
            check_gemm_case(mm, backend, tA, tB, 37, 53, 71, 1.0f, 0.0f, 0);
            check_gemm_case(mm, backend, tA, tB, 37, 53, 71, 0.5f, 1.0f, 3);
            check_gemm_case(mm, backend, tA, tB, 5, 1, 9, -2.0f, 0.25f, 1);
            check_gemm_case(mm, backend, tA, tB, 1, 17, 300, 1.0f, 1.0f, 0);
        }
    /* Crosses every portable block boundary (MC = 96, KC = 256, NC = 1024). */
    check_gemm_case(mm, backend, 0, 1, 200, 1100, 300, 1.0f, 1.0f, 0);
    check_gemm_case(mm, backend, 1, 0, 131, 1030, 520, 1.0f, 0.0f, 2);
}

/* y = x·Wᵀ + b with W (and, for bf16 weights, x) rounded as the backend must. */
static void naive_linear(float *y, const float *x, const float *Wf, int w_bf16, const float *bias, int N, int in,
                         int out, int accumulate) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int i = 0; i < in; i++) {
                double xv = w_bf16 ? bf16_round(x[(long)n * in + i]) : x[(long)n * in + i];
                s += xv * Wf[(long)o * in + i];
            }
            y[(long)n * out + o] = (float)(s + (accumulate ? y[(long)n * out + o] : 0.0));
        }
}

static void test_linear(pc_matmul *mm, const char *backend, int N, int in, int out, pc_dtype wdt) {
    int bf = wdt == PC_BF16;
    float *x = randf((long)N * in), *Wf = randf((long)out * in), *bias = randf(out);
    uint16_t *W16 = pc_malloc(sizeof(uint16_t) * (size_t)out * in);
    for (long i = 0; i < (long)out * in; i++) {
        W16[i] = pc_f32_to_bf16(Wf[i]);
        if (bf) Wf[i] = pc_bf16_to_f32(W16[i]); /* the reference sees exactly the stored weight */
    }
    pc_tensor W = pc_tensor_2d(wdt, out, in, bf ? (void *)W16 : (void *)Wf);
    float *y = randf((long)N * out), *want = pc_malloc(sizeof(float) * (size_t)N * out);
    /* forward, overwrite then accumulate, with and without bias */
    naive_linear(want, x, Wf, bf, bias, N, in, out, 0);
    pc_linear_forward(mm, y, x, &W, bias, N, in, out, 0);
    CHECK(max_rel_err(y, want, (long)N * out) < 2e-5, "%s linear_forward %s %dx%dx%d: %.3g", backend,
          pc_dtype_name(wdt), N, in, out, max_rel_err(y, want, (long)N * out));
    naive_linear(want, x, Wf, bf, NULL, N, in, out, 1);
    pc_linear_forward(mm, y, x, &W, NULL, N, in, out, 1);
    CHECK(max_rel_err(y, want, (long)N * out) < 2e-5, "%s linear_forward accumulate %s: %.3g", backend,
          pc_dtype_name(wdt), max_rel_err(y, want, (long)N * out));
    /* backward input: dx += dy·W (dy rounded to bf16 for bf16 weights) */
    float *dy = randf((long)N * out), *dx = randf((long)N * in), *dx_want = pc_malloc(sizeof(float) * (size_t)N * in);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < in; i++) {
            double s = dx[(long)n * in + i];
            for (int o = 0; o < out; o++) {
                double g = bf ? bf16_round(dy[(long)n * out + o]) : dy[(long)n * out + o];
                s += g * Wf[(long)o * in + i];
            }
            dx_want[(long)n * in + i] = (float)s;
        }
    pc_linear_backward_input(mm, dx, dy, &W, N, in, out);
    CHECK(max_rel_err(dx, dx_want, (long)N * in) < 2e-5, "%s linear_backward_input %s: %.3g", backend,
          pc_dtype_name(wdt), max_rel_err(dx, dx_want, (long)N * in));
    pc_free(x), pc_free(Wf), pc_free(bias), pc_free(W16), pc_free(y), pc_free(want), pc_free(dy), pc_free(dx),
        pc_free(dx_want);
}

static void test_linear_backward_weight(pc_matmul *mm, const char *backend, int N, int in, int out) {
    float *x = randf((long)N * in), *dy = randf((long)N * out), *dW = randf((long)out * in), *db = randf(out);
    float *dW_want = pc_malloc(sizeof(float) * (size_t)out * in), *db_want = pc_malloc(sizeof(float) * out);
    for (int o = 0; o < out; o++) {
        double sb = db[o];
        for (int n = 0; n < N; n++) sb += dy[(long)n * out + o];
        db_want[o] = (float)sb;
        for (int i = 0; i < in; i++) {
            double s = dW[(long)o * in + i];
            for (int n = 0; n < N; n++) s += (double)dy[(long)n * out + o] * x[(long)n * in + i];
            dW_want[(long)o * in + i] = (float)s;
        }
    }
    pc_linear_backward_weight(mm, dW, db, dy, x, N, in, out);
    CHECK(max_rel_err(dW, dW_want, (long)out * in) < 2e-5, "%s linear_backward_weight dW %dx%dx%d: %.3g", backend, N,
          in, out, max_rel_err(dW, dW_want, (long)out * in));
    CHECK(max_rel_err(db, db_want, out) < 2e-5, "%s linear_backward_weight dbias: %.3g", backend,
          max_rel_err(db, db_want, out));
    pc_free(x), pc_free(dy), pc_free(dW), pc_free(db), pc_free(dW_want), pc_free(db_want);
}

/* Finite differences of f = Σ G ⊙ (x·Wᵀ + b) against the analytic backwards. */
typedef struct fd_ctx {
    const float *x, *W, *b, *G;
    int N, in, out;
} fd_ctx;

static double linear_objective(void *p) {
    fd_ctx *c = p;
    double f = 0.0;
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->out; o++) {
            double y = c->b[o];
            for (int i = 0; i < c->in; i++) y += (double)c->x[n * c->in + i] * c->W[o * c->in + i];
            f += y * c->G[n * c->out + o];
        }
    return f;
}

static void test_linear_finite_differences(pc_matmul *mm, const char *backend) {
    enum { N = 3, IN = 5, OUT = 4 };
    float *x = randf(N * IN), *W = randf(OUT * IN), *b = randf(OUT), *G = randf(N * OUT);
    float dx[N * IN] = {0}, dW[OUT * IN] = {0}, db[OUT] = {0}, fd[OUT * IN];
    pc_tensor Wt = pc_tensor_2d(PC_F32, OUT, IN, W);
    pc_linear_backward_input(mm, dx, G, &Wt, N, IN, OUT);
    pc_linear_backward_weight(mm, dW, db, G, x, N, IN, OUT);
    fd_ctx c = {x, W, b, G, N, IN, OUT};
    finite_diff(linear_objective, &c, x, N * IN, 1e-2, fd);
    CHECK(expect_close("linear dx vs finite differences", dx, fd, N * IN, 1e-3, 1e-4), "%s", backend);
    finite_diff(linear_objective, &c, W, OUT * IN, 1e-2, fd);
    CHECK(expect_close("linear dW vs finite differences", dW, fd, OUT * IN, 1e-3, 1e-4), "%s", backend);
    finite_diff(linear_objective, &c, b, OUT, 1e-2, fd);
    CHECK(expect_close("linear dbias vs finite differences", db, fd, OUT, 1e-3, 1e-4), "%s", backend);
    pc_free(x), pc_free(W), pc_free(b), pc_free(G);
}

static void run_backend(pc_matmul *mm, const char *expect_name) {
    const char *name = pc_matmul_backend(mm);
    CHECK(strcmp(name, expect_name) == 0, "backend is %s, expected %s", name, expect_name);
    test_gemm(mm, name);
    test_linear(mm, name, 17, 33, 29, PC_F32);
    test_linear(mm, name, 17, 33, 29, PC_BF16);
    test_linear(mm, name, 64, 576, 300, PC_F32);
    test_linear(mm, name, 64, 576, 300, PC_BF16);
    test_linear(mm, name, 1, 96, 40, PC_BF16); /* decoding: one row */
    test_linear_backward_weight(mm, name, 23, 31, 19);
    test_linear_backward_weight(mm, name, 300, 70, 130);
    test_linear_finite_differences(mm, name);
}

/* The two backends on an LM-sized product, directly against each other. */
static void test_backends_agree(pc_matmul *fast, pc_matmul *portable) {
    enum { N = 128, IN = 576, OUT = 1536 };
    float *x = randf((long)N * IN), *W = randf((long)OUT * IN), *y1 = randf((long)N * OUT), *y2 = randf((long)N * OUT);
    pc_tensor Wt = pc_tensor_2d(PC_F32, OUT, IN, W);
    pc_linear_forward(fast, y1, x, &Wt, NULL, N, IN, OUT, 0);
    pc_linear_forward(portable, y2, x, &Wt, NULL, N, IN, OUT, 0);
    CHECK(max_rel_err(y1, y2, (long)N * OUT) < 1e-5, "oneDNN vs portable fp32: %.3g", max_rel_err(y1, y2, (long)N * OUT));
    int before = pc_matmul_primitives_created(fast);
    pc_linear_forward(fast, y1, x, &Wt, NULL, N, IN, OUT, 0);
    pc_linear_forward(fast, y1, x, &Wt, NULL, N, IN, OUT, 0);
    CHECK(pc_matmul_primitives_created(fast) == before, "repeated shape reuses its primitive (%d -> %d)", before,
          pc_matmul_primitives_created(fast));
    CHECK(before > 0, "oneDNN created primitives");
    pc_free(x), pc_free(W), pc_free(y1), pc_free(y2);
}

static void test_handle_errors(void) {
    setenv("PEFTC_MATMUL", "gpu", 1);
    pc_matmul *mm = NULL;
    pc_error err = {0};
    CHECK(pc_matmul_create(&mm, &err) == PC_ERR_USAGE && mm == NULL, "unknown PEFTC_MATMUL value rejected");
    CHECK(strstr(err.msg, "PEFTC_MATMUL") != NULL, "message names the variable: %s", err.msg);
    unsetenv("PEFTC_MATMUL");
    for (long fail_at = 0; fail_at < 3; fail_at++) {
        pc_alloc_fail_after(fail_at);
        pc_status st = pc_matmul_create(&mm, &err);
        pc_alloc_fail_after(-1);
        if (st == PC_OK) {
            pc_matmul_destroy(mm);
        } else {
            CHECK(st == PC_ERR_NOMEM && mm == NULL, "allocation failure %ld gives NOMEM", fail_at);
        }
    }
    pc_alloc_fail_after(0);
    CHECK(pc_matmul_create(&mm, &err) == PC_ERR_NOMEM, "first allocation failing gives NOMEM");
    pc_alloc_fail_after(-1);
    pc_matmul_destroy(NULL); /* harmless */
}

int main(void) {
    pc_rng_seed(&rng, 1234);
    pc_matmul *portable = make_handle("portable");
    if (portable) run_backend(portable, "portable");
#ifdef PEFTC_HAVE_DNNL
    pc_matmul *fast = make_handle(NULL);
    if (fast) {
        run_backend(fast, "onednn");
        if (portable) test_backends_agree(fast, portable);
    }
    pc_matmul_destroy(fast);
#endif
    pc_matmul_destroy(portable);
    test_handle_errors();
    return test_finish();
}
