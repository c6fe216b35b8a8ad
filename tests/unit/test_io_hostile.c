/* The hostile-input catalogue for the file readers: malformed safetensors, GGUF, JSON and sharded model
 * directories, each built byte by byte here. Every case must fail with the right status and a message that
 * names the file and the place, without crashing or leaking (CI runs this under ASan + UBSan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "io/gguf.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "test_support.h"

static char tmp_dir[] = "/tmp/peftc_io_hostile_XXXXXX";
static int n_cases;

typedef enum reader { READ_SAFETENSORS, READ_GGUF, READ_JSON, READ_MODEL_DIR } reader;

/* Open path with the reader; it must fail with status `want` and a message containing `path` and `place`. */
static void expect_failure(reader r, const char *path, pc_status want, const char *place, const char *label) {
    pc_error err = {0};
    pc_status got = PC_OK;
    n_cases++;
    if (r == READ_SAFETENSORS) {
        pc_safetensors st;
        got = pc_safetensors_open(&st, path, &err);
        if (got == PC_OK) pc_safetensors_close(&st);
    } else if (r == READ_GGUF) {
        pc_gguf g;
        got = pc_gguf_open(&g, path, &err);
        if (got == PC_OK) pc_gguf_close(&g);
    } else if (r == READ_JSON) {
        cJSON *root = NULL;
        got = pc_json_load(&root, path, &err);
        cJSON_Delete(root);
    } else {
        pc_weight_files wf;
        got = pc_weight_files_open(&wf, path, &err);
        if (got == PC_OK) pc_weight_files_close(&wf);
    }
    if (getenv("PEFTC_TEST_VERBOSE")) printf("%-45s %s\n", label, err.msg);
    CHECK(got == want, "%s: status '%s', want '%s' (%s)", label, pc_status_name(got), pc_status_name(want), err.msg);
    CHECK(got == PC_OK || (strstr(err.msg, path) && strstr(err.msg, place)),
          "%s: message '%s' should name '%s' and '%s'", label, err.msg, path, place);
}

