/* GGUF reader. Every count, length and offset read from the file is checked against the bytes that remain
 * before it is used, so a hostile file ends in an error, never in a huge allocation or an out-of-map read.
 * Rules follow ggml's gguf.cpp (gguf_init_from_reader): version 2/3, non-empty unique keys, no nested
 * arrays, general.alignment a u32 power of two, ≤ 4 dims, ne ≥ 0 with an overflow-checked product, row
 * length a multiple of the block size, unique tensor names shorter than 64 bytes. Unlike ggml we accept
 * any order of tensor data as long as extents are aligned, inside the data section and do not overlap. */
#include "io/gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_NAME 64 /* GGML_MAX_NAME: llama.cpp refuses longer tensor names */
#define GGML_TYPE_LIMIT 64 /* ids below this may be real ggml types we do not load; above are garbage */

typedef struct ggml_type_info {
    int type;
    const char *name;
    int64_t block;      /* elements per block */
    size_t block_bytes; /* bytes per block */
} ggml_type_info;

static const ggml_type_info ggml_types[] = {
    {GGML_TYPE_F32, "F32", 1, 4},    {GGML_TYPE_F16, "F16", 1, 2},     {GGML_TYPE_BF16, "BF16", 1, 2},
    {GGML_TYPE_Q8_0, "Q8_0", 32, 34}, {GGML_TYPE_Q4_0, "Q4_0", 32, 18},
};

static const ggml_type_info *ggml_type_lookup(int type) {
    for (size_t i = 0; i < sizeof ggml_types / sizeof *ggml_types; i++)
        if (ggml_types[i].type == type) return &ggml_types[i];
    return NULL;
}

