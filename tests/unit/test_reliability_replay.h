/* Replays a fuzz target's committed corpus (tests/fuzz/corpus/<target>/: seeds and every past finding) as an
 * ordinary ctest, so the findings stay fixed in every build, including gcc's ASan + UBSan CI, without clang.
 * A test file includes one tests/fuzz/fuzz_<target>.c, defines REPLAY_TARGET (and REPLAY_HAS_INIT when the
 * target has LLVMFuzzerInitialize), then includes this header. An input that breaks an invariant aborts the
 * test (FUZZ_ASSERT), as it would stop the fuzzer. */
#ifndef TEST_RELIABILITY_REPLAY_H
#define TEST_RELIABILITY_REPLAY_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap); /* test harness memory, outside the library's allocator */
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf) return 0;
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 1;
}

int main(int argc, char **argv) {
#ifdef REPLAY_HAS_INIT
    LLVMFuzzerInitialize(&argc, &argv);
#endif
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", test_source_dir(), REPLAY_TARGET);
    DIR *d = opendir(dir);
    if (!d) test_fail_setup("%s: no corpus directory", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int ok = replay_file(path);
        CHECK(ok, "%s: cannot read", path);
        n += ok;
    }
    closedir(d);
    printf("%s: replayed %d inputs\n", REPLAY_TARGET, n);
    CHECK(n > 0, "%s: empty corpus", dir);
    return test_finish();
}

#endif
