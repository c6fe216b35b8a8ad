/* safetensors writer: produces the bytes the reference `serialize_to_file` produces for the same tensors
 * (compact JSON header, "__metadata__" first, tensors by descending dtype alignment then name, header
 * padded with spaces to a multiple of 8), written atomically and streamed from the callers' buffers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "io/safetensors.h"

/* Position of each dtype in the reference `enum Dtype`, which is declared in increasing alignment order;
 * the writer sorts on it (descending) exactly as `prepare` does, so file layouts match byte for byte. */
static int dtype_rank(pc_dtype dt) {
    switch (dt) {
    case PC_U8: return 4;
    case PC_I8: return 5;
    case PC_F16: return 13;
    case PC_BF16: return 14;
    case PC_I32: return 15;
    case PC_F32: return 17;
    case PC_F64: return 19;
    case PC_I64: return 20;
    default: return 0;
    }
}

void pc_st_writer_init(pc_st_writer *w) { memset(w, 0, sizeof *w); }

static int shape_bytes(pc_dtype dt, int ndim, const int64_t *shape, uint64_t *out) {
    uint64_t n = pc_dtype_size(dt);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return 0;
    *out = n;
    return 1;
}

pc_status pc_st_writer_add(pc_st_writer *w, const char *name, pc_dtype dtype, int ndim, const int64_t *shape,
                           const void *data, pc_error *err) {
    uint64_t nbytes;
    if (!name[0] || strcmp(name, "__metadata__") == 0)
        return pc_fail(err, PC_ERR_USAGE, "safetensors writer: tensor '%s': reserved or empty name", name);
    if (dtype >= PC_DTYPE_COUNT || ndim < 0 || ndim > PC_MAX_DIMS || !shape_bytes(dtype, ndim, shape, &nbytes))
        return pc_fail(err, PC_ERR_USAGE, "safetensors writer: tensor '%s': bad dtype or shape", name);
    if (nbytes > 0 && !data)
        return pc_fail(err, PC_ERR_USAGE, "safetensors writer: tensor '%s': no data", name);
    for (int i = 0; i < w->count; i++)
        if (strcmp(w->items[i].name, name) == 0)
            return pc_fail(err, PC_ERR_USAGE, "safetensors writer: tensor '%s': added twice", name);
    if (w->count == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        pc_st_writer_item *items =
            pc_realloc(w->items, (size_t)w->cap * sizeof *items, (size_t)cap * sizeof *items);
        if (!items) return pc_fail(err, PC_ERR_NOMEM, "safetensors writer: out of memory");
        w->items = items;
        w->cap = cap;
    }
    pc_st_writer_item *it = &w->items[w->count];
    memset(it, 0, sizeof *it);
    it->name = pc_strdup(name);
    if (!it->name) return pc_fail(err, PC_ERR_NOMEM, "safetensors writer: out of memory");
    it->dtype = dtype;
    it->ndim = ndim;
    for (int i = 0; i < ndim; i++) it->shape[i] = shape[i];
    it->data = data;
    w->count++;
    return PC_OK;
}

pc_status pc_st_writer_meta(pc_st_writer *w, const char *key, const char *value, pc_error *err) {
    int cap = (int)(sizeof w->meta_keys / sizeof *w->meta_keys);
    for (int i = 0; i < w->meta_count; i++)
        if (strcmp(w->meta_keys[i], key) == 0)
            return pc_fail(err, PC_ERR_USAGE, "safetensors writer: metadata key '%s' set twice", key);
    if (w->meta_count == cap)
        return pc_fail(err, PC_ERR_USAGE, "safetensors writer: more than %d metadata keys", cap);
    char *k = pc_strdup(key), *v = pc_strdup(value);
    if (!k || !v) {
        pc_free(k);
        pc_free(v);
        return pc_fail(err, PC_ERR_NOMEM, "safetensors writer: out of memory");
    }
    w->meta_keys[w->meta_count] = k;
    w->meta_values[w->meta_count++] = v;
    return PC_OK;
}

void pc_st_writer_free(pc_st_writer *w) {
    for (int i = 0; i < w->count; i++) pc_free(w->items[i].name);
    pc_free(w->items);
    for (int i = 0; i < w->meta_count; i++) {
        pc_free(w->meta_keys[i]);
        pc_free(w->meta_values[i]);
    }
    memset(w, 0, sizeof *w);
}

/* A growing text buffer for the header; `oom` sticks so callers check once at the end. */
typedef struct text_buf {
    char *p;
    size_t len, cap;
    int oom;
} text_buf;

