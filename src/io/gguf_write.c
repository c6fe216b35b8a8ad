/* GGUF v3 writer for what peftc exports (LoRA adapters for llama.cpp): string / f32 / u32 KVs and F32
 * tensors. Layout as ggml's gguf_write_to_buf: header, KVs in the order given, tensor infos with offsets
 * padded to the alignment, zero padding to the data section, each tensor followed by padding. */
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "io/gguf.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF writer copies floats as they are in memory: little-endian hosts only"
#endif

#define WRITE_ALIGNMENT 32
#define GGUF_MAX_NAME 64

typedef struct writer_kv {
    char *key;
    int type; /* STRING, FLOAT32 or UINT32 */
    char *str;
    uint32_t u32;
    float f32;
} writer_kv;

typedef struct writer_tensor {
    char *name;
    int n_dims;
    int64_t ne[4];
    float *data;
    size_t nbytes;
} writer_tensor;

struct pc_gguf_writer {
    int n_kv, cap_kv, n_tensors, cap_tensors;
    writer_kv *kvs;
    writer_tensor *tensors;
};

pc_status pc_gguf_writer_create(pc_gguf_writer **out, pc_error *err) {
    *out = pc_calloc(1, sizeof **out);
    if (!*out) return pc_fail(err, PC_ERR_NOMEM, "gguf writer: out of memory");
    return PC_OK;
}

void pc_gguf_writer_destroy(pc_gguf_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_kv; i++) {
        pc_free(w->kvs[i].key);
        pc_free(w->kvs[i].str);
    }
    for (int i = 0; i < w->n_tensors; i++) {
        pc_free(w->tensors[i].name);
        pc_free(w->tensors[i].data);
    }
    pc_free(w->kvs);
    pc_free(w->tensors);
    pc_free(w);
}

/* Grow an array of `size`-byte elements so one more fits. */
static int grow(void **items, int count, int *cap, size_t size) {
    if (count < *cap) return 1;
    int new_cap = *cap ? 2 * *cap : 16;
    void *p = pc_realloc(*items, (size_t)*cap * size, (size_t)new_cap * size);
    if (!p) return 0;
    *items = p;
    *cap = new_cap;
    return 1;
}

/* A new KV slot for key (checked: non-empty, not yet used); NULL with err set on failure. */
static writer_kv *new_kv(pc_gguf_writer *w, const char *key, int type, pc_error *err) {
    if (!key[0]) {
        pc_fail(err, PC_ERR_USAGE, "gguf writer: empty key");
        return NULL;
    }
    for (int i = 0; i < w->n_kv; i++)
        if (strcmp(w->kvs[i].key, key) == 0) {
            pc_fail(err, PC_ERR_USAGE, "gguf writer: key '%s' set twice", key);
            return NULL;
        }
    char *copy = pc_strdup(key);
    if (!copy || !grow((void **)&w->kvs, w->n_kv, &w->cap_kv, sizeof *w->kvs)) {
        pc_free(copy);
        pc_fail(err, PC_ERR_NOMEM, "gguf writer: out of memory");
        return NULL;
    }
    writer_kv *kv = &w->kvs[w->n_kv++];
    memset(kv, 0, sizeof *kv);
    kv->key = copy;
    kv->type = type;
    return kv;
}

pc_status pc_gguf_writer_kv_string(pc_gguf_writer *w, const char *key, const char *value, pc_error *err) {
    char *copy = pc_strdup(value);
    if (!copy) return pc_fail(err, PC_ERR_NOMEM, "gguf writer: out of memory");
    writer_kv *kv = new_kv(w, key, GGUF_TYPE_STRING, err);
    if (!kv) {
        pc_free(copy);
        return err ? err->status : PC_ERR_USAGE;
    }
    kv->str = copy;
    return PC_OK;
}

pc_status pc_gguf_writer_kv_f32(pc_gguf_writer *w, const char *key, float value, pc_error *err) {
    writer_kv *kv = new_kv(w, key, GGUF_TYPE_FLOAT32, err);
    if (!kv) return err ? err->status : PC_ERR_USAGE;
    kv->f32 = value;
    return PC_OK;
}

pc_status pc_gguf_writer_kv_u32(pc_gguf_writer *w, const char *key, uint32_t value, pc_error *err) {
    writer_kv *kv = new_kv(w, key, GGUF_TYPE_UINT32, err);
    if (!kv) return err ? err->status : PC_ERR_USAGE;
    kv->u32 = value;
    return PC_OK;
}

