#include "peft/param_site.h"

#include "core/alloc.h"

pc_status pc_param_set_add(pc_method *m, pc_param_set *set, pc_param *p, const char *key, pc_error *err) {
    if (p->grad) return pc_fail(err, PC_ERR_USAGE, "%s: '%s' is already trained by another method", m->ops->name, p->name);
    if (set->count == set->cap) {
        int cap = set->cap ? 2 * set->cap : 16;
        pc_param_target *t = pc_realloc(set->targets, sizeof *t * (size_t)set->cap, sizeof *t * (size_t)cap);
        if (!t) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
        set->targets = t;
        set->cap = cap;
    }
    pc_param_target *t = &set->targets[set->count];
    t->param = p;
    PC_TRY(pc_params_declare(&m->params, key, p->t.ndim, p->t.shape, &t->index, err));
    set->count++;
    return PC_OK;
}

void pc_param_set_make_trainable(pc_method *m, const pc_param_set *set) {
    for (int i = 0; i < set->count; i++)
        pc_model_param_make_trainable(set->targets[i].param, pc_params_data(&m->params, set->targets[i].index),
                                      pc_params_grad(&m->params, set->targets[i].index));
}

void pc_param_set_init_from_base(pc_method *m, const pc_param_set *set) {
    for (int i = 0; i < set->count; i++) {
        const pc_tensor *t = &set->targets[i].param->t;
        pc_convert_to_f32(pc_params_data(&m->params, set->targets[i].index), t->data, t->dtype,
                          (size_t)pc_tensor_numel(t));
    }
    pc_param_set_make_trainable(m, set);
}

pc_status pc_param_set_merge(pc_method *m, const pc_param_set *set, float weight, pc_error *err) {
    for (int i = 0; i < set->count; i++) {
        pc_param *p = set->targets[i].param;
        pc_tensor *base = p->frozen.data ? &p->frozen : &p->t;
        size_t n = (size_t)pc_tensor_numel(base);
        float *b = pc_malloc(n * sizeof(float));
        if (!b) return pc_fail(err, PC_ERR_NOMEM, "out of memory merging '%s'", p->name);
        pc_convert_to_f32(b, base->data, base->dtype, n);
        const float *tuned = pc_params_data(&m->params, set->targets[i].index);
        for (size_t k = 0; k < n; k++) b[k] += weight * (tuned[k] - b[k]);
        pc_convert_from_f32(base->data, base->dtype, b, n);
        pc_free(b);
    }
    return PC_OK;
}

void pc_param_set_release(pc_method *m, pc_param_set *set) {
    for (int i = 0; i < set->count; i++)
        if (m->params.grad && set->targets[i].param->grad == pc_params_grad(&m->params, set->targets[i].index))
            pc_model_param_restore(set->targets[i].param); /* only what this method made trainable */
    pc_free(set->targets);
    set->targets = NULL;
    set->count = set->cap = 0;
}
