/* Inverted dropout (as torch.nn.Dropout in training mode): an element is kept with probability 1 − p and
 * then scaled by 1/(1 − p), else zeroed.
 *
 * The mask is counter-based: whether element i is kept is a hash of (key, i) compared with (1 − p)·2²⁴
 * (dropout.c has the hash). So the mask depends only on (key, i): any split over threads draws the same one,
 * and a caller advances its own sequential RNG by one draw (the key) per call, not by one per element —
 * which would make the loop serial. */
#ifndef PC_KERNELS_DROPOUT_H
#define PC_KERNELS_DROPOUT_H

#include <stddef.h>
#include <stdint.h>

/* out[i] = in[i]·keep[i]/(1 − p) for i < n (as torch, a dropped inf or NaN gives NaN), keep[i] ∈ {0, 1};
 * 0 ≤ p < 1. */
void dropout_forward(float *out, uint8_t *keep, const float *in, size_t n, float p, uint64_t key);
/* din[i] (+)= keep[i] ? dout[i] / (1 − p) : 0 — the backward of dropout_forward. */
void dropout_backward(float *din, const float *dout, const uint8_t *keep, size_t n, float p, int accumulate);

#endif
