/* LM head fused with cross-entropy, a block of rows at a time: logits for chunk_rows rows go into the
 * caller's scratch, are turned into the loss and, in place, into the softmax gradient, which is pushed
 * through the head (dh += dlogits·W, dW += dlogitsᵀ·h) before the next block overwrites the scratch. */
#include <math.h>
#include <stddef.h>

#include "kernels/simd.h"
#include "kernels/xent.h"

/* One row of logits z[V] with target t ≥ 0: returns −log softmax(z)[t] = log Σ exp(z − max) + max − z[t].
 * z is scratch: it is overwritten by exp(z − max), and if want_grad then by grad_scale·(softmax(z) − onehot(t)).
 * Two passes over the row: the maximum, then exp(z − max) stored in place while it is summed (stored even
 * without a gradient: a conditional store would keep the loop from vectorising); the gradient is then a
 * scaling, not a second exponential. The sum is taken in 16 float lanes over blocks of 256 logits and the
 * block sums are added in double, so the loops vectorise and the total stays accurate for vocabularies of
 * 10⁵ and more. */
enum { XENT_SUM_BLOCK = 256 };

PC_SIMD_CLONES static double xent_row(float *z, int V, int t, float grad_scale, int want_grad) {
    float lane_max[16];
    for (int j = 0; j < 16; j++) lane_max[j] = -INFINITY;
    int j0 = 0;
    for (; j0 + 16 <= V; j0 += 16)
        for (int j = 0; j < 16; j++) lane_max[j] = z[j0 + j] > lane_max[j] ? z[j0 + j] : lane_max[j];
    float zmax = -INFINITY;
    for (int j = j0; j < V; j++) zmax = z[j] > zmax ? z[j] : zmax;
    for (int j = 0; j < 16; j++) zmax = lane_max[j] > zmax ? lane_max[j] : zmax;
    double loss_without_sum = (double)zmax - (double)z[t], sum = 0.0;
    for (int b0 = 0; b0 < V; b0 += XENT_SUM_BLOCK) {
        int b1 = b0 + XENT_SUM_BLOCK < V ? b0 + XENT_SUM_BLOCK : V;
        float lane_sum[16] = {0}, tail = 0.0f;
        for (j0 = b0; j0 + 16 <= b1; j0 += 16)
            for (int j = 0; j < 16; j++) {
                float e = pc_exp_approx(z[j0 + j] - zmax);
                z[j0 + j] = e;
                lane_sum[j] += e;
            }
        for (int j = j0; j < b1; j++) {
            float e = pc_exp_approx(z[j] - zmax);
            z[j] = e;
            tail += e;
        }
        for (int j = 0; j < 16; j++) tail += lane_sum[j];
        sum += tail;
    }
    if (want_grad) {
        float k = (float)(grad_scale / sum);
        for (int j = 0; j < V; j++) z[j] *= k;
        z[t] -= grad_scale;
    }
    return log(sum) + loss_without_sum;
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
