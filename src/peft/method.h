/* The method interface (ARCHITECTURE.md §1): a method claims sites of a model, owns its trainable
 * parameters, and knows how to merge, save and load itself. Adding a method = one file in src/peft/ that
 * defines a pc_method_ops, plus one line in registry.c. Nothing in src/model/ changes.
 *
 * Options are a JSON object whose keys are the Hugging Face PEFT field names ("r", "lora_alpha",
 * "target_modules", "num_virtual_tokens", ...): the CLI turns `--lora-alpha 16` into "lora_alpha": 16, and
 * an adapter_config.json read from disk is the same object — so a saved adapter re-attaches with exactly
 * the options it was trained with.
 *
 * Lifecycle: attach (parse options, declare parameters, register hooks) → pc_params_alloc → init (random
 * initialisation with the run's RNG) or load (values from an adapter directory) → plan (per-step buffers for
 * B×T, outside the step loop) → forward/backward through the hooks → save / merge. */
#ifndef PC_PEFT_METHOD_H
#define PC_PEFT_METHOD_H

#include <cjson/cJSON.h>

#include "core/params.h"
#include "core/rng.h"
#include "model/model.h"

typedef struct pc_method pc_method;

typedef struct pc_method_ops {
    const char *name;       /* --method name: "lora", "prompt-tuning", ... */
    const char *peft_type;  /* adapter_config.json "peft_type": "LORA", ... (peftc's own for methods PEFT lacks) */
    pc_status (*attach)(pc_method *m, const cJSON *options, pc_error *err);
    pc_status (*init)(pc_method *m, pc_rng *rng, pc_error *err);
    pc_status (*plan)(pc_method *m, int B, int T, pc_error *err); /* NULL: no per-step buffers */
    /* Tensors are loaded by name from adapter_model.safetensors generically (pc_method_load); a method that
     * needs more (a derived value, a layout change) implements after_load. NULL otherwise. */
    pc_status (*after_load)(pc_method *m, pc_error *err);
    /* Write adapter_config.json's method fields into cfg (common fields are written by the caller). */
    pc_status (*config_json)(const pc_method *m, cJSON *cfg, pc_error *err);
    /* Fold into the base weights with a weight (NULL: the method cannot be merged); unmerge subtracts it. */
    pc_status (*merge)(pc_method *m, float weight, pc_error *err);
    pc_status (*unmerge)(pc_method *m, float weight, pc_error *err);
    void (*destroy)(pc_method *m);
    /* Methods whose result is not an adapter directory (full fine-tuning writes a model directory). */
    pc_status (*save)(const pc_method *m, const char *dir, pc_error *err);
} pc_method_ops;

struct pc_method {
    const pc_method_ops *ops;
    pc_model *model;
    pc_params params;   /* everything it trains, named as saved (PEFT keys) */
    void *impl;         /* the method's own state (one owner: ops->destroy) */
    int frozen;         /* loaded for inference / merge only */
};

/* Registry (registry.c). */
const pc_method_ops *pc_method_find(const char *name);           /* by --method name */
const pc_method_ops *pc_method_find_peft_type(const char *type); /* by adapter_config.json peft_type */
const char *pc_method_names(void);                               /* for messages */

/* Create a method on a model from options; parameters allocated and initialised from rng. */
pc_status pc_method_create(pc_method **out, const pc_method_ops *ops, pc_model *model, const cJSON *options,
                           pc_rng *rng, pc_error *err);
/* Load an adapter directory (adapter_config.json + adapter_model.safetensors) onto a model: options from the
 * config, every tensor checked by name and shape against what the method declares. */
pc_status pc_method_load(pc_method **out, pc_model *model, const char *dir, pc_error *err);
/* Write an adapter directory atomically (config + safetensors). */
pc_status pc_method_save(const pc_method *m, const char *dir, pc_error *err);
pc_status pc_method_plan(pc_method *m, int B, int T, pc_error *err);
void pc_method_free(pc_method *m);

/* Shared helpers for method files. */
/* PEFT's target matching: a list entry equals the module name or is a "."-suffix of it; a string is a regex
 * that must match the whole name; "all-linear" matches every projection. */
int pc_target_matches(const cJSON *target_modules, const char *module_name);
/* PEFT's rank_pattern / alpha_pattern lookup: key k matches when the name matches (.*\.)?(k)$. Returns 1
 * and sets *value when a key matches. */
int pc_pattern_lookup(const cJSON *pattern, const char *module_name, double *value);
/* layers_to_transform: NULL/absent = all; an int or a list of ints. */
int pc_layer_selected(const cJSON *layers_to_transform, int layer);
/* Option getters with defaults (options may be NULL). */
double pc_opt_number(const cJSON *options, const char *key, double dflt);
int pc_opt_bool(const cJSON *options, const char *key, int dflt);
const char *pc_opt_string(const cJSON *options, const char *key, const char *dflt);
/* The PEFT key prefix for a module: "base_model.model.<module>". */
void pc_peft_key(char *out, size_t cap, const char *module, const char *suffix);

#endif
