/* safetensors: reading bytes written by hand from the format description and by an independent Python
 * writer (tests/hostile/files/make_io_fixtures.py), writing byte-identical files, round trips, writer
 * misuse, and clean NOMEM at every allocation. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "io/safetensors.h"
#include "test_support.h"

static char tmp_dir[] = "/tmp/peftc_io_st_XXXXXX";

static void tmp_path(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", tmp_dir, name); }

static int write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static int files_equal(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    pc_error err;
    if (pc_read_file(a, &x, &nx, &err) != PC_OK) return 0;
    if (pc_read_file(b, &y, &ny, &err) != PC_OK) {
        pc_free(x);
        return 0;
    }
    int same = nx == ny && memcmp(x, y, nx) == 0;
    pc_free(x);
    pc_free(y);
    return same;
}

/* File = u64 LE header length, header text padded with `pad` spaces, then data. */
static size_t build_file(unsigned char *out, const char *header, int pad, const void *data, size_t data_len) {
    size_t n = strlen(header) + (size_t)pad;
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(n >> (8 * i));
    memcpy(out + 8, header, strlen(header));
    memset(out + 8 + strlen(header), ' ', (size_t)pad);
    memcpy(out + 8 + n, data, data_len);
    return 8 + n + data_len;
}

/* The example of the reference test suite (tensor.rs test_serialization / _forced_alignement): one F32
 * tensor 0..5; the 64-byte header needs no padding, the 65-byte one needs 7 spaces. */
static void test_hand_written(void) {
    const float vals[6] = {0, 1, 2, 3, 4, 5};
    static const struct {
        const char *name, *header;
        int ndim, pad;
        int64_t shape[4];
    } cases[] = {
        {"attn.0", "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}", 3, 0, {1, 2, 3}},
        {"attn0", "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}", 4, 7, {1, 1, 2, 3}},
    };
    for (int c = 0; c < 2; c++) {
        unsigned char bytes[256];
        size_t len = build_file(bytes, cases[c].header, cases[c].pad, vals, sizeof vals);
        CHECK((8 + strlen(cases[c].header) + cases[c].pad) % 8 == 0, "case %d: header ends 8-aligned", c);
        char path[256], out[256];
        tmp_path(path, sizeof path, "hand.safetensors");
        tmp_path(out, sizeof out, "hand_written_by_peftc.safetensors");
        CHECK(write_bytes(path, bytes, len), "write hand-made file");
        pc_safetensors st;
        pc_error err = {0};
        pc_status s = pc_safetensors_open(&st, path, &err);
        CHECK(s == PC_OK, "open hand-made case %d: %s", c, err.msg);
        if (s != PC_OK) continue;
        const pc_st_entry *e = pc_safetensors_find(&st, cases[c].name);
        CHECK(st.count == 1 && e && e->dtype == PC_F32 && e->ndim == cases[c].ndim && e->nbytes == 24,
              "entry fields");
        for (int d = 0; e && d < cases[c].ndim; d++) CHECK(e->shape[d] == cases[c].shape[d], "shape[%d]", d);
        CHECK(e && memcmp(e->data, vals, 24) == 0, "data");
        CHECK(e && (uintptr_t)e->data % 4 == 0, "f32 data is 4-aligned in the map");
        CHECK(pc_safetensors_find(&st, "nope") == NULL && st.meta_count == 0, "absent name, no metadata");
        pc_safetensors_close(&st);
        /* The writer must produce exactly these bytes. */
        pc_st_writer w;
        pc_st_writer_init(&w);
        CHECK(pc_st_writer_add(&w, cases[c].name, PC_F32, cases[c].ndim, cases[c].shape, vals, &err) == PC_OK, "add");
        CHECK(pc_st_writer_write(&w, out, &err) == PC_OK, "write: %s", err.msg);
        pc_st_writer_free(&w);
        CHECK(files_equal(path, out), "writer output equals the hand-made bytes (case %d)", c);
    }
    /* Empty file with metadata: reference test_empty gives {"__metadata__":{"framework":"pt"}} + 5 spaces. */
    char path[256];
    tmp_path(path, sizeof path, "empty.safetensors");
    pc_st_writer w;
    pc_error err = {0};
    pc_st_writer_init(&w);
    CHECK(pc_st_writer_meta(&w, "framework", "pt", &err) == PC_OK, "meta");
    CHECK(pc_st_writer_write(&w, path, &err) == PC_OK, "write empty");
    pc_st_writer_free(&w);
    unsigned char want[64];
    size_t want_len = build_file(want, "{\"__metadata__\":{\"framework\":\"pt\"}}", 5, "", 0);
    char *got;
    size_t got_len;
    CHECK(pc_read_file(path, &got, &got_len, &err) == PC_OK && got_len == want_len && !memcmp(got, want, want_len),
          "empty file with metadata matches the reference bytes");
    pc_free(got);
}

