/* Rotary position embedding in the Hugging Face rotate-half layout: for head vector x of size hd with
 * h = hd/2, y[i] = x[i]·cos(p·f_i) − x[i+h]·sin(p·f_i), y[i+h] = x[i+h]·cos(p·f_i) + x[i]·sin(p·f_i),
 * f_i = theta^(−2i/hd). Tables are computed once: cos/sin are [max_pos, h]. */
#ifndef PC_KERNELS_ROPE_H
#define PC_KERNELS_ROPE_H

void rope_table_init(float *cos_table, float *sin_table, int max_pos, int hd, float theta);
/* In place on x [N, heads, hd]; pos[N] is each row's position (< max_pos). */
void rope_forward(float *x, const int *pos, const float *cos_table, const float *sin_table, int N, int heads,
                  int hd);
/* In place on dx [N, heads, hd]: the transpose of the rotation (rotation by −angle). */
void rope_backward(float *dx, const int *pos, const float *cos_table, const float *sin_table, int N, int heads,
                   int hd);

#endif
