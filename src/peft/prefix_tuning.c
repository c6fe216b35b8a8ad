/* Prefix tuning (Li & Liang) and P-tuning v2 at the ATTN_KV site, with Hugging Face PEFT's PREFIX_TUNING
 * semantics and file.
 *
 * A table T [n, L·2·kvd] (kvd = token_dim = head_dim·kv_heads, PEFT's grouped-query rewrite) holds, for every
 * layer l, n keys and n values that go in front of that layer's keys/values as an already-computed cache:
 *
 *   key_l[j]   = T[j, (2l+0)·kvd : (2l+1)·kvd]    (viewed [KVH, hd]; PEFT's index ((l·2+kv)·heads+head)·hd+d)
 *   value_l[j] = T[j, (2l+1)·kvd : (2l+2)·kvd]
 *
 * No RoPE is applied to them and the real tokens take positions n…n+T−1 (the model does both).
 *
 * With prefix_projection (the reparameterisation of the paper) T is the output of a small MLP:
 *
 *   T = W2 · tanh(W1 · E + b1) + b2,   E [n, kvd], W1 [h, kvd], W2 [L·2·kvd, h]
 *
 * and what is saved is T itself (PEFT's get_prompt_embedding_to_save), so the saved adapter is the plain
 * table with inference_mode true — exactly what PEFT's PrefixEncoder loads. Initialisation as PEFT's modules:
 * embeddings N(0, 1) (torch.nn.Embedding), linear layers torch.nn.Linear's uniform(±1/√fan_in). */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "io/json.h"
#include "peft/method.h"

typedef struct prefix_state {
    int n, L, KVH, hd, kvd, width; /* width = L·2·kvd */
    int projection, hidden;        /* MLP on (training a fresh prefix with prefix_projection) */
    int saved_projection;          /* the prefix_projection value to write into adapter_config.json */
    int table, emb, w1, b1, w2, b2;/* parameter indices (−1 when absent) */
    int *layer_ids;                /* [L] hook states: the layer index */
    float *buf;                    /* one owner for the buffers below */
    float *keys, *values;          /* [L][n, kvd] gathered per layer */
    float *proj_table, *d_table;   /* projection: T [n, width] and its gradient */
    float *act, *d_act;            /* projection: tanh(W1·E + b1) [n, h] and scratch */
} prefix_state;

static pc_status prefix_attach(pc_method *m, const cJSON *opt, pc_error *err) {
    prefix_state *s = pc_calloc(1, sizeof *s);
    if (!s) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    m->impl = s;
    const pc_model_config *c = &m->model->cfg;
    s->n = (int)pc_opt_number(opt, "num_virtual_tokens", 20);
    s->L = c->n_layers;
    s->KVH = c->n_kv_heads;
    s->hd = c->head_dim;
    s->kvd = s->KVH * s->hd;
    s->width = s->L * 2 * s->kvd;
    s->table = s->emb = s->w1 = s->b1 = s->w2 = s->b2 = -1;
    if (s->n <= 0) return pc_fail(err, PC_ERR_USAGE, "prefix-tuning: num_virtual_tokens must be positive");
    /* A saved adapter says which model it was made for; refuse one for another geometry. */
    int token_dim = (int)pc_opt_number(opt, "token_dim", s->kvd), layers = (int)pc_opt_number(opt, "num_layers", s->L);
    if (token_dim != s->kvd || layers != s->L)
        return pc_fail(err, PC_ERR_FORMAT,
                       "prefix-tuning: adapter made for %d layers × token_dim %d, this model has %d layers × %d (head_dim·kv_heads)",
                       layers, token_dim, s->L, s->kvd);
    if ((int)pc_opt_number(opt, "num_transformer_submodules", 1) != 1)
        return pc_fail(err, PC_ERR_UNSUPPORTED, "prefix-tuning: num_transformer_submodules must be 1 (causal LM)");
    s->saved_projection = pc_opt_bool(opt, "prefix_projection", 0);
    /* As PEFT's PrefixEncoder: the MLP exists only while training; a saved adapter is the table. */
    s->projection = s->saved_projection && !pc_opt_bool(opt, "inference_mode", 0);
    s->hidden = (int)pc_opt_number(opt, "encoder_hidden_size", s->kvd);
    if (s->projection && s->hidden <= 0) return pc_fail(err, PC_ERR_USAGE, "prefix-tuning: encoder_hidden_size must be positive");
    int64_t t_shape[2] = {s->n, s->width};
    if (!s->projection) return pc_params_declare(&m->params, "prompt_embeddings", 2, t_shape, &s->table, err);
    /* Training-only names (never written to an adapter directory: prefix_save writes the table). */
    int64_t e_shape[2] = {s->n, s->kvd}, w1_shape[2] = {s->hidden, s->kvd}, b1_shape[1] = {s->hidden},
            w2_shape[2] = {s->width, s->hidden}, b2_shape[1] = {s->width};
    PC_TRY(pc_params_declare(&m->params, "prefix_encoder.embedding.weight", 2, e_shape, &s->emb, err));
    PC_TRY(pc_params_declare(&m->params, "prefix_encoder.transform.0.weight", 2, w1_shape, &s->w1, err));
    PC_TRY(pc_params_declare(&m->params, "prefix_encoder.transform.0.bias", 1, b1_shape, &s->b1, err));
    PC_TRY(pc_params_declare(&m->params, "prefix_encoder.transform.2.weight", 2, w2_shape, &s->w2, err));
    return pc_params_declare(&m->params, "prefix_encoder.transform.2.bias", 1, b2_shape, &s->b2, err);
}

