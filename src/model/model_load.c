/* Building a pc_model: the tensor table from (config, architecture row), then the data from a model
 * directory (checked name by name, shape by shape) or from a seeded random initialisation. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "io/weights.h"
#include "kernels/rope.h"
#include "model/model.h"
#include "model/model_internal.h"

/* Which tensors are kept in the compute dtype (large matrices) and which always in fp32 (vectors). */
static int is_matrix(const pc_param *p) { return p->t.ndim == 2; }

static pc_status declare(pc_model *m, int *n, const char *name, int64_t rows, int64_t cols, int transposed,
                         pc_param **out, pc_error *err) {
    pc_param *p = &m->params[(*n)++];
    if (snprintf(p->name, sizeof p->name, "%s", name) >= (int)sizeof p->name)
        return pc_fail(err, PC_ERR_INTERNAL, "tensor name too long: %s", name);
    p->t.ndim = cols ? 2 : 1;
    p->t.shape[0] = rows;
    p->t.shape[1] = cols;
    p->transposed = transposed;
    if (out) *out = p;
    return PC_OK;
}

static void linear_dims(const pc_model_config *c, int role, int *in, int *out) {
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    switch (role) {
    case PC_LIN_Q: *in = c->hidden, *out = q; break;
    case PC_LIN_K:
    case PC_LIN_V: *in = c->hidden, *out = kv; break;
    case PC_LIN_QKV: *in = c->hidden, *out = q + 2 * kv; break;
    case PC_LIN_O: *in = q, *out = c->hidden; break;
    case PC_LIN_GATE:
    case PC_LIN_UP: *in = c->hidden, *out = c->intermediate; break;
    default: *in = c->intermediate, *out = c->hidden; break; /* DOWN */
    }
}

static int role_has_bias(const pc_arch *a, int role) {
    if (role == PC_LIN_Q || role == PC_LIN_K || role == PC_LIN_V || role == PC_LIN_QKV) return a->qkv_bias;
    if (role == PC_LIN_O) return a->o_bias;
    return a->mlp_bias;
}

/* The tensor table: names, shapes, and the views layers/linears keep into it. */
static pc_status build_table(pc_model *m, pc_error *err) {
    const pc_model_config *c = &m->cfg;
    const pc_arch *a = c->arch;
    int per_layer = 2 * (a->norm_bias ? 2 : 1) + 2 * PC_LIN_COUNT;
    int cap = 6 + c->n_layers * per_layer, n = 0;
    m->params = pc_calloc((size_t)cap, sizeof *m->params);
    m->layers = pc_calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->params || !m->layers) return pc_fail(err, PC_ERR_NOMEM, "out of memory: model tables");
    char name[256];
    snprintf(name, sizeof name, "%s.weight", a->embed);
    PC_TRY(declare(m, &n, name, c->vocab_size, c->hidden, 0, &m->embed, err));
    if (a->pos_embed) {
        snprintf(name, sizeof name, "%s.weight", a->pos_embed);
        PC_TRY(declare(m, &n, name, c->max_positions, c->hidden, 0, &m->pos_embed, err));
    }
    for (int l = 0; l < c->n_layers; l++) {
        pc_layer *L = &m->layers[l];
        char prefix[96];
        snprintf(prefix, sizeof prefix, a->layer_prefix, l);
        snprintf(name, sizeof name, "%s%s.weight", prefix, a->norm1);
        PC_TRY(declare(m, &n, name, c->hidden, 0, 0, &L->norm1_w, err));
        if (a->norm_bias) {
            snprintf(name, sizeof name, "%s%s.bias", prefix, a->norm1);
            PC_TRY(declare(m, &n, name, c->hidden, 0, 0, &L->norm1_b, err));
        }
        for (int r = 0; r < PC_LIN_COUNT; r++) {
            if (!a->linear_names[r]) continue;
            pc_linear *lin = &L->lin[r];
            lin->layer = l;
            lin->role = r;
            linear_dims(c, r, &lin->in, &lin->out);
            snprintf(lin->name, sizeof lin->name, "%s%s", prefix, a->linear_names[r]);
            snprintf(name, sizeof name, "%s.weight", lin->name);
            PC_TRY(declare(m, &n, name, lin->out, lin->in, a->conv1d, &lin->weight, err));
            if (role_has_bias(a, r)) {
                snprintf(name, sizeof name, "%s.bias", lin->name);
                PC_TRY(declare(m, &n, name, lin->out, 0, 0, &lin->bias, err));
            }
        }
        snprintf(name, sizeof name, "%s%s.weight", prefix, a->norm2);
        PC_TRY(declare(m, &n, name, c->hidden, 0, 0, &L->norm2_w, err));
        if (a->norm_bias) {
            snprintf(name, sizeof name, "%s%s.bias", prefix, a->norm2);
            PC_TRY(declare(m, &n, name, c->hidden, 0, 0, &L->norm2_b, err));
        }
    }
    snprintf(name, sizeof name, "%s.weight", a->final_norm);
    PC_TRY(declare(m, &n, name, c->hidden, 0, 0, &m->final_norm_w, err));
    if (a->norm_bias) {
        snprintf(name, sizeof name, "%s.bias", a->final_norm);
        PC_TRY(declare(m, &n, name, c->hidden, 0, 0, &m->final_norm_b, err));
    }
    if (c->tied) {
        m->lm_head = m->embed;
    } else {
        snprintf(name, sizeof name, "%s.weight", a->lm_head);
        PC_TRY(declare(m, &n, name, c->vocab_size, c->hidden, 0, &m->lm_head, err));
    }
    m->n_params = n;
    return PC_OK;
}

