/* A transformer language model: weights, the architecture row, the hooks attached at its sites, and the
 * activation plan of the current (B, T). One explicit forward and one explicit backward serve every
 * architecture (model_forward.c); methods modify the computation only through sites (site.h). */
#ifndef PC_MODEL_MODEL_H
#define PC_MODEL_MODEL_H

#include "core/arena.h"
#include "core/error.h"
#include "core/tensor.h"
#include "kernels/matmul.h"
#include "model/config.h"
#include "model/site.h"

/* A base tensor: its HF name, its compute copy (F32 or BF16, Linear layout for projections), and — only
 * when something made it trainable — an fp32 gradient. */
typedef struct pc_param {
    char name[128];
    pc_tensor t;
    pc_tensor frozen;      /* the original tensor while a method has replaced t with a trainable copy */
    float *grad;           /* NULL unless trainable */
    int transposed;        /* stored [in,out] on disk (Conv1D); t is [out,in] */
} pc_param;

typedef struct pc_linear {
    char name[128];        /* HF module path, e.g. "model.layers.3.self_attn.q_proj" */
    int layer, role, in, out;
    pc_param *weight, *bias; /* bias NULL when the architecture has none */
    pc_hook_list hooks;
    const float *saved_in; /* the product's input in the last forward (after PRE hooks), for backward */
} pc_linear;

typedef struct pc_layer {
    pc_param *norm1_w, *norm1_b, *norm2_w, *norm2_b;
    pc_linear lin[PC_LIN_COUNT]; /* roles the architecture does not use have in == 0 */
    pc_hook_list attn_kv, head_out, sublayer[2];
} pc_layer;

typedef enum pc_base_dtype { PC_BASE_AUTO, PC_BASE_F32, PC_BASE_BF16 } pc_base_dtype;

typedef struct pc_model_acts pc_model_acts; /* the activation plan (model_plan.c) */

/* Something with per-step buffers of its own (a method) registers a planner: whenever the model makes a
 * new activation plan for (B, T) it calls every planner, so all buffers are sized together, outside the
 * step loop. T excludes virtual tokens. */
typedef pc_status (*pc_plan_fn)(void *owner, int B, int T, pc_error *err);
typedef struct pc_planner {
    void *owner;
    pc_plan_fn fn;
} pc_planner;

/* Optional timers per phase of a training step (peftc bench): wall-clock seconds, and the process's CPU
 * seconds over the same stretch (all threads), so cpu / wall says how many cores the phase kept busy. The
 * model fills it when m->profile is set (NULL, the default, costs nothing); seconds are ADDED, so the caller
 * zeroes it and may sum several steps. The attention phase is norm 1 + attention sublayer + residual, MLP likewise with norm 2;
 * head is the final norm + LM head + cross-entropy. */
enum { PC_PROF_EMBED, PC_PROF_ATTN, PC_PROF_MLP, PC_PROF_HEAD, PC_PROF_COUNT };
typedef struct pc_step_profile {
    double forward[PC_PROF_COUNT], backward[PC_PROF_COUNT];
    double forward_cpu[PC_PROF_COUNT], backward_cpu[PC_PROF_COUNT];
    double recompute; /* gradient checkpointing: layer forwards re-run in backward (already counted in the
                       * attention and MLP backward times; this says how much of them it was) */
} pc_step_profile;

