/* Full fine-tuning: every base tensor becomes trainable (an fp32 copy owned by the method). This is also
 * how peftc trains a small model from scratch. The result is a model directory, not an adapter. */
#include <string.h>

#include "core/alloc.h"
#include "peft/param_site.h"

typedef struct full_state {
    pc_param_set set;
    pc_dtype save_dtype;
} full_state;

static pc_status full_attach(pc_method *m, const cJSON *opt, pc_error *err) {
    full_state *s = pc_calloc(1, sizeof *s);
    if (!s) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    m->impl = s;
    /* The saved model keeps the checkpoint's dtype unless asked otherwise ("save_dtype": "bf16"). */
    const char *dt = pc_opt_string(opt, "save_dtype", NULL);
    s->save_dtype = m->model->file_dtype;
    if (dt && !strcmp(dt, "fp32")) s->save_dtype = PC_F32;
    else if (dt && !strcmp(dt, "bf16")) s->save_dtype = PC_BF16;
    else if (dt && !strcmp(dt, "f16")) s->save_dtype = PC_F16;
    else if (dt) return pc_fail(err, PC_ERR_USAGE, "full: save_dtype '%s' is not fp32, bf16 or f16", dt);
    for (int i = 0; i < m->model->n_params; i++)
        PC_TRY(pc_param_set_add(m, &s->set, &m->model->params[i], m->model->params[i].name, err));
    return PC_OK;
}

/* Start from the base values; the model then reads and differentiates the copies. */
static pc_status full_init(pc_method *m, pc_rng *rng, pc_error *err) {
    (void)rng;
    (void)err;
    pc_param_set_init_from_base(m, &((full_state *)m->impl)->set);
    return PC_OK;
}

static pc_status full_save(const pc_method *m, const char *dir, pc_error *err) {
    const full_state *s = m->impl;
    return pc_model_save(m->model, dir, s->save_dtype, err);
}

static void full_destroy(pc_method *m) {
    full_state *s = m->impl;
    if (!s) return;
    pc_param_set_release(m, &s->set);
    pc_free(s);
    m->impl = NULL;
}

const pc_method_ops pc_full_ops = {
    .name = "full",
    .peft_type = "FULL",
    .attach = full_attach,
    .init = full_init,
    .save = full_save,
    .destroy = full_destroy,
};
