/* peftc inspect PATH: say what PATH is (model directory, adapter directory, safetensors file, GGUF file,
 * tokenizer) and summarise it without loading any weights. Each kind builds one cJSON object; --json prints
 * it as the last line of stdout, otherwise the same object is rendered as an aligned summary, so the two
 * outputs cannot disagree. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "core/alloc.h"
#include "io/gguf.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/config.h"

static const cli_opt inspect_opts[] = {
    {"--json", OPT_FLAG, "print one JSON object"},
    {"--help", OPT_FLAG, "this help"},
};
#define N_INSPECT_OPTS (int)(sizeof inspect_opts / sizeof inspect_opts[0])

/* Human output shows this many tensors of an adapter, then "... N more"; JSON always lists them all. */
#define ADAPTER_TENSORS_SHOWN 20

typedef enum { KIND_UNKNOWN, KIND_MODEL, KIND_ADAPTER, KIND_SAFETENSORS, KIND_GGUF, KIND_TOKENIZER } inspect_kind;

/* ------------------------------------------------------------------------------------------ detection */

static int has_file(const char *dir, const char *name) {
    char p[4096];
    return pc_path_join(p, sizeof p, dir, name) == 0 && pc_path_exists(p) && !pc_is_dir(p);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int dir_has_tokenizer(const char *dir) {
    return has_file(dir, "tokenizer.json") || has_file(dir, "vocab.json") || has_file(dir, "encoder.json");
}

/* The file's first four bytes are "GGUF" (for files named otherwise). */
static int has_gguf_magic(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char m[4] = {0};
    size_t n = fread(m, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(m, "GGUF", 4) == 0;
}

static inspect_kind detect_kind(const char *path) {
    if (pc_is_dir(path)) {
        if (has_file(path, "adapter_config.json")) return KIND_ADAPTER;
        if (has_file(path, "config.json")) return KIND_MODEL;
        if (dir_has_tokenizer(path)) return KIND_TOKENIZER;
        return KIND_UNKNOWN;
    }
    if (ends_with(path, ".safetensors")) return KIND_SAFETENSORS;
    if (ends_with(path, ".gguf") || has_gguf_magic(path)) return KIND_GGUF;
    if (ends_with(path, "tokenizer.json") || ends_with(path, "vocab.json") || ends_with(path, "encoder.json"))
        return KIND_TOKENIZER;
    return KIND_UNKNOWN;
}

/* ------------------------------------------------------------------------------------- shared pieces */

static int64_t entry_numel(const pc_st_entry *e) {
    int64_t n = 1;
    for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
    return n;
}

/* Every member below is added with pc_json_put / pc_json_append, which count in *failed what could not be
 * added (out of memory), so a summary short of a field is an error, never printed. */

/* {"name":..., "dtype":..., "shape":[...]} for one safetensors entry. */
static cJSON *st_entry_json(const pc_st_entry *e, int *failed) {
    cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray();
    pc_json_put(t, "name", cJSON_CreateString(e->name), failed);
    pc_json_put(t, "dtype", cJSON_CreateString(pc_dtype_name(e->dtype)), failed);
    for (int d = 0; d < e->ndim; d++) pc_json_append(shape, cJSON_CreateNumber((double)e->shape[d]), failed);
    pc_json_put(t, "shape", shape, failed);
    return t;
}

/* Adds tensor count, parameter count, bytes and the tensor list of one safetensors file. */
static void add_st_tensors(cJSON *o, const pc_safetensors *st, int *failed) {
    int64_t params = 0;
    size_t bytes = 0;
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; i < st->count; i++) {
        params += entry_numel(&st->entries[i]);
        bytes += st->entries[i].nbytes;
        pc_json_append(list, st_entry_json(&st->entries[i], failed), failed);
    }
    pc_json_put(o, "n_tensors", cJSON_CreateNumber(st->count), failed);
    pc_json_put(o, "parameters", cJSON_CreateNumber((double)params), failed);
    pc_json_put(o, "tensor_bytes", cJSON_CreateNumber((double)bytes), failed);
    pc_json_put(o, "tensors", list, failed);
}

/* ---------------------------------------------------------------------------------------------- model */

/* The checkpoint dtype: the one dtype of every tensor, or "mixed(A,B,...)". */
static void add_checkpoint_dtype(cJSON *o, const pc_weight_files *wf, int *failed) {
    int seen[PC_DTYPE_COUNT] = {0}, distinct = 0;
    for (int f = 0; f < wf->n_files; f++)
        for (int i = 0; i < wf->files[f].count; i++) {
            pc_dtype dt = wf->files[f].entries[i].dtype;
            if ((int)dt >= 0 && dt < PC_DTYPE_COUNT && !seen[dt]++) distinct++;
        }
    char buf[128] = "";
    if (distinct > 1) strcat(buf, "mixed(");
    int first = 1;
    for (int d = 0; d < PC_DTYPE_COUNT; d++) {
        if (!seen[d]) continue;
        if (!first) strcat(buf, ",");
        strcat(buf, pc_dtype_name((pc_dtype)d));
        first = 0;
    }
    if (distinct > 1) strcat(buf, ")");
    pc_json_put(o, "dtype", cJSON_CreateString(distinct ? buf : "none"), failed);
}

static pc_status inspect_tokenizer_into(cJSON *o, const char *path, const char *prefix, int *failed, pc_error *err) {
    pc_tokenizer *tk = NULL;
    PC_TRY(pc_tokenizer_load(&tk, path, err));
    const struct {
        const char *name;
        long value;
    } fields[] = {{"vocab_size", pc_tokenizer_vocab_size(tk)}, {"bos_id", pc_tokenizer_bos_id(tk)},
                  {"eos_id", pc_tokenizer_eos_id(tk)}, {"pad_id", pc_tokenizer_pad_id(tk)}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s%s", prefix, fields[i].name);
        pc_json_put(o, key, cJSON_CreateNumber((double)fields[i].value), failed);
    }
    pc_tokenizer_free(tk);
    return PC_OK;
}

static pc_status inspect_model(cJSON *o, const char *dir, int *failed, pc_error *err) {
    pc_model_config cfg;
    PC_TRY(pc_model_config_load(&cfg, dir, err));
    pc_json_put(o, "kind", cJSON_CreateString("model"), failed);
    pc_json_put(o, "model_type", cJSON_CreateString(cfg.arch->model_type), failed);
    const struct {
        const char *name;
        long value;
    } sizes[] = {{"layers", cfg.n_layers},     {"hidden", cfg.hidden},     {"heads", cfg.n_heads},
                 {"kv_heads", cfg.n_kv_heads}, {"head_dim", cfg.head_dim}, {"intermediate", cfg.intermediate},
                 {"vocab", cfg.vocab_size},    {"max_positions", cfg.max_positions}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        pc_json_put(o, sizes[i].name, cJSON_CreateNumber((double)sizes[i].value), failed);
    pc_json_put(o, "tied", cJSON_CreateBool(cfg.tied), failed);
    pc_weight_files wf = {0};
    PC_TRY(pc_weight_files_open(&wf, dir, err));
    int64_t params = 0;
    for (int f = 0; f < wf.n_files; f++)
        for (int i = 0; i < wf.files[f].count; i++) params += entry_numel(&wf.files[f].entries[i]);
    add_checkpoint_dtype(o, &wf, failed);
    pc_json_put(o, "weight_files", cJSON_CreateNumber(wf.n_files), failed);
    pc_json_put(o, "parameters", cJSON_CreateNumber((double)params), failed);
    pc_weight_files_close(&wf);
    int tok = dir_has_tokenizer(dir);
    pc_json_put(o, "tokenizer", cJSON_CreateBool(tok), failed);
    if (tok) PC_TRY(inspect_tokenizer_into(o, dir, "tokenizer_", failed, err));
    return PC_OK;
}

/* -------------------------------------------------------------------------------------------- adapter */

/* The adapter_config.json fields worth showing; others (nulls, empty maps, PEFT bookkeeping) are noise. */
static const char *const adapter_fields[] = {
    "task_type", "base_model_name_or_path", "r", "lora_alpha", "lora_dropout", "target_modules",
    "layers_to_transform", "use_rslora", "use_dora", "bias", "modules_to_save", "feedforward_modules",
    "num_virtual_tokens", "token_dim", "num_layers", "num_attention_heads", "prompt_tuning_init",
    "prompt_tuning_init_text", "prefix_projection", "encoder_hidden_size", "adapter_type", "adapter_dim",
    "adapter_scale", "fan_in_fan_out", "rank_pattern", "alpha_pattern",
};

static pc_status read_adapter_config(cJSON **out, const char *dir, pc_error *err) {
    char p[4096];
    if (pc_path_join(p, sizeof p, dir, "adapter_config.json"))
        return pc_fail(err, PC_ERR_IO, "%s: path: too long", dir);
    cJSON *cfg = NULL;
    PC_TRY(pc_json_load(&cfg, p, err)); /* syntax errors with line:column, like every other reader's */
    const char *type = NULL; /* as pc_method_load reads it */
    pc_status st = cJSON_IsObject(cfg) ? pc_json_string(cfg, "peft_type", 1, &type, p, err)
                                       : pc_fail(err, PC_ERR_FORMAT, "%s: not a JSON object", p);
    if (st != PC_OK) {
        cJSON_Delete(cfg);
        return st;
    }
    *out = cfg;
    return PC_OK;
}

static int json_is_empty(const cJSON *v) {
    return cJSON_IsNull(v) || ((cJSON_IsObject(v) || cJSON_IsArray(v)) && v->child == NULL);
}

static pc_status inspect_adapter(cJSON *o, const char *dir, int *failed, pc_error *err) {
    cJSON *cfg = NULL;
    PC_TRY(read_adapter_config(&cfg, dir, err));
    pc_json_put(o, "kind", cJSON_CreateString("adapter"), failed);
    pc_json_put(o, "peft_type", cJSON_CreateString(cJSON_GetObjectItemCaseSensitive(cfg, "peft_type")->valuestring),
                failed);
    for (size_t i = 0; i < sizeof adapter_fields / sizeof adapter_fields[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, adapter_fields[i]);
        if (v && !json_is_empty(v)) pc_json_put(o, adapter_fields[i], cJSON_Duplicate(v, 1), failed);
    }
    cJSON_Delete(cfg);
    char p[4096];
    if (pc_path_join(p, sizeof p, dir, "adapter_model.safetensors"))
        return pc_fail(err, PC_ERR_IO, "%s: path: too long", dir);
    pc_safetensors st = {0};
    PC_TRY(pc_safetensors_open(&st, p, err));
    add_st_tensors(o, &st, failed);
    pc_safetensors_close(&st);
    return PC_OK;
}

/* ---------------------------------------------------------------------------------- safetensors file */

static pc_status inspect_safetensors(cJSON *o, const char *path, int *failed, pc_error *err) {
    pc_safetensors st = {0};
    PC_TRY(pc_safetensors_open(&st, path, err));
    pc_json_put(o, "kind", cJSON_CreateString("safetensors"), failed);
    pc_json_put(o, "file_bytes", cJSON_CreateNumber((double)st.map.size), failed);
    cJSON *meta = cJSON_CreateObject();
    for (int i = 0; i < st.meta_count; i++) pc_json_put(meta, st.meta_keys[i], cJSON_CreateString(st.meta_values[i]), failed);
    pc_json_put(o, "metadata", meta, failed);
    add_st_tensors(o, &st, failed);
    pc_safetensors_close(&st);
    return PC_OK;
}

/* ----------------------------------------------------------------------------------------- GGUF file */

static const char *gguf_type_name(int t) {
    static const char *const names[] = {"uint8", "int8",   "uint16", "int16", "uint32", "int32", "float32",
                                        "bool",  "string", "array",  "uint64", "int64", "float64"};
    return t >= 0 && t < (int)(sizeof names / sizeof names[0]) ? names[t] : "unknown";
}

static const char *ggml_type_name(int t, char *buf, size_t cap) {
    switch (t) {
    case GGML_TYPE_F32: return "F32";
    case GGML_TYPE_F16: return "F16";
    case GGML_TYPE_Q4_0: return "Q4_0";
    case GGML_TYPE_Q8_0: return "Q8_0";
    case GGML_TYPE_BF16: return "BF16";
    default: snprintf(buf, cap, "ggml_type_%d", t); return buf;
    }
}

/* A numeric or bool scalar KV as a JSON value; the bytes may be unaligned inside the map. */
static cJSON *gguf_scalar_json(int type, const void *p) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32;
            uint64_t u64; int64_t i64; double f64; } v;
    memset(&v, 0, sizeof v);
    switch (type) {
    case GGUF_TYPE_UINT8: memcpy(&v.u8, p, 1); return cJSON_CreateNumber(v.u8);
    case GGUF_TYPE_INT8: memcpy(&v.i8, p, 1); return cJSON_CreateNumber(v.i8);
    case GGUF_TYPE_BOOL: memcpy(&v.u8, p, 1); return cJSON_CreateBool(v.u8 != 0);
    case GGUF_TYPE_UINT16: memcpy(&v.u16, p, 2); return cJSON_CreateNumber(v.u16);
    case GGUF_TYPE_INT16: memcpy(&v.i16, p, 2); return cJSON_CreateNumber(v.i16);
    case GGUF_TYPE_UINT32: memcpy(&v.u32, p, 4); return cJSON_CreateNumber(v.u32);
    case GGUF_TYPE_INT32: memcpy(&v.i32, p, 4); return cJSON_CreateNumber(v.i32);
    case GGUF_TYPE_FLOAT32: memcpy(&v.f32, p, 4); return cJSON_CreateNumber(v.f32);
    case GGUF_TYPE_UINT64: memcpy(&v.u64, p, 8); return cJSON_CreateNumber((double)v.u64);
    case GGUF_TYPE_INT64: memcpy(&v.i64, p, 8); return cJSON_CreateNumber((double)v.i64);
    case GGUF_TYPE_FLOAT64: memcpy(&v.f64, p, 8); return cJSON_CreateNumber(v.f64);
    default: return cJSON_CreateNull();
    }
}

