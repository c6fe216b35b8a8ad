/* Timing of the training attention kernels (attention_forward, attention_backward) at model shapes.
 * Reports best-of-N milliseconds per call and GFLOP/s with docs/performance.md's count: a layer's forward
 * and backward together are 3 · 4 · T_eff · H · hd FLOP per token, T_eff = (T+1)/2 (the causal half),
 * the forward alone a third of that.
 *
 * "cpu" is the best process CPU time of forward + backward (all threads; with OMP_WAIT_POLICY=active it
 * includes spinning), steadier than wall time on a shared machine.
 *
 * Not part of the CMake build; compile against a Release build's library, e.g.
 *   gcc -O2 -fopenmp -Isrc bench/attention_bench.c build-att/libpeftc.a -lm -o /tmp/attention_bench
 *   OMP_WAIT_POLICY=active OMP_NUM_THREADS=2 /tmp/attention_bench [repeats]  */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/attention.h"

typedef struct bench_shape {
    const char *name;
    int B, T, H, KVH, hd;
} bench_shape;

static double now_seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *filled(size_t n, unsigned *state) {
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) {
        *state = *state * 1664525u + 1013904223u;
        x[i] = ((float)(*state >> 8) / 16777216.0f - 0.5f) * 3.0f;
    }
    return x;
}

static void run_shape(const bench_shape *s, int repeats) {
    unsigned state = 12345;
    size_t nq = (size_t)s->B * s->T * s->H * s->hd, nkv = (size_t)s->B * s->T * s->KVH * s->hd;
    float *q = filled(nq, &state), *k = filled(nkv, &state), *v = filled(nkv, &state), *dout = filled(nq, &state);
    float *out = malloc(sizeof(float) * nq), *lse = malloc(sizeof(float) * (size_t)s->B * s->H * s->T);
    float *dq = calloc(nq, sizeof(float)), *dk = calloc(nkv, sizeof(float)), *dv = calloc(nkv, sizeof(float));
    double best_fwd = 1e30, best_bwd = 1e30, cpu_fwd = 1e30, cpu_bwd = 1e30;
    for (int r = 0; r < repeats; r++) {
        double t0 = now_seconds(CLOCK_MONOTONIC), c0 = now_seconds(CLOCK_PROCESS_CPUTIME_ID);
        attention_forward(out, lse, q, k, v, NULL, NULL, NULL, s->B, s->T, 0, s->H, s->KVH, s->hd);
        double t1 = now_seconds(CLOCK_MONOTONIC), c1 = now_seconds(CLOCK_PROCESS_CPUTIME_ID);
        attention_backward(dq, dk, dv, NULL, NULL, dout, out, lse, q, k, v, NULL, NULL, NULL, s->B, s->T, 0, s->H,
                           s->KVH, s->hd);
        double t2 = now_seconds(CLOCK_MONOTONIC), c2 = now_seconds(CLOCK_PROCESS_CPUTIME_ID);
        best_fwd = t1 - t0 < best_fwd ? t1 - t0 : best_fwd;
        best_bwd = t2 - t1 < best_bwd ? t2 - t1 : best_bwd;
        cpu_fwd = c1 - c0 < cpu_fwd ? c1 - c0 : cpu_fwd;
        cpu_bwd = c2 - c1 < cpu_bwd ? c2 - c1 : cpu_bwd;
    }
    double t_eff = (s->T + 1) / 2.0, fwd_flop = (double)s->B * s->T * 4.0 * t_eff * s->H * s->hd;
    printf("%-22s B=%d T=%-5d H=%-2d KVH=%-2d  fwd %7.3f ms %6.1f GF/s  bwd %7.3f ms %6.1f GF/s  "
           "both %7.3f ms %6.1f GF/s  cpu %7.3f ms\n",
           s->name, s->B, s->T, s->H, s->KVH, 1e3 * best_fwd, fwd_flop / best_fwd * 1e-9, 1e3 * best_bwd,
           2 * fwd_flop / best_bwd * 1e-9, 1e3 * (best_fwd + best_bwd), 3 * fwd_flop / (best_fwd + best_bwd) * 1e-9, 1e3 * (cpu_fwd + cpu_bwd));
    free(q), free(k), free(v), free(dout), free(out), free(lse), free(dq), free(dk), free(dv);
}

int main(int argc, char **argv) {
    int repeats = argc > 1 ? atoi(argv[1]) : 20;
    const bench_shape shapes[] = {
        {"SmolLM2-135M", 4, 256, 9, 3, 64},   {"SmolLM2-135M", 1, 1024, 9, 3, 64},
        {"GPT-2", 4, 256, 12, 12, 64},        {"GPT-2", 1, 1024, 12, 12, 64},
        {"Qwen2.5-0.5B", 4, 256, 14, 2, 64},  {"Qwen2.5-0.5B", 1, 1024, 14, 2, 64},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) run_shape(&shapes[i], repeats);
    return 0;
}
