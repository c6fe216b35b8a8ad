/* GGUF v3: a writer (LoRA adapters for llama.cpp) and a validating reader (used by tests to check what we
 * write, by `peftc inspect`, and as the base for GGUF model loading). Layout: "GGUF", u32 version, i64
 * tensor count, i64 kv count, kvs, tensor infos (name, n_dims, ne[], ggml type, offset), data aligned to
 * general.alignment (default 32). */
#ifndef PC_IO_GGUF_H
#define PC_IO_GGUF_H

#include <stdint.h>

#include "core/error.h"
#include "core/fileio.h"

enum {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2, GGUF_TYPE_INT16 = 3, GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7, GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11, GGUF_TYPE_FLOAT64 = 12
};
enum { GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q8_0 = 8, GGML_TYPE_BF16 = 30 };

typedef struct pc_gguf_kv {
    char *key;
    int type;          /* GGUF_TYPE_* */
    int array_type;    /* element type when type == ARRAY */
    uint64_t count;    /* array length (1 for scalars) */
    const void *data;  /* scalars and numeric arrays: raw little-endian values in the file */
    char *str;         /* STRING values (NUL-terminated copy) */
    char **strs;       /* ARRAY of STRING (copies) */
} pc_gguf_kv;

typedef struct pc_gguf_tensor {
    char *name;
    uint32_t n_dims;
    int64_t ne[4];     /* ggml order: ne[0] is the contiguous dimension */
    int type;          /* GGML_TYPE_* */
    uint64_t offset;   /* relative to the data section */
    size_t nbytes;
    const void *data;
} pc_gguf_tensor;

typedef struct pc_gguf {
    char *path;
    pc_mmap map;
    uint32_t version;
    int64_t n_kv, n_tensors;
    pc_gguf_kv *kvs;
    pc_gguf_tensor *tensors;
    uint64_t alignment;
} pc_gguf;

/* Validates magic, version (2 or 3), counts against the file size, every string/array length, tensor
 * dims, types, extents inside the data section and their alignment. */
pc_status pc_gguf_open(pc_gguf *g, const char *path, pc_error *err);
void pc_gguf_close(pc_gguf *g);
const pc_gguf_kv *pc_gguf_find_kv(const pc_gguf *g, const char *key);
const pc_gguf_tensor *pc_gguf_find_tensor(const pc_gguf *g, const char *name);

/* Writer: string / f32 / u32 KVs and F32 tensors (ne in ggml order); written atomically. */
typedef struct pc_gguf_writer pc_gguf_writer;
pc_status pc_gguf_writer_create(pc_gguf_writer **out, pc_error *err);
pc_status pc_gguf_writer_kv_string(pc_gguf_writer *w, const char *key, const char *value, pc_error *err);
pc_status pc_gguf_writer_kv_f32(pc_gguf_writer *w, const char *key, float value, pc_error *err);
pc_status pc_gguf_writer_kv_u32(pc_gguf_writer *w, const char *key, uint32_t value, pc_error *err);
/* data is copied. */
pc_status pc_gguf_writer_tensor_f32(pc_gguf_writer *w, const char *name, int n_dims, const int64_t *ne,
                                    const float *data, pc_error *err);
pc_status pc_gguf_writer_write(pc_gguf_writer *w, const char *path, pc_error *err);
void pc_gguf_writer_destroy(pc_gguf_writer *w);

#endif
