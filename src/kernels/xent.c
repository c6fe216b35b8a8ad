/* LM head fused with cross-entropy, a block of rows at a time: logits for chunk_rows rows go into the
 * caller's scratch, are turned into the loss and, in place, into the softmax gradient, which is pushed
 * through the head (dh += dlogits·W, dW += dlogitsᵀ·h) before the next block overwrites the scratch. */
#include <math.h>
#include <stddef.h>

#include "kernels/simd.h"
#include "kernels/xent.h"

/* One row of logits z[V] with target t ≥ 0: returns −log softmax(z)[t] = log Σ exp(z − max) + max − z[t].
 * If want_grad, z is overwritten by grad_scale·(softmax(z) − onehot(t)). Max and sum keep 16 independent
 * lanes (the sum in double) so that the loops vectorise without the compiler having to reassociate. */
PC_SIMD_CLONES static double xent_row(float *z, int V, int t, float grad_scale, int want_grad) {
    float lane_max[16];
    for (int j = 0; j < 16; j++) lane_max[j] = -INFINITY;
    int j0 = 0;
    for (; j0 + 16 <= V; j0 += 16)
        for (int j = 0; j < 16; j++) lane_max[j] = z[j0 + j] > lane_max[j] ? z[j0 + j] : lane_max[j];
    float zmax = -INFINITY;
    for (int j = j0; j < V; j++) zmax = z[j] > zmax ? z[j] : zmax;
    for (int j = 0; j < 16; j++) zmax = lane_max[j] > zmax ? lane_max[j] : zmax;
    double lane_sum[16] = {0}, sum = 0.0;
    for (j0 = 0; j0 + 16 <= V; j0 += 16)
        for (int j = 0; j < 16; j++) lane_sum[j] += pc_exp_approx(z[j0 + j] - zmax);
    for (int j = j0; j < V; j++) sum += pc_exp_approx(z[j] - zmax);
    for (int j = 0; j < 16; j++) sum += lane_sum[j];
    double loss = log(sum) + (double)zmax - (double)z[t];
    if (want_grad) {
        float k = (float)(grad_scale / sum);
        for (int j = 0; j < V; j++) z[j] = k * pc_exp_approx(z[j] - zmax);
        z[t] -= grad_scale;
    }
    return loss;
}

double lmhead_xent(pc_matmul *mm, float *dh, float *dW, const float *h, const pc_tensor *W, const int *targets,
                   int N, int C, int V, float grad_scale, float *scratch, int chunk_rows, long *count) {
    double total = 0.0;
    long counted = 0;
    int want_grad = dh || dW;
    if (chunk_rows < 1) chunk_rows = 1;
    for (int n0 = 0; n0 < N; n0 += chunk_rows) {
        int rows = N - n0 < chunk_rows ? N - n0 : chunk_rows, live = 0;
        for (int r = 0; r < rows; r++) live += targets[n0 + r] >= 0;
        if (!live) continue; /* prompt-only rows: no loss, no gradient, no logits needed */
        const float *hc = h + (size_t)n0 * C;
        pc_linear_forward(mm, scratch, hc, W, NULL, rows, C, V, 0);
        double chunk_loss = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : chunk_loss)
        for (int r = 0; r < rows; r++) {
            float *z = scratch + (size_t)r * V;
            int t = targets[n0 + r];
            if (t >= 0) {
                chunk_loss += xent_row(z, V, t, grad_scale, want_grad);
            } else if (want_grad) {
                for (int j = 0; j < V; j++) z[j] = 0.0f; /* ignored row: contributes nothing */
            }
        }
        total += chunk_loss;
        counted += live;
        if (dh) pc_linear_backward_input(mm, dh + (size_t)n0 * C, scratch, W, rows, C, V);
        if (dW) pc_linear_backward_weight(mm, dW, NULL, scratch, hc, rows, C, V);
    }
    if (count) *count = counted;
    return total;
}

/* logits[N,V] = h[N,C]·W[V,C]ᵀ */
void lmhead_logits(pc_matmul *mm, float *logits, const float *h, const pc_tensor *W, int N, int C, int V) {
    pc_linear_forward(mm, logits, h, W, NULL, N, C, V, 0);
}