static void prefix_forward(void *owner, pc_site *site);
static void prefix_backward(void *owner, pc_site *site);

/* Per-layer key/value buffers (batch independent, so made once here rather than in a plan) and the hooks. */
static pc_status prefix_register(pc_method *m, pc_error *err) {
    prefix_state *s = m->impl;
    size_t per_layer = (size_t)s->n * (size_t)s->kvd, table = (size_t)s->n * (size_t)s->width;
    size_t act = s->projection ? (size_t)s->n * (size_t)s->hidden : 0;
    size_t total = 2 * (size_t)s->L * per_layer + (s->projection ? 2 * table + 2 * act : 0);
    s->buf = pc_calloc(total, sizeof(float));
    s->layer_ids = pc_calloc((size_t)s->L, sizeof *s->layer_ids);
    if (!s->buf || !s->layer_ids) return pc_fail(err, PC_ERR_NOMEM, "prefix-tuning: out of memory");
    s->keys = s->buf;
    s->values = s->keys + (size_t)s->L * per_layer;
    if (s->projection) {
        s->proj_table = s->values + (size_t)s->L * per_layer;
        s->d_table = s->proj_table + table;
        s->act = s->d_table + table;
        s->d_act = s->act + act;
    }
    for (int l = 0; l < s->L; l++) {
        s->layer_ids[l] = l;
        pc_hook h = {.owner = m, .state = &s->layer_ids[l], .phases = PC_PHASE_POST, .forward = prefix_forward,
                     .backward = prefix_backward, .n_prefix = s->n};
        PC_TRY(pc_hook_add(&m->model->layers[l].attn_kv, &h, err));
    }
    return PC_OK;
}

static pc_status prefix_init(pc_method *m, pc_rng *rng, pc_error *err) {
    prefix_state *s = m->impl;
    if (!s->projection) {
        pc_rng_fill_normal(rng, pc_params_data(&m->params, s->table), (long)s->n * s->width, 0.0f, 1.0f);
    } else {
        pc_rng_fill_normal(rng, pc_params_data(&m->params, s->emb), (long)s->n * s->kvd, 0.0f, 1.0f);
        pc_rng_kaiming_uniform(rng, pc_params_data(&m->params, s->w1), (long)s->hidden * s->kvd, s->kvd);
        pc_rng_kaiming_uniform(rng, pc_params_data(&m->params, s->b1), s->hidden, s->kvd);
        pc_rng_kaiming_uniform(rng, pc_params_data(&m->params, s->w2), (long)s->width * s->hidden, s->hidden);
        pc_rng_kaiming_uniform(rng, pc_params_data(&m->params, s->b2), s->width, s->hidden);
    }
    return prefix_register(m, err);
}

