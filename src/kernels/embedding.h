/* Row gather from a [V,C] table (F32 or BF16) and its scatter-add backward. */
#ifndef PC_KERNELS_EMBEDDING_H
#define PC_KERNELS_EMBEDDING_H

#include "core/tensor.h"

/* out[n,:] (=|+=) table[ids[n],:] for n < N. ids must be in range (checked by the caller). */
void embedding_forward(float *out, const int *ids, const pc_tensor *table, int N, int C, int accumulate);
/* dtable[ids[n],:] += dout[n,:] */
void embedding_backward(float *dtable, const float *dout, const int *ids, int N, int C);

#endif
