/* Low-rank updates y += s · B (A x): LoRA's rank-r products, forward and backward, fp32.
 *
 *   x [N,in], A [r,in], B [out,r], y [N,out], xa = x·Aᵀ [N,r] (saved by forward for backward)
 *   forward:  xa = x·Aᵀ ;  y (+)= s · xa·Bᵀ
 *   backward: dB += s · dyᵀ·xa ;  d_xa = s · dy·B ;  dA += d_xaᵀ·x ;  d_in += d_xa·A
 *
 * Every product reads or writes an [N,in] or [N,out] matrix once and does only 2r FLOPs per element, so a
 * general GEMM (which packs and tiles for a large inner dimension) spends its time on overhead. Here a
 * block of rows is taken through all the products that read it while it sits in L1: forward computes the
 * block's xa and adds its B product to y; backward computes d_xa from dy (adding the block's share of dB in
 * the same pass over dy), then adds to d_in and to dA in one pass over x. Rows are split across OpenMP
 * threads; the weight gradients dA, dB are summed in per-thread partials and reduced at the end, so
 * nothing is allocated: the caller gives the scratch (lowrank_scratch_floats).
 *
 * Backward accumulates into d_in, dA and dB (see matmul.h); d_xa is overwritten. With keep non-NULL (the
 * inverted-dropout mask of forward, x being the dropped input) the input gradient is taken back through
 * it: d_in += keep ⊙ keep_scale ⊙ (d_xa·A). */
#ifndef PC_KERNELS_LOWRANK_H
#define PC_KERNELS_LOWRANK_H

#include <stddef.h>
#include <stdint.h>

typedef struct lowrank_shape {
    int N, in, out, r;
    float scale; /* s */
} lowrank_shape;

/* Which compiled variant runs: AUTO picks the widest the CPU has; tests force the others (a variant the CPU
 * lacks must not be forced). */
typedef enum { LOWRANK_ISA_AUTO, LOWRANK_ISA_PLAIN, LOWRANK_ISA_AVX2, LOWRANK_ISA_AVX512 } lowrank_isa;

/* Caller-owned working memory: B transposed and, per thread, partial dA and dB. A call runs on at most
 * `threads` threads (fewer when OpenMP offers fewer). */
typedef struct lowrank_scratch {
    float *data;
    int threads;
    lowrank_isa isa;
} lowrank_scratch;

size_t lowrank_scratch_floats(int in, int out, int r, int threads);

/* accumulate 0: y = s·xa·Bᵀ (y's contents are ignored); 1: y += s·xa·Bᵀ. */
void lowrank_forward(float *y, float *xa, const float *x, const float *A, const float *B, const lowrank_shape *shape,
                     int accumulate, const lowrank_scratch *scratch);

void lowrank_backward(float *d_in, float *dA, float *dB, float *d_xa, const float *dy, const float *x, const float *xa,
                      const float *A, const float *B, const uint8_t *keep, float keep_scale, const lowrank_shape *shape,
                      const lowrank_scratch *scratch);

#endif