/* Leading and trailing JSON whitespace in the header is accepted (reference tests
 * test_whitespace_padded_header / test_whitespace_leading_padded_header). */
static void test_whitespace_header(void) {
    const float v = 2.0f;
    unsigned char bytes[256];
    size_t len = build_file(bytes, " \t\n{\"x\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}\n", 4, &v, 4);
    char path[256];
    tmp_path(path, sizeof path, "ws.safetensors");
    CHECK(write_bytes(path, bytes, len), "write");
    pc_safetensors st;
    pc_error err = {0};
    CHECK(pc_safetensors_open(&st, path, &err) == PC_OK, "whitespace-padded header: %s", err.msg);
    const pc_st_entry *e = pc_safetensors_find(&st, "x");
    /* This header is not padded to 8, so the data is not 4-aligned: read it with memcpy. */
    float got = 0;
    if (e) memcpy(&got, e->data, 4);
    CHECK(e && e->ndim == 0 && got == 2.0f, "rank-0 scalar");
    pc_safetensors_close(&st);
}

static uint16_t f16_bits_of(float x) { return pc_f32_to_f16(x); }

/* The tensors make_io_fixtures.py writes, rebuilt here from the same formulas. */
typedef struct fixture_data {
    float w[6], scalar, empty[1];
    uint16_t a[4], h[4];
    int64_t ids[3];
    uint8_t mask[5];
    int32_t i[2];
    double d[1];
} fixture_data;

static void fixture_fill(fixture_data *f) {
    for (int i = 0; i < 6; i++) f->w[i] = 0.25f * (float)i - 1.0f;
    for (int i = 0; i < 4; i++) f->a[i] = pc_f32_to_bf16((float)i + 0.5f);
    f->h[0] = f16_bits_of(1.0f), f->h[1] = f16_bits_of(-2.0f), f->h[2] = f16_bits_of(0.5f);
    f->h[3] = f16_bits_of(65504.0f);
    f->ids[0] = -1, f->ids[1] = 0, f->ids[2] = (int64_t)1 << 40;
    for (int i = 0; i < 5; i++) f->mask[i] = (uint8_t)i;
    f->scalar = 3.0f;
    f->i[0] = 7, f->i[1] = -7;
    f->d[0] = 1.0 / 3.0;
}

static void fixture_add_all(pc_st_writer *w, const fixture_data *f, pc_error *err) {
    const int64_t s23[] = {2, 3}, s4[] = {4}, s22[] = {2, 2}, s3[] = {3}, s5[] = {5}, s03[] = {0, 3}, s2[] = {2},
                  s1[] = {1};
    /* Added in an order different from the file's, so the writer's sorting is exercised. */
    pc_st_writer_add(w, "mask.u8", PC_U8, 1, s5, f->mask, err);
    pc_st_writer_add(w, "w.f32", PC_F32, 2, s23, f->w, err);
    pc_st_writer_add(w, "a.bf16", PC_BF16, 1, s4, f->a, err);
    pc_st_writer_add(w, "empty.f32", PC_F32, 2, s03, f->empty, err);
    pc_st_writer_add(w, "h.f16", PC_F16, 2, s22, f->h, err);
    pc_st_writer_add(w, "scalar.f32", PC_F32, 0, NULL, &f->scalar, err);
    pc_st_writer_add(w, "i.i32", PC_I32, 1, s2, f->i, err);
    pc_st_writer_add(w, "ids.i64", PC_I64, 1, s3, f->ids, err);
    pc_st_writer_add(w, "d.f64", PC_F64, 1, s1, f->d, err);
    pc_st_writer_meta(w, "format", "pt", err);
}

static const pc_st_entry *expect_entry(const pc_safetensors *st, const char *name, pc_dtype dt, int ndim,
                                       const int64_t *shape, const void *want, size_t nbytes) {
    const pc_st_entry *e = pc_safetensors_find(st, name);
    CHECK(e != NULL, "fixture has %s", name);
    if (!e) return NULL;
    int same_shape = e->ndim == ndim;
    for (int d = 0; same_shape && d < ndim; d++) same_shape = e->shape[d] == shape[d];
    CHECK(e->dtype == dt && same_shape && e->nbytes == nbytes, "%s: dtype/shape/size", name);
    CHECK(e->nbytes == nbytes && (nbytes == 0 || memcmp(e->data, want, nbytes) == 0), "%s: values", name);
    CHECK((uintptr_t)e->data % pc_dtype_size(dt) == 0, "%s: naturally aligned", name);
    return e;
}

