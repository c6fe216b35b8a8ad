/* Bottleneck adapters at SUBLAYER sites, in the design space of He et al. ("Towards a Unified View"):
 *
 *   f(x) = U · relu(D · x + bd) + bu       D [r, C] random (nn.Linear init), U [C, r] zero, biases zero
 *
 *   serial   (Houlsby, Pfeiffer):  out' = out + s·f(out)   the sublayer's output goes through the adapter
 *   parallel (He et al.):          out' = out + s·f(in)    the adapter reads what the sublayer read
 *
 * adapter_type     sites             composition   scale s
 *   houlsby        attention + MLP   serial        1   (Houlsby et al. 2019)
 *   pfeiffer       MLP               serial        1   (Pfeiffer et al. 2021)
 *   parallel       attention + MLP   parallel      1   (He et al., placed as Houlsby's)
 *   scaled-parallel MLP              parallel      4   (He et al.'s best variant; the FFN half of MAM)
 * adapter_sites ("attn", "mlp", "attn,mlp") and adapter_scale override the defaults.
 *
 * U = 0 makes the adapter start as the identity. The residual add follows the site, so "out" is the
 * sublayer's output before the residual. PEFT has no bottleneck adapter: the directory has PEFT's shape with
 * peft_type "PEFTC_ADAPTER" and keys base_model.model.<sublayer module>.adapter_{down,up}.{weight,bias}.
 * A nonlinear module cannot be folded into the base weights, so the method has no merge. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "io/json.h"
#include "peft/method.h"

typedef struct adapter_site {
    int layer, sublayer;
    int down_w, down_b, up_w, up_b; /* parameter indices */
    float *x_saved;                 /* serial: [N,C] the sublayer output it read */
    float *act;                     /* [N,r] relu(D·x + bd) */
} adapter_site;

typedef struct adapter_state {
    char type[24];
    int r, C, serial;
    int sites_mask;                 /* bit 0 attention, bit 1 MLP */
    float scale;
    int n_sites;
    adapter_site *sites;
    int plan_N;
    float *arena;
    float *d_act;                   /* [N,r] scratch shared by all sites */
} adapter_state;

static int parse_sites(const char *s) {
    int mask = 0;
    if (strstr(s, "attn")) mask |= 1;
    if (strstr(s, "mlp")) mask |= 2;
    return mask;
}

/* The sublayer's module path: the parent of its output projection (model.layers.3.self_attn, transformer.h.3.mlp). */
static void sublayer_module(const pc_model *model, int layer, int sublayer, char *out, size_t cap) {
    const pc_linear *lin = &model->layers[layer].lin[sublayer == PC_SUBLAYER_ATTN ? PC_LIN_O : PC_LIN_DOWN];
    snprintf(out, cap, "%s", lin->name);
    char *dot = strrchr(out, '.');
    if (dot) *dot = '\0';
}

static pc_status declare_site(pc_method *m, adapter_state *s, adapter_site *a, pc_error *err) {
    char module[160], key[256];
    sublayer_module(m->model, a->layer, a->sublayer, module, sizeof module);
    int64_t down[2] = {s->r, s->C}, down_b[1] = {s->r}, up[2] = {s->C, s->r}, up_b[1] = {s->C};
    pc_peft_key(key, sizeof key, module, "adapter_down.weight");
    PC_TRY(pc_params_declare(&m->params, key, 2, down, &a->down_w, err));
    pc_peft_key(key, sizeof key, module, "adapter_down.bias");
    PC_TRY(pc_params_declare(&m->params, key, 1, down_b, &a->down_b, err));
    pc_peft_key(key, sizeof key, module, "adapter_up.weight");
    PC_TRY(pc_params_declare(&m->params, key, 2, up, &a->up_w, err));
    pc_peft_key(key, sizeof key, module, "adapter_up.bias");
    return pc_params_declare(&m->params, key, 1, up_b, &a->up_b, err);
}

