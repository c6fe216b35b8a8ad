/* BitFit (Ben Zaken et al.) at the parameter site: every bias term of the model — projection biases and,
 * where the architecture has them, LayerNorm biases — becomes trainable; the model computes their gradients.
 * An architecture without biases (llama) has nothing to train: that is a usage error, said clearly.
 *
 * PEFT has no BitFit; the directory has PEFT's shape with peft_type "PEFTC_BITFIT" and PEFT's bias="all" key
 * form, base_model.model.<tensor name> (e.g. base_model.model.transformer.h.0.attn.c_attn.bias), holding the full
 * tuned values. Merging writes them into the base (with a weight w: base + w·(tuned − base)). */
#include <string.h>

#include "core/alloc.h"
#include "peft/method.h"

typedef struct bitfit_target {
    pc_param *param;
    int index;
} bitfit_target;

typedef struct bitfit_state {
    int n_targets;
    bitfit_target targets[]; /* n_targets used */
} bitfit_state;

static int is_bias(const pc_param *p) {
    size_t n = strlen(p->name);
    return n >= 5 && !strcmp(p->name + n - 5, ".bias");
}

static pc_status bitfit_attach(pc_method *m, const cJSON *opt, pc_error *err) {
    (void)opt;
    pc_model *model = m->model;
    bitfit_state *s = pc_calloc(1, sizeof *s + sizeof(bitfit_target) * (size_t)(model->n_params ? model->n_params : 1));
    if (!s) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    m->impl = s;
    for (int i = 0; i < model->n_params; i++) {
        pc_param *p = &model->params[i];
        if (!is_bias(p)) continue;
        if (p->grad) return pc_fail(err, PC_ERR_USAGE, "bitfit: '%s' is already trained by another method", p->name);
        bitfit_target *t = &s->targets[s->n_targets++];
        t->param = p;
        char key[256];
        pc_peft_key(key, sizeof key, p->name, "");
        PC_TRY(pc_params_declare(&m->params, key, p->t.ndim, p->t.shape, &t->index, err));
    }
    if (s->n_targets == 0)
        return pc_fail(err, PC_ERR_USAGE, "bitfit: this %s model has no bias terms to train (try ln-tuning, ia3 or lora)",
                       model->cfg.arch->model_type);
    return PC_OK;
}

static pc_status bitfit_make_trainable(pc_method *m, pc_error *err) {
    bitfit_state *s = m->impl;
    for (int i = 0; i < s->n_targets; i++)
        pc_model_param_make_trainable(s->targets[i].param, pc_params_data(&m->params, s->targets[i].index),
                                      pc_params_grad(&m->params, s->targets[i].index));
    (void)err;
    return PC_OK;
}

static pc_status bitfit_init(pc_method *m, pc_rng *rng, pc_error *err) {
    (void)rng;
    bitfit_state *s = m->impl;
    for (int i = 0; i < s->n_targets; i++) {
        const pc_tensor *t = &s->targets[i].param->t;
        pc_convert_to_f32(pc_params_data(&m->params, s->targets[i].index), t->data, t->dtype, (size_t)pc_tensor_numel(t));
    }
    return bitfit_make_trainable(m, err);
}

static pc_status bitfit_config_json(const pc_method *m, cJSON *cfg, pc_error *err) {
    (void)m;
    (void)err;
    cJSON_AddStringToObject(cfg, "bias", "all");
    cJSON_AddNullToObject(cfg, "modules_to_save");
    return PC_OK;
}

/* base ← base + w·(tuned − base), into the frozen tensor the model returns to when the method is freed. */
static pc_status bitfit_merge(pc_method *m, float weight, pc_error *err) {
    bitfit_state *s = m->impl;
    for (int i = 0; i < s->n_targets; i++) {
        pc_param *p = s->targets[i].param;
        pc_tensor *base = p->frozen.data ? &p->frozen : &p->t;
        size_t n = (size_t)pc_tensor_numel(base);
        float *b = pc_malloc(n * sizeof(float));
        if (!b) return pc_fail(err, PC_ERR_NOMEM, "out of memory merging '%s'", p->name);
        pc_convert_to_f32(b, base->data, base->dtype, n);
        const float *tuned = pc_params_data(&m->params, s->targets[i].index);
        for (size_t k = 0; k < n; k++) b[k] += weight * (tuned[k] - b[k]);
        pc_convert_from_f32(base->data, base->dtype, b, n);
        pc_free(b);
    }
    return PC_OK;
}

static void bitfit_destroy(pc_method *m) {
    bitfit_state *s = m->impl;
    if (!s) return;
    for (int i = 0; i < s->n_targets; i++)
        if (m->params.grad && s->targets[i].param->grad == pc_params_grad(&m->params, s->targets[i].index))
            pc_model_param_restore(s->targets[i].param); /* only what this method made trainable */
    pc_free(s);
    m->impl = NULL;
}

const pc_method_ops pc_bitfit_ops = {
    .name = "bitfit",
    .peft_type = "PEFTC_BITFIT",
    .attach = bitfit_attach,
    .init = bitfit_init,
    .after_load = bitfit_make_trainable,
    .config_json = bitfit_config_json,
    .merge = bitfit_merge,
    .destroy = bitfit_destroy,
};
