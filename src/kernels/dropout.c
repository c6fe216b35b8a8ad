/* Inverted dropout with a counter-based mask (see dropout.h). */
#include "kernels/dropout.h"

#include "kernels/simd.h"

/* splitmix64's i-th output from state key: the state after i+1 steps is key + (i+1)·γ, then the finalizer.
 * A bijective mix of a Weyl sequence; splitmix64 passes BigCrush, which is more than a dropout mask needs. */
static inline uint64_t counter_u64(uint64_t key, uint64_t i) {
    uint64_t z = key + (i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Blocks of 4096 elements per OpenMP chunk: the mask of an element never depends on the block, only on i. */
enum { DROPOUT_BLOCK = 4096 };

PC_SIMD_CLONES static void dropout_block(float *out, uint8_t *keep, const float *in, size_t i0, size_t n,
                                         uint32_t threshold, float inv, uint64_t key) {
    for (size_t i = i0; i < n; i++) {
        uint8_t k = (uint32_t)(counter_u64(key, i) >> 40) < threshold;
        keep[i] = k;
        out[i] = k ? in[i] * inv : 0.0f;
    }
}

void dropout_forward(float *out, uint8_t *keep, const float *in, size_t n, float p, uint64_t key) {
    /* uniform u = top24 / 2²⁴ < 1 − p  ⇔  top24 < (1 − p)·2²⁴ (exact in float for 24-bit integers) */
    float keep_prob = 1.0f - p, inv = 1.0f / keep_prob;
    uint32_t threshold = (uint32_t)(keep_prob * 16777216.0f);
    long blocks = (long)((n + DROPOUT_BLOCK - 1) / DROPOUT_BLOCK);
#pragma omp parallel for schedule(static)
    for (long b = 0; b < blocks; b++) {
        size_t i0 = (size_t)b * DROPOUT_BLOCK, i1 = i0 + DROPOUT_BLOCK < n ? i0 + DROPOUT_BLOCK : n;
        dropout_block(out, keep, in, i0, i1, threshold, inv, key);
    }
}

void dropout_backward(float *din, const float *dout, const uint8_t *keep, size_t n, float p, int accumulate) {
    float inv = 1.0f / (1.0f - p);
    long blocks = (long)((n + DROPOUT_BLOCK - 1) / DROPOUT_BLOCK);
#pragma omp parallel for schedule(static)
    for (long b = 0; b < blocks; b++) {
        size_t i0 = (size_t)b * DROPOUT_BLOCK, i1 = i0 + DROPOUT_BLOCK < n ? i0 + DROPOUT_BLOCK : n;
        for (size_t i = i0; i < i1; i++) {
            float g = keep[i] ? dout[i] * inv : 0.0f;
            din[i] = accumulate ? din[i] + g : g;
        }
    }
}