static pc_status adapter_attach(pc_method *m, const cJSON *opt, pc_error *err) {
    adapter_state *s = pc_calloc(1, sizeof *s);
    if (!s) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    m->impl = s;
    const char *type = pc_opt_string(opt, "adapter_type", "houlsby");
    snprintf(s->type, sizeof s->type, "%s", type);
    float dflt_scale = 1.0f;
    if (!strcmp(type, "houlsby")) s->serial = 1, s->sites_mask = 3;
    else if (!strcmp(type, "pfeiffer")) s->serial = 1, s->sites_mask = 2;
    else if (!strcmp(type, "parallel")) s->serial = 0, s->sites_mask = 3;
    else if (!strcmp(type, "scaled-parallel")) s->serial = 0, s->sites_mask = 2, dflt_scale = 4.0f;
    else return pc_fail(err, PC_ERR_USAGE, "adapter: adapter_type '%s' is not houlsby, pfeiffer, parallel or scaled-parallel", type);
    const char *sites = pc_opt_string(opt, "adapter_sites", NULL);
    if (sites && !(s->sites_mask = parse_sites(sites)))
        return pc_fail(err, PC_ERR_USAGE, "adapter: adapter_sites '%s' names neither attn nor mlp", sites);
    s->scale = (float)pc_opt_number(opt, "adapter_scale", dflt_scale);
    s->r = (int)pc_opt_number(opt, "adapter_dim", 16);
    s->C = m->model->cfg.hidden;
    if (s->r <= 0) return pc_fail(err, PC_ERR_USAGE, "adapter: adapter_dim must be positive");
    const cJSON *layers = opt ? cJSON_GetObjectItemCaseSensitive(opt, "layers_to_transform") : NULL;
    int L = m->model->cfg.n_layers;
    s->sites = pc_calloc((size_t)(2 * L), sizeof *s->sites);
    if (!s->sites) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    for (int l = 0; l < L; l++)
        for (int sub = 0; sub < 2; sub++) {
            if (!(s->sites_mask & (1 << sub)) || !pc_layer_selected(layers, l)) continue;
            adapter_site *a = &s->sites[s->n_sites++];
            a->layer = l;
            a->sublayer = sub;
            PC_TRY(declare_site(m, s, a, err));
        }
    if (s->n_sites == 0) return pc_fail(err, PC_ERR_USAGE, "adapter: layers_to_transform selects no layer of this model");
    return PC_OK;
}

static void adapter_forward(void *owner, pc_site *site);
static void adapter_backward(void *owner, pc_site *site);

static pc_status adapter_register(pc_method *m, pc_error *err) {
    adapter_state *s = m->impl;
    for (int i = 0; i < s->n_sites; i++) {
        adapter_site *a = &s->sites[i];
        pc_hook h = {.owner = m, .state = a, .phases = PC_PHASE_POST, .forward = adapter_forward, .backward = adapter_backward};
        PC_TRY(pc_hook_add(&m->model->layers[a->layer].sublayer[a->sublayer], &h, err));
    }
    return PC_OK;
}

static pc_status adapter_init(pc_method *m, pc_rng *rng, pc_error *err) {
    adapter_state *s = m->impl;
    for (int i = 0; i < s->n_sites; i++) {
        adapter_site *a = &s->sites[i];
        pc_rng_kaiming_uniform(rng, pc_params_data(&m->params, a->down_w), (long)s->r * s->C, s->C);
        /* down bias, up weight and up bias stay zero (pc_params_alloc zeroes). */
    }
    return adapter_register(m, err);
}

static pc_status adapter_plan(pc_method *m, int B, int T, pc_error *err) {
    adapter_state *s = m->impl;
    int N = B * pc_model_total_len(m->model, T);
    if (s->arena && s->plan_N >= N) return PC_OK;
    pc_free(s->arena);
    size_t per_site = (size_t)N * (size_t)s->r + (s->serial ? (size_t)N * (size_t)s->C : 0);
    s->arena = pc_malloc(sizeof(float) * (per_site * (size_t)s->n_sites + (size_t)N * (size_t)s->r));
    if (!s->arena) return pc_fail(err, PC_ERR_NOMEM, "adapter: out of memory for step buffers");
    float *p = s->arena;
    for (int i = 0; i < s->n_sites; i++) {
        s->sites[i].act = p;
        p += (size_t)N * (size_t)s->r;
        s->sites[i].x_saved = s->serial ? p : NULL;
        if (s->serial) p += (size_t)N * (size_t)s->C;
    }
    s->d_act = p;
    s->plan_N = N;
    return PC_OK;
}

/* x [N,C] is out (serial, copied first since out is rewritten) or in (parallel).
 * act [N,r] = relu(x·Dᵀ + bd);  out [N,C] += s·(act·Uᵀ + bu). */