static const char *file_path(const char *name) {
    static char path[512]; /* test-only scratch, used before the next call */
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

static const char *write_raw(const char *name, const void *data, size_t len) {
    const char *path = file_path(name);
    FILE *f = fopen(path, "wb");
    if (f) {
        if (len) fwrite(data, 1, len, f);
        fclose(f);
    }
    return path;
}

/* ---------------------------------------------------------------- safetensors */

/* u64 header length (or `len_override` when non-zero), header text, then data_len bytes of data. */
static const char *st_file(const char *header, size_t data_len, uint64_t len_override) {
    size_t n = strlen(header);
    unsigned char *buf = calloc(1, 8 + n + data_len + 1);
    uint64_t len = len_override ? len_override : n;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(len >> (8 * i));
    memcpy(buf + 8, header, n);
    const char *path = write_raw("bad.safetensors", buf, 8 + n + data_len);
    free(buf);
    return path;
}

#define ST(header, data_len, status, place, label) \
    expect_failure(READ_SAFETENSORS, st_file(header, data_len, 0), status, place, label)

static void safetensors_cases(void) {
    expect_failure(READ_SAFETENSORS, write_raw("bad.safetensors", "", 0), PC_ERR_FORMAT, "truncated", "empty file");
    expect_failure(READ_SAFETENSORS, write_raw("bad.safetensors", "\x10\0\0\0", 4), PC_ERR_FORMAT, "truncated",
                   "shorter than the length field");
    expect_failure(READ_SAFETENSORS, st_file("{}", 0, 100), PC_ERR_FORMAT, "truncated",
                   "header length larger than the file");
    expect_failure(READ_SAFETENSORS, st_file("{}", 0, (uint64_t)1 << 63), PC_ERR_FORMAT, "header",
                   "huge header length");
    expect_failure(READ_SAFETENSORS, st_file("{}", 0, 100000001), PC_ERR_FORMAT, "limit", "header over 100 MB");
    ST("", 0, PC_ERR_FORMAT, "header", "empty header");
    ST("hello, world", 0, PC_ERR_FORMAT, "header", "non-JSON header");
    ST("[1, 2, 3]", 0, PC_ERR_FORMAT, "not a JSON object", "header is an array");
    ST("\"just a string\"", 0, PC_ERR_FORMAT, "not a JSON object", "header is a string");
    ST("{} {}", 0, PC_ERR_FORMAT, "after the JSON", "two JSON values");
    static const char nul_padded[] = "\x3d\0\0\0\0\0\0\0{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"
                                     "\0\0\0\0\0\0\0\0\0\0\0";
    expect_failure(READ_SAFETENSORS, write_raw("bad.safetensors", nul_padded, sizeof nul_padded - 1), PC_ERR_FORMAT,
                   "after the JSON", "NUL padding in the header");
    ST("{\"x\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, PC_ERR_FORMAT, "tensor 'x'",
       "unknown dtype");
    ST("{\"x\":{\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, PC_ERR_UNSUPPORTED, "tensor 'x'",
       "dtype safetensors knows but peftc does not load");
    ST("{\"x\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, PC_ERR_FORMAT, "tensor 'x'",
       "dtype not a string");
    ST("{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, PC_ERR_FORMAT, "shape[0]",
       "negative dimension");
    ST("{\"x\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, PC_ERR_FORMAT, "shape[0]",
       "fractional dimension");
    ST("{\"x\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4, PC_ERR_FORMAT, "shape[0]",
       "astronomical dimension");
    ST("{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}", 4, PC_ERR_FORMAT,
       "overflow", "shape product overflows");
    ST("{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, PC_ERR_UNSUPPORTED,
       "tensor 'x'", "five dimensions");
    ST("{\"x\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", 4, PC_ERR_FORMAT, "shape",
       "shape not an array");
    ST("{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, PC_ERR_FORMAT, "missing \"shape\"", "no shape");
    ST("{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, PC_ERR_FORMAT, "missing \"dtype\"", "no dtype");
    ST("{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, PC_ERR_FORMAT, "data_offsets", "no data_offsets");
    ST("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, PC_ERR_FORMAT, "data_offsets",
       "one offset");
    ST("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, PC_ERR_FORMAT, "data_offsets",
       "three offsets");
    ST("{\"x\":5}", 0, PC_ERR_FORMAT, "tensor 'x'", "entry not an object");
    ST("{\"\xc3\x28\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, PC_ERR_FORMAT, "UTF-8 at byte 2",
       "invalid UTF-8 in a name");
    ST("{\"\xed\xa0\x80\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, PC_ERR_FORMAT, "UTF-8",
       "UTF-8 encoded surrogate");
    ST("{\"\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, PC_ERR_FORMAT, "UTF-8",
       "overlong UTF-8");
    ST("{\"x\":{\"dtype\":\"F32\",\"shape\":[25],\"data_offsets\":[0,100]}}", 4, PC_ERR_FORMAT, "past the",
       "offsets past the buffer");
    ST("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, PC_ERR_FORMAT, "end before",
       "end before begin");
    ST("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, PC_ERR_FORMAT, "need 8",
       "size does not match shape x dtype");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
       12, PC_ERR_FORMAT, "overlap", "overlapping tensors");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
       12, PC_ERR_FORMAT, "hole", "hole between tensors");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, PC_ERR_FORMAT, "hole",
       "hole at the start");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, PC_ERR_FORMAT, "trailing",
       "trailing bytes");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
       8, PC_ERR_FORMAT, "duplicate", "duplicate tensor names");
    ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
       4, PC_ERR_FORMAT, "duplicate", "duplicate names on the same bytes");
    ST("{\"__metadata__\":{\"format\":1}}", 0, PC_ERR_FORMAT, "__metadata__", "metadata value not a string");
    ST("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0, PC_ERR_FORMAT, "__metadata__", "nested metadata");
    ST("{\"__metadata__\":[\"pt\"]}", 0, PC_ERR_FORMAT, "__metadata__", "metadata not an object");
    ST("{\"__metadata__\":{\"a\":\"b\"},\"__metadata__\":{\"a\":\"b\"}}", 0, PC_ERR_FORMAT, "duplicate",
       "two metadata blocks");
    /* Deep nesting must hit cJSON's limit, not the stack. */
    char deep[6000];
    memcpy(deep, "{\"a\":", 5);
    memset(deep + 5, '[', 2990);
    memset(deep + 2995, ']', 2990);
    memcpy(deep + 5985, "}", 2);
    ST(deep, 0, PC_ERR_FORMAT, "header", "3000-deep nesting");
    expect_failure(READ_SAFETENSORS, tmp_dir, PC_ERR_IO, "", "a directory");
    expect_failure(READ_SAFETENSORS, file_path("missing.safetensors"), PC_ERR_IO, "cannot open", "missing file");
}

