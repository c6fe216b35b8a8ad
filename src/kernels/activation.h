/* Element-wise activations; n elements. Backwards accumulate (see matmul.h). */
#ifndef PC_KERNELS_ACTIVATION_H
#define PC_KERNELS_ACTIVATION_H

/* GELU, tanh approximation (gpt2's "gelu_new"): 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))). */
void gelu_tanh_forward(float *out, const float *x, long n);
void gelu_tanh_backward(float *dx, const float *dout, const float *x, long n);
/* SwiGLU (llama MLP): out = silu(gate) ⊙ up, silu(g) = g·σ(g). */
void swiglu_forward(float *out, const float *gate, const float *up, long n);
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, long n);
/* ReLU (adapters). */
void relu_forward(float *out, const float *x, long n);
void relu_backward(float *dx, const float *dout, const float *x, long n);

#endif
