/* What every method shares: creation, adapter directories (load, save), option and target-name helpers. */
#include "peft/method.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "io/json.h"
#include "io/safetensors.h"

static pc_status method_planner(void *owner, int B, int T, pc_error *err) {
    pc_method *m = owner;
    return m->ops->plan(m, B, T, err);
}

/* Every tensor the method declared must be in the adapter file with that shape and a float dtype. Runs after
 * attach and BEFORE the parameters are allocated: a hostile adapter_config.json (r = 3000000,
 * num_virtual_tokens = 50000000) made peftc allocate and zero gigabytes before the shapes were compared. */
static pc_status check_declared(const pc_method *m, const pc_safetensors *st, const char *file, pc_error *err) {
    for (int i = 0; i < m->params.n_views; i++) {
        const pc_param_view *v = &m->params.views[i];
        const pc_st_entry *e = pc_safetensors_find(st, v->name);
        if (!e)
            return pc_fail(err, PC_ERR_FORMAT, "%s: missing tensor '%s' (is this adapter for another model?)", file,
                           v->name);
        int same = e->ndim == v->ndim;
        for (int d = 0; same && d < v->ndim; d++) same = e->shape[d] == v->shape[d];
        if (!same) {
            char want[64] = "", got[64] = "";
            for (int d = 0; d < v->ndim; d++)
                snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "", (long long)v->shape[d]);
            for (int d = 0; d < e->ndim; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)e->shape[d]);
            return pc_fail(err, PC_ERR_FORMAT, "%s: tensor '%s': shape [%s], the model needs [%s]", file, v->name, got,
                           want);
        }
        if (e->dtype != PC_F32 && e->dtype != PC_F16 && e->dtype != PC_BF16)
            return pc_fail(err, PC_ERR_FORMAT, "%s: tensor '%s': dtype %s is not a float type", file, v->name,
                           pc_dtype_name(e->dtype));
    }
    return PC_OK;
}

/* Attach, (when loading) check the declared tensors against the file, allocate, register the planner.
 * options_file: where the options came from (NULL: the command line), for messages and exit codes. */
static pc_status method_new(pc_method **out, const pc_method_ops *ops, pc_model *model, const cJSON *options,
                            const char *options_file, const pc_safetensors *tensors, const char *tensors_file,
                            pc_error *err) {
    pc_method *m = pc_calloc(1, sizeof *m);
    if (!m) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    m->ops = ops;
    m->model = model;
    pc_params_init(&m->params);
    pc_status st = ops->attach(m, options, err);
    if (st != PC_OK && options_file) {
        pc_error_prefix(err, "%s: ", options_file);
        /* The options came from a file: a bad value there is a bad file (exit 1), not a bad command line (2). */
        if (st == PC_ERR_USAGE && err) st = err->status = PC_ERR_FORMAT;
    }
    if (st == PC_OK && tensors) st = check_declared(m, tensors, tensors_file, err);
    if (st == PC_OK) st = pc_params_alloc(&m->params, err);
    if (st == PC_OK && ops->plan) st = pc_model_add_planner(model, m, method_planner, err);
    if (st != PC_OK) {
        pc_method_free(m);
        return st;
    }
    *out = m;
    return PC_OK;
}

pc_status pc_method_create(pc_method **out, const pc_method_ops *ops, pc_model *model, const cJSON *options,
                           pc_rng *rng, pc_error *err) {
    *out = NULL;
    pc_method *m;
    PC_TRY(method_new(&m, ops, model, options, NULL, NULL, NULL, err));
    pc_status st = ops->init ? ops->init(m, rng, err) : PC_OK;
    if (st != PC_OK) {
        pc_method_free(m);
        return st;
    }
    *out = m;
    return PC_OK;
}

/* Values from the file (shapes and dtypes were checked by check_declared); then refuse tensors the method
 * does not know: the file belongs to something else. */
static pc_status load_tensors(pc_method *m, const pc_safetensors *st, const char *file, pc_error *err) {
    for (int i = 0; i < m->params.n_views; i++) {
        const pc_param_view *v = &m->params.views[i];
        const pc_st_entry *e = pc_safetensors_find(st, v->name);
        pc_convert_to_f32(pc_params_data(&m->params, i), e->data, e->dtype, v->count);
    }
    for (int i = 0; i < st->count; i++)
        if (pc_params_find(&m->params, st->entries[i].name) < 0)
            return pc_fail(err, PC_ERR_FORMAT, "%s: tensor '%s' does not belong to this %s adapter on this model", file,
                           st->entries[i].name, m->ops->name);
    return PC_OK;
}

