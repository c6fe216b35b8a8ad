/* The parameter site: methods that train existing base tensors (LN tuning, BitFit, full fine-tuning) keep a
 * set of (base tensor, index of its fp32 copy in the method's parameter block). The model reads and
 * differentiates the copies while the method lives; freeing it gives the model its frozen tensors back. */
#ifndef PC_PEFT_PARAM_SITE_H
#define PC_PEFT_PARAM_SITE_H

#include "peft/method.h"

typedef struct pc_param_target {
    pc_param *param;
    int index;
} pc_param_target;

typedef struct pc_param_set {
    int count, cap;
    pc_param_target *targets;
} pc_param_set;

/* Declare a trainable copy of p saved under `key`; refuses a tensor another method already trains. */
pc_status pc_param_set_add(pc_method *m, pc_param_set *set, pc_param *p, const char *key, pc_error *err);
/* init: the copies start as the base values, and the model switches to them. */
void pc_param_set_init_from_base(pc_method *m, const pc_param_set *set);
/* after_load / init: the model reads and differentiates the copies. */
void pc_param_set_make_trainable(pc_method *m, const pc_param_set *set);
/* base ← base + w·(tuned − base), into the frozen tensors the model returns to when the method is freed. */
pc_status pc_param_set_merge(pc_method *m, const pc_param_set *set, float weight, pc_error *err);
/* Give the model back what this method made trainable, and free the set. */
void pc_param_set_release(pc_method *m, pc_param_set *set);

#endif
