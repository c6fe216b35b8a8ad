/* safetensors reader and writer. The reader trusts nothing in the file: every length, offset and shape is
 * checked before a single tensor byte is handed out, so a hostile file gives an error and never a read
 * outside the map. Rules follow huggingface/safetensors `tensor.rs` (read_metadata, Metadata::validate,
 * prepare); see /work/shared/specs/formats.md §3. */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/utf8.h"
#include "io/json.h"

#define ST_MAX_HEADER 100000000ull
#define ST_MAX_INT 9007199254740992.0 /* 2^53: above this a JSON double no longer holds every integer */

/* Dtypes safetensors defines that peftc does not load: a file using them is well formed but unsupported. */
static const char *const st_foreign_dtypes[] = {
    "BOOL", "F4", "F6_E2M3", "F6_E3M2", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
    "I16", "U16", "U32", "C64", "U64",
};

/* "<path>: tensor '<name>': <what>" or, with name NULL, "<path>: <place>: <what>". */
static pc_status st_fail(pc_error *err, pc_status status, const char *path, const char *name, const char *place,
                         const char *fmt, ...) PC_PRINTF(6, 7);
static pc_status st_fail(pc_error *err, pc_status status, const char *path, const char *name, const char *place,
                         const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (name) return pc_fail(err, status, "%s: tensor '%.200s': %s", path, name, what);
    return pc_fail(err, status, "%s: %s: %s", path, place, what);
}

static uint64_t read_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A JSON number that is a non-negative integer small enough to be exact in a double. */
static int json_to_u64(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double d = item->valuedouble;
    if (!(d >= 0.0) || d > ST_MAX_INT || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static pc_status parse_dtype(const char *path, const char *name, const cJSON *obj, pc_dtype *out, pc_error *err) {
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
    if (!dt) return st_fail(err, PC_ERR_FORMAT, path, name, NULL, "missing \"dtype\"");
    if (!cJSON_IsString(dt)) return st_fail(err, PC_ERR_FORMAT, path, name, NULL, "\"dtype\" is not a string");
    if (pc_dtype_from_name(dt->valuestring, out) == 0) return PC_OK;
    for (size_t i = 0; i < sizeof st_foreign_dtypes / sizeof *st_foreign_dtypes; i++)
        if (strcmp(dt->valuestring, st_foreign_dtypes[i]) == 0)
            return st_fail(err, PC_ERR_UNSUPPORTED, path, name, NULL, "dtype %s is not supported", dt->valuestring);
    return st_fail(err, PC_ERR_FORMAT, path, name, NULL, "unknown dtype '%.40s'", dt->valuestring);
}

static pc_status parse_shape(const char *path, const char *name, const cJSON *obj, pc_st_entry *e, pc_error *err) {
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(obj, "shape");
    if (!shape) return st_fail(err, PC_ERR_FORMAT, path, name, NULL, "missing \"shape\"");
    if (!cJSON_IsArray(shape)) return st_fail(err, PC_ERR_FORMAT, path, name, NULL, "\"shape\" is not an array");
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > PC_MAX_DIMS)
        return st_fail(err, PC_ERR_UNSUPPORTED, path, name, NULL, "%d dimensions (at most %d supported)", ndim,
                       PC_MAX_DIMS);
    int i = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, shape) {
        uint64_t v;
        if (!json_to_u64(dim, &v))
            return st_fail(err, PC_ERR_FORMAT, path, name, NULL, "shape[%d] is not a non-negative integer", i);
        e->shape[i++] = (int64_t)v;
    }
    e->ndim = ndim;
    return PC_OK;
}

/* Byte size implied by shape and dtype, overflow-checked. */
static int shape_nbytes(const pc_st_entry *e, uint64_t *out) {
    uint64_t n = pc_dtype_size(e->dtype);
    for (int i = 0; i < e->ndim; i++)
        if (__builtin_mul_overflow(n, (uint64_t)e->shape[i], &n)) return 0;
    *out = n;
    return 1;
}

/* Fill e from the header object of one tensor; data_offsets are checked against the buffer here, tiling
 * (no holes, no overlaps) once all entries are known. */