pc_status pc_method_load(pc_method **out, pc_model *model, const char *dir, pc_error *err) {
    *out = NULL;
    char cfg_path[4096], st_path[4096];
    if (pc_path_join(cfg_path, sizeof cfg_path, dir, "adapter_config.json") ||
        pc_path_join(st_path, sizeof st_path, dir, "adapter_model.safetensors"))
        return pc_fail(err, PC_ERR_USAGE, "%s: path too long", dir);
    cJSON *cfg;
    PC_TRY(pc_json_load(&cfg, cfg_path, err));
    const char *type = NULL;
    pc_status st = cJSON_IsObject(cfg) ? pc_json_string(cfg, "peft_type", 1, &type, cfg_path, err)
                                       : pc_fail(err, PC_ERR_FORMAT, "%s: not a JSON object", cfg_path);
    const pc_method_ops *ops = NULL;
    if (st == PC_OK && !(ops = pc_method_find_peft_type(type)))
        st = pc_fail(err, PC_ERR_UNSUPPORTED, "%s: peft_type '%s' is not supported (supported: %s)", cfg_path, type,
                     pc_method_names());
    pc_method *m = NULL;
    pc_safetensors tensors;
    int tensors_open = 0;
    if (st == PC_OK) tensors_open = (st = pc_safetensors_open(&tensors, st_path, err)) == PC_OK;
    if (st == PC_OK) st = method_new(&m, ops, model, cfg, cfg_path, &tensors, st_path, err);
    cJSON_Delete(cfg);
    if (st == PC_OK) st = load_tensors(m, &tensors, st_path, err);
    if (tensors_open) pc_safetensors_close(&tensors);
    if (st == PC_OK && ops->after_load) st = ops->after_load(m, err);
    if (st != PC_OK) {
        pc_method_free(m);
        return st;
    }
    *out = m;
    return PC_OK;
}

/* Adds key = item unless the method's config_json already wrote key (item is deleted then). */
static void put_default(cJSON *cfg, const char *key, cJSON *item, int *failed) {
    if (cJSON_GetObjectItemCaseSensitive(cfg, key)) cJSON_Delete(item);
    else pc_json_put(cfg, key, item, failed);
}

static pc_status write_config(const pc_method *m, const char *path, pc_error *err) {
    cJSON *cfg = cJSON_CreateObject(), *sorted = cJSON_CreateObject();
    if (!cfg || !sorted) {
        cJSON_Delete(cfg);
        cJSON_Delete(sorted);
        return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory building the JSON", path);
    }
    pc_status st = m->ops->config_json ? m->ops->config_json(m, cfg, err) : PC_OK;
    if (st == PC_OK) {
        int failed = 0;
        put_default(cfg, "base_model_name_or_path", cJSON_CreateString(m->model->dir ? m->model->dir : ""), &failed);
        put_default(cfg, "inference_mode", cJSON_CreateTrue(), &failed);
        put_default(cfg, "peft_type", cJSON_CreateString(m->ops->peft_type), &failed);
        put_default(cfg, "task_type", cJSON_CreateString("CAUSAL_LM"), &failed);
        put_default(cfg, "revision", cJSON_CreateNull(), &failed);
        /* PEFT writes keys sorted; so do we, so files diff cleanly against PEFT's. A detached member keeps its
         * key, so appending it to another object moves it without allocating. */
        while (cfg->child) {
            cJSON *best = cfg->child;
            for (cJSON *it = cfg->child; it; it = it->next)
                if (strcmp(it->string, best->string) < 0) best = it;
            cJSON_AddItemToArray(sorted, cJSON_DetachItemViaPointer(cfg, best));
        }
        st = pc_json_built(failed, path, err);
        if (st == PC_OK) st = pc_json_write_atomic(sorted, path, err);
    }
    cJSON_Delete(sorted);
    cJSON_Delete(cfg);
    return st;
}