typedef struct pc_model {
    pc_model_config cfg;
    char *dir;                  /* the directory it was loaded from (NULL when created from a config) */
    char *config_path;          /* its config.json */
    pc_dtype file_dtype;        /* the checkpoint's dtype (of its projections) */
    pc_dtype compute_dtype;     /* F32 or BF16: what frozen projection weights are kept in */
    int n_params;
    pc_param *params;           /* every base tensor, by HF name */
    void *base_block;           /* one owner for all base tensor data */
    pc_param *embed, *pos_embed, *lm_head, *final_norm_w, *final_norm_b;
    pc_layer *layers;
    pc_hook_list input_hooks, output_hooks;
    pc_planner *planners;
    int n_planners, cap_planners;
    pc_matmul *mm;
    float *rope_cos, *rope_sin; /* [rope_positions, head_dim/2], grown on demand up to max_positions */
    int rope_positions;
    pc_model_acts *acts;
    pc_step_profile *profile;   /* NULL unless someone (bench) wants per-phase timings; not owned */
    /* Gradient checkpointing (activation recomputation): a training plan keeps, per layer, only the layer's
     * input and one shared set of the other buffers; backward re-runs each layer's forward (hooks included,
     * with the dropout draws of the first run) just before that layer's backward. Same loss and gradients,
     * a fraction of the activation memory, about one more forward of compute. LINEAR, HEAD_OUT and SUBLAYER
     * hooks are then called twice per layer and step, and must rebuild the same state from the same inputs
     * and RNG; ATTN_KV hooks are called once (their keys/values are kept). Read by pc_model_plan: a training
     * plan made under the other setting is replaced by the next plan or training step. */
    int gradient_checkpointing;
} pc_model;

/* Load a Hugging Face model directory (config.json + model.safetensors or sharded). base_dtype AUTO keeps
 * F32 checkpoints in fp32 and BF16/F16 checkpoints in bf16. Every tensor is checked for presence and shape. */
pc_status pc_model_load(pc_model **out, const char *dir, pc_base_dtype base_dtype, pc_error *err);
/* A model from a config.json alone, with random weights N(0, 0.02) (bench, from-scratch training). */
pc_status pc_model_create_random(pc_model **out, const char *config_path, pc_base_dtype base_dtype, uint64_t seed,
                                 pc_error *err);
/* Write a model directory: config.json (copied), model.safetensors in dtype (F32/BF16/F16; the on-disk
 * layout of the architecture, Conv1D transposed back), and the tokenizer files found beside the source. */
pc_status pc_model_save(const pc_model *m, const char *dir, pc_dtype dtype, pc_error *err);
void pc_model_free(pc_model *m);

pc_param *pc_model_find_param(pc_model *m, const char *name);
pc_linear *pc_model_find_linear(pc_model *m, const char *module_name);
/* Visit every projection (lm_head excluded) in layer order. */
int pc_model_linear_count(const pc_model *m);
pc_linear *pc_model_linear_at(pc_model *m, int i);

/* Hooks. */
pc_status pc_hook_add(pc_hook_list *list, const pc_hook *hook, pc_error *err);
void pc_hook_list_clear(pc_hook_list *list);
/* Remove every hook of `owner` from every site (a method being freed). */
void pc_model_remove_hooks(pc_model *m, void *owner);
void pc_model_clear_hooks(pc_model *m);

pc_status pc_model_add_planner(pc_model *m, void *owner, pc_plan_fn fn, pc_error *err);
void pc_model_remove_planner(pc_model *m, void *owner);

/* Make a base tensor trainable: data (fp32, same logical shape as p->t, Linear layout) replaces the compute
 * tensor and grad receives its gradient. Restored by pc_model_param_restore. */
void pc_model_param_make_trainable(pc_param *p, float *data, float *grad);
void pc_model_param_restore(pc_param *p);

/* The activation plan for batches of up to B rows of up to T tokens (T excludes virtual tokens, which the
 * plan adds from the input hooks). Made once per shape; the step loop allocates nothing. A training plan
 * keeps every layer's activations for backward (with m->gradient_checkpointing, every layer's input and one
 * layer's other buffers); an inference plan reuses one layer's buffers. */
pc_status pc_model_plan(pc_model *m, int B, int T, int training, pc_error *err);
/* Bytes of the current activation plan's arena (0 without a plan). Methods' own step buffers (their
 * planners) are not included. */
size_t pc_model_plan_bytes(const pc_model *m);
/* 1 when the current plan is a training plan with gradient checkpointing. Planners may then give the sites
 * of one role (every layer's q_proj, …) one set of per-step buffers: each layer's forward is re-run just
 * before its backward, which refills them. */
int pc_model_plan_checkpointed(const pc_model *m);

