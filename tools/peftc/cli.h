/* The peftc command line: one file per subcommand, each `int cmd_NAME(int argc, char **argv)` returning
 * the process exit status (0 ok, 1 the work failed, 2 usage). Only this layer prints errors and exits. */
#ifndef PEFTC_CLI_H
#define PEFTC_CLI_H

#include "core/error.h"

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv); /* tokenizer train */
int cmd_bench(int argc, char **argv);
int cmd_data(int argc, char **argv);      /* data from-text */

/* Print "peftc: error: <msg>" and return the exit code for err's status (2 for usage errors, else 1). */
int cli_report(const pc_error *err);
int cli_usage_error(const char *fmt, ...);

/* Options: a command declares what it accepts; parsing rejects unknown options with exit 2. */
typedef enum { OPT_FLAG, OPT_VALUE, OPT_MULTI } cli_opt_kind;
typedef struct cli_opt {
    const char *name; /* "--model" */
    cli_opt_kind kind;
    const char *help;
} cli_opt;

#define CLI_MAX_VALUES 64
#define CLI_MAX_POSITIONAL 4096
typedef struct cli_args {
    const cli_opt *spec;
    int n_spec;
    const char *values[64][CLI_MAX_VALUES]; /* per spec entry */
    int counts[64];
    const char *positional[CLI_MAX_POSITIONAL];
    int n_positional;
} cli_args;

/* Returns 0, or 2 after printing a usage error. Accepts "--opt value" and "--opt=value". */
int cli_parse(cli_args *a, const cli_opt *spec, int n_spec, int argc, char **argv, const char *command);
const char *cli_get(const cli_args *a, const char *name);               /* last value or NULL */
int cli_count(const cli_args *a, const char *name);                    /* occurrences */
const char *cli_get_nth(const cli_args *a, const char *name, int i);
int cli_flag(const cli_args *a, const char *name);
/* Numeric getters: return 0 and set *out (unchanged if absent); 2 after a usage error if malformed. */
int cli_get_long(const cli_args *a, const char *name, long *out);
int cli_get_double(const cli_args *a, const char *name, double *out);
void cli_print_help(const char *command, const char *synopsis, const cli_opt *spec, int n_spec);

#endif