static void buf_put(text_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = pc_realloc(b->p, b->cap, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_puts(text_buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_u64(text_buf *b, uint64_t v) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    buf_puts(b, tmp);
}

/* A JSON string the way serde_json (and Python's json with ensure_ascii=False) writes it: short escapes for
 * \" \\ \b \f \n \r \t, \u00xx for other control bytes, everything else (UTF-8 included) verbatim. */
static void buf_json_string(text_buf *b, const char *s) {
    buf_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': buf_put(b, "\\\"", 2); break;
        case '\\': buf_put(b, "\\\\", 2); break;
        case '\b': buf_put(b, "\\b", 2); break;
        case '\f': buf_put(b, "\\f", 2); break;
        case '\n': buf_put(b, "\\n", 2); break;
        case '\r': buf_put(b, "\\r", 2); break;
        case '\t': buf_put(b, "\\t", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                buf_puts(b, esc);
            } else {
                buf_put(b, (const char *)p, 1);
            }
        }
    }
    buf_put(b, "\"", 1);
}

static int cmp_items(const void *a, const void *b) {
    const pc_st_writer_item *x = *(const pc_st_writer_item *const *)a, *y = *(const pc_st_writer_item *const *)b;
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry) return ry - rx;
    return strcmp(x->name, y->name);
}

static size_t item_bytes(const pc_st_writer_item *it) {
    uint64_t n = 0;
    shape_bytes(it->dtype, it->ndim, it->shape, &n); /* checked when added */
    return (size_t)n;
}

/* The header JSON for the tensors in `order`, padded with spaces to a multiple of 8. */
static void build_header(const pc_st_writer *w, const pc_st_writer_item **order, text_buf *b) {
    buf_put(b, "{", 1);
    if (w->meta_count) {
        buf_puts(b, "\"__metadata__\":{");
        for (int i = 0; i < w->meta_count; i++) {
            if (i) buf_put(b, ",", 1);
            buf_json_string(b, w->meta_keys[i]);
            buf_put(b, ":", 1);
            buf_json_string(b, w->meta_values[i]);
        }
        buf_puts(b, "}");
        if (w->count) buf_put(b, ",", 1);
    }
    uint64_t offset = 0;
    for (int i = 0; i < w->count; i++) {
        const pc_st_writer_item *it = order[i];
        if (i) buf_put(b, ",", 1);
        buf_json_string(b, it->name);
        buf_puts(b, ":{\"dtype\":\"");
        buf_puts(b, pc_dtype_name(it->dtype));
        buf_puts(b, "\",\"shape\":[");
        for (int d = 0; d < it->ndim; d++) {
            if (d) buf_put(b, ",", 1);
            buf_u64(b, (uint64_t)it->shape[d]);
        }
        buf_puts(b, "],\"data_offsets\":[");
        buf_u64(b, offset);
        buf_put(b, ",", 1);
        offset += item_bytes(it);
        buf_u64(b, offset);
        buf_puts(b, "]}");
    }
    buf_put(b, "}", 1);
    while (!b->oom && b->len % 8) buf_put(b, " ", 1);
}

static pc_status write_all(const pc_st_writer *w, const pc_st_writer_item **order, const text_buf *hdr,
                           const char *path, pc_error *err) {
    pc_atomic_file af;
    PC_TRY(pc_atomic_open(&af, path, err));
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (unsigned char)((uint64_t)hdr->len >> (8 * i));
    pc_status status = pc_atomic_write(&af, len_bytes, 8, err);
    if (status == PC_OK) status = pc_atomic_write(&af, hdr->p, hdr->len, err);
    for (int i = 0; i < w->count && status == PC_OK; i++)
        status = pc_atomic_write(&af, order[i]->data, item_bytes(order[i]), err);
    if (status != PC_OK) {
        pc_atomic_abort(&af);
        return status;
    }
    return pc_atomic_commit(&af, err);
}

pc_status pc_st_writer_write(pc_st_writer *w, const char *path, pc_error *err) {
    const pc_st_writer_item **order = pc_calloc((size_t)w->count + 1, sizeof *order);
    if (!order) return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < w->count; i++) order[i] = &w->items[i];
    qsort(order, (size_t)w->count, sizeof *order, cmp_items);
    text_buf hdr = {0};
    build_header(w, order, &hdr);
    pc_status status = hdr.oom ? pc_fail(err, PC_ERR_NOMEM, "%s: out of memory for the header", path)
                               : write_all(w, order, &hdr, path, err);
    pc_free(hdr.p);
    pc_free(order);
    return status;
}
