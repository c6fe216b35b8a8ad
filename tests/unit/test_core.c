/* core: dtype conversions against known bit patterns, RNG determinism, arena bounds, atomic writes, the
 * allocation fault hook. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "core/fileio.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "test_support.h"

static void test_dtype_conversions(void) {
    /* bf16 bit patterns from torch: 1.0 -> 0x3f80, -2.5 -> 0xc020, 1/3 -> 0x3eab (round to nearest even) */
    CHECK(pc_f32_to_bf16(1.0f) == 0x3f80, "bf16(1.0)");
    CHECK(pc_f32_to_bf16(-2.5f) == 0xc020, "bf16(-2.5)");
    CHECK(pc_f32_to_bf16(1.0f / 3.0f) == 0x3eab, "bf16(1/3) = 0x%04x", pc_f32_to_bf16(1.0f / 3.0f));
    CHECK(pc_bf16_to_f32(0x3f80) == 1.0f, "f32(bf16 1.0)");
    /* f16: 1.0 -> 0x3c00, 65504 -> 0x7bff, smallest subnormal 2^-24 -> 0x0001, 0.1 -> 0x2e66 */
    CHECK(pc_f32_to_f16(1.0f) == 0x3c00, "f16(1.0)");
    CHECK(pc_f32_to_f16(65504.0f) == 0x7bff, "f16(65504)");
    CHECK(pc_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001, "f16(2^-24)");
    CHECK(pc_f32_to_f16(0.1f) == 0x2e66, "f16(0.1) = 0x%04x", pc_f32_to_f16(0.1f));
    CHECK(pc_f16_to_f32(0x0001) == ldexpf(1.0f, -24), "f32(f16 subnormal)");
    CHECK(pc_f16_to_f32(0xc000) == -2.0f, "f32(f16 -2)");
    CHECK(isinf(pc_f16_to_f32(0x7c00)), "f16 inf");
    pc_dtype dt;
    CHECK(pc_dtype_from_name("BF16", &dt) == 0 && dt == PC_BF16, "dtype name BF16");
    CHECK(pc_dtype_from_name("Q9", &dt) != 0, "unknown dtype name rejected");
}

static void test_rng(void) {
    pc_rng a, b;
    pc_rng_seed(&a, 42);
    pc_rng_seed(&b, 42);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= pc_rng_u64(&a) == pc_rng_u64(&b);
    CHECK(same, "same seed gives the same stream");
    double sum = 0, sq = 0;
    for (int i = 0; i < 100000; i++) {
        float z = pc_rng_normal(&a);
        sum += z;
        sq += z * z;
    }
    CHECK(fabs(sum / 1e5) < 0.02 && fabs(sq / 1e5 - 1.0) < 0.02, "normal mean %g var %g", sum / 1e5, sq / 1e5);
    uint32_t counts[7] = {0};
    for (int i = 0; i < 70000; i++) counts[pc_rng_below(&a, 7)]++;
    int flat = 1;
    for (int i = 0; i < 7; i++) flat &= counts[i] > 9500 && counts[i] < 10500;
    CHECK(flat, "pc_rng_below is uniform");
}

static void test_arena(void) {
    pc_arena ar;
    pc_error err;
    CHECK(pc_arena_init(&ar, 1000, &err) == PC_OK, "arena init");
    void *p = pc_arena_alloc(&ar, 10), *q = pc_arena_alloc(&ar, 10);
    CHECK(p && q && ((uintptr_t)q % 64) == 0 && (char *)q - (char *)p == 64, "arena alignment");
    CHECK(pc_arena_alloc(&ar, 100000) == NULL, "arena refuses to overflow");
    pc_arena_free(&ar);
}

static void test_atomic_write(void) {
    char dir[] = "/tmp/peftc_core_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[256];
    snprintf(path, sizeof path, "%s/f.bin", dir);
    pc_error err;
    CHECK(pc_write_file_atomic(path, "hello", 5, &err) == PC_OK, "atomic write");
    char *buf;
    size_t len;
    CHECK(pc_read_file(path, &buf, &len, &err) == PC_OK && len == 5 && !memcmp(buf, "hello", 5), "read back");
    pc_free(buf);
    /* An aborted write leaves the old file untouched and no temp file. */
    pc_atomic_file af;
    CHECK(pc_atomic_open(&af, path, &err) == PC_OK, "open second write");
    pc_atomic_write(&af, "partial", 7, &err);
    pc_atomic_abort(&af);
    CHECK(pc_read_file(path, &buf, &len, &err) == PC_OK && len == 5, "old content survives abort");
    pc_free(buf);
    CHECK(!pc_path_exists(af.tmp_path), "temp file removed");
    CHECK(pc_read_file("/nonexistent/x", &buf, &len, &err) == PC_ERR_IO && strstr(err.msg, "/nonexistent/x"),
          "missing file names the path: %s", err.msg);
    pc_remove_tree(dir);
    CHECK(!pc_path_exists(dir), "remove tree");
}

static void test_alloc_fault_hook(void) {
    pc_alloc_fail_after(2);
    void *a = pc_malloc(8), *b = pc_malloc_plain(8), *c = pc_malloc(8), *d = pc_malloc_plain(8);
    int err_c = errno;
    pc_alloc_fail_after(-1);
    CHECK(a && b && !c && !d && err_c == ENOMEM, "persistent: the third allocation and every later one fail, ENOMEM");
    pc_free(a);
    pc_free(b);
    pc_alloc_fail_once(1);
    void *e = pc_malloc(8), *f = pc_malloc(8), *g = pc_malloc_plain(8);
    long count = pc_alloc_count();
    pc_alloc_fail_after(-1);
    CHECK(e && !f && g && count == 3, "transient: only the second fails (%ld counted)", count);
    pc_free(e);
    pc_free(g);
    /* Concurrent allocations: exactly n succeed before the failure point, whichever threads make them, and
     * transient mode fails exactly one. */
    for (int once = 0; once < 2; once++) {
        enum { TOTAL = 4000, N_OK = 1000 };
        static void *blocks[TOTAL];
        if (once) pc_alloc_fail_once(N_OK);
        else pc_alloc_fail_after(N_OK);
#pragma omp parallel for num_threads(4) schedule(dynamic, 7)
        for (int i = 0; i < TOTAL; i++) blocks[i] = pc_malloc(16);
        pc_alloc_fail_after(-1);
        int failed = 0;
        for (int i = 0; i < TOTAL; i++) {
            failed += !blocks[i];
            pc_free(blocks[i]);
        }
        CHECK(failed == (once ? 1 : TOTAL - N_OK), "%s, 4 threads: %d of %d allocations failed",
              once ? "transient" : "persistent", failed, TOTAL);
    }
}

int main(void) {
    test_dtype_conversions();
    test_rng();
    test_arena();
    test_atomic_write();
    test_alloc_fault_hook();
    return test_finish();
}
