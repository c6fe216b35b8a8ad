/* A model directory's weights: one model.safetensors, or the shards named by model.safetensors.index.json.
 * The index is checked against the shards when opened (every mapped tensor is in the shard the map names,
 * no tensor is in two shards), so a lookup later cannot silently pick up the wrong tensor. */
#include "io/weights.h"

#include <string.h>

#include "core/alloc.h"
#include "io/json.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

/* A shard name from the index must be a plain file name inside the model directory. */
static int plain_file_name(const char *name) {
    return name[0] && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static int shard_index(char **names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return i;
    return -1;
}

/* Distinct shard names of the weight map, in order of first appearance (borrowed from the cJSON tree). */
static pc_status collect_shards(const cJSON *map, const char *index_path, const char ***out, int *n_out,
                                pc_error *err) {
    int n_items = cJSON_GetArraySize(map), n = 0;
    const char **names = pc_calloc((size_t)n_items + 1, sizeof *names);
    if (!names) return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory", index_path);
    const cJSON *item;
    cJSON_ArrayForEach(item, map) {
        if (!cJSON_IsString(item)) {
            pc_free(names);
            return pc_fail(err, PC_ERR_FORMAT, "%s: weight_map: tensor '%.200s': shard is not a string", index_path,
                           item->string);
        }
        if (!plain_file_name(item->valuestring)) {
            pc_free(names);
            return pc_fail(err, PC_ERR_FORMAT, "%s: weight_map: tensor '%.200s': shard '%.200s' is not a file name",
                           index_path, item->string, item->valuestring);
        }
        if (shard_index((char **)names, n, item->valuestring) < 0) names[n++] = item->valuestring;
    }
    *out = names;
    *n_out = n;
    return PC_OK;
}

static pc_status open_shards(pc_weight_files *wf, const char *dir, const char **names, int n, const char *index_path,
                             pc_error *err) {
    wf->files = pc_calloc((size_t)n + 1, sizeof *wf->files);
    if (!wf->files) return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory", index_path);
    char path[4096];
    for (int i = 0; i < n; i++) {
        if (pc_path_join(path, sizeof path, dir, names[i]) != 0)
            return pc_fail(err, PC_ERR_USAGE, "%s: shard '%.200s': path too long", index_path, names[i]);
        pc_status status = pc_safetensors_open(&wf->files[i], path, err);
        if (status != PC_OK) return pc_error_prefix(err, "%s: shard '%.200s': ", index_path, names[i]);
        wf->n_files++;
    }
    return PC_OK;
}

/* Every tensor of the map is in the shard named for it. */
static pc_status check_map(const pc_weight_files *wf, const cJSON *map, const char **names, const char *index_path,
                           pc_error *err) {
    const cJSON *item;
    cJSON_ArrayForEach(item, map) {
        int s = shard_index((char **)names, wf->n_files, item->valuestring);
        if (!pc_safetensors_find(&wf->files[s], item->string))
            return pc_fail(err, PC_ERR_FORMAT, "%s: weight_map: tensor '%.200s': not found in shard '%.200s'",
                           index_path, item->string, item->valuestring);
    }
    return PC_OK;
}

/* No tensor name may appear in two shards: which one a lookup returns would be arbitrary. */
static pc_status check_unique(const pc_weight_files *wf, const char *what, pc_error *err) {
    for (int i = 1; i < wf->n_files; i++)
        for (int k = 0; k < wf->files[i].count; k++)
            for (int j = 0; j < i; j++)
                if (pc_safetensors_find(&wf->files[j], wf->files[i].entries[k].name))
                    return pc_fail(err, PC_ERR_FORMAT, "%s: tensor '%.200s': in both %s and %s", what,
                                   wf->files[i].entries[k].name, wf->files[j].path, wf->files[i].path);
    return PC_OK;
}

static pc_status open_index(pc_weight_files *wf, const char *dir, const char *index_path, pc_error *err) {
    cJSON *root;
    PC_TRY(pc_json_load(&root, index_path, err));
    const cJSON *map = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    pc_status status = PC_OK;
    if (!map || !cJSON_IsObject(map))
        status = pc_fail(err, PC_ERR_FORMAT, "%s: weight_map: missing or not an object", index_path);
    const char **names = NULL;
    int n = 0;
    if (status == PC_OK) status = collect_shards(map, index_path, &names, &n, err);
    if (status == PC_OK && n == 0) status = pc_fail(err, PC_ERR_FORMAT, "%s: weight_map: empty", index_path);
    if (status == PC_OK) status = open_shards(wf, dir, names, n, index_path, err);
    if (status == PC_OK) status = check_map(wf, map, names, index_path, err);
    if (status == PC_OK) status = check_unique(wf, index_path, err);
    pc_free(names);
    cJSON_Delete(root);
    return status;
}

static pc_status open_single(pc_weight_files *wf, const char *path, pc_error *err) {
    wf->files = pc_calloc(1, sizeof *wf->files);
    if (!wf->files) return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory", path);
    PC_TRY(pc_safetensors_open(&wf->files[0], path, err));
    wf->n_files = 1;
    return PC_OK;
}

pc_status pc_weight_files_open(pc_weight_files *wf, const char *model_dir, pc_error *err) {
    memset(wf, 0, sizeof *wf);
    char index_path[4096], single_path[4096];
    if (pc_path_join(index_path, sizeof index_path, model_dir, INDEX_NAME) != 0 ||
        pc_path_join(single_path, sizeof single_path, model_dir, SINGLE_NAME) != 0)
        return pc_fail(err, PC_ERR_USAGE, "%s: path too long", model_dir);
    pc_status status;
    if (pc_path_exists(index_path))
        status = open_index(wf, model_dir, index_path, err);
    else if (pc_path_exists(single_path))
        status = open_single(wf, single_path, err);
    else
        status = pc_fail(err, PC_ERR_IO, "%s: no %s or %s in the model directory", model_dir, SINGLE_NAME,
                         INDEX_NAME);
    if (status != PC_OK) pc_weight_files_close(wf);
    return status;
}

void pc_weight_files_close(pc_weight_files *wf) {
    for (int i = 0; i < wf->n_files; i++) pc_safetensors_close(&wf->files[i]);
    pc_free(wf->files);
    memset(wf, 0, sizeof *wf);
}

const pc_st_entry *pc_weight_files_find(const pc_weight_files *wf, const char *name, const char **file_path) {
    for (int i = 0; i < wf->n_files; i++) {
        const pc_st_entry *e = pc_safetensors_find(&wf->files[i], name);
        if (e) {
            if (file_path) *file_path = wf->files[i].path;
            return e;
        }
    }
    return NULL;
}

pc_status pc_copy_tokenizer_files(const char *from_dir, const char *to_dir, pc_error *err) {
    static const char *const names[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "vocab.json", "merges.txt", "generation_config.json", NULL};
    for (int i = 0; names[i]; i++) {
        char from[4096], to[4096];
        if (pc_path_join(from, sizeof from, from_dir, names[i]) || pc_path_join(to, sizeof to, to_dir, names[i]))
            return pc_fail(err, PC_ERR_USAGE, "%s: path too long", to_dir);
        if (pc_path_exists(from)) PC_TRY(pc_copy_file_atomic(from, to, err));
    }
    return PC_OK;
}