pc_status pc_method_save(const pc_method *m, const char *dir, pc_error *err) {
    if (m->ops->save) return m->ops->save(m, dir, err);
    PC_TRY(pc_mkdir_p(dir, err));
    char cfg_path[4096], st_path[4096];
    if (pc_path_join(cfg_path, sizeof cfg_path, dir, "adapter_config.json") ||
        pc_path_join(st_path, sizeof st_path, dir, "adapter_model.safetensors"))
        return pc_fail(err, PC_ERR_USAGE, "%s: path too long", dir);
    pc_st_writer w;
    pc_st_writer_init(&w);
    pc_status st = pc_st_writer_meta(&w, "format", "pt", err);
    for (int i = 0; i < m->params.n_views && st == PC_OK; i++) {
        const pc_param_view *v = &m->params.views[i];
        st = pc_st_writer_add(&w, v->name, PC_F32, v->ndim, v->shape, pc_params_data(&m->params, i), err);
    }
    /* Tensors first, config last: a directory with a config always has its tensors. */
    if (st == PC_OK) st = pc_st_writer_write(&w, st_path, err);
    pc_st_writer_free(&w);
    if (st == PC_OK) st = write_config(m, cfg_path, err);
    return st;
}

pc_status pc_method_plan(pc_method *m, int B, int T, pc_error *err) {
    return m->ops->plan ? m->ops->plan(m, B, T, err) : PC_OK;
}

void pc_method_free(pc_method *m) {
    if (!m) return;
    pc_model_remove_planner(m->model, m);
    pc_model_remove_hooks(m->model, m); /* whatever sites it claimed: methods need not undo their hooks */
    if (m->ops->destroy) m->ops->destroy(m);
    pc_params_free(&m->params);
    pc_free(m);
}

/* ---- helpers ------------------------------------------------------------------------------------------ */

static int regex_match(const char *pattern, const char *subject, int anchored_full) {
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, anchored_full ? PCRE2_ANCHORED | PCRE2_ENDANCHORED : 0,
                                   &errcode, &erroff, NULL);
    if (!re) return 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = md ? pcre2_match(re, (PCRE2_SPTR)subject, strlen(subject), 0, 0, md, NULL) : -1;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static int suffix_match(const char *entry, const char *name) {
    size_t ln = strlen(name), le = strlen(entry);
    if (ln == le) return strcmp(name, entry) == 0;
    return ln > le && name[ln - le - 1] == '.' && strcmp(name + ln - le, entry) == 0;
}

int pc_target_matches(const cJSON *targets, const char *module_name) {
    if (cJSON_IsString(targets)) {
        if (strcmp(targets->valuestring, "all-linear") == 0) return 1;
        return regex_match(targets->valuestring, module_name, 1);
    }
    if (!cJSON_IsArray(targets)) return 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, targets) {
        if (cJSON_IsString(e) && (suffix_match(e->valuestring, module_name) || !strcmp(e->valuestring, "all-linear")))
            return 1;
    }
    return 0;
}

int pc_pattern_lookup(const cJSON *pattern, const char *module_name, double *value) {
    if (!cJSON_IsObject(pattern)) return 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, pattern) {
        char re[512];
        snprintf(re, sizeof re, "(.*\\.)?(%s)$", e->string);
        if (cJSON_IsNumber(e) && regex_match(re, module_name, 1)) {
            *value = e->valuedouble;
            return 1;
        }
    }
    return 0;
}

int pc_layer_selected(const cJSON *layers, int layer) {
    if (!layers || cJSON_IsNull(layers)) return 1;
    if (cJSON_IsNumber(layers)) return layers->valueint == layer;
    const cJSON *e;
    cJSON_ArrayForEach(e, layers) {
        if (cJSON_IsNumber(e) && e->valueint == layer) return 1;
    }
    return 0;
}

double pc_opt_number(const cJSON *options, const char *key, double dflt) {
    const cJSON *v = options ? cJSON_GetObjectItemCaseSensitive(options, key) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

int pc_opt_bool(const cJSON *options, const char *key, int dflt) {
    const cJSON *v = options ? cJSON_GetObjectItemCaseSensitive(options, key) : NULL;
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    if (cJSON_IsNumber(v)) return v->valuedouble != 0;
    return dflt;
}

const char *pc_opt_string(const cJSON *options, const char *key, const char *dflt) {
    const cJSON *v = options ? cJSON_GetObjectItemCaseSensitive(options, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

void pc_peft_key(char *out, size_t cap, const char *module, const char *suffix) {
    snprintf(out, cap, "base_model.model.%s%s%s", module, suffix[0] ? "." : "", suffix);
}
