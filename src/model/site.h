/* Sites: the fixed places in the network where a method may modify the computation (the unified view of
 * He et al.; ARCHITECTURE.md §1). The model calls every hook registered at a site, in registration order on
 * the way forward and in reverse order on the way back; it never knows which method is there.
 *
 * What a hook sees at each site (N = B·T rows, T counts any virtual tokens an input hook added):
 *
 *   INPUT      forward:  out [B,T,C] token embeddings; a hook that declared n_virtual rows fills rows
 *                        virtual_offset … virtual_offset+n_virtual−1 of every sequence (it may also modify
 *                        the real rows). backward: d_out [B,T,C].
 *   LINEAR     PRE:  in [N,in]. A hook may set site->replaced_in to its own [N,in] buffer (input scaling):
 *                    the product then reads it. backward PRE: d_in is the gradient w.r.t. the replaced
 *                    input; the hook must turn it into the gradient w.r.t. the original (in place).
 *              POST: in [N,in] (the product's input), out [N,out] (W·in + b, already computed); the hook adds
 *                    to / rescales out. backward POST (called before the product's own backward): d_out
 *                    [N,out] may be rewritten in place (for multiplicative hooks); d_in [N,in] is accumulated
 *                    into.
 *   ATTN_KV    forward: the hook sets prefix_k, prefix_v [P,KVH,hd] (P = n_prefix it declared); backward:
 *              d_prefix_k, d_prefix_v [P,KVH,hd] are provided (zeroed) for it to read.
 *   HEAD_OUT   out [N,H·hd] attention output per head before o_proj; rewrite in place; backward: d_out in place.
 *   SUBLAYER   index 0 attention, 1 MLP. POST: in [N,C] (what the sublayer read: the normed hidden state),
 *              out [N,C] (the sublayer's output before the residual add): add to / rewrite out. backward:
 *              d_out [N,C] may be rewritten in place, d_in [N,C] accumulated into.
 *   OUTPUT     out [N,C] final hidden state after the final norm (classification/embedding heads).
 *
 * Parameter sites (LN tuning, BitFit, full fine-tuning) need no hook: a method makes a base tensor
 * trainable through pc_model_param_make_trainable, and the model computes its gradient.
 *
 * Gradient checkpointing (pc_model.gradient_checkpointing) re-runs a layer's forward just before its
 * backward, so LINEAR, HEAD_OUT and SUBLAYER forward hooks may be called twice per layer and step: the second
 * call gets the same inputs and a copy of the RNG as the first saw it, and must rebuild the same state
 * (saved products, dropout masks). ATTN_KV, INPUT and OUTPUT hooks are called once per step. */
#ifndef PC_MODEL_SITE_H
#define PC_MODEL_SITE_H

#include "core/rng.h"

typedef enum pc_site_kind {
    PC_SITE_INPUT, PC_SITE_LINEAR, PC_SITE_ATTN_KV, PC_SITE_HEAD_OUT, PC_SITE_SUBLAYER, PC_SITE_OUTPUT,
    PC_SITE_KIND_COUNT
} pc_site_kind;

enum { PC_PHASE_PRE = 1, PC_PHASE_POST = 2 };
enum { PC_SUBLAYER_ATTN = 0, PC_SUBLAYER_MLP = 1 };

struct pc_linear;

typedef struct pc_site {
    pc_site_kind kind;
    int phase;                 /* PC_PHASE_PRE or PC_PHASE_POST */
    int layer;                 /* −1 for model-level sites */
    int index;                 /* linear role, or sublayer index */
    void *state;               /* the hook's own per-site state, given at registration */
    int B, T, N;
    int training;              /* 1 when gradients will follow (dropout active) */
    int params_unchanged;      /* 1 when these hooks already ran with the same parameters: a KV-cache decode
                                * chunk after the first of its sequence, or a layer's forward re-run for its
                                * backward (gradient checkpointing). Values a hook computed from parameters
                                * alone at its last run here (DoRA's weight norms) may be reused */
    pc_rng *rng;               /* the step's RNG (dropout masks) */
    struct pc_linear *linear;  /* LINEAR: the projection (weights, dims, HF name) */
    int in_dim, out_dim;
    const float *in;
    float *out;
    float *replaced_in;        /* LINEAR PRE output, see above */
    float *d_in, *d_out;       /* backward */
    int virtual_offset;        /* INPUT */
    const float *prefix_k, *prefix_v; /* ATTN_KV forward output */
    const float *d_prefix_k, *d_prefix_v;
} pc_site;

typedef void (*pc_site_fn)(void *owner, pc_site *site);

typedef struct pc_hook {
    void *owner;               /* the method (opaque to the model) */
    void *state;               /* per-site state */
    int phases;                /* PC_PHASE_PRE | PC_PHASE_POST (LINEAR); POST elsewhere */
    pc_site_fn forward, backward;
    int n_virtual;             /* INPUT: rows it prepends */
    int n_prefix;              /* ATTN_KV: keys/values it prepends */
} pc_hook;

typedef struct pc_hook_list {
    pc_hook *hooks;
    int count, cap;
} pc_hook_list;

#endif
