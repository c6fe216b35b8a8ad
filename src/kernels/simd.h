/* Per-function instruction-set dispatch for the element-wise and attention kernels. The project compiles for
 * the base ISA; a hot function marked PC_SIMD_CLONES is compiled again for AVX-512 and AVX2 and the loader
 * picks the widest one the CPU reports (GCC target_clones, resolved from CPUID feature bits once at start-up).
 * The plain version is always there, so other compilers and CPUs get the same code unvectorised. */
#ifndef PC_KERNELS_SIMD_H
#define PC_KERNELS_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define PC_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PC_SIMD_CLONES
#endif

#endif