/* One batch: ids [B,T], labels [B,T] (HF convention, −100 ignored; the model shifts), pos [B,T] or NULL
 * (0…T−1), doc [B,T] or NULL. */
typedef struct pc_model_batch {
    int B, T;
    const int32_t *ids, *labels, *pos, *doc;
} pc_model_batch;

typedef struct pc_forward_result {
    double loss_sum;   /* Σ of per-token cross-entropies */
    long n_targets;    /* number of loss terms */
} pc_forward_result;

/* Forward only (evaluation): loss_sum / n_targets over the batch. */
pc_status pc_model_forward(pc_model *m, const pc_model_batch *b, pc_forward_result *res, pc_error *err);
/* A training step's forward and backward: gradients of grad_scale·(Σ CE) are ACCUMULATED into every
 * trainable tensor's grad and every hook's parameters (so gradient accumulation is repeated calls). The head
 * and the cross-entropy are fused: the loss gradient is computed while the logits of a row block exist. */
pc_status pc_model_forward_backward(pc_model *m, const pc_model_batch *b, float grad_scale, pc_rng *rng,
                                    pc_forward_result *res, pc_error *err);
/* Logits of the last forward for every position: [B, T_total, V] (parity tests). */
pc_status pc_model_logits(pc_model *m, float *logits, pc_error *err);
int pc_model_total_len(const pc_model *m, int T); /* T plus the virtual tokens of the input hooks */
/* Make the rotary tables cover positions 0 … n−1 (n ≤ max_positions). Tables start small and grow when a
 * plan or a KV cache needs more, so a config claiming millions of positions costs nothing until used. */
pc_status pc_model_ensure_positions(pc_model *m, int n, pc_error *err);
/* The longest real sequence a batch row may have: max_position_embeddings less virtual tokens and prefixes. */
int pc_model_max_seq_len(const pc_model *m);

/* ---- decoding (model_decode.c): generation with a key/value cache ------------------------------------
 * One sequence (B = 1). The cache holds, per layer, the keys and values of every position seen so far
 * (after RoPE), with any ATTN_KV prefix at the front, so each new token costs one row through the network.
 * Every hook runs exactly as in pc_model_forward (LINEAR PRE/POST, HEAD_OUT, SUBLAYER, OUTPUT, and ATTN_KV
 * and INPUT on the first append, where the prefix enters the cache and the virtual tokens go in front of the
 * prompt); positions are numbered as in training (prefix length + index in the extended sequence). Hooks
 * with per-step buffers (methods) are sized through the model's planners: each append makes sure an
 * activation plan for B = 1, T = max_chunk exists (pc_model_plan). The cache owns its memory. */
typedef struct pc_kv_cache pc_kv_cache;

/* A cache for up to max_len real tokens, appended at most max_chunk at a time (longer appends are split).
 * The virtual tokens and prefixes of the hooks attached now are sized in; attaching or removing INPUT or
 * ATTN_KV hooks afterwards makes appends fail until a new cache is made. */
pc_status pc_kv_cache_create(pc_kv_cache **out, const pc_model *m, int max_len, int max_chunk, pc_error *err);
void pc_kv_cache_free(pc_kv_cache *c);
void pc_kv_cache_reset(pc_kv_cache *c);          /* empty again (the next append is a prefill) */
int pc_kv_cache_tokens(const pc_kv_cache *c);    /* real tokens cached so far */
int pc_kv_cache_capacity(const pc_kv_cache *c);  /* max_len */

/* Append ids[n] (n >= 1) to the sequence and write the logits [V] of its last position (logits may be NULL).
 * On an empty cache this is the prefill. */
pc_status pc_model_decode(pc_model *m, pc_kv_cache *c, const int32_t *ids, int n, float *logits, pc_error *err);
/* Reset, then append the prompt. */
pc_status pc_model_prefill(pc_model *m, pc_kv_cache *c, const int32_t *ids, int n, float *logits, pc_error *err);
/* Append one token. */
pc_status pc_model_decode_step(pc_model *m, pc_kv_cache *c, int32_t id, float *logits, pc_error *err);
/* ---- end of decoding -------------------------------------------------------------------------------- */

#endif