pc_status pc_gguf_writer_tensor_f32(pc_gguf_writer *w, const char *name, int n_dims, const int64_t *ne,
                                    const float *data, pc_error *err) {
    size_t len = strlen(name);
    if (len == 0 || len >= GGUF_MAX_NAME)
        return pc_fail(err, PC_ERR_USAGE, "gguf writer: tensor '%s': name must be 1..%d bytes", name,
                       GGUF_MAX_NAME - 1);
    if (n_dims < 1 || n_dims > 4) return pc_fail(err, PC_ERR_USAGE, "gguf writer: tensor '%s': %d dims", name, n_dims);
    uint64_t numel = 1;
    for (int d = 0; d < n_dims; d++)
        if (ne[d] < 0 || __builtin_mul_overflow(numel, (uint64_t)ne[d], &numel) || numel > SIZE_MAX / 4)
            return pc_fail(err, PC_ERR_USAGE, "gguf writer: tensor '%s': bad shape", name);
    for (int i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return pc_fail(err, PC_ERR_USAGE, "gguf writer: tensor '%s' added twice", name);
    if (!grow((void **)&w->tensors, w->n_tensors, &w->cap_tensors, sizeof *w->tensors))
        return pc_fail(err, PC_ERR_NOMEM, "gguf writer: out of memory");
    writer_tensor t = {0};
    t.name = pc_strdup(name);
    t.nbytes = (size_t)numel * 4;
    t.data = pc_malloc(t.nbytes);
    if (!t.name || !t.data) {
        pc_free(t.name);
        pc_free(t.data);
        return pc_fail(err, PC_ERR_NOMEM, "gguf writer: tensor '%s': out of memory", name);
    }
    if (t.nbytes) memcpy(t.data, data, t.nbytes);
    t.n_dims = n_dims;
    for (int d = 0; d < 4; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    w->tensors[w->n_tensors++] = t;
    return PC_OK;
}

/* Little-endian output through the atomic file, counting bytes for the alignment padding. */
typedef struct out_stream {
    pc_atomic_file af;
    uint64_t pos;
    pc_status status;
    pc_error *err;
} out_stream;

static void put(out_stream *o, const void *p, size_t n) {
    if (o->status != PC_OK) return;
    o->status = pc_atomic_write(&o->af, p, n, o->err);
    o->pos += n;
}

static void put_le(out_stream *o, uint64_t v, int n) {
    unsigned char b[8];
    for (int i = 0; i < n; i++) b[i] = (unsigned char)(v >> (8 * i));
    put(o, b, (size_t)n);
}

static void put_string(out_stream *o, const char *s) {
    size_t n = strlen(s);
    put_le(o, n, 8);
    put(o, s, n);
}

static void put_padding(out_stream *o) {
    static const unsigned char zeros[WRITE_ALIGNMENT];
    size_t pad = (size_t)((WRITE_ALIGNMENT - o->pos % WRITE_ALIGNMENT) % WRITE_ALIGNMENT);
    put(o, zeros, pad);
}

static uint64_t padded(uint64_t n) { return (n + WRITE_ALIGNMENT - 1) / WRITE_ALIGNMENT * WRITE_ALIGNMENT; }

static void put_kv(out_stream *o, const writer_kv *kv) {
    put_string(o, kv->key);
    put_le(o, (uint32_t)kv->type, 4);
    if (kv->type == GGUF_TYPE_STRING) {
        put_string(o, kv->str);
    } else if (kv->type == GGUF_TYPE_UINT32) {
        put_le(o, kv->u32, 4);
    } else {
        uint32_t bits;
        memcpy(&bits, &kv->f32, 4);
        put_le(o, bits, 4);
    }
}

static void put_file(out_stream *o, const pc_gguf_writer *w) {
    put(o, "GGUF", 4);
    put_le(o, 3, 4);
    put_le(o, (uint64_t)w->n_tensors, 8);
    put_le(o, (uint64_t)w->n_kv, 8);
    for (int i = 0; i < w->n_kv; i++) put_kv(o, &w->kvs[i]);
    uint64_t offset = 0;
    for (int i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        put_string(o, t->name);
        put_le(o, (uint32_t)t->n_dims, 4);
        for (int d = 0; d < t->n_dims; d++) put_le(o, (uint64_t)t->ne[d], 8);
        put_le(o, GGML_TYPE_F32, 4);
        put_le(o, offset, 8);
        offset += padded(t->nbytes);
    }
    put_padding(o);
    for (int i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        /* The format is little-endian; so is every machine peftc targets, so the floats go out as they are. */
        put(o, t->data, t->nbytes);
        put_padding(o);
    }
}

pc_status pc_gguf_writer_write(pc_gguf_writer *w, const char *path, pc_error *err) {
    out_stream o = {.pos = 0, .status = PC_OK, .err = err};
    PC_TRY(pc_atomic_open(&o.af, path, err));
    put_file(&o, w);
    if (o.status != PC_OK) {
        pc_atomic_abort(&o.af);
        return o.status;
    }
    return pc_atomic_commit(&o.af, err);
}
