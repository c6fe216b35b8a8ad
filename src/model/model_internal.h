/* Model internals shared by model_load.c, model_plan.c and model_forward.c. Not part of the API. */
#ifndef PC_MODEL_INTERNAL_H
#define PC_MODEL_INTERNAL_H

#include "model/model.h"

typedef struct pc_layer_acts {
    float *x_in;                   /* [N,C] residual stream entering the layer */
    float *ln1, *ln1_mean, *ln1_rstd;
    float *q, *k, *v;              /* [N,H·hd], [N,KVH·hd] ×2, after RoPE */
    float *att;                    /* [N,H·hd] attention output (after HEAD_OUT hooks): o_proj's input */
    float *lse;                    /* [B,H,T] */
    float *x_mid;                  /* [N,C] after the attention residual */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *h1, *h2;                /* SwiGLU: gate, up [N,I]; GELU: pre-activation [N,I] */
    float *act;                    /* [N,I] down_proj's input */
} pc_layer_acts;

struct pc_model_acts {
    int B, T, T_real;              /* T includes virtual tokens */
    int n_virtual, n_prefix, training;
    int checkpointing;             /* a training plan of gradient checkpointing: layers share every buffer
                                    * but x_in, and backward re-runs each layer's forward (layer_recompute) */
    pc_arena arena;
    pc_layer_acts *layers;
    float *x_out;                  /* [N,C] residual after the last layer */
    float *lnf, *lnf_mean, *lnf_rstd;
    int32_t *ids, *targets, *pos, *doc; /* [N] (doc NULL when unused) */
    int has_doc;
    int cur_B, cur_T, cur_N;       /* geometry of the last forward */
    /* scratch, shared by all layers */
    float *qkv, *sub_out;          /* [N, q+2kv], [N,C] */
    float *d_resid, *d_ln, *d_sub; /* [N,C] */
    float *d_q, *d_k, *d_v, *d_qkv, *d_att; /* as q, k, v, qkv, att */
    float *d_h1, *d_h2, *d_act;    /* [N,I] */
    float *d_lnf;                  /* [N,C] */
    float *d_prefix_k, *d_prefix_v;/* [P, KVH·hd] */
    float *d_linear_in;            /* [N, max in] for PRE-hooked linears */
    float *xent_scratch;           /* [chunk, V] */
    int xent_chunk;
    const float **prefix_k, **prefix_v; /* per layer, set by ATTN_KV hooks in forward */
    /* Checkpointing: the step RNG as each layer's forward found it, at its start and after its ATTN_KV
     * hooks, so the recomputation draws the same dropout masks ([2·n_layers]; NULL otherwise). */
    pc_rng *layer_rng;
};

void pc_model_plan_free(pc_model *m);

/* ---- building blocks shared by the training forward (model_forward.c) and decoding (model_decode.c) ---- */

/* The geometry of one call: N = B·T rows (T includes virtual tokens), P prefix rows. Decoding is B = 1. */
typedef struct pc_step_shape {
    int B, T, N, P;
    int training;
    pc_rng *rng;
    int recompute;                 /* re-running a layer's forward for its backward (gradient checkpointing) */
    int continuing;                /* a decode chunk after the first of its sequence (see site.h) */
} pc_step_shape;

pc_site pc_site_begin(pc_site_kind kind, int layer, int index, const pc_step_shape *s);
void pc_hooks_forward(const pc_hook_list *list, pc_site *site, int phase);
void pc_hooks_backward(const pc_hook_list *list, pc_site *site, int phase);
/* INPUT hooks over token embeddings x [B,T,C]: each fills its virtual rows, in registration order. */
void pc_input_hooks_forward(pc_model *m, float *x, const pc_step_shape *s);
/* y [N,out] = W·x + b with the projection's PRE and POST hooks; remembers the product's input for backward. */
void pc_linear_site_forward(pc_model *m, pc_linear *lin, float *y, const float *x, const pc_step_shape *s);
void pc_norm_forward(const pc_model *m, float *out, float *mean, float *rstd, const float *x, const pc_param *w,
                     const pc_param *b, int N);
/* SUBLAYER POST hooks on a sublayer's output (in: what the sublayer read). */
void pc_sublayer_hooks_forward(pc_model *m, int l, int which, const pc_step_shape *s, const float *in, float *out);
/* The MLP of layer l on ln [N,C] into out [N,C] (h1, h2, act [N,I] are kept for backward), with its hooks. */
void pc_mlp_forward(pc_model *m, int l, const pc_step_shape *s, const float *ln, float *h1, float *h2, float *act,
                    float *out);

#endif
