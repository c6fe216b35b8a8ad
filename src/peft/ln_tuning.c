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
#include "io/json.h"
#include "peft/param_site.h"

typedef struct ln_state {
    pc_param_set set;
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
    ln_state *s = pc_calloc(1, sizeof *s);
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
        snprintf(key, sizeof key, "ln_tuning_layers.%s", leaf);
        char peft[256];
        pc_peft_key(peft, sizeof peft, module, key);
        st = pc_param_set_add(m, &s->set, norms[i], peft, err);
    }
    pc_free(norms);
    if (st == PC_OK && s->set.count == 0) st = pc_fail(err, PC_ERR_USAGE, "ln-tuning: target_modules matched no norm of this model");
    return st;
}

static pc_status ln_after_load(pc_method *m, pc_error *err) {
    (void)err;
    pc_param_set_make_trainable(m, &((ln_state *)m->impl)->set);
    return PC_OK;
}

static pc_status ln_init(pc_method *m, pc_rng *rng, pc_error *err) {
    (void)rng;
    (void)err;
    pc_param_set_init_from_base(m, &((ln_state *)m->impl)->set);
    return PC_OK;
}

static pc_status ln_config_json(const pc_method *m, cJSON *cfg, pc_error *err) {
    const ln_state *s = m->impl;
    /* The norm modules by their last name component (PEFT's own default lists look like this). */
    cJSON *targets = cJSON_CreateArray();
    int failed = 0;
    for (int i = 0; i < s->set.count; i++) {
        char module[160];
        split_leaf(s->set.targets[i].param->name, module, sizeof module);
        const char *leaf = strrchr(module, '.') ? strrchr(module, '.') + 1 : module;
        int seen = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, targets) seen |= !strcmp(e->valuestring, leaf);
        if (!seen) pc_json_append(targets, cJSON_CreateString(leaf), &failed);
    }
    pc_json_put(cfg, "auto_mapping", cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "exclude_modules", cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "modules_to_save", cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "target_modules", targets, &failed);
    return pc_json_built(failed, "adapter_config.json", err);
}

static pc_status ln_merge(pc_method *m, float weight, pc_error *err) {
    return pc_param_set_merge(m, &((ln_state *)m->impl)->set, weight, err);
}

static void ln_destroy(pc_method *m) {
    ln_state *s = m->impl;
    if (!s) return;
    pc_param_set_release(m, &s->set);
    pc_free(s);
    m->impl = NULL;
}

const pc_method_ops pc_ln_tuning_ops = {
    .name = "ln-tuning",
    .peft_type = "LN_TUNING",
    .attach = ln_attach,
    .init = ln_init,
    .after_load = ln_after_load,
    .config_json = ln_config_json,
    .merge = ln_merge,
    .destroy = ln_destroy,
};
