/* kernels/embedding: gathers from F32, BF16 and F16 tables (overwrite and accumulate) against direct
 * indexing; the scatter-add backward with repeated ids against finite differences. */
#include <string.h>

#include "core/alloc.h"
#include "core/tensor.h"
#include "kernels/embedding.h"
#include "test_support.h"

static pc_rng rng;

enum { V = 11, C = 300, N = 9 };

static void test_forward(void) {
    static float table[V * C], out[N * C], want[N * C], base[N * C];
    static uint16_t t16[V * C], th[V * C];
    int ids[N] = {3, 0, 10, 3, 7, 7, 7, 1, 9};
    test_fill_uniform(&rng, table, V * C, -2, 2);
    for (int i = 0; i < V * C; i++) t16[i] = pc_f32_to_bf16(table[i]), th[i] = pc_f32_to_f16(table[i]);
    pc_tensor tf = pc_tensor_2d(PC_F32, V, C, table), tb = pc_tensor_2d(PC_BF16, V, C, t16),
              tfh = pc_tensor_2d(PC_F16, V, C, th);
    embedding_forward(out, ids, &tf, N, C, 0);
    for (int n = 0; n < N; n++) memcpy(want + n * C, table + ids[n] * C, sizeof(float) * C);
    expect_close("embedding F32 gather", out, want, N * C, 0, 1e-30);
    test_fill_uniform(&rng, base, N * C, -1, 1);
    memcpy(out, base, sizeof out);
    embedding_forward(out, ids, &tb, N, C, 1);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) want[n * C + c] = base[n * C + c] + pc_bf16_to_f32(t16[ids[n] * C + c]);
    expect_close("embedding BF16 gather, accumulate", out, want, N * C, 0, 1e-30);
    embedding_forward(out, ids, &tfh, N, C, 0);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) want[n * C + c] = pc_f16_to_f32(th[ids[n] * C + c]);
    expect_close("embedding F16 gather", out, want, N * C, 0, 1e-30);
}

typedef struct fd_ctx {
    float *table, *G;
    const int *ids;
} fd_ctx;

static double objective(void *p) {
    fd_ctx *c = p;
    double f = 0.0;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < C; j++) f += (double)c->table[c->ids[n] * C + j] * c->G[n * C + j];
    return f;
}

static void test_backward(void) {
    static float table[V * C], G[N * C], dtable[V * C], base[V * C], fd[V * C];
    int ids[N] = {3, 0, 10, 3, 7, 7, 7, 1, 9}; /* repeats: the scatter must add, not race */
    test_fill_uniform(&rng, table, V * C, -1, 1);
    test_fill_uniform(&rng, G, N * C, -1, 1);
    test_fill_uniform(&rng, base, V * C, -1, 1);
    memcpy(dtable, base, sizeof dtable);
    embedding_backward(dtable, G, ids, N, C);
    for (int i = 0; i < V * C; i++) dtable[i] -= base[i];
    fd_ctx c = {table, G, ids};
    finite_diff(objective, &c, table, V * C, 1e-2, fd);
    expect_close("embedding backward vs finite differences", dtable, fd, V * C, 1e-3, 1e-5);
}

int main(void) {
    pc_rng_seed(&rng, 3);
    test_forward();
    test_backward();
    return test_finish();
}