static cJSON *gguf_kv_json(const pc_gguf_kv *kv) {
    if (kv->type == GGUF_TYPE_STRING) return cJSON_CreateString(kv->str ? kv->str : "");
    if (kv->type == GGUF_TYPE_ARRAY) {
        char buf[64];
        snprintf(buf, sizeof buf, "[%s x %" PRIu64 "]", gguf_type_name(kv->array_type), kv->count);
        return cJSON_CreateString(buf);
    }
    return gguf_scalar_json(kv->type, kv->data);
}

static pc_status inspect_gguf(cJSON *o, const char *path, int *failed, pc_error *err) {
    pc_gguf g;
    memset(&g, 0, sizeof g);
    PC_TRY(pc_gguf_open(&g, path, err));
    pc_json_put(o, "kind", cJSON_CreateString("gguf"), failed);
    pc_json_put(o, "version", cJSON_CreateNumber(g.version), failed);
    pc_json_put(o, "alignment", cJSON_CreateNumber((double)g.alignment), failed);
    pc_json_put(o, "file_bytes", cJSON_CreateNumber((double)g.map.size), failed);
    cJSON *kvs = cJSON_CreateObject(), *list = cJSON_CreateArray();
    for (int64_t i = 0; i < g.n_kv; i++) pc_json_put(kvs, g.kvs[i].key, gguf_kv_json(&g.kvs[i]), failed);
    pc_json_put(o, "kv", kvs, failed);
    pc_json_put(o, "n_tensors", cJSON_CreateNumber((double)g.n_tensors), failed);
    for (int64_t i = 0; i < g.n_tensors; i++) {
        const pc_gguf_tensor *t = &g.tensors[i];
        char buf[32];
        cJSON *e = cJSON_CreateObject(), *ne = cJSON_CreateArray();
        pc_json_put(e, "name", cJSON_CreateString(t->name), failed);
        pc_json_put(e, "type", cJSON_CreateString(ggml_type_name(t->type, buf, sizeof buf)), failed);
        for (uint32_t d = 0; d < t->n_dims && d < 4; d++) pc_json_append(ne, cJSON_CreateNumber((double)t->ne[d]), failed);
        pc_json_put(e, "ne", ne, failed);
        pc_json_append(list, e, failed);
    }
    pc_json_put(o, "tensors", list, failed);
    pc_gguf_close(&g);
    return PC_OK;
}

