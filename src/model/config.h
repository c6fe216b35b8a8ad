/* config.json of a Hugging Face model directory, validated into the numbers the model code needs. */
#ifndef PC_MODEL_CONFIG_H
#define PC_MODEL_CONFIG_H

#include "core/error.h"
#include "model/arch.h"

typedef struct pc_model_config {
    const pc_arch *arch;
    int vocab_size, hidden, n_layers, n_heads, n_kv_heads, head_dim, intermediate, max_positions;
    float norm_eps, rope_theta;
    int tied;            /* lm_head shares the token embedding */
    int bos_id, eos_id;  /* -1 when absent */
} pc_model_config;

/* Reads and checks <dir>/config.json (or a config file path). Unsupported model types and options (rope
 * scaling, sliding windows that bind, non-causal attention) are refused with the field named. */
pc_status pc_model_config_load(pc_model_config *cfg, const char *path, pc_error *err);

#endif
