/* safetensors: reader (memory-mapped, fully validated before any tensor is used) and writer (atomic;
 * header padded to 8 bytes, tensors ordered by descending dtype alignment then name, as the reference
 * writer does). Format: u64 LE header length N, N bytes of JSON, then the byte buffer. */
#ifndef PC_IO_SAFETENSORS_H
#define PC_IO_SAFETENSORS_H

#include "core/error.h"
#include "core/fileio.h"
#include "core/tensor.h"

typedef struct pc_st_entry {
    char *name;
    pc_dtype dtype;
    int ndim;
    int64_t shape[PC_MAX_DIMS];
    size_t nbytes;
    const void *data; /* points into the map; valid while the file is open */
} pc_st_entry;

typedef struct pc_safetensors {
    char *path;
    pc_mmap map;
    int count;
    pc_st_entry *entries; /* sorted by name for lookup */
    int meta_count;
    char **meta_keys, **meta_values; /* "__metadata__" string map */
} pc_safetensors;

/* Validates: header length bounds (≤ 100 MB and inside the file), JSON object, every entry's dtype,
 * shape (≤ 4 dims, non-negative), data_offsets inside the buffer, nbytes == numel·dtype size, no overlaps,
 * no holes, buffer end == file end, no duplicate names. Errors name the path and the tensor. */
pc_status pc_safetensors_open(pc_safetensors *st, const char *path, pc_error *err);
void pc_safetensors_close(pc_safetensors *st);
const pc_st_entry *pc_safetensors_find(const pc_safetensors *st, const char *name);
const char *pc_safetensors_meta(const pc_safetensors *st, const char *key);

/* Writer: collect tensors (the data pointers must stay valid until write), then write atomically. */
typedef struct pc_st_writer_item {
    char *name;
    pc_dtype dtype;
    int ndim;
    int64_t shape[PC_MAX_DIMS];
    const void *data;
} pc_st_writer_item;

typedef struct pc_st_writer {
    int count, cap;
    pc_st_writer_item *items;
    int meta_count;
    char *meta_keys[8], *meta_values[8];
} pc_st_writer;

void pc_st_writer_init(pc_st_writer *w);
pc_status pc_st_writer_add(pc_st_writer *w, const char *name, pc_dtype dtype, int ndim, const int64_t *shape,
                           const void *data, pc_error *err);
pc_status pc_st_writer_meta(pc_st_writer *w, const char *key, const char *value, pc_error *err);
pc_status pc_st_writer_write(pc_st_writer *w, const char *path, pc_error *err); /* atomic */
void pc_st_writer_free(pc_st_writer *w);

#endif
