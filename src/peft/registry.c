/* The method registry: one line per method. */
#include <string.h>

#include "peft/method.h"

extern const pc_method_ops pc_lora_ops, pc_full_ops, pc_prompt_tuning_ops, pc_prefix_tuning_ops, pc_ia3_ops,
    pc_adapter_ops, pc_ln_tuning_ops, pc_bitfit_ops;

static const pc_method_ops *const registry[] = {
    &pc_lora_ops,
    &pc_full_ops,
    &pc_prompt_tuning_ops,
    &pc_prefix_tuning_ops,
    &pc_ia3_ops,
    &pc_adapter_ops,
    &pc_ln_tuning_ops,
    &pc_bitfit_ops,
};

#define REGISTRY_SIZE (sizeof registry / sizeof registry[0])

const pc_method_ops *pc_method_find(const char *name) {
    for (size_t i = 0; i < REGISTRY_SIZE; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

const pc_method_ops *pc_method_find_peft_type(const char *type) {
    for (size_t i = 0; i < REGISTRY_SIZE; i++)
        if (strcmp(registry[i]->peft_type, type) == 0) return registry[i];
    return NULL;
}

const char *pc_method_names(void) { return "lora, full, prompt-tuning, prefix-tuning, ia3, adapter, ln-tuning, bitfit"; }