/* ---------------------------------------------------------------- GGUF */

typedef struct bytes {
    unsigned char b[1024];
    size_t n;
} bytes;
static void put_le(bytes *o, uint64_t v, int n) {
    for (int i = 0; i < n; i++) o->b[o->n++] = (unsigned char)(v >> (8 * i));
}
static void put_str(bytes *o, const char *s) {
    put_le(o, strlen(s), 8);
    memcpy(o->b + o->n, s, strlen(s));
    o->n += strlen(s);
}
static void put_header(bytes *o, uint32_t version, int64_t n_tensors, int64_t n_kv) {
    o->n = 0;
    memcpy(o->b, "GGUF", 4);
    o->n = 4;
    put_le(o, version, 4);
    put_le(o, (uint64_t)n_tensors, 8);
    put_le(o, (uint64_t)n_kv, 8);
}
/* A tensor info: name, dims, type, offset. */
static void put_tensor(bytes *o, const char *name, int n_dims, const int64_t *ne, int type, uint64_t offset) {
    put_str(o, name);
    put_le(o, (uint32_t)n_dims, 4);
    for (int d = 0; d < n_dims; d++) put_le(o, (uint64_t)ne[d], 8);
    put_le(o, (uint32_t)type, 4);
    put_le(o, offset, 8);
}
/* Pad to 32 and append data bytes. */
static void put_data(bytes *o, size_t n) {
    while (o->n % 32) o->b[o->n++] = 0;
    memset(o->b + o->n, 0x3f, n);
    o->n += n;
}
static const char *gguf_save(const bytes *o) { return write_raw("bad.gguf", o->b, o->n); }

#define GG(o, status, place, label) expect_failure(READ_GGUF, gguf_save(o), status, place, label)

static void gguf_header_cases(void) {
    bytes o = {.n = 0};
    GG(&o, PC_ERR_FORMAT, "truncated", "empty file");
    memcpy(o.b, "GGUX\3\0\0\0", 8), o.n = 8;
    GG(&o, PC_ERR_FORMAT, "magic", "bad magic");
    memcpy(o.b, "GGUF", 4), o.n = 4;
    GG(&o, PC_ERR_FORMAT, "truncated", "magic only");
    put_header(&o, 1, 0, 0);
    GG(&o, PC_ERR_UNSUPPORTED, "version", "version 1");
    put_header(&o, 0, 0, 0);
    GG(&o, PC_ERR_FORMAT, "version", "version 0");
    put_header(&o, 0x03000000, 0, 0);
    GG(&o, PC_ERR_UNSUPPORTED, "version", "big-endian version");
    put_header(&o, 3, 0, (int64_t)1 << 40);
    GG(&o, PC_ERR_FORMAT, "kv count", "absurd kv count");
    put_header(&o, 3, -1, 0);
    GG(&o, PC_ERR_FORMAT, "tensor count", "negative tensor count");
    put_header(&o, 3, (int64_t)1 << 62, 0);
    GG(&o, PC_ERR_FORMAT, "tensor count", "absurd tensor count");
    put_header(&o, 3, 0, 1);
    o.n -= 4; /* the count field itself cut short */
    GG(&o, PC_ERR_FORMAT, "truncated", "header cut in the kv count");
}

