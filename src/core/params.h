/* A block of trainable fp32 parameters with named views. The values, gradients and the two AdamW moments
 * are four allocations of identical layout, so zeroing, saving, clipping, all-reducing and the optimizer are
 * flat loops (llm.c's layout). Tensors are declared first (params_declare), then the block is allocated once
 * (params_alloc); views are offsets, so pointers are taken after allocation. */
#ifndef PC_CORE_PARAMS_H
#define PC_CORE_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct pc_param_view {
    char name[160];   /* the name it is saved under, e.g. a PEFT key */
    int ndim;
    int64_t shape[4];
    size_t offset;    /* in floats from the start of the block */
    size_t count;
} pc_param_view;

typedef struct pc_params {
    pc_param_view *views;
    int n_views, cap_views;
    size_t count;           /* total floats */
    float *data, *grad, *m, *v; /* m, v allocated only by the optimizer that needs them */
} pc_params;

void pc_params_init(pc_params *p);
/* Declare a tensor; returns its index via *index. Shapes are in the saved (torch) order. */
pc_status pc_params_declare(pc_params *p, const char *name, int ndim, const int64_t *shape, int *index, pc_error *err);
pc_status pc_params_alloc(pc_params *p, pc_error *err);   /* data and grad, zeroed */
pc_status pc_params_alloc_moments(pc_params *p, pc_error *err);
void pc_params_free(pc_params *p);
static inline float *pc_params_data(const pc_params *p, int i) { return p->data + p->views[i].offset; }
static inline float *pc_params_grad(const pc_params *p, int i) { return p->grad + p->views[i].offset; }
int pc_params_find(const pc_params *p, const char *name); /* -1 if absent */
void pc_params_zero_grad(pc_params *p);

#endif
