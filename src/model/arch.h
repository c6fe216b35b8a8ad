/* The architecture table: everything that differs between llama, qwen2 and gpt2 is a field here, so one
 * forward/backward serves them all and a new architecture is one new row (arch.c). */
#ifndef PC_MODEL_ARCH_H
#define PC_MODEL_ARCH_H

typedef enum pc_norm_kind { PC_NORM_RMS, PC_NORM_LAYER } pc_norm_kind;
typedef enum pc_mlp_kind { PC_MLP_SWIGLU, PC_MLP_GELU_TANH } pc_mlp_kind;

/* The projections of a block. Architectures use a subset: llama/qwen2 Q K V O GATE UP DOWN; gpt2 QKV O UP DOWN. */
typedef enum pc_linear_role {
    PC_LIN_Q, PC_LIN_K, PC_LIN_V, PC_LIN_QKV, PC_LIN_O, PC_LIN_GATE, PC_LIN_UP, PC_LIN_DOWN, PC_LIN_COUNT
} pc_linear_role;

typedef struct pc_arch {
    const char *model_type;        /* config.json "model_type" */
    pc_norm_kind norm;
    pc_mlp_kind mlp;
    int rope;                      /* 1: rotary positions; 0: learned position table */
    int qkv_bias, o_bias, mlp_bias, norm_bias;
    int conv1d;                    /* weights stored [in, out] (HF Conv1D); transposed on load */
    int default_tied;              /* tie_word_embeddings when config.json is silent */
    const char *layer_prefix;      /* printf pattern with the layer index, e.g. "model.layers.%d." */
    const char *linear_names[PC_LIN_COUNT]; /* module path inside a layer, NULL when unused */
    const char *norm1, *norm2;     /* module paths inside a layer */
    const char *embed, *pos_embed, *final_norm, *lm_head; /* model-level module paths */
    const char *default_lora_targets; /* PEFT's defaults, comma-separated */
} pc_arch;

const pc_arch *pc_arch_find(const char *model_type);
/* Comma-separated list of the supported model_type values, for messages. */
const char *pc_arch_supported(void);

#endif