/* One block for all base tensors: matrices in the compute dtype, vectors in fp32. */
static pc_status alloc_block(pc_model *m, pc_error *err) {
    size_t total = 0;
    for (int i = 0; i < m->n_params; i++) {
        pc_param *p = &m->params[i];
        p->t.dtype = is_matrix(p) ? m->compute_dtype : PC_F32;
        total += pc_arena_round(pc_tensor_bytes(&p->t));
    }
    m->base_block = pc_malloc(total);
    if (!m->base_block) return pc_fail(err, PC_ERR_NOMEM, "out of memory: %zu bytes of model weights", total);
    size_t off = 0;
    for (int i = 0; i < m->n_params; i++) {
        pc_param *p = &m->params[i];
        p->t.data = (char *)m->base_block + off;
        off += pc_arena_round(pc_tensor_bytes(&p->t));
    }
    return PC_OK;
}

static pc_status init_common(pc_model *m, pc_error *err) {
    PC_TRY(build_table(m, err));
    PC_TRY(alloc_block(m, err));
    PC_TRY(pc_matmul_create(&m->mm, err));
    return pc_model_ensure_positions(m, m->cfg.max_positions < 4096 ? m->cfg.max_positions : 4096, err);
}

/* Copy one file tensor into the compute tensor, converting dtype and undoing the Conv1D layout. */
static pc_status load_tensor(pc_param *p, const pc_st_entry *e, const char *file, pc_error *err) {
    if (e->dtype != PC_F32 && e->dtype != PC_F16 && e->dtype != PC_BF16)
        return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not a float type peftc loads", file,
                       e->name, pc_dtype_name(e->dtype));
    int64_t want0 = p->t.shape[0], want1 = p->t.ndim == 2 ? p->t.shape[1] : 0;
    if (p->transposed) {
        int64_t t = want0;
        want0 = want1;
        want1 = t;
    }
    int ok = e->ndim == p->t.ndim && e->shape[0] == want0 && (p->t.ndim == 1 || e->shape[1] == want1);
    if (!ok) {
        char got[96] = "";
        for (int i = 0; i < e->ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)e->shape[i]);
        if (p->t.ndim == 2)
            return pc_fail(err, PC_ERR_FORMAT, "%s: tensor '%s': shape [%s], expected [%lld,%lld]", file, e->name, got,
                           (long long)want0, (long long)want1);
        return pc_fail(err, PC_ERR_FORMAT, "%s: tensor '%s': shape [%s], expected [%lld]", file, e->name, got,
                       (long long)want0);
    }
    size_t n = (size_t)pc_tensor_numel(&p->t);
    if (!p->transposed) {
        if (p->t.dtype == PC_F32) pc_convert_to_f32(p->t.data, e->data, e->dtype, n);
        else pc_convert_to_bf16(p->t.data, e->data, e->dtype, n);
        return PC_OK;
    }
    /* [in,out] on disk → [out,in]: convert one source row (one input feature) at a time. */
    int64_t rows_out = p->t.shape[0], cols_in = p->t.shape[1];
    size_t esz = pc_dtype_size(e->dtype);
    float *tmp = pc_malloc((size_t)rows_out * sizeof(float));
    if (!tmp) return pc_fail(err, PC_ERR_NOMEM, "out of memory loading '%s'", e->name);
    for (int64_t i = 0; i < cols_in; i++) {
        pc_convert_to_f32(tmp, (const char *)e->data + (size_t)i * (size_t)rows_out * esz, e->dtype, (size_t)rows_out);
        for (int64_t o = 0; o < rows_out; o++) {
            size_t idx = (size_t)o * (size_t)cols_in + (size_t)i;
            if (p->t.dtype == PC_F32) ((float *)p->t.data)[idx] = tmp[o];
            else ((uint16_t *)p->t.data)[idx] = pc_f32_to_bf16(tmp[o]);
        }
    }
    pc_free(tmp);
    return PC_OK;
}

