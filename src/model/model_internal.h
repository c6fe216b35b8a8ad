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
};

void pc_model_plan_free(pc_model *m);

#endif