static void test_python_fixture(void) {
    char fixture[4096];
    snprintf(fixture, sizeof fixture, "%s/tests/hostile/files/io_python.safetensors", test_source_dir());
    if (!pc_path_exists(fixture)) {
        test_fail_setup("missing %s", fixture);
        return;
    }
    fixture_data f = {0};
    fixture_fill(&f);
    pc_safetensors st;
    pc_error err = {0};
    pc_status s = pc_safetensors_open(&st, fixture, &err);
    CHECK(s == PC_OK, "open python fixture: %s", err.msg);
    if (s != PC_OK) return;
    CHECK(st.count == 9, "9 tensors, got %d", st.count);
    CHECK(pc_safetensors_meta(&st, "format") && !strcmp(pc_safetensors_meta(&st, "format"), "pt"), "format=pt");
    const int64_t s23[] = {2, 3}, s4[] = {4}, s22[] = {2, 2}, s3[] = {3}, s5[] = {5}, s03[] = {0, 3}, s2[] = {2},
                  s1[] = {1};
    expect_entry(&st, "w.f32", PC_F32, 2, s23, f.w, 24);
    expect_entry(&st, "a.bf16", PC_BF16, 1, s4, f.a, 8);
    expect_entry(&st, "h.f16", PC_F16, 2, s22, f.h, 8);
    expect_entry(&st, "ids.i64", PC_I64, 1, s3, f.ids, 24);
    expect_entry(&st, "mask.u8", PC_U8, 1, s5, f.mask, 5);
    expect_entry(&st, "scalar.f32", PC_F32, 0, NULL, &f.scalar, 4);
    expect_entry(&st, "empty.f32", PC_F32, 2, s03, NULL, 0);
    expect_entry(&st, "i.i32", PC_I32, 1, s2, f.i, 8);
    expect_entry(&st, "d.f64", PC_F64, 1, s1, f.d, 8);
    /* Hand-checked decodings of a few values, independent of the byte comparison above. */
    const pc_st_entry *a = pc_safetensors_find(&st, "a.bf16"), *h = pc_safetensors_find(&st, "h.f16");
    if (a && h) {
        float av[4], hv[4];
        pc_convert_to_f32(av, a->data, PC_BF16, 4);
        pc_convert_to_f32(hv, h->data, PC_F16, 4);
        CHECK(av[3] == 3.5f && hv[1] == -2.0f && hv[3] == 65504.0f, "decoded bf16/f16 values");
    }
    pc_safetensors_close(&st);

    /* peftc's writer, given the same tensors, must reproduce the Python bytes exactly. */
    char out[256];
    tmp_path(out, sizeof out, "peftc_fixture.safetensors");
    pc_st_writer w;
    pc_st_writer_init(&w);
    pc_error_clear(&err);
    fixture_add_all(&w, &f, &err);
    CHECK(err.status == PC_OK, "adding fixture tensors: %s", err.msg);
    CHECK(pc_st_writer_write(&w, out, &err) == PC_OK, "write: %s", err.msg);
    pc_st_writer_free(&w);
    CHECK(files_equal(out, fixture), "peftc writer output is byte-identical to the Python reference layout");
}

/* Random tensors through writer and reader. */
static void test_round_trip(void) {
    pc_rng rng;
    pc_rng_seed(&rng, 7);
    enum { N = 12 };
    static const pc_dtype dts[] = {PC_F32, PC_F16, PC_BF16, PC_I32, PC_I64, PC_U8, PC_I8, PC_F64};
    unsigned char *bufs[N];
    char names[N][32];
    pc_dtype types[N];
    int64_t shapes[N][4];
    int ndims[N];
    size_t sizes[N];
    pc_st_writer w;
    pc_error err = {0};
    pc_st_writer_init(&w);
    for (int i = 0; i < N; i++) {
        types[i] = dts[pc_rng_below(&rng, 8)];
        ndims[i] = (int)pc_rng_below(&rng, 5);
        size_t n = 1;
        for (int d = 0; d < ndims[i]; d++) n *= (size_t)(shapes[i][d] = 1 + pc_rng_below(&rng, 5));
        sizes[i] = n * pc_dtype_size(types[i]);
        bufs[i] = malloc(sizes[i] + 1);
        for (size_t b = 0; b < sizes[i]; b++) bufs[i][b] = (unsigned char)pc_rng_below(&rng, 256);
        snprintf(names[i], sizeof names[i], "layer.%d.%s", N - i, i % 3 ? "w\xc3\xa9\xf0\x9f\x98\x80" : "b\"q\\\t");
        CHECK(pc_st_writer_add(&w, names[i], types[i], ndims[i], shapes[i], bufs[i], &err) == PC_OK, "add %d", i);
    }
    CHECK(pc_st_writer_meta(&w, "note", "line\nbreak \"quoted\"", &err) == PC_OK, "meta with escapes");
    char path[256];
    tmp_path(path, sizeof path, "rt.safetensors");
    CHECK(pc_st_writer_write(&w, path, &err) == PC_OK, "write: %s", err.msg);
    pc_st_writer_free(&w);
    pc_safetensors st;
    pc_status s = pc_safetensors_open(&st, path, &err);
    CHECK(s == PC_OK, "reopen: %s", err.msg);
    if (s == PC_OK) {
        CHECK(st.count == N, "count");
        const char *note = pc_safetensors_meta(&st, "note");
        CHECK(note && !strcmp(note, "line\nbreak \"quoted\""), "metadata with escapes survives");
        for (int i = 0; i < N; i++) {
            const pc_st_entry *e = pc_safetensors_find(&st, names[i]);
            int ok = e && e->dtype == types[i] && e->ndim == ndims[i] && e->nbytes == sizes[i] &&
                     memcmp(e->data, bufs[i], sizes[i]) == 0 && (uintptr_t)e->data % pc_dtype_size(types[i]) == 0;
            for (int d = 0; ok && d < ndims[i]; d++) ok = e->shape[d] == shapes[i][d];
            CHECK(ok, "round trip of %s", names[i]);
        }
        pc_safetensors_close(&st);
    }
    for (int i = 0; i < N; i++) free(bufs[i]);
}