/* Bytes of one scalar of a GGUF value type; 0 for STRING/ARRAY (variable) and unknown types. */
static size_t value_size(int type) {
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* A read cursor over the map. Every read checks the remaining length first. */
typedef struct cursor {
    const unsigned char *p;
    size_t size, pos;
    const char *path;
    pc_error *err;
} cursor;

static pc_status cur_fail(cursor *c, pc_status st, const char *fmt, ...) PC_PRINTF(3, 4);
static pc_status cur_fail(cursor *c, pc_status st, const char *fmt, ...) {
    char what[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return pc_fail(c->err, st, "%s: %s", c->path, what);
}

static size_t remaining(const cursor *c) { return c->size - c->pos; }

static pc_status need(cursor *c, size_t n, const char *place) {
    if (n <= remaining(c)) return PC_OK;
    return cur_fail(c, PC_ERR_FORMAT, "%s: truncated: needs %zu bytes at offset %zu, file is %zu bytes", place, n,
                    c->pos, c->size);
}

static uint64_t le_bytes(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static pc_status read_uint(cursor *c, int n, uint64_t *out, const char *place) {
    PC_TRY(need(c, (size_t)n, place));
    *out = le_bytes(c->p + c->pos, n);
    c->pos += (size_t)n;
    return PC_OK;
}

/* A GGUF string: u64 length, bytes. Returns a borrowed pointer into the map. */
static pc_status read_string(cursor *c, const char **s, size_t *len, const char *place) {
    uint64_t n;
    PC_TRY(read_uint(c, 8, &n, place));
    if (n > remaining(c))
        return cur_fail(c, PC_ERR_FORMAT, "%s: string length %llu runs past the end of the file (%zu bytes left)",
                        place, (unsigned long long)n, remaining(c));
    *s = (const char *)c->p + c->pos;
    *len = (size_t)n;
    c->pos += (size_t)n;
    return PC_OK;
}

static char *copy_string(const char *s, size_t len) {
    char *d = pc_malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

/* A key or tensor name: non-empty, no NUL byte (it must survive as a C string), copied. */
static pc_status read_name(cursor *c, char **out, const char *place) {
    const char *s;
    size_t len;
    PC_TRY(read_string(c, &s, &len, place));
    if (len == 0) return cur_fail(c, PC_ERR_FORMAT, "%s: empty name", place);
    if (memchr(s, '\0', len)) return cur_fail(c, PC_ERR_FORMAT, "%s: name contains a NUL byte", place);
    *out = copy_string(s, len);
    if (!*out) return cur_fail(c, PC_ERR_NOMEM, "%s: out of memory", place);
    return PC_OK;
}

static pc_status read_string_array(cursor *c, pc_gguf_kv *kv, const char *place) {
    /* Each element takes at least its 8-byte length, which bounds the count by the bytes left. */
    if (kv->count > remaining(c) / 8)
        return cur_fail(c, PC_ERR_FORMAT, "%s: array of %llu strings cannot fit in the %zu bytes left", place,
                        (unsigned long long)kv->count, remaining(c));
    kv->strs = pc_calloc((size_t)kv->count + 1, sizeof(char *));
    if (!kv->strs) return cur_fail(c, PC_ERR_NOMEM, "%s: out of memory", place);
    for (uint64_t i = 0; i < kv->count; i++) {
        const char *s;
        size_t len;
        PC_TRY(read_string(c, &s, &len, place));
        kv->strs[i] = copy_string(s, len);
        if (!kv->strs[i]) return cur_fail(c, PC_ERR_NOMEM, "%s: out of memory", place);
    }
    return PC_OK;
}

static pc_status read_value(cursor *c, pc_gguf_kv *kv, const char *place) {
    int type = kv->type == GGUF_TYPE_ARRAY ? kv->array_type : kv->type;
    if (type == GGUF_TYPE_STRING) {
        if (kv->type == GGUF_TYPE_ARRAY) return read_string_array(c, kv, place);
        const char *s;
        size_t len;
        PC_TRY(read_string(c, &s, &len, place));
        kv->str = copy_string(s, len);
        if (!kv->str) return cur_fail(c, PC_ERR_NOMEM, "%s: out of memory", place);
        return PC_OK;
    }
    size_t size = value_size(type);
    if (kv->count > remaining(c) / size)
        return cur_fail(c, PC_ERR_FORMAT, "%s: %llu values of %zu bytes run past the end of the file", place,
                        (unsigned long long)kv->count, size);
    kv->data = c->p + c->pos;
    c->pos += (size_t)kv->count * size;
    return PC_OK;
}

static pc_status read_kv(cursor *c, int64_t index, pc_gguf_kv *kv) {
    char place[320];
    snprintf(place, sizeof place, "kv %lld", (long long)index);
    PC_TRY(read_name(c, &kv->key, place));
    snprintf(place, sizeof place, "kv '%.256s'", kv->key);
    uint64_t t;
    PC_TRY(read_uint(c, 4, &t, place));
    kv->type = (int)(int32_t)t;
    kv->count = 1;
    if (kv->type == GGUF_TYPE_ARRAY) {
        PC_TRY(read_uint(c, 4, &t, place));
        kv->array_type = (int)(int32_t)t;
        PC_TRY(read_uint(c, 8, &kv->count, place));
        if (kv->array_type == GGUF_TYPE_ARRAY) return cur_fail(c, PC_ERR_FORMAT, "%s: array of arrays", place);
        if (kv->array_type != GGUF_TYPE_STRING && value_size(kv->array_type) == 0)
            return cur_fail(c, PC_ERR_FORMAT, "%s: unknown array element type %d", place, kv->array_type);
    } else if (kv->type != GGUF_TYPE_STRING && value_size(kv->type) == 0) {
        return cur_fail(c, PC_ERR_FORMAT, "%s: unknown value type %d", place, kv->type);
    }
    return read_value(c, kv, place);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorting the names finds a duplicate in n log n, whatever the count a hostile file claims. */
static pc_status check_unique(cursor *c, char **names, int64_t n, const char *what) {
    char **sorted = pc_calloc((size_t)n + 1, sizeof *sorted);
    if (!sorted) return cur_fail(c, PC_ERR_NOMEM, "%s: out of memory", what);
    memcpy(sorted, names, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str_ptr);
    pc_status st = PC_OK;
    for (int64_t i = 1; i < n && st == PC_OK; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            st = cur_fail(c, PC_ERR_FORMAT, "%s '%.256s': appears twice", what, sorted[i]);
    pc_free(sorted);
    return st;
}

static pc_status read_kvs(pc_gguf *g, cursor *c) {
    for (int64_t i = 0; i < g->n_kv; i++) PC_TRY(read_kv(c, i, &g->kvs[i]));
    char **keys = pc_calloc((size_t)g->n_kv + 1, sizeof *keys);
    if (!keys) return cur_fail(c, PC_ERR_NOMEM, "kv: out of memory");
    for (int64_t i = 0; i < g->n_kv; i++) keys[i] = g->kvs[i].key;
    pc_status st = check_unique(c, keys, g->n_kv, "kv");
    pc_free(keys);
    PC_TRY(st);
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const pc_gguf_kv *a = pc_gguf_find_kv(g, "general.alignment");
    if (a) {
        if (a->type != GGUF_TYPE_UINT32)
            return cur_fail(c, PC_ERR_FORMAT, "kv 'general.alignment': type %d, must be uint32 (4)", a->type);
        uint64_t v = le_bytes(a->data, 4);
        if (v == 0 || (v & (v - 1)) != 0)
            return cur_fail(c, PC_ERR_FORMAT, "kv 'general.alignment': %llu is not a power of two",
                            (unsigned long long)v);
        g->alignment = v;
    }
    return PC_OK;
}

/* Shape and type of one tensor info; nbytes from them, overflow-checked. */
static pc_status read_tensor_shape(cursor *c, pc_gguf_tensor *t, const char *place) {
    uint64_t v;
    PC_TRY(read_uint(c, 4, &v, place));
    if (v > 4) return cur_fail(c, PC_ERR_FORMAT, "%s: %llu dimensions (at most 4)", place, (unsigned long long)v);
    t->n_dims = (uint32_t)v;
    int64_t numel = 1;
    int overflow = 0;
    for (int d = 0; d < 4; d++) {
        t->ne[d] = 1;
        if ((uint32_t)d >= t->n_dims) continue;
        PC_TRY(read_uint(c, 8, &v, place));
        t->ne[d] = (int64_t)v;
        if (t->ne[d] < 0) return cur_fail(c, PC_ERR_FORMAT, "%s: ne[%d] = %lld is negative", place, d, (long long)t->ne[d]);
        overflow |= __builtin_mul_overflow(numel, t->ne[d], &numel);
    }
    if (overflow) return cur_fail(c, PC_ERR_FORMAT, "%s: element count overflows 64 bits", place);
    PC_TRY(read_uint(c, 4, &v, place));
    t->type = (int)(int32_t)v;
    const ggml_type_info *ti = ggml_type_lookup(t->type);
    if (!ti && t->type >= 0 && t->type < GGML_TYPE_LIMIT)
        return cur_fail(c, PC_ERR_UNSUPPORTED, "%s: ggml type %d is not supported (F32, F16, BF16, Q8_0, Q4_0)", place,
                        t->type);
    if (!ti) return cur_fail(c, PC_ERR_FORMAT, "%s: unknown ggml type %d", place, t->type);
    if (t->ne[0] % ti->block != 0)
        return cur_fail(c, PC_ERR_FORMAT, "%s: row of %lld elements is not a multiple of the %s block size %lld",
                        place, (long long)t->ne[0], ti->name, (long long)ti->block);
    uint64_t blocks = (uint64_t)(numel / ti->block), bytes;
    if (__builtin_mul_overflow(blocks, (uint64_t)ti->block_bytes, &bytes) || bytes > SIZE_MAX)
        return cur_fail(c, PC_ERR_FORMAT, "%s: byte size overflows", place);
    t->nbytes = (size_t)bytes;
    return PC_OK;
}

static pc_status read_tensor_infos(pc_gguf *g, cursor *c) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        pc_gguf_tensor *t = &g->tensors[i];
        char place[320];
        snprintf(place, sizeof place, "tensor %lld", (long long)i);
        PC_TRY(read_name(c, &t->name, place));
        snprintf(place, sizeof place, "tensor '%.256s'", t->name);
        if (strlen(t->name) >= GGUF_MAX_NAME)
            return cur_fail(c, PC_ERR_FORMAT, "%s: name longer than %d bytes", place, GGUF_MAX_NAME - 1);
        PC_TRY(read_tensor_shape(c, t, place));
        PC_TRY(read_uint(c, 8, &t->offset, place));
    }
    char **names = pc_calloc((size_t)g->n_tensors + 1, sizeof *names);
    if (!names) return cur_fail(c, PC_ERR_NOMEM, "tensor: out of memory");
    for (int64_t i = 0; i < g->n_tensors; i++) names[i] = g->tensors[i].name;
    pc_status st = check_unique(c, names, g->n_tensors, "tensor");
    pc_free(names);
    return st;
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const pc_gguf_tensor *x = *(const pc_gguf_tensor *const *)a, *y = *(const pc_gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Data starts at the first aligned offset after the infos; each extent is aligned, inside, disjoint. */
static pc_status place_tensor_data(pc_gguf *g, cursor *c) {
    size_t start = c->pos;
    if (g->n_tensors > 0) start = (size_t)((c->pos + g->alignment - 1) / g->alignment * g->alignment);
    if (start > c->size)
        return cur_fail(c, PC_ERR_FORMAT, "data: truncated: data section starts at %zu, file is %zu bytes", start,
                        c->size);
    size_t data_size = c->size - start;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        pc_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return cur_fail(c, PC_ERR_FORMAT, "tensor '%.256s': offset %llu is not a multiple of the alignment %llu",
                            t->name, (unsigned long long)t->offset, (unsigned long long)g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return cur_fail(c, PC_ERR_FORMAT,
                            "tensor '%.256s': data [%llu, +%zu) runs past the end of the %zu-byte data section",
                            t->name, (unsigned long long)t->offset, t->nbytes, data_size);
        t->data = c->p + start + t->offset;
    }
    const pc_gguf_tensor **order = pc_calloc((size_t)g->n_tensors + 1, sizeof *order);
    if (!order) return cur_fail(c, PC_ERR_NOMEM, "data: out of memory");
    for (int64_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, (size_t)g->n_tensors, sizeof *order, cmp_tensor_offset);
    pc_status st = PC_OK;
    for (int64_t i = 1; i < g->n_tensors && st == PC_OK; i++)
        if (order[i]->offset < order[i - 1]->offset + order[i - 1]->nbytes)
            st = cur_fail(c, PC_ERR_FORMAT, "tensor '%.256s': data at offset %llu overlaps tensor '%.256s'",
                          order[i]->name, (unsigned long long)order[i]->offset, order[i - 1]->name);
    pc_free(order);
    return st;
}

static pc_status read_header(pc_gguf *g, cursor *c) {
    if (c->size < 4) return cur_fail(c, PC_ERR_FORMAT, "header: truncated: file is %zu bytes", c->size);
    if (memcmp(c->p, "GGUF", 4) != 0) return cur_fail(c, PC_ERR_FORMAT, "header: bad magic, not a GGUF file");
    c->pos = 4;
    uint64_t v;
    PC_TRY(read_uint(c, 4, &v, "header"));
    g->version = (uint32_t)v;
    if (g->version == 0) return cur_fail(c, PC_ERR_FORMAT, "header: invalid version 0");
    if (g->version != 2 && g->version != 3)
        return cur_fail(c, PC_ERR_UNSUPPORTED, "header: GGUF version %u is not supported (2 or 3)", g->version);
    PC_TRY(read_uint(c, 8, &v, "header"));
    g->n_tensors = (int64_t)v;
    PC_TRY(read_uint(c, 8, &v, "header"));
    g->n_kv = (int64_t)v;
    /* A KV takes at least 13 bytes (8-byte length, 1-byte key, 4-byte type), a tensor info 25; counts that
     * cannot fit are rejected before anything is allocated for them. */
    if (g->n_kv < 0 || (uint64_t)g->n_kv > remaining(c) / 13)
        return cur_fail(c, PC_ERR_FORMAT, "header: kv count %lld cannot fit in a %zu-byte file", (long long)g->n_kv,
                        c->size);
    if (g->n_tensors < 0 || (uint64_t)g->n_tensors > remaining(c) / 25)
        return cur_fail(c, PC_ERR_FORMAT, "header: tensor count %lld cannot fit in a %zu-byte file",
                        (long long)g->n_tensors, c->size);
    g->kvs = pc_calloc((size_t)g->n_kv + 1, sizeof *g->kvs);
    g->tensors = pc_calloc((size_t)g->n_tensors + 1, sizeof *g->tensors);
    if (!g->kvs || !g->tensors) return cur_fail(c, PC_ERR_NOMEM, "header: out of memory");
    return PC_OK;
}

pc_status pc_gguf_open(pc_gguf *g, const char *path, pc_error *err) {
    memset(g, 0, sizeof *g);
    g->path = pc_strdup(path);
    if (!g->path) return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory", path);
    pc_status st = pc_mmap_open(&g->map, path, err);
    if (st == PC_OK) {
        cursor c = {g->map.data, g->map.size, 0, g->path, err};
        st = read_header(g, &c);
        if (st == PC_OK) st = read_kvs(g, &c);
        if (st == PC_OK) st = read_tensor_infos(g, &c);
        if (st == PC_OK) st = place_tensor_data(g, &c);
    }
    if (st != PC_OK) pc_gguf_close(g);
    return st;
}

void pc_gguf_close(pc_gguf *g) {
    for (int64_t i = 0; g->kvs && i < g->n_kv; i++) {
        pc_gguf_kv *kv = &g->kvs[i];
        pc_free(kv->key);
        pc_free(kv->str);
        if (kv->strs)
            for (uint64_t j = 0; j < kv->count; j++) pc_free(kv->strs[j]);
        pc_free(kv->strs);
    }
    for (int64_t i = 0; g->tensors && i < g->n_tensors; i++) pc_free(g->tensors[i].name);
    pc_free(g->kvs);
    pc_free(g->tensors);
    pc_mmap_close(&g->map);
    pc_free(g->path);
    memset(g, 0, sizeof *g);
}

const pc_gguf_kv *pc_gguf_find_kv(const pc_gguf *g, const char *key) {
    for (int64_t i = 0; i < g->n_kv; i++)
        if (g->kvs[i].key && strcmp(g->kvs[i].key, key) == 0) return &g->kvs[i];
    return NULL;
}

const pc_gguf_tensor *pc_gguf_find_tensor(const pc_gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name && strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}