static void gguf_kv_cases(void) {
    bytes o;
    put_header(&o, 3, 0, 1);
    put_le(&o, (uint64_t)1 << 62, 8); /* key length */
    put_le(&o, 0, 8);
    GG(&o, PC_ERR_FORMAT, "past the end", "key length past EOF");
    put_header(&o, 3, 0, 1);
    put_str(&o, "");
    put_le(&o, GGUF_TYPE_UINT32, 4);
    put_le(&o, 1, 4);
    GG(&o, PC_ERR_FORMAT, "empty name", "empty key");
    put_header(&o, 3, 0, 1);
    put_str(&o, "k");
    put_le(&o, 99, 4);
    put_le(&o, 0, 8);
    GG(&o, PC_ERR_FORMAT, "kv 'k'", "unknown value type");
    put_header(&o, 3, 0, 1);
    put_str(&o, "k");
    put_le(&o, GGUF_TYPE_STRING, 4);
    put_le(&o, 1000, 8);
    put_str(&o, "short");
    GG(&o, PC_ERR_FORMAT, "kv 'k'", "string value length past EOF");
    put_header(&o, 3, 0, 1);
    put_str(&o, "k");
    put_le(&o, GGUF_TYPE_ARRAY, 4);
    put_le(&o, GGUF_TYPE_ARRAY, 4);
    put_le(&o, 1, 8);
    GG(&o, PC_ERR_FORMAT, "array of arrays", "nested array");
    put_header(&o, 3, 0, 1);
    put_str(&o, "k");
    put_le(&o, GGUF_TYPE_ARRAY, 4);
    put_le(&o, GGUF_TYPE_UINT32, 4);
    put_le(&o, (uint64_t)1 << 61, 8);
    put_le(&o, 0, 8);
    GG(&o, PC_ERR_FORMAT, "kv 'k'", "u32 array count past EOF");
    put_header(&o, 3, 0, 1);
    put_str(&o, "k");
    put_le(&o, GGUF_TYPE_ARRAY, 4);
    put_le(&o, GGUF_TYPE_STRING, 4);
    put_le(&o, (uint64_t)1 << 40, 8);
    put_str(&o, "x");
    GG(&o, PC_ERR_FORMAT, "kv 'k'", "string array count past EOF");
    put_header(&o, 3, 0, 1);
    put_str(&o, "k");
    put_le(&o, GGUF_TYPE_ARRAY, 4);
    put_le(&o, 77, 4);
    put_le(&o, 1, 8);
    GG(&o, PC_ERR_FORMAT, "element type", "unknown array element type");
    put_header(&o, 3, 0, 2);
    put_str(&o, "k");
    put_le(&o, GGUF_TYPE_UINT8, 4);
    put_le(&o, 1, 1);
    put_str(&o, "k");
    put_le(&o, GGUF_TYPE_UINT8, 4);
    put_le(&o, 2, 1);
    GG(&o, PC_ERR_FORMAT, "twice", "duplicate key");
    put_header(&o, 3, 0, 1);
    put_str(&o, "general.alignment");
    put_le(&o, GGUF_TYPE_UINT32, 4);
    put_le(&o, 48, 4);
    GG(&o, PC_ERR_FORMAT, "general.alignment", "alignment not a power of two");
    put_header(&o, 3, 0, 1);
    put_str(&o, "general.alignment");
    put_le(&o, GGUF_TYPE_UINT32, 4);
    put_le(&o, 0, 4);
    GG(&o, PC_ERR_FORMAT, "general.alignment", "alignment zero");
    put_header(&o, 3, 0, 1);
    put_str(&o, "general.alignment");
    put_le(&o, GGUF_TYPE_UINT64, 4);
    put_le(&o, 32, 8);
    GG(&o, PC_ERR_FORMAT, "general.alignment", "alignment of the wrong type");
    put_header(&o, 3, 0, 1);
    put_le(&o, 3, 8);
    memcpy(o.b + o.n, "a\0b", 3), o.n += 3;
    put_le(&o, GGUF_TYPE_UINT8, 4);
    put_le(&o, 1, 1);
    GG(&o, PC_ERR_FORMAT, "NUL", "key with a NUL byte");
}

