#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "io/json.h"
#include "io/weights.h"

static pc_status parse_base_dtype(const cli_args *a, pc_base_dtype *out, pc_error *err) {
    const char *v = cli_get(a, "--base-dtype");
    *out = PC_BASE_AUTO;
    if (!v) return PC_OK;
    if (!strcmp(v, "fp32")) *out = PC_BASE_F32;
    else if (!strcmp(v, "bf16")) *out = PC_BASE_BF16;
    else return pc_fail(err, PC_ERR_USAGE, "--base-dtype: '%s' is not fp32 or bf16", v);
    return PC_OK;
}

/* A tokenizer from --tokenizer, else from the model directory when it has one. */
static pc_status load_tokenizer(cli_session *s, const cli_args *a, const char *model_dir, pc_error *err) {
    const char *path = cli_get(a, "--tokenizer");
    if (path) return pc_tokenizer_load(&s->tokenizer, path, err);
    if (!model_dir) return PC_OK;
    static const char *names[] = {"tokenizer.json", "vocab.json", "encoder.json", NULL};
    for (int i = 0; names[i]; i++) {
        char p[4096];
        if (pc_path_join(p, sizeof p, model_dir, names[i]) == 0 && pc_path_exists(p))
            return pc_tokenizer_load(&s->tokenizer, model_dir, err);
    }
    return PC_OK;
}

pc_status cli_load_model(cli_session *s, const cli_args *a, pc_error *err) {
    const char *dir = cli_get(a, "--model");
    if (!dir) return pc_fail(err, PC_ERR_USAGE, "--model DIR is required");
    pc_base_dtype bd;
    PC_TRY(parse_base_dtype(a, &bd, err));
    PC_TRY(pc_model_load(&s->model, dir, bd, err));
    return load_tokenizer(s, a, dir, err);
}

pc_status cli_create_model_from_config(cli_session *s, const char *config, const cli_args *a, uint64_t seed,
                                       pc_error *err) {
    pc_base_dtype bd;
    PC_TRY(parse_base_dtype(a, &bd, err));
    PC_TRY(pc_model_create_random(&s->model, config, bd == PC_BASE_AUTO ? PC_BASE_F32 : bd, seed, err));
    return load_tokenizer(s, a, NULL, err);
}

pc_status cli_load_adapters(cli_session *s, const cli_args *a, pc_error *err) {
    for (int i = 0; i < cli_count(a, "--adapter"); i++) {
        char list[4096];
        snprintf(list, sizeof list, "%s", cli_get_nth(a, "--adapter", i));
        for (char *save = NULL, *dir = strtok_r(list, ",", &save); dir; dir = strtok_r(NULL, ",", &save)) {
            if (s->n_methods == (int)(sizeof s->methods / sizeof s->methods[0]))
                return pc_fail(err, PC_ERR_USAGE, "too many adapters");
            PC_TRY(pc_method_load(&s->methods[s->n_methods], s->model, dir, err));
            s->methods[s->n_methods++]->frozen = 1;
        }
    }
    return PC_OK;
}

/* "a,b,c" → ["a","b","c"]; a value with regex characters stays a string (PEFT: a string is a full-match regex). */
static cJSON *list_or_regex(const char *v) {
    if (strcmp(v, "all-linear") == 0 || strpbrk(v, "*()[]|^$\\+?")) return cJSON_CreateString(v);
    return pc_json_csv_array(v);
}

static cJSON *int_list(const char *v, int *failed) {
    cJSON *arr = cJSON_CreateArray();
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        pc_json_append(arr, cJSON_CreateNumber(atoi(t)), failed);
    return arr;
}

