/* libFuzzer target: pc_safetensors_open on arbitrary bytes. Besides crashes and sanitizer reports, it
 * checks what a successful open promises: every tensor lies inside the file, sizes match shapes, names
 * are sorted and unique, and the tensors tile the data buffer. */
#include <string.h>

#include "fuzz_common.h"
#include "io/safetensors.h"

static void check_open_file(const pc_safetensors *st) {
    size_t covered = 0;
    for (int i = 0; i < st->count; i++) {
        const pc_st_entry *e = &st->entries[i];
        FUZZ_ASSERT(fuzz_inside(e->data, e->nbytes, st->map.data, st->map.size));
        FUZZ_ASSERT(e->ndim >= 0 && e->ndim <= PC_MAX_DIMS);
        size_t n = pc_dtype_size(e->dtype);
        for (int d = 0; d < e->ndim; d++) n *= (size_t)e->shape[d];
        FUZZ_ASSERT(n == e->nbytes);
        FUZZ_ASSERT(i == 0 || strcmp(st->entries[i - 1].name, e->name) < 0);
        FUZZ_ASSERT(pc_safetensors_find(st, e->name) == e);
        covered += e->nbytes;
    }
    for (int i = 0; i < st->meta_count; i++)
        FUZZ_ASSERT(pc_safetensors_meta(st, st->meta_keys[i]) != NULL);
    /* No holes, no overlaps: the tensors cover exactly the bytes after the header. */
    uint64_t header = 0;
    for (int b = 7; b >= 0; b--) header = (header << 8) | ((const unsigned char *)st->map.data)[b];
    FUZZ_ASSERT(covered == st->map.size - 8 - header);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    pc_safetensors st;
    pc_error err = {0};
    if (pc_safetensors_open(&st, path, &err) == PC_OK) {
        check_open_file(&st);
        pc_safetensors_close(&st);
    } else {
        FUZZ_ASSERT(err.status != PC_OK && strstr(err.msg, path) != NULL);
    }
    close(fd);
    return 0;
}