/* HF GPT-2 checkpoints saved from GPT2Model lack the "transformer." prefix; accept both spellings. */
static const pc_st_entry *find_entry(const pc_weight_files *wf, const char *name, const char **file) {
    const pc_st_entry *e = pc_weight_files_find(wf, name, file);
    if (!e && strncmp(name, "transformer.", 12) == 0) e = pc_weight_files_find(wf, name + 12, file);
    return e;
}

static pc_status check_finite(const pc_param *p, const char *file, pc_error *err) {
    size_t n = (size_t)pc_tensor_numel(&p->t);
    for (size_t i = 0; i < n; i++) {
        float x = p->t.dtype == PC_F32 ? ((const float *)p->t.data)[i] : pc_bf16_to_f32(((const uint16_t *)p->t.data)[i]);
        if (!isfinite(x)) return pc_fail(err, PC_ERR_FORMAT, "%s: tensor '%s': non-finite value at element %zu", file, p->name, i);
    }
    return PC_OK;
}

static pc_dtype checkpoint_dtype(const pc_model *m, const pc_weight_files *wf) {
    const pc_st_entry *e = find_entry(wf, m->embed->name, NULL);
    return e ? e->dtype : PC_F32;
}

static pc_status load_from_files(pc_model *m, const pc_weight_files *wf, pc_error *err) {
    for (int i = 0; i < m->n_params; i++) {
        pc_param *p = &m->params[i];
        const char *file = NULL;
        const pc_st_entry *e = find_entry(wf, p->name, &file);
        if (!e) return pc_fail(err, PC_ERR_FORMAT, "%s: missing tensor '%s'", m->dir, p->name);
        PC_TRY(load_tensor(p, e, file, err));
        PC_TRY(check_finite(p, file, err));
    }
    return PC_OK;
}

/* A hostile config.json must not make peftc build tables or allocate for a model the files do not hold
 * (num_hidden_layers 1000000 took minutes and gigabytes before failing): the last layer must exist in the files,
 * and the parameters the config declares must fit in the files' bytes (2 bytes per element at the least). */
static pc_status check_config_fits_files(const pc_model *m, const pc_weight_files *wf, pc_error *err) {
    const pc_model_config *c = &m->cfg;
    const pc_arch *a = c->arch;
    char prefix[96], name[256];
    snprintf(prefix, sizeof prefix, a->layer_prefix, c->n_layers - 1);
    snprintf(name, sizeof name, "%s%s.weight", prefix, a->norm1);
    if (!find_entry(wf, name, NULL))
        return pc_fail(err, PC_ERR_FORMAT, "%s: config.json declares %d layers but there is no tensor '%s'", m->dir,
                       c->n_layers, name);
    /* A lower bound on what the files must hold: the weight matrices and the embeddings, 2 bytes each. */
    double per_layer = 0, file_bytes = 0;
    for (int r = 0; r < PC_LIN_COUNT; r++) {
        if (!a->linear_names[r]) continue;
        int in, out;
        linear_dims(c, r, &in, &out);
        per_layer += (double)in * out;
    }
    double elements = (double)c->vocab_size * c->hidden + (double)c->n_layers * per_layer;
    if (a->pos_embed) elements += (double)c->max_positions * c->hidden;
    for (int i = 0; i < wf->n_files; i++) file_bytes += (double)wf->files[i].map.size;
    if (2.0 * elements > file_bytes)
        return pc_fail(err, PC_ERR_FORMAT, "%s: config.json sizes need at least %.0f parameters but the weight files "
                       "hold only %.0f bytes", m->dir, elements, file_bytes);
    return PC_OK;
}

