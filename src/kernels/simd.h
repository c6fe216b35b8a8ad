/* Per-function instruction-set dispatch for the element-wise and attention kernels. The project compiles for
 * the base ISA at -O2; a hot function marked PC_SIMD_CLONES is compiled again for AVX-512 and AVX2 and the
 * loader picks the widest one the CPU reports (GCC target_clones, resolved from CPUID feature bits once at
 * start-up). The clones use -O3 so loops with run-time trip counts are vectorised (GCC's -O2 cost model only
 * vectorises loops that need no epilogue). The plain version always exists, so other compilers and CPUs
 * get the same code unvectorised. */
#ifndef PC_KERNELS_SIMD_H
#define PC_KERNELS_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define PC_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), optimize("O3")))
#else
#define PC_SIMD_CLONES
#endif

/* exp(x) for softmax-style use, written so that a loop of calls vectorises (glibc's expf is a scalar call).
 * Range reduction x = n·ln2 + r, |r| ≤ ln2/2, a degree-6 polynomial for e^r (Cephes' expf coefficients)
 * and 2^n built in the exponent bits. Relative error ≤ 2e-7 for x in [−87, 88]; x < −87 (including −inf,
 * the masked scores) gives exactly 0, x > 88 saturates near FLT_MAX. */
static inline float pc_exp_approx(float x) {
    float xc = x > 88.0f ? 88.0f : (x < -87.0f ? -87.0f : x);
    float t = xc * 1.44269504088896341f;
    int n = (int)(t + (t >= 0.0f ? 0.5f : -0.5f)); /* round to nearest */
    float fn = (float)n;
    float r = xc - fn * 0.693359375f + fn * 2.12194440e-4f; /* ln2 split in two for an exact product */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)(n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.0f ? 0.0f : p * scale;
}

#endif