/* T [n,width] = W2 · tanh(W1·E + b1) + b2, keeping tanh(·) [n,h] for backward. */
static void projection_forward(const pc_method *m, prefix_state *s, float *T) {
    pc_matmul *mm = m->model->mm;
    const float *E = pc_params_data(&m->params, s->emb), *b1 = pc_params_data(&m->params, s->b1);
    const float *b2 = pc_params_data(&m->params, s->b2);
    for (int j = 0; j < s->n; j++) memcpy(s->act + (size_t)j * s->hidden, b1, sizeof(float) * (size_t)s->hidden);
    pc_gemm(mm, 0, 1, s->n, s->hidden, s->kvd, 1.0f, E, s->kvd, pc_params_data(&m->params, s->w1), s->kvd, 1.0f, s->act,
            s->hidden);
    for (size_t i = 0; i < (size_t)s->n * s->hidden; i++) s->act[i] = tanhf(s->act[i]);
    for (int j = 0; j < s->n; j++) memcpy(T + (size_t)j * s->width, b2, sizeof(float) * (size_t)s->width);
    pc_gemm(mm, 0, 1, s->n, s->width, s->hidden, 1.0f, s->act, s->hidden, pc_params_data(&m->params, s->w2), s->hidden,
            1.0f, T, s->width);
}

/* Given dT [n,width]: dW2 += dTᵀ·a, db2 += Σ dT, da = dT·W2, dh = da ⊙ (1 − a²), dW1 += dhᵀ·E, db1 += Σ dh,
 * dE += dh·W1. */
static void projection_backward(pc_method *m, prefix_state *s) {
    pc_matmul *mm = m->model->mm;
    const float *dT = s->d_table;
    float *db2 = pc_params_grad(&m->params, s->b2), *db1 = pc_params_grad(&m->params, s->b1);
    pc_gemm(mm, 1, 0, s->width, s->hidden, s->n, 1.0f, dT, s->width, s->act, s->hidden, 1.0f,
            pc_params_grad(&m->params, s->w2), s->hidden);
    for (int j = 0; j < s->n; j++)
        for (int i = 0; i < s->width; i++) db2[i] += dT[(size_t)j * s->width + i];
    pc_gemm(mm, 0, 0, s->n, s->hidden, s->width, 1.0f, dT, s->width, pc_params_data(&m->params, s->w2), s->hidden, 0.0f,
            s->d_act, s->hidden);
    for (size_t i = 0; i < (size_t)s->n * s->hidden; i++) s->d_act[i] *= 1.0f - s->act[i] * s->act[i];
    for (int j = 0; j < s->n; j++)
        for (int i = 0; i < s->hidden; i++) db1[i] += s->d_act[(size_t)j * s->hidden + i];
    pc_gemm(mm, 1, 0, s->hidden, s->kvd, s->n, 1.0f, s->d_act, s->hidden, pc_params_data(&m->params, s->emb), s->kvd,
            1.0f, pc_params_grad(&m->params, s->w1), s->kvd);
    pc_gemm(mm, 0, 0, s->n, s->kvd, s->hidden, 1.0f, s->d_act, s->hidden, pc_params_data(&m->params, s->w1), s->kvd, 1.0f,
            pc_params_grad(&m->params, s->emb), s->kvd);
}

/* Layer l: prefix_k, prefix_v [n, KVH, hd] gathered from the table's columns for (l, key) and (l, value).
 * Layer 0 runs first, so that is where the projection (if any) is evaluated for the whole step. */
static void prefix_forward(void *owner, pc_site *site) {
    pc_method *m = owner;
    prefix_state *s = m->impl;
    int l = *(const int *)site->state;
    if (s->projection && l == 0) {
        projection_forward(m, s, s->proj_table);
        memset(s->d_table, 0, sizeof(float) * (size_t)s->n * (size_t)s->width);
    }
    const float *T = s->projection ? s->proj_table : pc_params_data(&m->params, s->table);
    float *k = s->keys + (size_t)l * s->n * s->kvd, *v = s->values + (size_t)l * s->n * s->kvd;
    size_t row = sizeof(float) * (size_t)s->kvd;
    for (int j = 0; j < s->n; j++) {
        const float *src = T + (size_t)j * s->width + (size_t)(2 * l) * s->kvd;
        memcpy(k + (size_t)j * s->kvd, src, row);
        memcpy(v + (size_t)j * s->kvd, src + s->kvd, row);
    }
    site->prefix_k = k;
    site->prefix_v = v;
}

