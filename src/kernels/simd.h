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
 * the masked scores) gives exactly 0; NaN stays NaN. Meant for x ≤ 88 (shifted scores are ≤ 0): above, the
 * result is not specified (inf or NaN).
 *
 * Branch-free on purpose: a float clamp (x < −87 ? −87 : x) or a selected result made GCC put the
 * polynomial under a condition, and since it may trap it is not if-converted — every loop calling this
 * stayed scalar (cross-entropy was ~18 % of a training step, and a float clamp added later to avoid an
 * undefined float→int conversion made it scalar again). So there is no float→int conversion at all: n is
 * read from the bits of t + 1.5·2²³ (for |t| < 2²² the low mantissa bits hold round(t); any other t — ±inf,
 * NaN, huge — gives some integer that the clamps below bring into range, defined behaviour throughout). The
 * clamps are on the integer n, which GCC turns into min/max, and the underflow to 0 is a bit mask (which is
 * also what makes the results for x < −87 exact whatever n became). */
/* The pieces of pc_exp_approx, shared with the lane-wise version in attention.c (GCC vector types take the
 * same arithmetic): log2(e), ln2 split in two so that n·ln2 is exact, and Cephes' degree-6 polynomial for e^r,
 * |r| ≤ ln2/2, by Horner from p = PC_EXP_C0. */
#define PC_LOG2E 1.44269504088896341f
#define PC_LN2_HI 0.693359375f
#define PC_LN2_LO 2.12194440e-4f
#define PC_EXP_ROUND 12582912.0f /* 1.5·2²³: t + this leaves round(t) in the low mantissa bits */
#define PC_EXP_C0 1.9875691500e-4f
#define PC_EXP_HORNER(p, r)                                                                                  \
    do {                                                                                                     \
        (p) = (p) * (r) + 1.3981999507e-3f;                                                                  \
        (p) = (p) * (r) + 8.3334519073e-3f;                                                                  \
        (p) = (p) * (r) + 4.1665795894e-2f;                                                                  \
        (p) = (p) * (r) + 1.6666665459e-1f;                                                                  \
        (p) = (p) * (r) + 5.0000001201e-1f;                                                                  \
        (p) = (p) * (r) * (r) + (r) + 1.0f;                                                                  \
    } while (0)

static inline float pc_exp_approx(float x) {
    float t = x * PC_LOG2E;
    float shifted = t + PC_EXP_ROUND;
    uint32_t shifted_bits;
    memcpy(&shifted_bits, &shifted, sizeof shifted_bits);
    int n = (int)(int32_t)(shifted_bits - 0x4B400000u); /* round(t) when |t| < 2²² */
    n = n < -127 ? -127 : n;
    n = n > 127 ? 127 : n;
    float fn = (float)n;
    float r = x - fn * PC_LN2_HI + fn * PC_LN2_LO;
    float p = PC_EXP_C0;
    PC_EXP_HORNER(p, r);
    uint32_t bits = (uint32_t)(n + 127) << 23;
    float scale, e;
    memcpy(&scale, &bits, sizeof scale);
    e = p * scale;
    uint32_t ebits;
    memcpy(&ebits, &e, sizeof ebits);
    ebits &= 0u - (uint32_t)!(x < -87.0f); /* keeps NaN (comparisons with NaN are false) */
    memcpy(&e, &ebits, sizeof e);
    return e;
}

#endif
