/* peftc merge: fold one or several adapters (optionally weighted) into the base and write a model directory
 * in the base's dtype, tokenizer files copied. The base is loaded in fp32 so the merge is exact before the
 * one rounding to the file's dtype; the output appears atomically (temporary directory, then rename). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model/model.h"
#include "peft/lora_export.h"

#define MERGE_MAX_ADAPTERS 16

static const cli_opt merge_opts[] = {
    {"--model", OPT_VALUE, "base model directory"},
    {"--adapter", OPT_MULTI, "adapter directory; comma-separated or repeated for several"},
    {"--weights", OPT_VALUE, "comma-separated weight per adapter (default 1 each)"},
    {"--out", OPT_VALUE, "output model directory (must not exist, or be empty)"},
    {"--help", OPT_FLAG, "show this help"},
};
#define N_MERGE_OPTS (int)(sizeof merge_opts / sizeof merge_opts[0])

/* Split every --adapter value at commas into dirs (pointers into buf). Returns the count, or -1. */
static int split_adapters(const cli_args *a, char *buf, size_t cap, char **dirs) {
    int n = 0;
    size_t used = 0;
    for (int i = 0; i < cli_count(a, "--adapter"); i++) {
        const char *v = cli_get_nth(a, "--adapter", i);
        size_t len = strlen(v);
        if (used + len + 1 > cap) return -1;
        char *copy = memcpy(buf + used, v, len + 1);
        used += len + 1;
        for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
            if (n >= MERGE_MAX_ADAPTERS) return -1;
            dirs[n++] = tok;
        }
    }
    return n;
}

static int parse_weights(const char *text, float *weights, int n) {
    for (int i = 0; i < n; i++) weights[i] = 1.0f;
    if (!text) return 0;
    int k = 0;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        double w = strtod(p, &end);
        if (end == p || errno || !isfinite(w) || (*end && *end != ','))
            return cli_usage_error("merge: --weights '%s': '%s' is not a number", text, p);
        if (k >= n) return cli_usage_error("merge: --weights has more values than there are adapters (%d)", n);
        weights[k++] = (float)w;
        p = *end ? end + 1 : end;
    }
    if (k != n) return cli_usage_error("merge: --weights has %d values for %d adapters", k, n);
    return 0;
}

int cmd_merge(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&a, merge_opts, N_MERGE_OPTS, argc, argv, "merge");
    if (rc) return rc;
    if (cli_flag(&a, "--help")) {
        cli_print_help("merge", "--model DIR --adapter DIR[,DIR...] [--weights w1,w2,...] --out DIR", merge_opts,
                       N_MERGE_OPTS);
        return 0;
    }
    if (a.n_positional) return cli_usage_error("merge: unexpected argument '%s'", a.positional[0]);
    const char *model_dir = cli_get(&a, "--model"), *out = cli_get(&a, "--out");
    if (!model_dir || !out || !cli_count(&a, "--adapter"))
        return cli_usage_error("merge: --model, --adapter and --out are required (see 'peftc merge --help')");
    char buf[8192], *dirs[MERGE_MAX_ADAPTERS];
    int n = split_adapters(&a, buf, sizeof buf, dirs);
    if (n <= 0) return cli_usage_error("merge: --adapter: between 1 and %d directories", MERGE_MAX_ADAPTERS);
    float weights[MERGE_MAX_ADAPTERS];
    if ((rc = parse_weights(cli_get(&a, "--weights"), weights, n))) return rc;

    pc_error err = {0};
    pc_model *m = NULL;
    if (pc_model_load(&m, model_dir, PC_BASE_F32, &err) != PC_OK) return cli_report(&err);
    pc_status st = PC_OK;
    for (int i = 0; i < n && st == PC_OK; i++) st = pc_adapter_merge_dir(m, dirs[i], weights[i], &err);
    if (st == PC_OK) st = pc_merged_model_write(m, out, &err);
    pc_model_free(m);
    if (st != PC_OK) return cli_report(&err);
    fprintf(stderr, "peftc: merged %d adapter%s into %s\n", n, n == 1 ? "" : "s", out);
    return 0;
}