/* d_prefix_k/v [n, kvd] scatter back into the table's columns; layers come back in reverse order, so
 * layer 0 is the last and closes the projection's backward. */
static void prefix_backward(void *owner, pc_site *site) {
    pc_method *m = owner;
    prefix_state *s = m->impl;
    int l = *(const int *)site->state;
    float *dT = s->projection ? s->d_table : pc_params_grad(&m->params, s->table);
    for (int j = 0; j < s->n; j++) {
        float *dst = dT + (size_t)j * s->width + (size_t)(2 * l) * s->kvd;
        const float *dk = site->d_prefix_k + (size_t)j * s->kvd, *dv = site->d_prefix_v + (size_t)j * s->kvd;
        for (int i = 0; i < s->kvd; i++) {
            dst[i] += dk[i];
            dst[s->kvd + i] += dv[i];
        }
    }
    if (s->projection && l == 0) projection_backward(m, s);
}

static pc_status prefix_config_json(const pc_method *m, cJSON *cfg, pc_error *err) {
    const prefix_state *s = m->impl;
    int failed = 0;
    pc_json_put(cfg, "auto_mapping", cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "encoder_hidden_size", cJSON_CreateNumber(s->hidden), &failed);
    pc_json_put(cfg, "init_weights", cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "modules_to_save", cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "num_attention_heads", cJSON_CreateNumber(s->KVH), &failed); /* PEFT's GQA rewrite: kv heads */
    pc_json_put(cfg, "num_layers", cJSON_CreateNumber(s->L), &failed);
    pc_json_put(cfg, "num_transformer_submodules", cJSON_CreateNumber(1), &failed);
    pc_json_put(cfg, "num_virtual_tokens", cJSON_CreateNumber(s->n), &failed);
    pc_json_put(cfg, "prefix_projection", cJSON_CreateBool(s->saved_projection), &failed);
    pc_json_put(cfg, "token_dim", cJSON_CreateNumber(s->kvd), &failed);
    return pc_json_built(failed, "adapter_config.json", err);
}

/* The adapter directory of a prefix with projection: the projected table under PEFT's one name, through the
 * generic writer (a stand-in method that owns just that tensor and shares this one's config). */
static const pc_method_ops prefix_table_ops;

static pc_status prefix_save(const pc_method *m, const char *dir, pc_error *err) {
    prefix_state *s = m->impl;
    pc_method table = {.ops = &prefix_table_ops, .model = m->model, .impl = s};
    pc_params_init(&table.params);
    int64_t shape[2] = {s->n, s->width};
    int idx;
    pc_status st = pc_params_declare(&table.params, "prompt_embeddings", 2, shape, &idx, err);
    if (st == PC_OK) st = pc_params_alloc(&table.params, err);
    if (st == PC_OK) {
        if (s->projection) projection_forward(m, s, pc_params_data(&table.params, idx));
        else memcpy(pc_params_data(&table.params, idx), pc_params_data(&m->params, s->table), sizeof(float) * (size_t)s->n * s->width);
        st = pc_method_save(&table, dir, err);
    }
    pc_params_free(&table.params);
    return st;
}

static void prefix_destroy(pc_method *m) {
    prefix_state *s = m->impl;
    if (!s) return;
    pc_free(s->buf);
    pc_free(s->layer_ids);
    pc_free(s);
    m->impl = NULL;
}

/* No per-step buffers; the plan entry makes the model re-plan for the prefix length after attaching. */
static pc_status prefix_plan(pc_method *m, int B, int T, pc_error *err) {
    (void)m, (void)B, (void)T, (void)err;
    return PC_OK;
}

static const pc_method_ops prefix_table_ops = {
    .name = "prefix-tuning",
    .peft_type = "PREFIX_TUNING",
    .config_json = prefix_config_json,
};

const pc_method_ops pc_prefix_tuning_ops = {
    .name = "prefix-tuning",
    .peft_type = "PREFIX_TUNING",
    .attach = prefix_attach,
    .init = prefix_init,
    .plan = prefix_plan,
    .after_load = prefix_register,
    .config_json = prefix_config_json,
    .destroy = prefix_destroy,
    .save = prefix_save,
};
