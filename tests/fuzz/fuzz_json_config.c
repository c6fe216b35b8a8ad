/* libFuzzer target: pc_json_load on arbitrary bytes, then the typed getters on the fields an
 * adapter_config.json carries, as the adapter loader reads them. */
#include <string.h>

#include "fuzz_common.h"
#include "io/json.h"

static void read_config(const cJSON *root, const char *path) {
    pc_error err = {0};
    long r = 8;
    double alpha = 8, dropout = 0;
    int dora = 0;
    const char *type = "LORA", *bias = "none";
    pc_json_string(root, "peft_type", 1, &type, path, &err);
    pc_json_int(root, "r", 0, &r, path, &err);
    pc_json_double(root, "lora_alpha", 0, &alpha, path, &err);
    pc_json_double(root, "lora_dropout", 0, &dropout, path, &err);
    pc_json_bool(root, "use_dora", 0, &dora, path, &err);
    pc_json_string(root, "bias", 0, &bias, path, &err);
    FUZZ_ASSERT(type != NULL && bias != NULL);
    const cJSON *targets = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "target_modules") : NULL;
    const cJSON *item;
    cJSON_ArrayForEach(item, targets) {
        const char *s = cJSON_GetStringValue(item);
        if (s) FUZZ_ASSERT(strlen(s) < (size_t)1 << 30);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    cJSON *root = NULL;
    pc_error err = {0};
    if (pc_json_load(&root, path, &err) == PC_OK) {
        read_config(root, path);
        cJSON_Delete(root);
    } else {
        FUZZ_ASSERT(root == NULL && strstr(err.msg, path) != NULL);
    }
    close(fd);
    return 0;
}
