/* libFuzzer target: pc_gguf_open on arbitrary bytes, checking what a successful open promises: every KV
 * value and tensor lies inside the file, tensor data is aligned and sized by its type and shape. */
#include <string.h>

#include "fuzz_common.h"
#include "io/gguf.h"

static size_t scalar_size(int type) {
    static const size_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type >= 0 && type < 13 ? sizes[type] : 0;
}

static void check_open_file(const pc_gguf *g) {
    const char *base = g->map.data;
    FUZZ_ASSERT(g->alignment && (g->alignment & (g->alignment - 1)) == 0);
    for (int64_t i = 0; i < g->n_kv; i++) {
        const pc_gguf_kv *kv = &g->kvs[i];
        FUZZ_ASSERT(kv->key && kv->key[0] && pc_gguf_find_kv(g, kv->key) == kv);
        int type = kv->type == GGUF_TYPE_ARRAY ? kv->array_type : kv->type;
        if (type == GGUF_TYPE_STRING) {
            if (kv->type == GGUF_TYPE_ARRAY)
                for (uint64_t j = 0; j < kv->count; j++) FUZZ_ASSERT(kv->strs[j] != NULL);
            else
                FUZZ_ASSERT(kv->str != NULL);
        } else {
            FUZZ_ASSERT(scalar_size(type) > 0);
            FUZZ_ASSERT(fuzz_inside(kv->data, (size_t)kv->count * scalar_size(type), base, g->map.size));
        }
    }
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const pc_gguf_tensor *t = &g->tensors[i];
        FUZZ_ASSERT(t->name && pc_gguf_find_tensor(g, t->name) == t && t->n_dims <= 4);
        FUZZ_ASSERT(fuzz_inside(t->data, t->nbytes, base, g->map.size));
        FUZZ_ASSERT(t->offset % g->alignment == 0);
        int64_t numel = 1;
        for (int d = 0; d < 4; d++) numel *= t->ne[d];
        size_t want = t->type == GGML_TYPE_F32    ? (size_t)numel * 4
                      : t->type == GGML_TYPE_Q8_0 ? (size_t)numel / 32 * 34
                      : t->type == GGML_TYPE_Q4_0 ? (size_t)numel / 32 * 18
                                                  : (size_t)numel * 2;
        FUZZ_ASSERT(t->nbytes == want);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    pc_gguf g;
    pc_error err = {0};
    if (pc_gguf_open(&g, path, &err) == PC_OK) {
        check_open_file(&g);
        pc_gguf_close(&g);
    } else {
        FUZZ_ASSERT(err.status != PC_OK && strstr(err.msg, path) != NULL);
    }
    close(fd);
    return 0;
}
