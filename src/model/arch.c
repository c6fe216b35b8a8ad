#include "model/arch.h"

#include <string.h>

/* The llama family (llama, mistral, qwen2) differs only in biases: one set of names for all of them. */
#define LLAMA_FAMILY_NAMES                                                                                     \
    .layer_prefix = "model.layers.%d.",                                                                        \
    .linear_names = {[PC_LIN_Q] = "self_attn.q_proj", [PC_LIN_K] = "self_attn.k_proj",                         \
                     [PC_LIN_V] = "self_attn.v_proj", [PC_LIN_O] = "self_attn.o_proj",                         \
                     [PC_LIN_GATE] = "mlp.gate_proj", [PC_LIN_UP] = "mlp.up_proj", [PC_LIN_DOWN] = "mlp.down_proj"}, \
    .norm1 = "input_layernorm", .norm2 = "post_attention_layernorm", .embed = "model.embed_tokens",            \
    .final_norm = "model.norm", .lm_head = "lm_head", .default_lora_targets = "q_proj,v_proj"

static const pc_arch arch_table[] = {
    {.model_type = "llama", .norm = PC_NORM_RMS, .mlp = PC_MLP_SWIGLU, .rope = 1, LLAMA_FAMILY_NAMES},
    /* Mistral is llama's computation; a binding sliding window is refused by config.c. */
    {.model_type = "mistral", .norm = PC_NORM_RMS, .mlp = PC_MLP_SWIGLU, .rope = 1, LLAMA_FAMILY_NAMES},
    {.model_type = "qwen2", .norm = PC_NORM_RMS, .mlp = PC_MLP_SWIGLU, .rope = 1, .qkv_bias = 1, LLAMA_FAMILY_NAMES},
    {
        .model_type = "gpt2", .norm = PC_NORM_LAYER, .mlp = PC_MLP_GELU_TANH, .rope = 0, .qkv_bias = 1,
        .o_bias = 1, .mlp_bias = 1, .norm_bias = 1, .conv1d = 1, .default_tied = 1,
        .layer_prefix = "transformer.h.%d.",
        .linear_names = {[PC_LIN_QKV] = "attn.c_attn", [PC_LIN_O] = "attn.c_proj", [PC_LIN_UP] = "mlp.c_fc",
                         [PC_LIN_DOWN] = "mlp.c_proj"},
        .norm1 = "ln_1", .norm2 = "ln_2",
        .embed = "transformer.wte", .pos_embed = "transformer.wpe", .final_norm = "transformer.ln_f",
        .lm_head = "lm_head",
        .default_lora_targets = "c_attn",
    },
};

const pc_arch *pc_arch_find(const char *model_type) {
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (strcmp(arch_table[i].model_type, model_type) == 0) return &arch_table[i];
    return NULL;
}

const char *pc_arch_supported(void) { return "llama, mistral, qwen2, gpt2"; }