static void adapter_forward(void *owner, pc_site *site) {
    pc_method *m = owner;
    adapter_state *s = m->impl;
    adapter_site *a = site->state;
    if (!a->act || s->plan_N < site->N) return; /* not planned: a programming error the tests catch */
    pc_matmul *mm = m->model->mm;
    int N = site->N, C = s->C, r = s->r;
    const float *x = site->in;
    if (s->serial) {
        memcpy(a->x_saved, site->out, sizeof(float) * (size_t)N * (size_t)C);
        x = a->x_saved;
    }
    const float *bd = pc_params_data(&m->params, a->down_b), *bu = pc_params_data(&m->params, a->up_b);
    for (int n = 0; n < N; n++) memcpy(a->act + (size_t)n * r, bd, sizeof(float) * (size_t)r);
    pc_gemm(mm, 0, 1, N, r, C, 1.0f, x, C, pc_params_data(&m->params, a->down_w), C, 1.0f, a->act, r);
    for (size_t i = 0; i < (size_t)N * r; i++) a->act[i] = a->act[i] > 0.0f ? a->act[i] : 0.0f;
    pc_gemm(mm, 0, 1, N, C, r, s->scale, a->act, r, pc_params_data(&m->params, a->up_w), r, 1.0f, site->out, C);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) site->out[(size_t)n * C + c] += s->scale * bu[c];
}

/* g = d_out [N,C]:  dU += s·gᵀ·act ; dbu += s·Σ g ; dh = s·(g·U) ⊙ [act > 0] ; dD += dhᵀ·x ; dbd += Σ dh ;
 * the adapter's input gradient dh·D goes to d_out itself (serial: out' = out + f(out)) or to d_in (parallel). */
static void adapter_backward(void *owner, pc_site *site) {
    pc_method *m = owner;
    adapter_state *s = m->impl;
    adapter_site *a = site->state;
    pc_matmul *mm = m->model->mm;
    int N = site->N, C = s->C, r = s->r;
    const float *x = s->serial ? a->x_saved : site->in;
    const float *g = site->d_out;
    float *dbu = pc_params_grad(&m->params, a->up_b), *dbd = pc_params_grad(&m->params, a->down_b);
    pc_gemm(mm, 1, 0, C, r, N, s->scale, g, C, a->act, r, 1.0f, pc_params_grad(&m->params, a->up_w), r);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) dbu[c] += s->scale * g[(size_t)n * C + c];
    pc_gemm(mm, 0, 0, N, r, C, s->scale, g, C, pc_params_data(&m->params, a->up_w), r, 0.0f, s->d_act, r);
    for (size_t i = 0; i < (size_t)N * r; i++)
        if (!(a->act[i] > 0.0f)) s->d_act[i] = 0.0f;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < r; k++) dbd[k] += s->d_act[(size_t)n * r + k];
    pc_gemm(mm, 1, 0, r, C, N, 1.0f, s->d_act, r, x, C, 1.0f, pc_params_grad(&m->params, a->down_w), C);
    float *dx = s->serial ? site->d_out : site->d_in;
    pc_gemm(mm, 0, 0, N, C, r, 1.0f, s->d_act, r, pc_params_data(&m->params, a->down_w), C, 1.0f, dx, C);
}

static pc_status adapter_config_json(const pc_method *m, cJSON *cfg, pc_error *err) {
    const adapter_state *s = m->impl;
    int failed = 0;
    pc_json_put(cfg, "adapter_dim", cJSON_CreateNumber(s->r), &failed);
    pc_json_put(cfg, "adapter_scale", cJSON_CreateNumber(s->scale), &failed);
    pc_json_put(cfg, "adapter_sites",
                cJSON_CreateString(s->sites_mask == 3 ? "attn,mlp" : s->sites_mask == 1 ? "attn" : "mlp"), &failed);
    pc_json_put(cfg, "adapter_type", cJSON_CreateString(s->type), &failed);
    cJSON *layers = cJSON_CreateArray();
    for (int l = 0; l < m->model->cfg.n_layers; l++) {
        int used = 0;
        for (int i = 0; i < s->n_sites; i++) used |= s->sites[i].layer == l;
        if (used) pc_json_append(layers, cJSON_CreateNumber(l), &failed);
    }
    pc_json_put(cfg, "layers_to_transform", layers, &failed);
    pc_json_put(cfg, "modules_to_save", cJSON_CreateNull(), &failed);
    return pc_json_built(failed, "adapter_config.json", err);
}

static void adapter_destroy(pc_method *m) {
    adapter_state *s = m->impl;
    if (!s) return;
    pc_free(s->sites);
    pc_free(s->arena);
    pc_free(s);
    m->impl = NULL;
}

const pc_method_ops pc_adapter_ops = {
    .name = "adapter",
    .peft_type = "PEFTC_ADAPTER",
    .attach = adapter_attach,
    .init = adapter_init,
    .plan = adapter_plan,
    .after_load = adapter_register,
    .config_json = adapter_config_json,
    .destroy = adapter_destroy,
};