static pc_status parse_entry(const char *path, const char *name, const cJSON *obj, const unsigned char *buffer,
                             uint64_t buffer_len, pc_st_entry *e, pc_error *err) {
    if (!cJSON_IsObject(obj)) return st_fail(err, PC_ERR_FORMAT, path, name, NULL, "entry is not a JSON object");
    PC_TRY(parse_dtype(path, name, obj, &e->dtype, err));
    PC_TRY(parse_shape(path, name, obj, e, err));
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(obj, "data_offsets");
    if (!offs) return st_fail(err, PC_ERR_FORMAT, path, name, NULL, "missing \"data_offsets\"");
    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_to_u64(cJSON_GetArrayItem(offs, 0), &begin) ||
        !json_to_u64(cJSON_GetArrayItem(offs, 1), &end))
        return st_fail(err, PC_ERR_FORMAT, path, name, NULL, "\"data_offsets\" is not [begin, end] of integers");
    if (begin > end)
        return st_fail(err, PC_ERR_FORMAT, path, name, NULL, "data_offsets [%llu, %llu] end before they begin",
                       (unsigned long long)begin, (unsigned long long)end);
    if (end > buffer_len)
        return st_fail(err, PC_ERR_FORMAT, path, name, NULL,
                       "data_offsets [%llu, %llu] extend past the %llu-byte data buffer", (unsigned long long)begin,
                       (unsigned long long)end, (unsigned long long)buffer_len);
    uint64_t want;
    if (!shape_nbytes(e, &want))
        return st_fail(err, PC_ERR_FORMAT, path, name, NULL, "shape size overflows 64 bits");
    if (want != end - begin)
        return st_fail(err, PC_ERR_FORMAT, path, name, NULL,
                       "data_offsets span %llu bytes but shape and dtype %s need %llu",
                       (unsigned long long)(end - begin), pc_dtype_name(e->dtype), (unsigned long long)want);
    e->nbytes = (size_t)want;
    e->data = buffer + begin;
    return PC_OK;
}

static pc_status parse_metadata(pc_safetensors *st, const cJSON *meta, pc_error *err) {
    if (!cJSON_IsObject(meta)) return st_fail(err, PC_ERR_FORMAT, st->path, NULL, "__metadata__", "not an object");
    int n = cJSON_GetArraySize(meta);
    st->meta_keys = pc_calloc((size_t)n + 1, sizeof(char *));
    st->meta_values = pc_calloc((size_t)n + 1, sizeof(char *));
    if (!st->meta_keys || !st->meta_values)
        return pc_fail(err, PC_ERR_NOMEM, "%s: __metadata__: out of memory", st->path);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, meta) {
        if (!cJSON_IsString(kv))
            return st_fail(err, PC_ERR_FORMAT, st->path, NULL, "__metadata__", "value of '%.200s' is not a string",
                           kv->string);
        for (int j = 0; j < st->meta_count; j++)
            if (strcmp(st->meta_keys[j], kv->string) == 0)
                return st_fail(err, PC_ERR_FORMAT, st->path, NULL, "__metadata__", "duplicate key '%.200s'",
                               kv->string);
        char *k = pc_strdup(kv->string), *v = pc_strdup(kv->valuestring);
        if (!k || !v) {
            pc_free(k);
            pc_free(v);
            return pc_fail(err, PC_ERR_NOMEM, "%s: __metadata__: out of memory", st->path);
        }
        st->meta_keys[st->meta_count] = k;
        st->meta_values[st->meta_count++] = v;
    }
    return PC_OK;
}

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp(((const pc_st_entry *)a)->name, ((const pc_st_entry *)b)->name);
}

static int cmp_entry_offset(const void *a, const void *b) {
    const pc_st_entry *x = *(const pc_st_entry *const *)a, *y = *(const pc_st_entry *const *)b;
    const char *xp = x->data, *yp = y->data;
    if (xp != yp) return xp < yp ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Sorted by begin, the tensors must cover [0, buffer_len) exactly: each starts where the last one ended. */
static pc_status check_tiling(pc_safetensors *st, const unsigned char *buffer, uint64_t buffer_len, pc_error *err) {
    const pc_st_entry **order = pc_calloc((size_t)st->count + 1, sizeof *order);
    if (!order) return pc_fail(err, PC_ERR_NOMEM, "%s: header: out of memory", st->path);
    for (int i = 0; i < st->count; i++) order[i] = &st->entries[i];
    qsort(order, (size_t)st->count, sizeof *order, cmp_entry_offset);
    uint64_t at = 0;
    pc_status status = PC_OK;
    for (int i = 0; i < st->count && status == PC_OK; i++) {
        uint64_t begin = (uint64_t)((const unsigned char *)order[i]->data - buffer);
        if (begin < at)
            status = st_fail(err, PC_ERR_FORMAT, st->path, order[i]->name, NULL,
                             "data_offsets begin at %llu, inside tensor '%.200s' which ends at %llu (overlap)",
                             (unsigned long long)begin, order[i - 1]->name, (unsigned long long)at);
        else if (begin > at)
            status = st_fail(err, PC_ERR_FORMAT, st->path, order[i]->name, NULL,
                             "data_offsets begin at %llu, leaving bytes [%llu, %llu) unused (hole)",
                             (unsigned long long)begin, (unsigned long long)at, (unsigned long long)begin);
        at = begin + order[i]->nbytes;
    }
    pc_free(order);
    if (status == PC_OK && at != buffer_len)
        status = st_fail(err, PC_ERR_FORMAT, st->path, NULL, "data",
                         "tensors end at byte %llu of the %llu-byte data buffer (%llu trailing bytes)",
                         (unsigned long long)at, (unsigned long long)buffer_len,
                         (unsigned long long)(buffer_len - at));
    return status;
}

static pc_status parse_entries(pc_safetensors *st, const cJSON *root, const unsigned char *buffer,
                               uint64_t buffer_len, pc_error *err) {
    int n = cJSON_GetArraySize(root);
    st->entries = pc_calloc((size_t)n + 1, sizeof *st->entries);
    if (!st->entries) return pc_fail(err, PC_ERR_NOMEM, "%s: header: out of memory for %d entries", st->path, n);
    int seen_meta = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (seen_meta++) return st_fail(err, PC_ERR_FORMAT, st->path, NULL, "header", "duplicate __metadata__");
            PC_TRY(parse_metadata(st, item, err));
            continue;
        }
        pc_st_entry *e = &st->entries[st->count];
        PC_TRY(parse_entry(st->path, item->string, item, buffer, buffer_len, e, err));
        e->name = pc_strdup(item->string);
        if (!e->name) return pc_fail(err, PC_ERR_NOMEM, "%s: header: out of memory", st->path);
        st->count++;
    }
    qsort(st->entries, (size_t)st->count, sizeof *st->entries, cmp_entry_name);
    for (int i = 1; i < st->count; i++)
        if (strcmp(st->entries[i - 1].name, st->entries[i].name) == 0)
            return st_fail(err, PC_ERR_FORMAT, st->path, st->entries[i].name, NULL, "duplicate tensor name");
    return check_tiling(st, buffer, buffer_len, err);
}

