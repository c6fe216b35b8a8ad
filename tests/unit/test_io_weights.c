/* Model directories: a single model.safetensors, and shards with model.safetensors.index.json, looked up
 * across files. (Malformed indexes are in test_io_hostile.c.) */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "io/weights.h"
#include "test_support.h"

static char tmp_dir[] = "/tmp/peftc_io_weights_XXXXXX";

static void make_dir(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", tmp_dir, name);
    pc_error err;
    pc_mkdir_p(out, &err);
}

/* A shard holding tensors names[0..n) (F32 [2], values {base + i, -(base + i)}). */
static int write_shard(const char *dir, const char *file, const char *const *names, int n, float base) {
    float data[8][2];
    pc_st_writer w;
    pc_error err = {0};
    pc_st_writer_init(&w);
    const int64_t shape[1] = {2};
    for (int i = 0; i < n; i++) {
        data[i][0] = base + (float)i;
        data[i][1] = -(base + (float)i);
        pc_st_writer_add(&w, names[i], PC_F32, 1, shape, data[i], &err);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    pc_status s = err.status == PC_OK ? pc_st_writer_write(&w, path, &err) : err.status;
    pc_st_writer_free(&w);
    return s == PC_OK;
}

static int write_text(const char *dir, const char *file, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    pc_error err;
    return pc_write_file_atomic(path, text, strlen(text), &err) == PC_OK;
}

static void test_single(void) {
    char dir[256];
    make_dir(dir, sizeof dir, "single");
    const char *names[] = {"wte.weight", "ln_f.weight"};
    CHECK(write_shard(dir, "model.safetensors", names, 2, 10.0f), "write");
    pc_weight_files wf;
    pc_error err = {0};
    pc_status s = pc_weight_files_open(&wf, dir, &err);
    CHECK(s == PC_OK && wf.n_files == 1, "open single: %s", err.msg);
    if (s != PC_OK) return;
    const char *from = NULL;
    const pc_st_entry *e = pc_weight_files_find(&wf, "ln_f.weight", &from);
    CHECK(e && ((const float *)e->data)[0] == 11.0f && from && strstr(from, "single/model.safetensors"),
          "find in the single file");
    CHECK(pc_weight_files_find(&wf, "nope", NULL) == NULL, "absent");
    pc_weight_files_close(&wf);
}

static void test_sharded(void) {
    char dir[256];
    make_dir(dir, sizeof dir, "sharded");
    const char *a[] = {"model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight"};
    const char *b[] = {"model.layers.1.mlp.up_proj.weight", "model.norm.weight", "lm_head.weight"};
    CHECK(write_shard(dir, "model-00001-of-00002.safetensors", a, 2, 0.0f), "shard 1");
    CHECK(write_shard(dir, "model-00002-of-00002.safetensors", b, 3, 100.0f), "shard 2");
    /* The index has the real layout: metadata + weight_map; a stale model.safetensors beside it is ignored. */
    CHECK(write_text(dir, "model.safetensors.index.json",
                     "{\"metadata\": {\"total_size\": 40},\n \"weight_map\": {\n"
                     "  \"lm_head.weight\": \"model-00002-of-00002.safetensors\",\n"
                     "  \"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\",\n"
                     "  \"model.layers.0.mlp.up_proj.weight\": \"model-00001-of-00002.safetensors\",\n"
                     "  \"model.layers.1.mlp.up_proj.weight\": \"model-00002-of-00002.safetensors\",\n"
                     "  \"model.norm.weight\": \"model-00002-of-00002.safetensors\"}}\n"),
          "index");
    CHECK(write_text(dir, "model.safetensors", "stale"), "stale single file");
    pc_weight_files wf;
    pc_error err = {0};
    pc_status s = pc_weight_files_open(&wf, dir, &err);
    CHECK(s == PC_OK && wf.n_files == 2, "open sharded: %s", err.msg);
    if (s != PC_OK) return;
    const char *from = NULL;
    const pc_st_entry *e = pc_weight_files_find(&wf, "model.norm.weight", &from);
    CHECK(e && ((const float *)e->data)[1] == -101.0f && from && strstr(from, "model-00002-of-00002"),
          "tensor from shard 2");
    e = pc_weight_files_find(&wf, "model.layers.0.mlp.up_proj.weight", &from);
    CHECK(e && ((const float *)e->data)[0] == 1.0f && from && strstr(from, "model-00001-of-00002"),
          "tensor from shard 1");
    int total = 0;
    for (int i = 0; i < wf.n_files; i++) total += wf.files[i].count;
    CHECK(total == 5, "all five tensors present");
    pc_weight_files_close(&wf);
}

/* Fail allocation k for k = 0, 1, ... while opening the sharded directory: always a clean NOMEM. */
static void test_allocation_failures(void) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/sharded", tmp_dir);
    int bad = 0, k;
    for (k = 0; k < 10000; k++) {
        pc_weight_files wf;
        pc_error err = {0};
        pc_alloc_fail_after(k);
        pc_status s = pc_weight_files_open(&wf, dir, &err);
        pc_alloc_fail_after(-1);
        if (s == PC_OK) {
            pc_weight_files_close(&wf);
            break;
        }
        bad += s != PC_ERR_NOMEM;
    }
    CHECK(bad == 0 && k > 5 && k < 10000, "%d allocation points, %d non-NOMEM failures", k, bad);
}

static void test_empty_dir(void) {
    char dir[256];
    make_dir(dir, sizeof dir, "empty");
    pc_weight_files wf;
    pc_error err = {0};
    CHECK(pc_weight_files_open(&wf, dir, &err) == PC_ERR_IO && strstr(err.msg, dir) &&
              strstr(err.msg, "model.safetensors"),
          "empty directory: %s", err.msg);
    CHECK(wf.n_files == 0 && wf.files == NULL, "nothing left open");
}

int main(void) {
    if (!mkdtemp(tmp_dir)) {
        test_fail_setup("mkdtemp");
        return test_finish();
    }
    test_single();
    test_sharded();
    test_allocation_failures();
    test_empty_dir();
    pc_remove_tree(tmp_dir);
    return test_finish();
}
