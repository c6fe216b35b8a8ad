/* Building blocks of a forward pass shared by training (model_forward.c) and decoding (model_decode.c), so
 * that both run the same sites in the same order: a hook written once works in both. */
#include <string.h>

#include "kernels/activation.h"
#include "kernels/norm.h"
#include "model/model_internal.h"

pc_site pc_site_begin(pc_site_kind kind, int layer, int index, const pc_step_shape *s) {
    pc_site site;
    memset(&site, 0, sizeof site);
    site.kind = kind;
    site.layer = layer;
    site.index = index;
    site.B = s->B;
    site.T = s->T;
    site.N = s->N;
    site.training = s->training;
    site.rng = s->rng;
    site.params_unchanged = s->continuing || s->recompute;
    return site;
}

void pc_hooks_forward(const pc_hook_list *list, pc_site *site, int phase) {
    for (int i = 0; i < list->count; i++) {
        const pc_hook *h = &list->hooks[i];
        if (!(h->phases & phase) || !h->forward) continue;
        site->phase = phase;
        site->state = h->state;
        h->forward(h->owner, site);
    }
}

void pc_hooks_backward(const pc_hook_list *list, pc_site *site, int phase) {
    for (int i = list->count - 1; i >= 0; i--) {
        const pc_hook *h = &list->hooks[i];
        if (!(h->phases & phase) || !h->backward) continue;
        site->phase = phase;
        site->state = h->state;
        h->backward(h->owner, site);
    }
}

void pc_input_hooks_forward(pc_model *m, float *x, const pc_step_shape *s) {
    pc_site in = pc_site_begin(PC_SITE_INPUT, -1, 0, s);
    in.out = x;
    in.out_dim = m->cfg.hidden;
    int offset = 0;
    for (int i = 0; i < m->input_hooks.count; i++) {
        const pc_hook *h = &m->input_hooks.hooks[i];
        in.virtual_offset = offset;
        in.state = h->state;
        in.phase = PC_PHASE_POST;
        if (h->forward) h->forward(h->owner, &in);
        offset += h->n_virtual;
    }
}

void pc_linear_site_forward(pc_model *m, pc_linear *lin, float *y, const float *x, const pc_step_shape *s) {
    pc_site site = pc_site_begin(PC_SITE_LINEAR, lin->layer, lin->role, s);
    site.linear = lin;
    site.in_dim = lin->in;
    site.out_dim = lin->out;
    site.in = x;
    pc_hooks_forward(&lin->hooks, &site, PC_PHASE_PRE);
    const float *used = site.replaced_in ? site.replaced_in : x;
    pc_linear_forward(m->mm, y, used, &lin->weight->t, lin->bias ? lin->bias->t.data : NULL, s->N, lin->in,
                      lin->out, 0);
    site.in = used;
    site.out = y;
    pc_hooks_forward(&lin->hooks, &site, PC_PHASE_POST);
    lin->saved_in = used;
}

void pc_norm_forward(const pc_model *m, float *out, float *mean, float *rstd, const float *x, const pc_param *w,
                     const pc_param *b, int N) {
    int C = m->cfg.hidden;
    if (m->cfg.arch->norm == PC_NORM_RMS)
        rmsnorm_forward(out, rstd, x, w->t.data, N, C, m->cfg.norm_eps);
    else
        layernorm_forward(out, mean, rstd, x, w->t.data, b->t.data, N, C, m->cfg.norm_eps);
}

void pc_sublayer_hooks_forward(pc_model *m, int l, int which, const pc_step_shape *s, const float *in, float *out) {
    pc_site sub = pc_site_begin(PC_SITE_SUBLAYER, l, which, s);
    sub.in = in;
    sub.out = out;
    sub.in_dim = sub.out_dim = m->cfg.hidden;
    pc_hooks_forward(&m->layers[l].sublayer[which], &sub, PC_PHASE_POST);
}

void pc_mlp_forward(pc_model *m, int l, const pc_step_shape *s, const float *ln, float *h1, float *h2, float *act,
                    float *out) {
    pc_layer *L = &m->layers[l];
    long n = (long)s->N * m->cfg.intermediate;
    if (m->cfg.arch->mlp == PC_MLP_SWIGLU) {
        pc_linear_site_forward(m, &L->lin[PC_LIN_GATE], h1, ln, s);
        pc_linear_site_forward(m, &L->lin[PC_LIN_UP], h2, ln, s);
        swiglu_forward(act, h1, h2, n);
    } else {
        pc_linear_site_forward(m, &L->lin[PC_LIN_UP], h1, ln, s);
        gelu_tanh_forward(act, h1, n);
    }
    pc_linear_site_forward(m, &L->lin[PC_LIN_DOWN], out, act, s);
    pc_sublayer_hooks_forward(m, l, PC_SUBLAYER_MLP, s, ln, out);
}
