/* Merged model directories and GGUF LoRA files (formats.md §4). Both work through the method interface
 * only: merge through ops->merge, and the GGUF export from the adapter's saved tensors and its
 * adapter_config.json fields, so this file knows PEFT's semantics, not lora.c's internals. */
#include "peft/lora_export.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "io/gguf.h"

/* ---- merge -------------------------------------------------------------------------------------------- */

pc_status pc_adapter_merge_dir(pc_model *m, const char *adapter_dir, float weight, pc_error *err) {
    pc_method *method = NULL;
    PC_TRY(pc_method_load(&method, m, adapter_dir, err));
    pc_status st = method->ops->merge ? method->ops->merge(method, weight, err)
                                      : pc_fail(err, PC_ERR_UNSUPPORTED, "%s: '%s' adapters cannot be merged into the base weights (use it unmerged with --adapter)",
                                                adapter_dir, method->ops->name);
    if (st != PC_OK && method->ops->merge) pc_error_prefix(err, "%s: ", adapter_dir);
    pc_method_free(method); /* detaches its hooks: the merged weights now carry it */
    return st;
}

static int dir_is_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 0;
    int empty = 1;
    for (struct dirent *e; empty && (e = readdir(d));) empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    return empty;
}

pc_status pc_merged_model_write(const pc_model *m, const char *out_dir, pc_error *err) {
    if (pc_path_exists(out_dir) && !(pc_is_dir(out_dir) && dir_is_empty(out_dir)))
        return pc_fail(err, PC_ERR_USAGE, "%s: already exists and is not an empty directory (choose another --out)",
                       out_dir);
    char tmp[4200];
    size_t len = strlen(out_dir);
    while (len > 1 && out_dir[len - 1] == '/') len--; /* "out/" → temp "out.tmp.<pid>", a sibling */
    if (snprintf(tmp, sizeof tmp, "%.*s.tmp.%ld", (int)len, out_dir, (long)getpid()) >= (int)sizeof tmp)
        return pc_fail(err, PC_ERR_USAGE, "%s: path too long", out_dir);
    pc_remove_tree(tmp); /* a leftover of a killed run with the same pid */
    pc_dtype dtype = m->file_dtype == PC_BF16 || m->file_dtype == PC_F16 ? m->file_dtype : PC_F32;
    pc_status st = pc_model_save(m, tmp, dtype, err);
    if (st == PC_OK && rename(tmp, out_dir) != 0)
        st = pc_fail(err, PC_ERR_IO, "%s: cannot move the merged model into place: %s", out_dir, strerror(errno));
    if (st != PC_OK) {
        pc_remove_tree(tmp);
        return st;
    }
    char parent[4200];
    snprintf(parent, sizeof parent, "%.*s", (int)len, out_dir);
    char *slash = strrchr(parent, '/');
    if (!slash) snprintf(parent, sizeof parent, ".");
    else if (slash == parent) parent[1] = '\0';
    else *slash = '\0';
    return pc_fsync_dir(parent, err);
}

/* ---- GGUF LoRA ---------------------------------------------------------------------------------------- */

const char *pc_gguf_arch_name(const pc_model *m) {
    /* llama.cpp's LLM_ARCH names (src/llama-arch.cpp); convert_hf_to_gguf.py writes Mistral as "llama". */
    static const char *const map[][2] = {{"llama", "llama"}, {"mistral", "llama"}, {"qwen2", "qwen2"}, {"gpt2", "gpt2"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(m->cfg.arch->model_type, map[i][0])) return map[i][1];
    return NULL;
}

/* gguf-py TENSOR_NAMES for a block projection. */
static const char *gguf_projection_name(int role) {
    switch (role) {
    case PC_LIN_Q: return "attn_q";
    case PC_LIN_K: return "attn_k";
    case PC_LIN_V: return "attn_v";
    case PC_LIN_QKV: return "attn_qkv";
    case PC_LIN_O: return "attn_output";
    case PC_LIN_GATE: return "ffn_gate";
    case PC_LIN_UP: return "ffn_up";
    case PC_LIN_DOWN: return "ffn_down";
    default: return NULL;
    }
}

/* convert_hf_to_gguf.py's LlamaModel.permute on rows: view [rows] as (heads, 2, half) and swap the last two,
 * so GGUF row h·2·half + 2i + j holds HF row h·2·half + j·half + i (the rotary pairs interleaved). */
static void permute_rows(float *dst, const float *src, int rows, int cols, int heads) {
    int half = rows / heads / 2;
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < half; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + (size_t)(h * 2 * half + 2 * i + j) * cols, src + (size_t)(h * 2 * half + j * half + i) * cols,
                       sizeof(float) * (size_t)cols);
}

typedef struct export_config {
    double alpha;
    int rslora, dora;
    const cJSON *alpha_pattern;
} export_config;