static pc_status parse_file(pc_safetensors *st, pc_error *err) {
    const unsigned char *bytes = st->map.data;
    size_t size = st->map.size;
    if (size < 8)
        return st_fail(err, PC_ERR_FORMAT, st->path, NULL, "truncated",
                       "file is %zu bytes, too short for the 8-byte header length", size);
    uint64_t n = read_le64(bytes);
    if (n > ST_MAX_HEADER)
        return st_fail(err, PC_ERR_FORMAT, st->path, NULL, "header", "length %llu exceeds the limit of %llu bytes",
                       (unsigned long long)n, ST_MAX_HEADER);
    if (n > size - 8)
        return st_fail(err, PC_ERR_FORMAT, st->path, NULL, "truncated",
                       "header length is %llu bytes but only %zu bytes follow", (unsigned long long)n, size - 8);
    if (n == 0) return st_fail(err, PC_ERR_FORMAT, st->path, NULL, "header", "empty (length 0)");
    /* The reference reader rejects headers that are not UTF-8; names must be valid to be written back. */
    size_t bad = pc_utf8_valid_prefix((const char *)bytes + 8, (size_t)n);
    if (bad < n) return st_fail(err, PC_ERR_FORMAT, st->path, NULL, "header", "invalid UTF-8 at byte %zu", bad);
    pc_json_failure why;
    cJSON *root = pc_json_parse((const char *)bytes + 8, (size_t)n, &why);
    if (!root && why.status == PC_ERR_NOMEM)
        return st_fail(err, PC_ERR_NOMEM, st->path, NULL, "header", "out of memory parsing the JSON");
    if (!root && why.trailing)
        return st_fail(err, PC_ERR_FORMAT, st->path, NULL, "header", "unexpected bytes after the JSON at byte %zu", why.at);
    if (!root) return st_fail(err, PC_ERR_FORMAT, st->path, NULL, "header", "invalid JSON near byte %zu", why.at);
    pc_status status = PC_OK;
    if (!cJSON_IsObject(root))
        status = st_fail(err, PC_ERR_FORMAT, st->path, NULL, "header", "not a JSON object");
    if (status == PC_OK) status = parse_entries(st, root, bytes + 8 + n, size - 8 - n, err);
    cJSON_Delete(root);
    return status;
}

pc_status pc_safetensors_open(pc_safetensors *st, const char *path, pc_error *err) {
    memset(st, 0, sizeof *st);
    st->path = pc_strdup(path);
    if (!st->path) return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory", path);
    pc_status status = pc_mmap_open(&st->map, path, err);
    if (status == PC_OK) status = parse_file(st, err);
    if (status != PC_OK) pc_safetensors_close(st);
    return status;
}

void pc_safetensors_close(pc_safetensors *st) {
    if (st->entries)
        for (int i = 0; i < st->count; i++) pc_free(st->entries[i].name);
    for (int i = 0; i < st->meta_count; i++) {
        pc_free(st->meta_keys[i]);
        pc_free(st->meta_values[i]);
    }
    pc_free(st->entries);
    pc_free(st->meta_keys);
    pc_free(st->meta_values);
    pc_mmap_close(&st->map);
    pc_free(st->path);
    memset(st, 0, sizeof *st);
}

const pc_st_entry *pc_safetensors_find(const pc_safetensors *st, const char *name) {
    int lo = 0, hi = st->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(name, st->entries[mid].name);
        if (c == 0) return &st->entries[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const char *pc_safetensors_meta(const pc_safetensors *st, const char *key) {
    for (int i = 0; i < st->meta_count; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}