/* ------------------------------------------------------------------------------------------ tokenizer */

static pc_status inspect_tokenizer(cJSON *o, const char *path, int *failed, pc_error *err) {
    pc_json_put(o, "kind", cJSON_CreateString("tokenizer"), failed);
    return inspect_tokenizer_into(o, path, "", failed, err);
}

/* ------------------------------------------------------------------------------------ human rendering */

/* A value on one line: strings bare, string arrays comma-joined, everything else as compact JSON. */
static void print_value(const cJSON *v) {
    if (cJSON_IsString(v)) {
        fputs(v->valuestring, stdout);
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        /* Counts and ids exactly; other numbers to ten digits. */
        if (d > -1e15 && d < 1e15 && (double)(long long)d == d) printf("%lld", (long long)d);
        else printf("%.10g", d);
    } else if (cJSON_IsArray(v) && v->child && cJSON_IsString(v->child)) {
        for (const cJSON *c = v->child; c; c = c->next) printf("%s%s", c == v->child ? "" : ", ", c->valuestring);
    } else if (cJSON_IsArray(v) && (!v->child || cJSON_IsNumber(v->child))) {
        putchar('[');
        for (const cJSON *c = v->child; c; c = c->next) printf("%s%.10g", c == v->child ? "" : ", ", c->valuedouble);
        putchar(']');
    } else {
        char *s = cJSON_PrintUnformatted(v);
        fputs(s ? s : "?", stdout);
        cJSON_free(s);
    }
}

