/* Optimizers over flat parameter blocks (core/params.h) with fp32 state, and learning-rate schedules.
 * AdamW follows torch.optim.AdamW (decoupled decay p ← p − lr·λ·p, bias-corrected moments); SGD is plain
 * p ← p − lr·g. Gradient clipping is by the global L2 norm over every block, as torch's clip_grad_norm_. */
#ifndef PC_TRAIN_OPTIMIZER_H
#define PC_TRAIN_OPTIMIZER_H

#include "core/params.h"

typedef enum pc_optim_kind { PC_OPTIM_ADAMW, PC_OPTIM_SGD } pc_optim_kind;
typedef enum pc_schedule_kind { PC_SCHEDULE_CONSTANT, PC_SCHEDULE_LINEAR, PC_SCHEDULE_COSINE } pc_schedule_kind;

typedef struct pc_optim_config {
    pc_optim_kind kind;
    double lr, weight_decay, beta1, beta2, eps;
    pc_schedule_kind schedule;
    long warmup_steps, total_steps;
    double max_grad_norm; /* 0 = no clipping */
} pc_optim_config;

/* Learning rate at optimizer step `step` (0-based): linear warm-up from 0, then the schedule (HF's
 * get_linear/cosine_schedule_with_warmup). */
double pc_lr_at(const pc_optim_config *c, long step);
/* Global L2 norm of the gradients of n blocks. */
double pc_grad_norm(pc_params *const *blocks, int n);
/* One update of every block with the learning rate lr; `step` is the 1-based AdamW step count (bias
 * correction). Gradients are scaled by grad_scale first (clipping folds into it). */
void pc_optim_step(const pc_optim_config *c, pc_params *const *blocks, int n, double lr, long step, float grad_scale);

#endif