static void gguf_tensor_cases(void) {
    bytes o;
    const int64_t ne4[1] = {4}, neg[2] = {4, -1}, big[2] = {(int64_t)1 << 40, (int64_t)1 << 40}, ne31[1] = {31},
                  ne5[5] = {1, 1, 1, 1, 1}, ne8[1] = {8};
    put_header(&o, 3, 1, 0);
    put_tensor(&o, "t", 5, ne5, GGML_TYPE_F32, 0);
    put_data(&o, 4);
    GG(&o, PC_ERR_FORMAT, "tensor 't'", "five dimensions");
    put_header(&o, 3, 1, 0);
    put_tensor(&o, "t", 2, neg, GGML_TYPE_F32, 0);
    put_data(&o, 16);
    GG(&o, PC_ERR_FORMAT, "negative", "negative ne");
    put_header(&o, 3, 1, 0);
    put_tensor(&o, "t", 2, big, GGML_TYPE_F32, 0);
    put_data(&o, 16);
    GG(&o, PC_ERR_FORMAT, "overflow", "element count overflows");
    put_header(&o, 3, 1, 0);
    put_tensor(&o, "t", 1, ne4, 1000, 0);
    put_data(&o, 16);
    GG(&o, PC_ERR_FORMAT, "unknown ggml type", "unknown ggml type");
    put_header(&o, 3, 1, 0);
    put_tensor(&o, "t", 1, ne4, -3, 0);
    put_data(&o, 16);
    GG(&o, PC_ERR_FORMAT, "unknown ggml type", "negative ggml type");
    put_header(&o, 3, 1, 0);
    put_tensor(&o, "t", 1, ne4, 12 /* Q4_K */, 0);
    put_data(&o, 16);
    GG(&o, PC_ERR_UNSUPPORTED, "tensor 't'", "real ggml type peftc does not load");
    put_header(&o, 3, 1, 0);
    put_tensor(&o, "t", 1, ne31, GGML_TYPE_Q8_0, 0);
    put_data(&o, 34);
    GG(&o, PC_ERR_FORMAT, "block size", "row not a multiple of the Q8_0 block");
    put_header(&o, 3, 1, 0);
    put_tensor(&o, "t", 1, ne8, GGML_TYPE_F32, 0);
    put_data(&o, 16);
    GG(&o, PC_ERR_FORMAT, "runs past the end", "tensor extent past EOF");
    put_header(&o, 3, 1, 0);
    put_tensor(&o, "t", 1, ne4, GGML_TYPE_F32, (uint64_t)1 << 63);
    put_data(&o, 16);
    GG(&o, PC_ERR_FORMAT, "tensor 't'", "huge offset");
    put_header(&o, 3, 1, 0);
    put_tensor(&o, "t", 1, ne4, GGML_TYPE_F32, 4);
    put_data(&o, 64);
    GG(&o, PC_ERR_FORMAT, "alignment", "misaligned offset");
    put_header(&o, 3, 2, 0);
    put_tensor(&o, "a", 1, ne8, GGML_TYPE_F32, 0);
    put_tensor(&o, "b", 1, ne8, GGML_TYPE_F32, 0);
    put_data(&o, 64);
    GG(&o, PC_ERR_FORMAT, "overlaps", "overlapping tensors");
    put_header(&o, 3, 2, 0);
    put_tensor(&o, "a", 1, ne4, GGML_TYPE_F32, 0);
    put_tensor(&o, "a", 1, ne4, GGML_TYPE_F32, 32);
    put_data(&o, 64);
    GG(&o, PC_ERR_FORMAT, "twice", "duplicate tensor names");
    put_header(&o, 3, 1, 0);
    put_tensor(&o, "a_name_that_is_far_too_long_for_llama_cpp_to_accept_it_at_all_xx", 1, ne4, GGML_TYPE_F32, 0);
    put_data(&o, 16);
    GG(&o, PC_ERR_FORMAT, "longer than", "tensor name of 64 bytes");
    put_header(&o, 3, 1, 0);
    put_tensor(&o, "t", 1, ne4, GGML_TYPE_F32, 0);
    GG(&o, PC_ERR_FORMAT, "data", "data section missing");
    put_header(&o, 3, 2, 0);
    put_tensor(&o, "t", 1, ne4, GGML_TYPE_F32, 0);
    GG(&o, PC_ERR_FORMAT, "tensor count", "second tensor info missing");
    put_header(&o, 3, 1, 0);
    put_tensor(&o, "t", 1, ne4, GGML_TYPE_F32, 0);
    o.n -= 6; /* the file ends inside the offset field */
    GG(&o, PC_ERR_FORMAT, "truncated", "tensor info cut short");
}

/* ---------------------------------------------------------------- JSON and model directories */

static const char *json_file(const char *text) { return write_raw("bad.json", text, strlen(text)); }

static void json_cases(void) {
    expect_failure(READ_JSON, json_file("{\"r\": 8,\n \"alpha\": }"), PC_ERR_FORMAT, "2:", "missing value");
    expect_failure(READ_JSON, write_raw("bad.json", "\xff\xfe{\0\0", 5), PC_ERR_FORMAT, "1:1", "binary garbage");
    expect_failure(READ_JSON, json_file("{\"a\": \"unterminated}"), PC_ERR_FORMAT, "1:", "unterminated string");
    char deep[4002];
    memset(deep, '[', 4000);
    deep[4000] = '\0';
    expect_failure(READ_JSON, json_file(deep), PC_ERR_FORMAT, "invalid JSON", "4000-deep nesting");
}