static const struct {
    const char *flag, *key;
    char kind; /* n number, b flag, s string, l list/regex, i int list */
} option_map[] = {
    {"--r", "r", 'n'}, {"--lora-alpha", "lora_alpha", 'n'}, {"--lora-dropout", "lora_dropout", 'n'},
    {"--target-modules", "target_modules", 'l'}, {"--layers-to-transform", "layers_to_transform", 'i'},
    {"--use-rslora", "use_rslora", 'b'}, {"--use-dora", "use_dora", 'b'},
    {"--num-virtual-tokens", "num_virtual_tokens", 'n'}, {"--prompt-init", "prompt_init", 's'},
    {"--prefix-projection", "prefix_projection", 'b'}, {"--encoder-hidden-size", "encoder_hidden_size", 'n'},
    {"--feedforward-modules", "feedforward_modules", 'l'}, {"--adapter-type", "adapter_type", 's'},
    {"--adapter-dim", "adapter_dim", 'n'}, {"--adapter-scale", "adapter_scale", 'n'},
    {"--save-dtype", "save_dtype", 's'},
};

pc_status cli_method_options(const cli_args *a, cJSON **out, pc_error *err) {
    cJSON *o = NULL;
    const char *file = cli_get(a, "--method-config");
    if (file) {
        PC_TRY(pc_json_load(&o, file, err));
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            return pc_fail(err, PC_ERR_FORMAT, "%s: not a JSON object", file);
        }
    } else if (!(o = cJSON_CreateObject())) {
        return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    }
    int failed = 0;
    /* CLI defaults that differ from PEFT's dataclass defaults (CLI.md: --lora-alpha [16]). */
    if (!cJSON_GetObjectItemCaseSensitive(o, "lora_alpha")) pc_json_put(o, "lora_alpha", cJSON_CreateNumber(16), &failed);
    for (size_t i = 0; i < sizeof option_map / sizeof option_map[0]; i++) {
        const char *v = cli_get(a, option_map[i].flag);
        if (!v) continue;
        cJSON *item = NULL;
        char *end;
        switch (option_map[i].kind) {
        case 'n':
            item = cJSON_CreateNumber(strtod(v, &end));
            if (end == v || *end) {
                cJSON_Delete(item);
                cJSON_Delete(o);
                return pc_fail(err, PC_ERR_USAGE, "%s: '%s' is not a number", option_map[i].flag, v);
            }
            break;
        case 'b': item = cJSON_CreateTrue(); break;
        case 's': item = cJSON_CreateString(v); break;
        case 'l': item = list_or_regex(v); break;
        default: item = int_list(v, &failed); break;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(o, option_map[i].key);
        pc_json_put(o, option_map[i].key, item, &failed);
    }
    pc_status st = pc_json_built(failed, "method options", err);
    if (st != PC_OK) {
        cJSON_Delete(o);
        return st;
    }
    *out = o;
    return PC_OK;
}

pc_status cli_load_dataset(cli_session *s, const char *path, int seq_len, pc_dataset *ds, pc_error *err) {
    pc_data_options o = {.seq_len = seq_len, .add_special = 1, .vocab_size = s->model->cfg.vocab_size};
    return pc_dataset_load(ds, path, s->tokenizer, &o, err);
}

int32_t cli_pad_id(const cli_session *s) { return s->tokenizer ? pc_tokenizer_pad_id(s->tokenizer) : 0; }

void cli_session_free(cli_session *s) {
    for (int i = s->n_methods - 1; i >= 0; i--) pc_method_free(s->methods[i]);
    s->n_methods = 0;
    pc_tokenizer_free(s->tokenizer);
    pc_model_free(s->model);
    memset(s, 0, sizeof *s);
}

pc_status cli_print_json(const cJSON *obj, int failed, pc_error *err) {
    char *text = failed || !obj ? NULL : cJSON_PrintUnformatted(obj);
    if (!text) return pc_fail(err, PC_ERR_NOMEM, "--json: out of memory building the output");
    fflush(stderr);
    printf("%s\n", text);
    fflush(stdout);
    cJSON_free(text);
    return PC_OK;
}

pc_status cli_copy_tokenizer_files(const char *tokenizer, const char *out_dir, pc_error *err) {
    char dir[4096];
    if (pc_is_dir(tokenizer)) {
        snprintf(dir, sizeof dir, "%s", tokenizer);
    } else {
        const char *slash = strrchr(tokenizer, '/');
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - tokenizer) : 1, slash ? tokenizer : ".");
    }
    return pc_copy_tokenizer_files(dir, out_dir, err);
}
