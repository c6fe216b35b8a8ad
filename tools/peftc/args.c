#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_report(const pc_error *err) {
    fprintf(stderr, "peftc: error: %s\n", err->msg[0] ? err->msg : pc_status_name(err->status));
    return err->status == PC_ERR_USAGE ? 2 : 1;
}

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("peftc: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

static int find_spec(const cli_opt *spec, int n, const char *name, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(spec[i].name) == len && strncmp(spec[i].name, name, len) == 0) return i;
    return -1;
}

int cli_parse(cli_args *a, const cli_opt *spec, int n_spec, int argc, char **argv, const char *command) {
    memset(a, 0, sizeof *a);
    a->spec = spec;
    a->n_spec = n_spec;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (a->n_positional >= CLI_MAX_POSITIONAL) return cli_usage_error("%s: too many arguments", command);
            a->positional[a->n_positional++] = arg;
            continue;
        }
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        int k = find_spec(spec, n_spec, arg, len);
        if (k < 0) return cli_usage_error("%s: unknown option '%.*s' (see 'peftc %s --help')", command, (int)len, arg, command);
        const char *value = NULL;
        if (spec[k].kind == OPT_FLAG) {
            if (eq) return cli_usage_error("%s: option '%s' takes no value", command, spec[k].name);
            value = "1";
        } else if (eq) {
            value = eq + 1;
        } else {
            if (i + 1 >= argc) return cli_usage_error("%s: option '%s' needs a value", command, spec[k].name);
            value = argv[++i];
        }
        if (a->counts[k] >= CLI_MAX_VALUES) return cli_usage_error("%s: option '%s' given too often", command, spec[k].name);
        if (spec[k].kind != OPT_MULTI && spec[k].kind != OPT_FLAG && a->counts[k] > 0) {
            a->values[k][0] = value; /* last one wins, as in most CLIs */
            continue;
        }
        a->values[k][a->counts[k]++] = value;
    }
    return 0;
}

static int index_of(const cli_args *a, const char *name) { return find_spec(a->spec, a->n_spec, name, strlen(name)); }

const char *cli_get(const cli_args *a, const char *name) {
    int k = index_of(a, name);
    return (k < 0 || a->counts[k] == 0) ? NULL : a->values[k][a->counts[k] - 1];
}

int cli_count(const cli_args *a, const char *name) {
    int k = index_of(a, name);
    return k < 0 ? 0 : a->counts[k];
}

const char *cli_get_nth(const cli_args *a, const char *name, int i) {
    int k = index_of(a, name);
    return (k < 0 || i >= a->counts[k]) ? NULL : a->values[k][i];
}

int cli_flag(const cli_args *a, const char *name) { return cli_count(a, name) > 0; }

int cli_get_long(const cli_args *a, const char *name, long *out) {
    const char *v = cli_get(a, name);
    if (!v) return 0;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end) return cli_usage_error("option '%s': '%s' is not an integer", name, v);
    *out = x;
    return 0;
}

int cli_get_double(const cli_args *a, const char *name, double *out) {
    const char *v = cli_get(a, name);
    if (!v) return 0;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end) return cli_usage_error("option '%s': '%s' is not a number", name, v);
    *out = x;
    return 0;
}

void cli_print_help(const char *command, const char *synopsis, const cli_opt *spec, int n_spec) {
    printf("usage: peftc %s %s\n\noptions:\n", command, synopsis);
    for (int i = 0; i < n_spec; i++)
        printf("  %-24s %s\n", spec[i].name, spec[i].help ? spec[i].help : "");
}