static const char *model_dir(const char *name, const char *index) {
    static char dir[512]; /* test-only scratch */
    snprintf(dir, sizeof dir, "%s/%s", tmp_dir, name);
    pc_error err;
    pc_mkdir_p(dir, &err);
    char path[600];
    if (index) {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        pc_write_file_atomic(path, index, strlen(index), &err);
    }
    return dir;
}

/* A valid shard in dir holding F32 [1] tensors with the given names. */
static void shard(const char *dir, const char *file, const char *n1, const char *n2) {
    static const float v[2] = {1, 2};
    const int64_t shape[1] = {1};
    pc_st_writer w;
    pc_error err;
    pc_st_writer_init(&w);
    pc_st_writer_add(&w, n1, PC_F32, 1, shape, &v[0], &err);
    if (n2) pc_st_writer_add(&w, n2, PC_F32, 1, shape, &v[1], &err);
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    pc_st_writer_write(&w, path, &err);
    pc_st_writer_free(&w);
}

static void model_dir_cases(void) {
    const char *d = model_dir("m_syntax", "{\"weight_map\": {\"a\": \"s1.safetensors\",}}");
    expect_failure(READ_MODEL_DIR, d, PC_ERR_FORMAT, "model.safetensors.index.json: 1:", "index syntax error");
    d = model_dir("m_nomap", "{\"metadata\": {}}");
    expect_failure(READ_MODEL_DIR, d, PC_ERR_FORMAT, "weight_map", "index without weight_map");
    d = model_dir("m_empty", "{\"weight_map\": {}}");
    expect_failure(READ_MODEL_DIR, d, PC_ERR_FORMAT, "weight_map", "empty weight_map");
    d = model_dir("m_nonstring", "{\"weight_map\": {\"a\": 3}}");
    expect_failure(READ_MODEL_DIR, d, PC_ERR_FORMAT, "tensor 'a'", "shard name not a string");
    d = model_dir("m_escape", "{\"weight_map\": {\"a\": \"../m_ok/s1.safetensors\"}}");
    expect_failure(READ_MODEL_DIR, d, PC_ERR_FORMAT, "not a file name", "shard outside the directory");
    d = model_dir("m_missing", "{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s2.safetensors\"}}");
    shard(d, "s1.safetensors", "a", NULL);
    expect_failure(READ_MODEL_DIR, d, PC_ERR_IO, "shard 's2.safetensors'", "index names a missing shard");
    d = model_dir("m_absent", "{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s1.safetensors\"}}");
    shard(d, "s1.safetensors", "a", "c");
    expect_failure(READ_MODEL_DIR, d, PC_ERR_FORMAT, "tensor 'b': not found in shard", "tensor missing in shard");
    d = model_dir("m_twice", "{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s2.safetensors\"}}");
    shard(d, "s1.safetensors", "a", "x");
    shard(d, "s2.safetensors", "b", "x");
    expect_failure(READ_MODEL_DIR, d, PC_ERR_FORMAT, "tensor 'x': in both", "tensor in two shards");
    d = model_dir("m_badshard", "{\"weight_map\": {\"a\": \"s1.safetensors\"}}");
    char path[600];
    snprintf(path, sizeof path, "%s/s1.safetensors", d);
    pc_error err;
    pc_write_file_atomic(path, "\x02\0\0\0\0\0\0\0[]", 10, &err);
    expect_failure(READ_MODEL_DIR, d, PC_ERR_FORMAT, "not a JSON object", "malformed shard");
    d = model_dir("m_single_bad", NULL);
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    pc_write_file_atomic(path, "\x02\0\0\0", 4, &err);
    expect_failure(READ_MODEL_DIR, d, PC_ERR_FORMAT, "truncated", "truncated model.safetensors");
}

int main(void) {
    if (!mkdtemp(tmp_dir)) {
        test_fail_setup("mkdtemp");
        return test_finish();
    }
    safetensors_cases();
    gguf_header_cases();
    gguf_kv_cases();
    gguf_tensor_cases();
    json_cases();
    model_dir_cases();
    printf("%d hostile files\n", n_cases);
    pc_remove_tree(tmp_dir);
    return test_finish();
}