/* One target: A as-is, B scaled by fold (and row-permuted for llama q/k). */
static pc_status export_target(pc_gguf_writer *w, const pc_method *lora, const export_config *c, int a_index,
                               pc_error *err) {
    const pc_param_view *va = &lora->params.views[a_index];
    char module[160], b_name[200];
    const char *prefix = "base_model.model.", *suffix = ".lora_A.weight";
    size_t n = strlen(va->name), np = strlen(prefix), ns = strlen(suffix);
    snprintf(module, sizeof module, "%.*s", (int)(n - np - ns), va->name + np);
    snprintf(b_name, sizeof b_name, "%s%s.lora_B.weight", prefix, module);
    int b_index = pc_params_find(&lora->params, b_name);
    pc_linear *lin = pc_model_find_linear(lora->model, module);
    const char *proj = lin ? gguf_projection_name(lin->role) : NULL;
    if (b_index < 0 || !proj)
        return pc_fail(err, PC_ERR_UNSUPPORTED, "'%s': no lora_B or no GGUF tensor for module '%s'", va->name, module);
    int r = (int)va->shape[0], in = lin->in, out = lin->out;
    double alpha = c->alpha;
    pc_pattern_lookup(c->alpha_pattern, module, &alpha);
    double peft_scale = c->rslora ? alpha / sqrt((double)r) : alpha / r;
    double gguf_scale = c->alpha != 0 ? c->alpha / r : 1.0; /* llama_adapter_lora_weight::get_scale */
    double fold = peft_scale / gguf_scale;
    size_t nb = (size_t)out * (size_t)r;
    float *b = pc_malloc(nb * sizeof(float)), *permuted = pc_malloc(nb * sizeof(float));
    if (!b || !permuted) {
        pc_free(b);
        pc_free(permuted);
        return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    }
    const float *b_src = pc_params_data(&lora->params, b_index);
    for (size_t k = 0; k < nb; k++) b[k] = fabs(fold - 1.0) < 1e-12 ? b_src[k] : (float)(b_src[k] * fold);
    const float *b_out = b;
    int heads = lin->role == PC_LIN_Q ? lora->model->cfg.n_heads : lora->model->cfg.n_kv_heads;
    const char *gguf_arch = pc_gguf_arch_name(lora->model);
    if (gguf_arch && !strcmp(gguf_arch, "llama") && (lin->role == PC_LIN_Q || lin->role == PC_LIN_K)) {
        permute_rows(permuted, b, out, r, heads);
        b_out = permuted;
    }
    char name[256];
    int64_t ne_a[2] = {in, r}, ne_b[2] = {r, out};
    snprintf(name, sizeof name, "blk.%d.%s.weight.lora_a", lin->layer, proj);
    pc_status st = pc_gguf_writer_tensor_f32(w, name, 2, ne_a, pc_params_data(&lora->params, a_index), err);
    snprintf(name, sizeof name, "blk.%d.%s.weight.lora_b", lin->layer, proj);
    if (st == PC_OK) st = pc_gguf_writer_tensor_f32(w, name, 2, ne_b, b_out, err);
    pc_free(b);
    pc_free(permuted);
    return st;
}

static pc_status export_all(pc_gguf_writer *w, const pc_method *lora, const cJSON *cfg, const char *arch,
                            pc_error *err) {
    export_config c = {.alpha = pc_opt_number(cfg, "lora_alpha", 8), .rslora = pc_opt_bool(cfg, "use_rslora", 0),
                       .dora = pc_opt_bool(cfg, "use_dora", 0),
                       .alpha_pattern = cJSON_GetObjectItemCaseSensitive(cfg, "alpha_pattern")};
    if (c.dora)
        return pc_fail(err, PC_ERR_UNSUPPORTED,
                       "DoRA adapters (use_dora) cannot be exported to GGUF: llama.cpp does not implement DoRA "
                       "(merge the adapter into the model with 'peftc merge' instead)");
    PC_TRY(pc_gguf_writer_kv_string(w, "general.type", "adapter", err));
    PC_TRY(pc_gguf_writer_kv_string(w, "general.architecture", arch, err));
    PC_TRY(pc_gguf_writer_kv_string(w, "adapter.type", "lora", err));
    PC_TRY(pc_gguf_writer_kv_f32(w, "adapter.lora.alpha", (float)c.alpha, err));
    int n_targets = 0;
    for (int i = 0; i < lora->params.n_views; i++) {
        const char *name = lora->params.views[i].name;
        size_t n = strlen(name);
        if (n > 14 && !strcmp(name + n - 14, ".lora_A.weight")) {
            PC_TRY(export_target(w, lora, &c, i, err));
            n_targets++;
        } else if (!strstr(name, ".lora_B.weight")) {
            return pc_fail(err, PC_ERR_UNSUPPORTED, "tensor '%s' has no GGUF LoRA equivalent", name);
        }
    }
    if (!n_targets) return pc_fail(err, PC_ERR_FORMAT, "the adapter has no lora_A tensors");
    return PC_OK;
}

pc_status pc_lora_export_gguf(const pc_method *lora, const char *path, pc_error *err) {
    if (strcmp(lora->ops->peft_type, "LORA") != 0 || !lora->ops->config_json)
        return pc_fail(err, PC_ERR_UNSUPPORTED, "gguf-lora export needs a LoRA adapter, not %s", lora->ops->name);
    const char *arch = pc_gguf_arch_name(lora->model);
    if (!arch)
        return pc_fail(err, PC_ERR_UNSUPPORTED, "model_type '%s' has no llama.cpp architecture name",
                       lora->model->cfg.arch->model_type);
    cJSON *cfg = cJSON_CreateObject();
    if (!cfg) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    pc_gguf_writer *w = NULL;
    pc_status st = lora->ops->config_json(lora, cfg, err);
    if (st == PC_OK) st = pc_gguf_writer_create(&w, err);
    if (st == PC_OK) st = export_all(w, lora, cfg, arch, err);
    if (st == PC_OK) st = pc_gguf_writer_write(w, path, err);
    if (w) pc_gguf_writer_destroy(w);
    cJSON_Delete(cfg);
    return st;
}
