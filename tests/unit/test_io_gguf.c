/* GGUF: reading a file written by an independent Python writer (tests/hostile/files/make_io_fixtures.py)
 * and one assembled byte by byte here, checking the writer's output with a separate minimal parser
 * written in this test, writer misuse, and clean NOMEM at every allocation. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "core/tensor.h"
#include "io/gguf.h"
#include "test_support.h"

static char tmp_dir[] = "/tmp/peftc_io_gguf_XXXXXX";

/* ---- little byte builder for hand-assembled files ---- */
typedef struct bytes {
    unsigned char b[4096];
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
static void put_f32(bytes *o, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_le(o, u, 4);
}
static void pad_to(bytes *o, size_t align) {
    while (o->n % align) o->b[o->n++] = 0;
}

static uint64_t get_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int save(const char *path, const bytes *o) {
    pc_error err;
    return pc_write_file_atomic(path, o->b, o->n, &err) == PC_OK;
}

static void test_python_fixture(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/hostile/files/io_python.gguf", test_source_dir());
    if (!pc_path_exists(path)) {
        test_fail_setup("missing %s", path);
        return;
    }
    pc_gguf g;
    pc_error err = {0};
    pc_status s = pc_gguf_open(&g, path, &err);
    CHECK(s == PC_OK, "open python GGUF: %s", err.msg);
    if (s != PC_OK) return;
    CHECK(g.version == 3 && g.n_kv == 8 && g.n_tensors == 5 && g.alignment == 64, "header fields");
    const pc_gguf_kv *kv = pc_gguf_find_kv(&g, "general.architecture");
    CHECK(kv && kv->type == GGUF_TYPE_STRING && !strcmp(kv->str, "llama"), "architecture");
    kv = pc_gguf_find_kv(&g, "llama.block_count");
    CHECK(kv && kv->type == GGUF_TYPE_UINT32 && get_le(kv->data, 4) == 2, "block_count");
    kv = pc_gguf_find_kv(&g, "llama.rope.freq_base");
    float f = 0;
    if (kv) memcpy(&f, kv->data, 4);
    CHECK(kv && kv->type == GGUF_TYPE_FLOAT32 && f == 10000.0f, "freq_base");
    kv = pc_gguf_find_kv(&g, "general.flag");
    CHECK(kv && kv->type == GGUF_TYPE_BOOL && *(const unsigned char *)kv->data == 1, "bool");
    kv = pc_gguf_find_kv(&g, "tokenizer.ggml.tokens");
    CHECK(kv && kv->type == GGUF_TYPE_ARRAY && kv->array_type == GGUF_TYPE_STRING && kv->count == 3 &&
              !strcmp(kv->strs[0], "a") && !strcmp(kv->strs[1], "bc") && !strcmp(kv->strs[2], ""),
          "string array");
    kv = pc_gguf_find_kv(&g, "tokenizer.ggml.scores");
    float scores[3] = {0};
    if (kv) memcpy(scores, kv->data, sizeof scores);
    CHECK(kv && kv->array_type == GGUF_TYPE_FLOAT32 && kv->count == 3 && scores[2] == -2.5f, "f32 array");
    kv = pc_gguf_find_kv(&g, "big.i64");
    CHECK(kv && kv->type == GGUF_TYPE_INT64 && (int64_t)get_le(kv->data, 8) == -((int64_t)1 << 40), "i64");
    CHECK(pc_gguf_find_kv(&g, "missing") == NULL, "absent key");

    const pc_gguf_tensor *t = pc_gguf_find_tensor(&g, "t.f32");
    CHECK(t && t->type == GGML_TYPE_F32 && t->n_dims == 2 && t->ne[0] == 3 && t->ne[1] == 2 && t->ne[2] == 1 &&
              t->nbytes == 24,
          "t.f32 info");
    if (t) {
        float v[6];
        memcpy(v, t->data, sizeof v);
        CHECK(v[0] == 0.0f && v[5] == 2.5f, "t.f32 values");
    }
    t = pc_gguf_find_tensor(&g, "t.f16");
    CHECK(t && t->type == GGML_TYPE_F16 && t->nbytes == 8 && pc_f16_to_f32((uint16_t)get_le(t->data, 2) ) == 1.0f &&
              pc_f16_to_f32((uint16_t)get_le((const unsigned char *)t->data + 4, 2)) == -3.0f,
          "t.f16");
    t = pc_gguf_find_tensor(&g, "t.q8");
    if (t) {
        const unsigned char *b = t->data;
        /* block 1: scale 2.0, q[5] = -5 -> value -10 */
        float value = pc_f16_to_f32((uint16_t)get_le(b + 34, 2)) * (float)(int8_t)b[34 + 2 + 5];
        CHECK(t->type == GGML_TYPE_Q8_0 && t->nbytes == 68 && t->ne[0] == 32 && t->ne[1] == 2 && value == -10.0f,
              "t.q8: %zu bytes, decoded %g", t->nbytes, value);
    } else {
        CHECK(0, "t.q8 present");
    }
    t = pc_gguf_find_tensor(&g, "t.q4");
    if (t) {
        const unsigned char *b = t->data;
        /* element 17 = high nibble of byte 1 = (15-1) -> (14 - 8) * 1.0 */
        float value = pc_f16_to_f32((uint16_t)get_le(b, 2)) * (float)((b[2 + 1] >> 4) - 8);
        CHECK(t->type == GGML_TYPE_Q4_0 && t->nbytes == 18 && value == 6.0f, "t.q4: decoded %g", value);
    } else {
        CHECK(0, "t.q4 present");
    }
    t = pc_gguf_find_tensor(&g, "t.bf16");
    CHECK(t && t->type == GGML_TYPE_BF16 && t->nbytes == 8 && pc_bf16_to_f32((uint16_t)get_le(t->data, 2)) == 1.0f,
          "t.bf16");
    for (int64_t i = 0; i < g.n_tensors; i++)
        CHECK((uintptr_t)g.tensors[i].data % 64 == 0, "tensor %lld honours general.alignment 64", (long long)i);
    pc_gguf_close(&g);
}

/* Version 2, default alignment, data placed in reverse order with a gap: still valid. */
static void test_hand_assembled(void) {
    bytes o = {.n = 0};
    memcpy(o.b, "GGUF", 4);
    o.n = 4;
    put_le(&o, 2, 4);  /* version */
    put_le(&o, 2, 8);  /* tensors */
    put_le(&o, 2, 8);  /* kvs */
    put_str(&o, "general.type");
    put_le(&o, GGUF_TYPE_STRING, 4);
    put_str(&o, "adapter");
    put_str(&o, "counts");
    put_le(&o, GGUF_TYPE_ARRAY, 4);
    put_le(&o, GGUF_TYPE_UINT16, 4);
    put_le(&o, 2, 8);
    put_le(&o, 513, 2);
    put_le(&o, 7, 2);
    put_str(&o, "a");
    put_le(&o, 1, 4);
    put_le(&o, 2, 8);
    put_le(&o, GGML_TYPE_F32, 4);
    put_le(&o, 64, 8); /* after b and a gap */
    put_str(&o, "b");
    put_le(&o, 2, 4);
    put_le(&o, 1, 8);
    put_le(&o, 1, 8);
    put_le(&o, GGML_TYPE_F32, 4);
    put_le(&o, 0, 8);
    pad_to(&o, 32);
    size_t data = o.n;
    put_f32(&o, -4.0f); /* b */
    pad_to(&o, 32);
    memset(o.b + o.n, 0xee, 32); /* gap */
    o.n += 32;
    put_f32(&o, 1.5f); /* a */
    put_f32(&o, 2.5f);
    char path[256];
    snprintf(path, sizeof path, "%s/hand.gguf", tmp_dir);
    CHECK(save(path, &o), "write");
    pc_gguf g;
    pc_error err = {0};
    pc_status s = pc_gguf_open(&g, path, &err);
    CHECK(s == PC_OK, "open hand-assembled: %s", err.msg);
    if (s != PC_OK) return;
    CHECK(g.version == 2 && g.alignment == 32, "version and default alignment");
    const pc_gguf_kv *kv = pc_gguf_find_kv(&g, "counts");
    CHECK(kv && kv->count == 2 && get_le(kv->data, 2) == 513 && get_le((const unsigned char *)kv->data + 2, 2) == 7,
          "u16 array");
    const pc_gguf_tensor *a = pc_gguf_find_tensor(&g, "a"), *b = pc_gguf_find_tensor(&g, "b");
    CHECK(a && b && (const unsigned char *)a->data == (const unsigned char *)g.map.data + data + 64 &&
              (const unsigned char *)b->data == (const unsigned char *)g.map.data + data,
          "data pointers");
    CHECK(a && ((const float *)a->data)[1] == 2.5f && b && *(const float *)b->data == -4.0f, "values");
    CHECK(b && b->n_dims == 2 && b->ne[0] == 1 && b->ne[1] == 1 && b->nbytes == 4, "b shape");
    pc_gguf_close(&g);
}

/* ---- an independent minimal parser for what the writer is documented to produce ---- */
typedef struct mini {
    const unsigned char *p;
    size_t n, at;
    int bad;
} mini;
static uint64_t mini_u(mini *m, int n) {
    if (m->at + (size_t)n > m->n) {
        m->bad = 1;
        return 0;
    }
    uint64_t v = get_le(m->p + m->at, n);
    m->at += (size_t)n;
    return v;
}
static int mini_str_is(mini *m, const char *want) {
    uint64_t n = mini_u(m, 8);
    if (m->bad || n != strlen(want) || m->at + n > m->n) return 0;
    int same = memcmp(m->p + m->at, want, n) == 0;
    m->at += n;
    return same;
}

static void test_writer(void) {
    pc_gguf_writer *w;
    pc_error err = {0};
    CHECK(pc_gguf_writer_create(&w, &err) == PC_OK, "create");
    float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {-1, -2, -3};
    const int64_t ne_a[2] = {3, 2}, ne_b[2] = {1, 3};
    CHECK(pc_gguf_writer_kv_string(w, "general.type", "adapter", &err) == PC_OK, "kv string");
    CHECK(pc_gguf_writer_kv_f32(w, "adapter.lora.alpha", 16.0f, &err) == PC_OK, "kv f32");
    CHECK(pc_gguf_writer_kv_u32(w, "x.count", 7, &err) == PC_OK, "kv u32");
    CHECK(pc_gguf_writer_tensor_f32(w, "blk.0.attn_q.weight.lora_a", 2, ne_a, a, &err) == PC_OK, "tensor a");
    a[0] = 99; /* the writer copied the data */
    CHECK(pc_gguf_writer_tensor_f32(w, "blk.0.attn_q.weight.lora_b", 2, ne_b, b, &err) == PC_OK, "tensor b");
    char path[256];
    snprintf(path, sizeof path, "%s/written.gguf", tmp_dir);
    CHECK(pc_gguf_writer_write(w, path, &err) == PC_OK, "write: %s", err.msg);
    pc_gguf_writer_destroy(w);

    char *buf;
    size_t len;
    if (pc_read_file(path, &buf, &len, &err) != PC_OK) {
        CHECK(0, "read back: %s", err.msg);
        return;
    }
    mini m = {(const unsigned char *)buf, len, 0, 0};
    int ok = len >= 4 && !memcmp(buf, "GGUF", 4);
    m.at = 4;
    ok &= mini_u(&m, 4) == 3 && mini_u(&m, 8) == 2 && mini_u(&m, 8) == 3;
    ok &= mini_str_is(&m, "general.type") && mini_u(&m, 4) == 8 && mini_str_is(&m, "adapter");
    ok &= mini_str_is(&m, "adapter.lora.alpha") && mini_u(&m, 4) == 6 && mini_u(&m, 4) == 0x41800000u; /* 16.0f */
    ok &= mini_str_is(&m, "x.count") && mini_u(&m, 4) == 4 && mini_u(&m, 4) == 7;
    CHECK(ok && !m.bad, "writer header and KVs as specified");
    ok = mini_str_is(&m, "blk.0.attn_q.weight.lora_a") && mini_u(&m, 4) == 2 && mini_u(&m, 8) == 3 &&
         mini_u(&m, 8) == 2 && mini_u(&m, 4) == 0 && mini_u(&m, 8) == 0;
    /* 24 bytes padded to 32: the second tensor starts at 32 */
    ok &= mini_str_is(&m, "blk.0.attn_q.weight.lora_b") && mini_u(&m, 4) == 2 && mini_u(&m, 8) == 1 &&
          mini_u(&m, 8) == 3 && mini_u(&m, 4) == 0 && mini_u(&m, 8) == 32;
    CHECK(ok && !m.bad, "writer tensor infos as specified");
    size_t data = (m.at + 31) / 32 * 32;
    int zeros = 1;
    for (size_t i = m.at; i < data && i < len; i++) zeros &= buf[i] == 0;
    CHECK(zeros, "header padding is zeros");
    float got_a[6], got_b[3];
    if (data + 32 + 12 <= len) {
        memcpy(got_a, buf + data, sizeof got_a);
        memcpy(got_b, buf + data + 32, sizeof got_b);
        CHECK(got_a[0] == 1 && got_a[5] == 6 && got_b[2] == -3, "tensor data at the aligned offsets");
    }
    CHECK(len == data + 64, "file ends after the padded last tensor: %zu vs %zu", len, data + 64);
    pc_free(buf);

    /* And our own reader agrees. */
    pc_gguf g;
    pc_status s = pc_gguf_open(&g, path, &err);
    CHECK(s == PC_OK, "reader accepts writer output: %s", err.msg);
    if (s == PC_OK) {
        const pc_gguf_tensor *t = pc_gguf_find_tensor(&g, "blk.0.attn_q.weight.lora_b");
        CHECK(t && t->ne[0] == 1 && t->ne[1] == 3 && ((const float *)t->data)[1] == -2.0f, "reader sees lora_b");
        pc_gguf_close(&g);
    }
}

static void test_writer_misuse(void) {
    pc_gguf_writer *w;
    pc_error err = {0};
    float x[2] = {0};
    const int64_t ne[1] = {2}, neg[1] = {-2};
    char long_name[80];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    pc_gguf_writer_create(&w, &err);
    CHECK(pc_gguf_writer_kv_u32(w, "k", 1, &err) == PC_OK, "first kv");
    CHECK(pc_gguf_writer_kv_f32(w, "k", 1, &err) == PC_ERR_USAGE, "duplicate key");
    CHECK(pc_gguf_writer_kv_string(w, "", "v", &err) == PC_ERR_USAGE, "empty key");
    CHECK(pc_gguf_writer_tensor_f32(w, "t", 1, ne, x, &err) == PC_OK, "tensor");
    CHECK(pc_gguf_writer_tensor_f32(w, "t", 1, ne, x, &err) == PC_ERR_USAGE, "duplicate tensor");
    CHECK(pc_gguf_writer_tensor_f32(w, "u", 1, neg, x, &err) == PC_ERR_USAGE, "negative ne");
    CHECK(pc_gguf_writer_tensor_f32(w, "u", 5, ne, x, &err) == PC_ERR_USAGE, "5 dims");
    CHECK(pc_gguf_writer_tensor_f32(w, long_name, 1, ne, x, &err) == PC_ERR_USAGE, "name too long for llama.cpp");
    CHECK(pc_gguf_writer_write(w, "/nonexistent-dir/x.gguf", &err) == PC_ERR_IO, "unwritable path");
    pc_gguf_writer_destroy(w);
}

static void test_allocation_failures(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/hostile/files/io_python.gguf", test_source_dir());
    int bad = 0, k;
    for (k = 0; k < 10000; k++) {
        pc_gguf g;
        pc_error err = {0};
        pc_alloc_fail_after(k);
        pc_status s = pc_gguf_open(&g, path, &err);
        pc_alloc_fail_after(-1);
        if (s == PC_OK) {
            pc_gguf_close(&g);
            break;
        }
        bad += s != PC_ERR_NOMEM;
    }
    CHECK(bad == 0 && k > 5 && k < 10000, "reader: %d allocation points, %d non-NOMEM failures", k, bad);
    char out[256];
    snprintf(out, sizeof out, "%s/nomem.gguf", tmp_dir);
    float x[4] = {1, 2, 3, 4};
    const int64_t ne[2] = {2, 2};
    bad = 0;
    for (k = 0; k < 10000; k++) {
        pc_gguf_writer *w = NULL;
        pc_error err = {0};
        pc_alloc_fail_after(k);
        pc_status s = pc_gguf_writer_create(&w, &err);
        if (s == PC_OK) s = pc_gguf_writer_kv_string(w, "general.type", "adapter", &err);
        if (s == PC_OK) s = pc_gguf_writer_kv_u32(w, "n", 1, &err);
        if (s == PC_OK) s = pc_gguf_writer_tensor_f32(w, "t", 2, ne, x, &err);
        if (s == PC_OK) s = pc_gguf_writer_write(w, out, &err);
        pc_alloc_fail_after(-1);
        pc_gguf_writer_destroy(w);
        if (s == PC_OK) break;
        bad += s != PC_ERR_NOMEM;
    }
    CHECK(bad == 0 && k > 3 && k < 10000, "writer: %d allocation points, %d non-NOMEM failures", k, bad);
}

int main(void) {
    if (!mkdtemp(tmp_dir)) {
        test_fail_setup("mkdtemp");
        return test_finish();
    }
    test_python_fixture();
    test_hand_assembled();
    test_writer();
    test_writer_misuse();
    test_allocation_failures();
    pc_remove_tree(tmp_dir);
    return test_finish();
}
