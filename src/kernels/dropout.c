/* Inverted dropout with a counter-based mask (see dropout.h). */
#include "kernels/dropout.h"

#include "kernels/simd.h"

/* splitmix64's i-th output from state key: the state after i+1 steps is key + (i+1)·γ, then the finalizer.
 * A bijective mix of a Weyl sequence (splitmix64 passes BigCrush). Used once per block of elements. */
static inline uint64_t counter_u64(uint64_t key, uint64_t i) {
    uint64_t z = key + (i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A 32-bit bijective mixer (Wellons' "lowbias32"): 32-bit lanes, so the element loop vectorises with
 * AVX2/AVX-512F integer multiplies; 64-bit lane multiplies would need AVX-512DQ or a slow emulation. */
static inline uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    return x ^ (x >> 16);
}

/* The mask is made per block of 4096 consecutive elements (a fixed split of the index, so the same for any
 * thread count): the block's 64-bit key kb = counter_u64(key, block), then element j of the block draws
 * mix32(mix32(j + kb_lo) ^ kb_hi). The outer mix keeps two blocks apart even where their inner inputs
 * j + kb_lo coincide. */
enum { DROPOUT_BLOCK = 4096 };

PC_SIMD_CLONES static void dropout_block(float *restrict out, uint8_t *restrict keep, const float *restrict in,
                                         int n, uint32_t threshold, float inv, uint64_t block_key) {
    uint32_t lo = (uint32_t)block_key, hi = (uint32_t)(block_key >> 32);
    for (int j = 0; j < n; j++) {
        /* int, not uint32_t: GCC does not vectorise an unsigned→float conversion here */
        int k = (mix32(mix32((uint32_t)j + lo) ^ hi) >> 8) < threshold;
        keep[j] = (uint8_t)k;
        out[j] = in[j] * ((float)k * inv); /* a product, not a select: the loop vectorises (and, as torch's
                                              x·mask/(1−p), a dropped inf or NaN stays NaN) */
    }
}

void dropout_forward(float *out, uint8_t *keep, const float *in, size_t n, float p, uint64_t key) {
    /* uniform u = top24 / 2²⁴ < 1 − p  ⇔  top24 < (1 − p)·2²⁴ (exact in float for 24-bit integers) */
    float keep_prob = 1.0f - p, inv = 1.0f / keep_prob;
    uint32_t threshold = (uint32_t)(keep_prob * 16777216.0f);
    long blocks = (long)((n + DROPOUT_BLOCK - 1) / DROPOUT_BLOCK);
#pragma omp parallel for schedule(static) if (blocks > 1) /* one block: not worth waking a team */
    for (long b = 0; b < blocks; b++) {
        size_t i0 = (size_t)b * DROPOUT_BLOCK;
        int len = n - i0 < DROPOUT_BLOCK ? (int)(n - i0) : DROPOUT_BLOCK;
        dropout_block(out + i0, keep + i0, in + i0, len, threshold, inv, counter_u64(key, (uint64_t)b));
    }
}

void dropout_backward(float *din, const float *dout, const uint8_t *keep, size_t n, float p, int accumulate) {
    float inv = 1.0f / (1.0f - p);
    long blocks = (long)((n + DROPOUT_BLOCK - 1) / DROPOUT_BLOCK);
#pragma omp parallel for schedule(static) if (blocks > 1)
    for (long b = 0; b < blocks; b++) {
        size_t i0 = (size_t)b * DROPOUT_BLOCK, i1 = i0 + DROPOUT_BLOCK < n ? i0 + DROPOUT_BLOCK : n;
        for (size_t i = i0; i < i1; i++) {
            float g = keep[i] ? dout[i] * inv : 0.0f;
            din[i] = accumulate ? din[i] + g : g;
        }
    }
}
