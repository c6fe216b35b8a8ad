/* LayerNorm tuning (Zhao et al., "Tuning LayerNorm in Attention") at the parameter site: the weight (and, for
 * LayerNorm, the bias) of every norm — both per-layer norms and the final one — becomes trainable; nothing
 * else changes, so the model computes the gradients itself and no hook is needed.
 *
 * PEFT's LN_TUNING keeps a trainable copy of each norm module; its file holds
 * base_model.model.<norm module>.ln_tuning_layers.{weight,bias} with the full (not delta) values. target_modules
 * (PEFT's suffix/regex rules on the norm's module path) narrows the set; the default is every norm. Merging
 * writes the tuned values into the base (with a weight w: base + w·(tuned − base)). */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "peft/method.h"

typedef struct ln_target {
    pc_param *param;
    int index;
} ln_target;

typedef struct ln_state {
    int n_targets;
    ln_target targets[]; /* n_targets used */
} ln_state;

/* Every norm tensor of the model, in layer order, final norm last. */
static int collect_norms(pc_model *model, pc_param **out) {
    int n = 0;
    for (int l = 0; l < model->cfg.n_layers; l++) {
        pc_layer *L = &model->layers[l];
        pc_param *p[4] = {L->norm1_w, L->norm1_b, L->norm2_w, L->norm2_b};
        for (int i = 0; i < 4; i++)
            if (p[i]) out[n++] = p[i];
    }
    if (model->final_norm_w) out[n++] = model->final_norm_w;
    if (model->final_norm_b) out[n++] = model->final_norm_b;
    return n;
}

/* "model.layers.0.input_layernorm.weight" → module "model.layers.0.input_layernorm", leaf "weight". */
static const char *split_leaf(const char *name, char *module, size_t cap) {
    snprintf(module, cap, "%s", name);
    char *dot = strrchr(module, '.');
    if (!dot) return "";
    *dot = '\0';
    return name + (dot - module) + 1;
}

static pc_status ln_attach(pc_method *m, const cJSON *opt, pc_error *err) {
    int max = 4 * m->model->cfg.n_layers + 2;
    pc_param **norms = pc_calloc((size_t)max, sizeof *norms);
    ln_state *s = pc_calloc(1, sizeof *s + sizeof(ln_target) * (size_t)max);
    if (!norms || !s) {
        pc_free(norms);
        pc_free(s);
        return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    }
    m->impl = s;
    const cJSON *targets = opt ? cJSON_GetObjectItemCaseSensitive(opt, "target_modules") : NULL;
    if (cJSON_IsNull(targets)) targets = NULL;
    int n = collect_norms(m->model, norms);
    pc_status st = PC_OK;
    for (int i = 0; i < n && st == PC_OK; i++) {
        char module[160], key[256];
        const char *leaf = split_leaf(norms[i]->name, module, sizeof module);
        if (targets && !pc_target_matches(targets, module)) continue;
        if (norms[i]->grad) {
            st = pc_fail(err, PC_ERR_USAGE, "ln-tuning: '%s' is already trained by another method", norms[i]->name);
            break;
        }
        ln_target *t = &s->targets[s->n_targets++];
        t->param = norms[i];
        snprintf(key, sizeof key, "ln_tuning_layers.%s", leaf);
        char peft[256];
        pc_peft_key(peft, sizeof peft, module, key);
        st = pc_params_declare(&m->params, peft, norms[i]->t.ndim, norms[i]->t.shape, &t->index, err);
    }
    pc_free(norms);
    if (st == PC_OK && s->n_targets == 0) st = pc_fail(err, PC_ERR_USAGE, "ln-tuning: target_modules matched no norm of this model");
    return st;
}

/* The model now reads (and differentiates) the method's fp32 copies. */
static pc_status ln_make_trainable(pc_method *m, pc_error *err) {
    ln_state *s = m->impl;
    for (int i = 0; i < s->n_targets; i++)
        pc_model_param_make_trainable(s->targets[i].param, pc_params_data(&m->params, s->targets[i].index),
                                      pc_params_grad(&m->params, s->targets[i].index));
    (void)err;
    return PC_OK;
}

static pc_status ln_init(pc_method *m, pc_rng *rng, pc_error *err) {
    (void)rng;
    ln_state *s = m->impl;
    for (int i = 0; i < s->n_targets; i++) {
        const pc_tensor *t = &s->targets[i].param->t;
        pc_convert_to_f32(pc_params_data(&m->params, s->targets[i].index), t->data, t->dtype, (size_t)pc_tensor_numel(t));
    }
    return ln_make_trainable(m, err);
}

static pc_status ln_config_json(const pc_method *m, cJSON *cfg, pc_error *err) {
    const ln_state *s = m->impl;
    /* The norm modules by their last name component (PEFT's own default lists look like this). */
    cJSON *targets = cJSON_CreateArray();
    for (int i = 0; i < s->n_targets; i++) {
        char module[160];
        split_leaf(s->targets[i].param->name, module, sizeof module);
        const char *leaf = strrchr(module, '.') ? strrchr(module, '.') + 1 : module;
        int seen = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, targets) seen |= !strcmp(e->valuestring, leaf);
        if (!seen) cJSON_AddItemToArray(targets, cJSON_CreateString(leaf));
    }
    cJSON_AddNullToObject(cfg, "auto_mapping");
    cJSON_AddNullToObject(cfg, "exclude_modules");
    cJSON_AddNullToObject(cfg, "modules_to_save");
    cJSON_AddItemToObject(cfg, "target_modules", targets);
    (void)err;
    return PC_OK;
}

/* base ← base + w·(tuned − base), into the frozen tensor the model returns to when the method is freed. */
static pc_status ln_merge(pc_method *m, float weight, pc_error *err) {
    ln_state *s = m->impl;
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

static void ln_destroy(pc_method *m) {
    ln_state *s = m->impl;
    if (!s) return;
    for (int i = 0; i < s->n_targets; i++)
        if (m->params.grad && s->targets[i].param->grad == pc_params_grad(&m->params, s->targets[i].index))
            pc_model_param_restore(s->targets[i].param); /* only what this method made trainable */
    pc_free(s);
    m->impl = NULL;
}

const pc_method_ops pc_ln_tuning_ops = {
    .name = "ln-tuning",
    .peft_type = "LN_TUNING",
    .attach = ln_attach,
    .init = ln_init,
    .after_load = ln_make_trainable,
    .config_json = ln_config_json,
    .merge = ln_merge,
    .destroy = ln_destroy,
};