/* Tensor rows: name padded to the longest shown, then the other fields ("F32  [4, 48]"). */
static void print_tensors(const cJSON *list, int limit) {
    int n = cJSON_GetArraySize(list), shown = limit > 0 && n > limit ? limit : n;
    int width = 0, i = 0;
    for (const cJSON *t = list->child; t && i < shown; t = t->next, i++) {
        int w = (int)strlen(cJSON_GetObjectItemCaseSensitive(t, "name")->valuestring);
        if (w > width) width = w;
    }
    i = 0;
    for (const cJSON *t = list->child; t && i < shown; t = t->next, i++) {
        printf("  %-*s", width, t->child->valuestring);
        for (const cJSON *f = t->child->next; f; f = f->next) {
            if (cJSON_IsString(f)) printf("  %-5s", f->valuestring); /* dtype column: F32, BF16, Q8_0 */
            else {
                fputs("  ", stdout);
                print_value(f);
            }
        }
        putchar('\n');
    }
    if (shown < n) printf("  ... %d more\n", n - shown);
}

static void print_human(const cJSON *o, int tensor_limit) {
    const cJSON *tensors = NULL, *nested = NULL;
    for (const cJSON *f = o->child; f; f = f->next) {
        if (strcmp(f->string, "tensors") == 0) { tensors = f; continue; }
        if (cJSON_IsObject(f) && (strcmp(f->string, "kv") == 0 || strcmp(f->string, "metadata") == 0)) {
            nested = f;
            continue;
        }
        printf("%-24s ", f->string);
        print_value(f);
        putchar('\n');
    }
    if (nested && nested->child) {
        printf("%s:\n", nested->string);
        for (const cJSON *f = nested->child; f; f = f->next) {
            printf("  %-40s ", f->string);
            print_value(f);
            putchar('\n');
        }
    }
    if (tensors && tensors->child) {
        printf("tensors:\n");
        print_tensors(tensors, tensor_limit);
    }
}

