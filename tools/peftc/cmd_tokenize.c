/* peftc tokenize: the token ids of stdin's UTF-8 text as a JSON array (CLI.md). With --decode, the inverse:
 * a JSON array of ids on stdin, the text on stdout (byte-exact for byte-level vocabularies). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "core/alloc.h"
#include "io/json.h"
#include "tokenizer/tokenizer.h"

static const cli_opt opts[] = {
    {"--tokenizer", OPT_VALUE, "tokenizer.json, vocab.json/encoder.json, or a directory holding one"},
    {"--no-special", OPT_FLAG, "do not add the post-processor's special tokens (BOS/EOS)"},
    {"--json", OPT_FLAG, "JSON output (the default and only format)"},
    {"--decode", OPT_FLAG, "read a JSON array of ids and print the text"},
    {"--skip-special", OPT_FLAG, "with --decode: drop special tokens"},
    {"--stats", OPT_FLAG, "print bytes, ids and the encoding time (loading excluded) on stderr"},
    {"--help", OPT_FLAG, "show this help"},
};

static int read_stdin(char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = pc_malloc(cap);
    if (!buf) return -1;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            char *bigger = pc_realloc(buf, cap, cap * 2);
            if (!bigger) {
                pc_free(buf);
                return -1;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, stdin);
        n += got;
        if (got == 0) break;
    }
    if (ferror(stdin)) {
        pc_free(buf);
        return -1;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static int print_ids(const int32_t *ids, size_t n) {
    /* Buffered by stdio; one line. */
    putchar('[');
    for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
    puts("]");
    return fflush(stdout) == 0 ? 0 : 1;
}

static int decode_stdin(const pc_tokenizer *tk, const char *in, int skip_special) {
    pc_json_failure why;
    cJSON *arr = pc_json_parse(in, strlen(in), &why);
    if (!arr && why.status == PC_ERR_NOMEM) {
        fprintf(stderr, "peftc: error: stdin: out of memory parsing the JSON\n");
        return 1;
    }
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        fprintf(stderr, "peftc: error: stdin: expected a JSON array of token ids\n");
        return 1;
    }
    int n = cJSON_GetArraySize(arr);
    int32_t *ids = pc_malloc((size_t)(n ? n : 1) * sizeof *ids);
    int k = 0;
    for (const cJSON *v = arr->child; ids && v; v = v->next) {
        if (!cJSON_IsNumber(v)) {
            fprintf(stderr, "peftc: error: stdin: element %d is not a number\n", k);
            pc_free(ids);
            cJSON_Delete(arr);
            return 1;
        }
        ids[k++] = v->valueint;
    }
    cJSON_Delete(arr);
    if (!ids) {
        fprintf(stderr, "peftc: error: out of memory\n");
        return 1;
    }
    pc_error err = {0};
    char *text = NULL;
    size_t len = 0;
    pc_status st = pc_tokenizer_decode(tk, ids, (size_t)k, skip_special, &text, &len, &err);
    pc_free(ids);
    if (st != PC_OK) return cli_report(&err);
    fwrite(text, 1, len, stdout);
    pc_free(text);
    return fflush(stdout) == 0 ? 0 : 1;
}

int cmd_tokenize(int argc, char **argv) {
    cli_args a;
    int n_opts = (int)(sizeof opts / sizeof opts[0]);
    int rc = cli_parse(&a, opts, n_opts, argc, argv, "tokenize");
    if (rc) return rc;
    if (cli_flag(&a, "--help")) {
        cli_print_help("tokenize", "--tokenizer FILE [--no-special] [--json] < text", opts, n_opts);
        return 0;
    }
    if (a.n_positional) return cli_usage_error("tokenize: unexpected argument '%s'", a.positional[0]);
    const char *path = cli_get(&a, "--tokenizer");
    if (!path) return cli_usage_error("tokenize: --tokenizer FILE is required");
    pc_error err = {0};
    pc_tokenizer *tk = NULL;
    if (pc_tokenizer_load(&tk, path, &err) != PC_OK) return cli_report(&err);
    char *in = NULL;
    size_t len = 0;
    if (read_stdin(&in, &len) != 0) {
        pc_tokenizer_free(tk);
        fprintf(stderr, "peftc: error: stdin: could not read\n");
        return 1;
    }
    if (cli_flag(&a, "--decode")) {
        rc = decode_stdin(tk, in, cli_flag(&a, "--skip-special"));
    } else {
        int32_t *ids = NULL;
        size_t n = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        pc_status st = pc_tokenizer_encode(tk, in, len, !cli_flag(&a, "--no-special"), &ids, &n, &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (st == PC_OK && cli_flag(&a, "--stats"))
            fprintf(stderr, "peftc: tokenize: %zu bytes, %zu ids, encode %.3f s (%.2f MB/s)\n", len, n, secs, (double)len / 1e6 / secs);
        if (st != PC_OK) {
            rc = cli_report(&err);
        } else {
            rc = print_ids(ids, n);
            pc_free(ids);
        }
    }
    pc_free(in);
    pc_tokenizer_free(tk);
    return rc;
}
