/* BitFit (Ben Zaken et al.) at the parameter site: every bias term of the model — projection biases and,
 * where the architecture has them, LayerNorm biases — becomes trainable; the model computes their gradients.
 * An architecture without biases (llama) has nothing to train: that is a usage error, said clearly.
 *
 * PEFT has no BitFit; the directory has PEFT's shape with peft_type "PEFTC_BITFIT" and PEFT's bias="all" key
 * form, base_model.model.<tensor name> (e.g. base_model.model.transformer.h.0.attn.c_attn.bias), holding the full
 * tuned values. Merging writes them into the base (with a weight w: base + w·(tuned − base)). */
#include <string.h>

#include "core/alloc.h"
#include "io/json.h"
#include "peft/param_site.h"

typedef struct bitfit_state {
    pc_param_set set;
} bitfit_state;

static int is_bias(const pc_param *p) {
    size_t n = strlen(p->name);
    return n >= 5 && !strcmp(p->name + n - 5, ".bias");
}

static pc_status bitfit_attach(pc_method *m, const cJSON *opt, pc_error *err) {
    (void)opt;
    pc_model *model = m->model;
    bitfit_state *s = pc_calloc(1, sizeof *s);
    if (!s) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    m->impl = s;
    for (int i = 0; i < model->n_params; i++) {
        pc_param *p = &model->params[i];
        if (!is_bias(p)) continue;
        char key[256];
        pc_peft_key(key, sizeof key, p->name, "");
        PC_TRY(pc_param_set_add(m, &s->set, p, key, err));
    }
    if (s->set.count == 0)
        return pc_fail(err, PC_ERR_USAGE, "bitfit: this %s model has no bias terms to train (try ln-tuning, ia3 or lora)",
                       model->cfg.arch->model_type);
    return PC_OK;
}

static pc_status bitfit_after_load(pc_method *m, pc_error *err) {
    (void)err;
    pc_param_set_make_trainable(m, &((bitfit_state *)m->impl)->set);
    return PC_OK;
}

static pc_status bitfit_init(pc_method *m, pc_rng *rng, pc_error *err) {
    (void)rng;
    (void)err;
    pc_param_set_init_from_base(m, &((bitfit_state *)m->impl)->set);
    return PC_OK;
}

static pc_status bitfit_config_json(const pc_method *m, cJSON *cfg, pc_error *err) {
    (void)m;
    int failed = 0;
    pc_json_put(cfg, "bias", cJSON_CreateString("all"), &failed);
    pc_json_put(cfg, "modules_to_save", cJSON_CreateNull(), &failed);
    return pc_json_built(failed, "adapter_config.json", err);
}

static pc_status bitfit_merge(pc_method *m, float weight, pc_error *err) {
    return pc_param_set_merge(m, &((bitfit_state *)m->impl)->set, weight, err);
}

static void bitfit_destroy(pc_method *m) {
    bitfit_state *s = m->impl;
    if (!s) return;
    pc_param_set_release(m, &s->set);
    pc_free(s);
    m->impl = NULL;
}

const pc_method_ops pc_bitfit_ops = {
    .name = "bitfit",
    .peft_type = "PEFTC_BITFIT",
    .attach = bitfit_attach,
    .init = bitfit_init,
    .after_load = bitfit_after_load,
    .config_json = bitfit_config_json,
    .merge = bitfit_merge,
    .destroy = bitfit_destroy,
};