/* ------------------------------------------------------------------------------------------- command */

int cmd_inspect(int argc, char **argv) {
    cli_args a;
    if (cli_parse(&a, inspect_opts, N_INSPECT_OPTS, argc, argv, "inspect")) return 2;
    if (cli_flag(&a, "--help")) {
        cli_print_help("inspect", "PATH [--json]  (model or adapter directory, .safetensors, .gguf, tokenizer)",
                       inspect_opts, N_INSPECT_OPTS);
        return 0;
    }
    if (a.n_positional != 1) return cli_usage_error("inspect: exactly one PATH is required");
    const char *path = a.positional[0];
    pc_error err = {0};
    if (!pc_path_exists(path)) {
        pc_fail(&err, PC_ERR_IO, "%s: path: no such file or directory", path);
        return cli_report(&err);
    }
    inspect_kind kind = detect_kind(path);
    if (kind == KIND_UNKNOWN)
        return cli_usage_error("inspect: %s: kind: not a model or adapter directory, .safetensors, .gguf or tokenizer",
                               path);
    cJSON *o = cJSON_CreateObject();
    int failed = !o;
    pc_status st = PC_OK;
    switch (kind) {
    case KIND_MODEL: st = inspect_model(o, path, &failed, &err); break;
    case KIND_ADAPTER: st = inspect_adapter(o, path, &failed, &err); break;
    case KIND_SAFETENSORS: st = inspect_safetensors(o, path, &failed, &err); break;
    case KIND_GGUF: st = inspect_gguf(o, path, &failed, &err); break;
    case KIND_TOKENIZER: st = inspect_tokenizer(o, path, &failed, &err); break;
    default: break;
    }
    if (st == PC_OK && !cli_flag(&a, "--json")) st = pc_json_built(failed, path, &err);
    if (st != PC_OK) {
        cJSON_Delete(o);
        return cli_report(&err);
    }
    if (cli_flag(&a, "--json")) {
        st = cli_print_json(o, failed, &err);
    } else {
        printf("%-24s %s\n", "path", path);
        print_human(o, kind == KIND_ADAPTER ? ADAPTER_TENSORS_SHOWN : 0);
    }
    cJSON_Delete(o);
    return st == PC_OK ? 0 : cli_report(&err);
}