static void test_writer_misuse(void) {
    pc_st_writer w;
    pc_error err = {0};
    float x[4] = {0};
    const int64_t good[] = {2, 2}, neg[] = {2, -1};
    pc_st_writer_init(&w);
    CHECK(pc_st_writer_add(&w, "a", PC_F32, 2, good, x, &err) == PC_OK, "first add");
    CHECK(pc_st_writer_add(&w, "a", PC_F32, 2, good, x, &err) == PC_ERR_USAGE && strstr(err.msg, "'a'"),
          "duplicate name rejected: %s", err.msg);
    CHECK(pc_st_writer_add(&w, "b", PC_F32, 2, neg, x, &err) == PC_ERR_USAGE, "negative dim rejected");
    CHECK(pc_st_writer_add(&w, "c", PC_F32, 5, good, x, &err) == PC_ERR_USAGE, "5 dims rejected");
    CHECK(pc_st_writer_add(&w, "__metadata__", PC_F32, 2, good, x, &err) == PC_ERR_USAGE, "reserved name");
    CHECK(pc_st_writer_meta(&w, "k", "v", &err) == PC_OK && pc_st_writer_meta(&w, "k", "w", &err) == PC_ERR_USAGE,
          "duplicate metadata key rejected");
    /* A write into a missing directory fails cleanly and leaves nothing behind. */
    CHECK(pc_st_writer_write(&w, "/nonexistent-dir/x.safetensors", &err) == PC_ERR_IO, "unwritable path: %s",
          err.msg);
    pc_st_writer_free(&w);
}

/* Fail allocation k for k = 0, 1, ...: every failure must be a clean NOMEM (ASan checks for leaks). */
static void test_allocation_failures(void) {
    char fixture[4096], out[256];
    snprintf(fixture, sizeof fixture, "%s/tests/hostile/files/io_python.safetensors", test_source_dir());
    tmp_path(out, sizeof out, "nomem.safetensors");
    int bad = 0, k;
    for (k = 0; k < 10000; k++) {
        pc_safetensors st;
        pc_error err = {0};
        pc_alloc_fail_after(k);
        pc_status s = pc_safetensors_open(&st, fixture, &err);
        pc_alloc_fail_after(-1);
        if (s == PC_OK) {
            pc_safetensors_close(&st);
            break;
        }
        bad += s != PC_ERR_NOMEM;
    }
    CHECK(bad == 0 && k > 3 && k < 10000, "reader: %d allocation points, %d non-NOMEM failures", k, bad);
    fixture_data f = {0};
    fixture_fill(&f);
    bad = 0;
    for (k = 0; k < 10000; k++) {
        pc_st_writer w;
        pc_error err = {0};
        pc_st_writer_init(&w);
        pc_alloc_fail_after(k);
        fixture_add_all(&w, &f, &err);
        pc_status s = err.status == PC_OK ? pc_st_writer_write(&w, out, &err) : err.status;
        pc_alloc_fail_after(-1);
        pc_st_writer_free(&w);
        if (s == PC_OK) break;
        bad += s != PC_ERR_NOMEM;
    }
    CHECK(bad == 0 && k > 3 && k < 10000, "writer: %d allocation points, %d non-NOMEM failures", k, bad);
    CHECK(files_equal(out, fixture), "after the failures, the successful write is complete");
}

int main(void) {
    if (!mkdtemp(tmp_dir)) {
        test_fail_setup("mkdtemp");
        return test_finish();
    }
    test_hand_written();
    test_whitespace_header();
    test_python_fixture();
    test_round_trip();
    test_writer_misuse();
    test_allocation_failures();
    pc_remove_tree(tmp_dir);
    return test_finish();
}
