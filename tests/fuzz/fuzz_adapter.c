/* libFuzzer target: pc_method_load on an adapter directory made from arbitrary bytes, onto a small llama
 * (the shapes of tests/golden/data/llama_gqa, random weights), then one forward with the adapter attached.
 * Input layout: u16 little-endian n, then n bytes of adapter_config.json, then adapter_model.safetensors (the
 * rest). Checks: a failed load names the directory's file and leaves nothing attached (the next forward still
 * matches the bare model's loss); a successful load gives a forward that succeeds or reports a non-finite
 * loss, never anything else. Seeds: tests/fuzz/corpus/fuzz_adapter/ (the golden adapters in this layout). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "fuzz_common.h"
#include "model/model.h"
#include "peft/method.h"

static const char config_json[] =
    "{\"model_type\":\"llama\",\"hidden_size\":48,\"intermediate_size\":96,\"num_attention_heads\":4,"
    "\"num_key_value_heads\":2,\"head_dim\":12,\"num_hidden_layers\":2,\"vocab_size\":128,"
    "\"max_position_embeddings\":64,\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"tie_word_embeddings\":false,"
    "\"torch_dtype\":\"float32\"}";

static pc_model *model;
static char dir[256], cfg_path[300], st_path[300];
static const int32_t ids[8] = {1, 17, 42, 99, 3, 64, 127, 8};
static double bare_loss;

static pc_status forward(double *loss, pc_error *err) {
    pc_model_batch b = {1, 8, ids, ids, NULL, NULL};
    pc_forward_result r;
    PC_TRY(pc_model_forward(model, &b, &r, err));
    *loss = r.loss_sum;
    return PC_OK;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char path[64];
    int fd = fuzz_memfile((const uint8_t *)config_json, sizeof config_json - 1, path, sizeof path);
    pc_error err = {0};
    if (fd < 0 || pc_model_create_random(&model, path, PC_BASE_F32, 1, &err) != PC_OK || forward(&bare_loss, &err)) {
        fprintf(stderr, "fuzz_adapter: setup failed: %s\n", err.msg);
        abort();
    }
    close(fd);
    snprintf(dir, sizeof dir, "/dev/shm/peftc_fuzz_adapter_%ld", (long)getpid());
    if (!pc_is_dir("/dev/shm")) snprintf(dir, sizeof dir, "/tmp/peftc_fuzz_adapter_%ld", (long)getpid());
    if (pc_mkdir_p(dir, &err) != PC_OK) abort();
    snprintf(cfg_path, sizeof cfg_path, "%s/adapter_config.json", dir);
    snprintf(st_path, sizeof st_path, "%s/adapter_model.safetensors", dir);
    return 0;
}

static int write_file(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t n = (size_t)data[0] | (size_t)data[1] << 8;
    if (n > size - 2) n = size - 2;
    if (write_file(cfg_path, data + 2, n) || write_file(st_path, data + 2 + n, size - 2 - n)) return 0;
    pc_method *m = NULL;
    pc_error err = {0};
    double loss = 0;
    if (pc_method_load(&m, model, dir, &err) != PC_OK) {
        FUZZ_ASSERT(m == NULL && strstr(err.msg, dir) != NULL);
        /* Nothing of the failed adapter may stay attached. */
        FUZZ_ASSERT(forward(&loss, &err) == PC_OK && loss == bare_loss);
        return 0;
    }
    pc_status st = forward(&loss, &err);
    FUZZ_ASSERT(st == PC_OK || st == PC_ERR_NUMERIC || st == PC_ERR_USAGE);
    pc_method_free(m);
    FUZZ_ASSERT(forward(&loss, &err) == PC_OK && loss == bare_loss);
    return 0;
}