pc_status pc_model_load(pc_model **out, const char *dir, pc_base_dtype base_dtype, pc_error *err) {
    *out = NULL;
    pc_model *m = pc_calloc(1, sizeof *m);
    if (!m) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    pc_weight_files wf = {0};
    pc_status st = pc_model_config_load(&m->cfg, dir, err);
    if (st == PC_OK && !(m->dir = pc_strdup(dir))) st = pc_fail(err, PC_ERR_NOMEM, "out of memory");
    char cfg_path[4096];
    if (st == PC_OK && pc_path_join(cfg_path, sizeof cfg_path, dir, "config.json")) st = pc_fail(err, PC_ERR_USAGE, "%s: path too long", dir);
    if (st == PC_OK && !(m->config_path = pc_strdup(cfg_path))) st = pc_fail(err, PC_ERR_NOMEM, "out of memory");
    if (st == PC_OK) st = pc_weight_files_open(&wf, dir, err);
    if (st == PC_OK) st = check_config_fits_files(m, &wf, err);
    if (st == PC_OK) {
        /* The table is built before the dtype is known only to find the embedding's name. */
        st = build_table(m, err);
        if (st == PC_OK) {
            m->file_dtype = checkpoint_dtype(m, &wf);
            m->compute_dtype = base_dtype == PC_BASE_F32 ? PC_F32
                             : base_dtype == PC_BASE_BF16 ? PC_BF16
                             : (m->file_dtype == PC_F32 ? PC_F32 : PC_BF16);
            pc_free(m->params);
            pc_free(m->layers);
            m->params = NULL;
            m->layers = NULL;
            st = init_common(m, err);
        }
    }
    if (st == PC_OK) st = load_from_files(m, &wf, err);
    pc_weight_files_close(&wf);
    if (st != PC_OK) {
        pc_model_free(m);
        return st;
    }
    *out = m;
    return PC_OK;
}

pc_status pc_model_create_random(pc_model **out, const char *config_path, pc_base_dtype base_dtype, uint64_t seed,
                                 pc_error *err) {
    *out = NULL;
    pc_model *m = pc_calloc(1, sizeof *m);
    if (!m) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    pc_status st = pc_model_config_load(&m->cfg, config_path, err);
    if (st == PC_OK && !(m->config_path = pc_strdup(config_path))) st = pc_fail(err, PC_ERR_NOMEM, "out of memory");
    m->file_dtype = PC_F32;
    m->compute_dtype = base_dtype == PC_BASE_F32 ? PC_F32 : PC_BF16;
    if (st == PC_OK) st = init_common(m, err);
    if (st != PC_OK) {
        pc_model_free(m);
        return st;
    }
    /* GPT-2 style initialisation: N(0, 0.02) matrices, unit norm weights, zero biases. */
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    float *tmp = NULL;
    size_t tmp_n = 0;
    for (int i = 0; i < m->n_params && st == PC_OK; i++) {
        pc_param *p = &m->params[i];
        size_t n = (size_t)pc_tensor_numel(&p->t);
        if (!is_matrix(p)) {
            int is_norm_weight = strstr(p->name, "norm") || strstr(p->name, "ln_");
            is_norm_weight = is_norm_weight && strstr(p->name, ".weight");
            for (size_t k = 0; k < n; k++) ((float *)p->t.data)[k] = is_norm_weight ? 1.0f : 0.0f;
            continue;
        }
        if (n > tmp_n) {
            pc_free(tmp);
            tmp = pc_malloc(n * sizeof(float));
            tmp_n = n;
            if (!tmp) st = pc_fail(err, PC_ERR_NOMEM, "out of memory");
        }
        if (st != PC_OK) break;
        pc_rng_fill_normal(&rng, tmp, (long)n, 0.0f, 0.02f);
        pc_convert_from_f32(p->t.data, p->t.dtype, tmp, n);
    }
    pc_free(tmp);
    if (st != PC_OK) {
        pc_model_free(m);
        return st;
    }
    *out = m;
    return PC_OK;
}

void pc_model_free(pc_model *m) {
    if (!m) return;
    if (m->layers) pc_model_clear_hooks(m);
    pc_model_plan_free(m);
    pc_matmul_destroy(m->mm);
    pc_free(m->rope_cos);
    pc_free(m->rope_sin);
    pc_free(m->base_block);
    pc_free(m->params);
    pc_free(m->layers);
    pc_free(m->dir);
    pc_free(m->config_path);
    pc_free(m->planners);
    pc_free(m);
}

