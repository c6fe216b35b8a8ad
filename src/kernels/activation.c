/* Element-wise activations, forward and backward side by side; backwards accumulate into dx.
 * Work is split into fixed chunks across OpenMP threads; each chunk runs in a PC_SIMD_CLONES function. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/activation.h"
#include "kernels/simd.h"

enum { ACT_CHUNK = 4096 };

#define FOR_CHUNKS(n, body)                                                       \
    _Pragma("omp parallel for schedule(static)")                                  \
    for (long i0 = 0; i0 < (n); i0 += ACT_CHUNK) {                                \
        long len = (n) - i0 < ACT_CHUNK ? (n) - i0 : ACT_CHUNK;                   \
        body;                                                                     \
    }

static const float GELU_K = 0.7978845608028654f; /* sqrt(2/π) */
static const float GELU_C = 0.044715f;

/* σ and tanh through e = exp(−|·|) ∈ (0, 1], which never overflows, with pc_exp_approx (relative error
 * ≤ 2e-7) instead of libm's scalar expf/tanhf: the loops calling these vectorise (they were ~3 % of a SmolLM2
 * step as scalar calls). The sign-dependent part is chosen on the bits, not with a float select, which would
 * keep GCC from vectorising (see pc_exp_approx). NaN in gives NaN out. */
static inline float select_bits(int take_first, float first, float second) {
    uint32_t a, b, mask = 0u - (uint32_t)(take_first != 0);
    memcpy(&a, &first, sizeof a);
    memcpy(&b, &second, sizeof b);
    a = (a & mask) | (b & ~mask);
    memcpy(&first, &a, sizeof a);
    return first;
}

/* σ(g) = 1/(1+e) for g ≥ 0, e/(1+e) below, e = exp(−|g|) */
static inline float sigmoid(float g) {
    float e = pc_exp_approx(-fabsf(g));
    return select_bits(g >= 0.0f, 1.0f, e) / (1.0f + e);
}

/* tanh(u) = sign(u)·(1−e)/(1+e), e = exp(−2|u|) */
static inline float tanh_approx(float u) {
    float e = pc_exp_approx(-2.0f * fabsf(u));
    return copysignf((1.0f - e) / (1.0f + e), u);
}

/* ---- GELU (tanh approximation) --------------------------------------------------------------------- */

PC_SIMD_CLONES static void gelu_chunk_forward(float *out, const float *x, long n) {
    for (long i = 0; i < n; i++) {
        float v = x[i];
        out[i] = 0.5f * v * (1.0f + tanh_approx(GELU_K * (v + GELU_C * v * v * v)));
    }
}

/* d/dx ½x(1+t) = ½(1+t) + ½x(1−t²)·k(1 + 3c·x²), t = tanh(k(x + c·x³)) */
PC_SIMD_CLONES static void gelu_chunk_backward(float *dx, const float *dout, const float *x, long n) {
    for (long i = 0; i < n; i++) {
        float v = x[i];
        float t = tanh_approx(GELU_K * (v + GELU_C * v * v * v));
        float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * GELU_C * v * v);
        dx[i] += dout[i] * d;
    }
}

void gelu_tanh_forward(float *out, const float *x, long n) { FOR_CHUNKS(n, gelu_chunk_forward(out + i0, x + i0, len)) }

void gelu_tanh_backward(float *dx, const float *dout, const float *x, long n) {
    FOR_CHUNKS(n, gelu_chunk_backward(dx + i0, dout + i0, x + i0, len))
}

/* ---- SwiGLU ---------------------------------------------------------------------------------------- */

PC_SIMD_CLONES static void swiglu_chunk_forward(float *out, const float *gate, const float *up, long n) {
    for (long i = 0; i < n; i++) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

/* silu'(g) = σ(g)(1 + g(1 − σ(g))) */
PC_SIMD_CLONES static void swiglu_chunk_backward(float *dgate, float *dup, const float *dout, const float *gate,
                                                 const float *up, long n) {
    for (long i = 0; i < n; i++) {
        float g = gate[i], s = sigmoid(g);
        dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
        dup[i] += dout[i] * g * s;
    }
}

void swiglu_forward(float *out, const float *gate, const float *up, long n) {
    FOR_CHUNKS(n, swiglu_chunk_forward(out + i0, gate + i0, up + i0, len))
}

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, long n) {
    FOR_CHUNKS(n, swiglu_chunk_backward(dgate + i0, dup + i0, dout + i0, gate + i0, up + i0, len))
}

/* ---- ReLU ------------------------------------------------------------------------------------------ */

PC_SIMD_CLONES static void relu_chunk_forward(float *out, const float *x, long n) {
    for (long i = 0; i < n; i++) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

PC_SIMD_CLONES static void relu_chunk_backward(float *dx, const float *dout, const float *x, long n) {
    for (long i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dout[i] : 0.0f;
}

void relu_forward(float *out, const float *x, long n) { FOR_CHUNKS(n, relu_chunk_forward(out + i0, x + i0, len)) }

void relu_backward(float *dx, const float *dout, const float *x, long n) {
    FOR_CHUNKS(n, relu_chunk_backward(dx + i0, dout + i0, x + i0, len))
}
