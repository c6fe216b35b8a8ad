/* kernels/xent: the fused LM head + cross-entropy against a naive double computation (logits, log-softmax,
 * ignored targets, row chunks that leave a ragged last chunk and a chunk with no live target); dh and dW
 * against central finite differences; bf16 heads against the bf16-rounded reference; lmhead_logits. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/tensor.h"
#include "kernels/xent.h"
#include "test_support.h"

static pc_rng rng;

enum { N = 7, C = 6, V = 11 };

static float bf16_round(float x) { return pc_bf16_to_f32(pc_f32_to_bf16(x)); }

/* Σ_n −log softmax(h_n·Wᵀ)[t_n] over t_n ≥ 0, in double; rounds h and W to bf16 when bf16 is set. */
static double naive_xent(const float *h, const float *W, const int *targets, int bf16) {
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        double z[V], m = -INFINITY, l = 0.0;
        for (int v = 0; v < V; v++) {
            z[v] = 0.0;
            for (int c = 0; c < C; c++) {
                double a = bf16 ? bf16_round(h[n * C + c]) : h[n * C + c];
                double w = bf16 ? bf16_round(W[v * C + c]) : W[v * C + c];
                z[v] += a * w;
            }
            m = z[v] > m ? z[v] : m;
        }
        for (int v = 0; v < V; v++) l += exp(z[v] - m);
        total += log(l) + m - z[targets[n]];
    }
    return total;
}

typedef struct fd_ctx {
    float *h, *W;
    const int *targets;
} fd_ctx;

static double objective(void *p) {
    fd_ctx *c = p;
    return naive_xent(c->h, c->W, c->targets, 0);
}

static void test_loss_and_grads(pc_matmul *mm, int chunk_rows) {
    float h[N * C], W[V * C], dh[N * C], dW[V * C], dh0[N * C], dW0[V * C], fd[V * C];
    /* rows 3 and 4 ignored: with chunk_rows = 2 the chunk {4} … and with 1, chunks 3 and 4 are empty */
    int targets[N] = {0, 10, 5, -1, -100, 3, 3};
    test_fill_uniform(&rng, h, N * C, -2, 2);
    test_fill_uniform(&rng, W, V * C, -2, 2);
    test_fill_uniform(&rng, dh0, N * C, -1, 1);
    test_fill_uniform(&rng, dW0, V * C, -1, 1);
    memcpy(dh, dh0, sizeof dh), memcpy(dW, dW0, sizeof dW);
    float scratch[N * V];
    long count = -1;
    pc_tensor Wt = pc_tensor_2d(PC_F32, V, C, W);
    const float scale = 0.25f;
    double loss = lmhead_xent(mm, dh, dW, h, &Wt, targets, N, C, V, scale, scratch, chunk_rows, &count);
    double want = naive_xent(h, W, targets, 0);
    CHECK(fabs(loss - want) < 1e-5 * fabs(want), "xent loss %.9g want %.9g (chunk_rows %d)", loss, want, chunk_rows);
    CHECK(count == 5, "xent count %ld", count);
    for (int i = 0; i < N * C; i++) dh[i] = (dh[i] - dh0[i]) / scale;
    for (int i = 0; i < V * C; i++) dW[i] = (dW[i] - dW0[i]) / scale;
    fd_ctx c = {h, W, targets};
    finite_diff(objective, &c, h, N * C, 1e-3, fd);
    CHECK(expect_close("xent dh vs finite differences", dh, fd, N * C, 1e-3, 1e-4), "chunk_rows %d", chunk_rows);
    finite_diff(objective, &c, W, V * C, 1e-3, fd);
    CHECK(expect_close("xent dW vs finite differences", dW, fd, V * C, 1e-3, 1e-4), "chunk_rows %d", chunk_rows);
    /* Loss only (no gradients) gives the same value and leaves scratch free to be garbage. */
    double loss_only = lmhead_xent(mm, NULL, NULL, h, &Wt, targets, N, C, V, scale, scratch, chunk_rows, NULL);
    CHECK(fabs(loss_only - loss) <= 1e-12 * fabs(loss), "loss without gradients %.12g vs %.12g", loss_only, loss);
}

static void test_bf16_head(pc_matmul *mm) {
    float h[N * C], W[V * C], scratch[N * V], logits[N * V], want_logits[N * V];
    uint16_t W16[V * C];
    int targets[N] = {1, 2, 3, 4, 5, 6, 7};
    test_fill_uniform(&rng, h, N * C, -2, 2);
    test_fill_uniform(&rng, W, V * C, -2, 2);
    for (int i = 0; i < V * C; i++) W16[i] = pc_f32_to_bf16(W[i]);
    pc_tensor Wt = pc_tensor_2d(PC_BF16, V, C, W16);
    long count = 0;
    double loss = lmhead_xent(mm, NULL, NULL, h, &Wt, targets, N, C, V, 1.0f, scratch, 4, &count);
    double want = naive_xent(h, W, targets, 1);
    CHECK(fabs(loss - want) < 1e-5 * fabs(want) && count == N, "bf16 head loss %.9g want %.9g", loss, want);
    lmhead_logits(mm, logits, h, &Wt, N, C, V);
    for (int n = 0; n < N; n++)
        for (int v = 0; v < V; v++) {
            double z = 0.0;
            for (int c = 0; c < C; c++) z += (double)bf16_round(h[n * C + c]) * bf16_round(W[v * C + c]);
            want_logits[n * V + v] = (float)z;
        }
    expect_close("lmhead_logits (bf16 head) vs naive", logits, want_logits, N * V, 1e-5, 1e-6);
}

/* Logits far from zero: the max subtraction must keep the loss finite and exact. */
static void test_large_logits(pc_matmul *mm) {
    float h[C] = {100, 0, 0, 0, 0, 0}, W[V * C] = {0}, scratch[V], dh[C] = {0};
    for (int v = 0; v < V; v++) W[v * C] = (float)v; /* logits 0, 100, …, 1000 */
    int target = 9;                                  /* logit 900: loss ≈ 100 + log(1 + e^−100 + …) */
    pc_tensor Wt = pc_tensor_2d(PC_F32, V, C, W);
    double loss = lmhead_xent(mm, dh, NULL, h, &Wt, &target, 1, C, V, 1.0f, scratch, 1, NULL);
    CHECK(isfinite(loss) && fabs(loss - 100.0) < 1e-6, "large-logit loss %.9g (want 100)", loss);
    CHECK(isfinite(dh[0]) && fabs(dh[0] - 1.0f) < 1e-5, "large-logit gradient %.9g (want 10 − 9 = 1)", dh[0]);
}

int main(void) {
    pc_rng_seed(&rng, 99);
    pc_matmul *mm = NULL;
    pc_error err = {0};
    if (pc_matmul_create(&mm, &err) != PC_OK) {
        test_fail_setup("pc_matmul_create: %s", err.msg);
        return test_finish();
    }
    int chunks[] = {1, 2, 3, N, 100};
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) test_loss_and_grads(mm, chunks[i]);
    test_bf16_head(mm);
    test_large_logits(mm);
    pc_matmul_destroy(mm);
    return test_finish();
}