pc_status pc_model_ensure_positions(pc_model *m, int n, pc_error *err) {
    if (!m->cfg.arch->rope || n <= m->rope_positions) return PC_OK;
    if (n > m->cfg.max_positions)
        return pc_fail(err, PC_ERR_USAGE, "%d positions exceed the model's max_position_embeddings %d", n, m->cfg.max_positions);
    size_t count = (size_t)n * (size_t)(m->cfg.head_dim / 2);
    float *cos_table = pc_malloc(count * sizeof(float)), *sin_table = pc_malloc(count * sizeof(float));
    if (!cos_table || !sin_table) {
        pc_free(cos_table);
        pc_free(sin_table);
        return pc_fail(err, PC_ERR_NOMEM, "out of memory: rotary tables for %d positions", n);
    }
    /* Each position's angles depend only on the position, so a longer table agrees with a shorter one. */
    rope_table_init(cos_table, sin_table, n, m->cfg.head_dim, m->cfg.rope_theta);
    pc_free(m->rope_cos);
    pc_free(m->rope_sin);
    m->rope_cos = cos_table;
    m->rope_sin = sin_table;
    m->rope_positions = n;
    return PC_OK;
}

pc_param *pc_model_find_param(pc_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

int pc_model_linear_count(const pc_model *m) {
    int n = 0;
    for (int r = 0; r < PC_LIN_COUNT; r++) n += m->cfg.arch->linear_names[r] != NULL;
    return n * m->cfg.n_layers;
}

pc_linear *pc_model_linear_at(pc_model *m, int i) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int r = 0; r < PC_LIN_COUNT; r++) {
            if (!m->cfg.arch->linear_names[r]) continue;
            if (i-- == 0) return &m->layers[l].lin[r];
        }
    return NULL;
}

pc_linear *pc_model_find_linear(pc_model *m, const char *module_name) {
    int n = pc_model_linear_count(m);
    for (int i = 0; i < n; i++) {
        pc_linear *lin = pc_model_linear_at(m, i);
        if (strcmp(lin->name, module_name) == 0) return lin;
    }
    return NULL;
}

pc_status pc_hook_add(pc_hook_list *list, const pc_hook *hook, pc_error *err) {
    if (list->count == list->cap) {
        int cap = list->cap ? 2 * list->cap : 2;
        pc_hook *h = pc_realloc(list->hooks, sizeof *h * (size_t)list->cap, sizeof *h * (size_t)cap);
        if (!h) return pc_fail(err, PC_ERR_NOMEM, "out of memory attaching a method");
        list->hooks = h;
        list->cap = cap;
    }
    list->hooks[list->count++] = *hook;
    return PC_OK;
}

void pc_hook_list_clear(pc_hook_list *list) {
    pc_free(list->hooks);
    memset(list, 0, sizeof *list);
}

static void hook_list_remove_owner(pc_hook_list *list, void *owner) {
    int kept = 0;
    for (int i = 0; i < list->count; i++)
        if (list->hooks[i].owner != owner) list->hooks[kept++] = list->hooks[i];
    list->count = kept;
}

void pc_model_remove_hooks(pc_model *m, void *owner) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        pc_layer *L = &m->layers[l];
        for (int r = 0; r < PC_LIN_COUNT; r++) hook_list_remove_owner(&L->lin[r].hooks, owner);
        hook_list_remove_owner(&L->attn_kv, owner);
        hook_list_remove_owner(&L->head_out, owner);
        hook_list_remove_owner(&L->sublayer[0], owner);
        hook_list_remove_owner(&L->sublayer[1], owner);
    }
    hook_list_remove_owner(&m->input_hooks, owner);
    hook_list_remove_owner(&m->output_hooks, owner);
}

void pc_model_clear_hooks(pc_model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        pc_layer *L = &m->layers[l];
        for (int r = 0; r < PC_LIN_COUNT; r++) pc_hook_list_clear(&L->lin[r].hooks);
        pc_hook_list_clear(&L->attn_kv);
        pc_hook_list_clear(&L->head_out);
        pc_hook_list_clear(&L->sublayer[0]);
        pc_hook_list_clear(&L->sublayer[1]);
    }
    pc_hook_list_clear(&m->input_hooks);
    pc_hook_list_clear(&m->output_hooks);
    pc_model_plan_free(m); /* virtual tokens and prefixes change the plan */
}

void pc_model_param_make_trainable(pc_param *p, float *data, float *grad) {
    if (!p->frozen.data) p->frozen = p->t;
    p->t.dtype = PC_F32;
    p->t.data = data;
    p->grad = grad;
}

void pc_model_param_restore(pc_param *p) {
    if (p->frozen.data) p->t = p->frozen;
    memset(&p->frozen, 0, sizeof p->frozen);
    p->grad = NULL;
}
