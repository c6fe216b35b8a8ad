/* peftc tokenizer train: learn a byte-level BPE tokenizer (GPT-2 style) from text files and write a standard
 * tokenizer.json (src/tokenizer/bpe_train.h). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "tokenizer/bpe_train.h"

static const cli_opt train_opts[] = {
    {"--data", OPT_MULTI, "a UTF-8 text file (repeat, or list several after one --data)"},
    {"--vocab-size", OPT_VALUE, "total vocabulary size, special tokens and 256 bytes included"},
    {"--out", OPT_VALUE, "where to write tokenizer.json"},
    {"--byte-level", OPT_FLAG, "byte-level BPE with the GPT-2 split regex (the only kind implemented)"},
    {"--special-token", OPT_MULTI, "a special token, ids from 0 in order (default: <|endoftext|>)"},
    {"--min-frequency", OPT_VALUE, "stop when the best pair is rarer than this [2]"},
    {"--help", OPT_FLAG, "show this help"},
};

static int run_train(int argc, char **argv) {
    cli_args a;
    int n_opts = (int)(sizeof train_opts / sizeof train_opts[0]);
    int rc = cli_parse(&a, train_opts, n_opts, argc, argv, "tokenizer train");
    if (rc) return rc;
    if (cli_flag(&a, "--help")) {
        cli_print_help("tokenizer train", "--data FILES... --vocab-size N --out tokenizer.json --byte-level", train_opts, n_opts);
        return 0;
    }
    /* Files: every --data value, plus positional arguments that follow (--data a.txt b.txt). */
    const char *files[CLI_MAX_VALUES + CLI_MAX_POSITIONAL];
    int n_files = 0;
    for (int i = 0; i < cli_count(&a, "--data"); i++) files[n_files++] = cli_get_nth(&a, "--data", i);
    for (int i = 0; i < a.n_positional; i++) files[n_files++] = a.positional[i];
    if (n_files == 0) return cli_usage_error("tokenizer train: --data FILE is required");
    const char *out = cli_get(&a, "--out");
    if (!out) return cli_usage_error("tokenizer train: --out FILE is required");
    long vocab = 0, min_freq = 2;
    if ((rc = cli_get_long(&a, "--vocab-size", &vocab)) || (rc = cli_get_long(&a, "--min-frequency", &min_freq))) return rc;
    if (vocab <= 0 || vocab > (1 << 20)) return cli_usage_error("tokenizer train: --vocab-size N is required (1..1048576)");
    if (!cli_flag(&a, "--byte-level"))
        return cli_usage_error("tokenizer train: only byte-level BPE is implemented; pass --byte-level");
    const char *specials[CLI_MAX_VALUES];
    int n_special = cli_count(&a, "--special-token");
    for (int i = 0; i < n_special; i++) specials[i] = cli_get_nth(&a, "--special-token", i);
    if (n_special == 0) {
        specials[0] = "<|endoftext|>";
        n_special = 1;
    }
    pc_bpe_train_options opt = {(int)vocab, (int)min_freq, specials, n_special};
    pc_error err = {0};
    int n_merges = 0;
    if (pc_bpe_train(files, n_files, &opt, out, &n_merges, &err) != PC_OK) return cli_report(&err);
    fprintf(stderr, "peftc: tokenizer train: %d merges, vocabulary %d, wrote %s\n", n_merges, n_special + 256 + n_merges, out);
    return 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 1 || !strcmp(argv[0], "--help")) {
        printf("usage: peftc tokenizer train --data FILES... --vocab-size N --out tokenizer.json --byte-level\n");
        return argc < 1 ? 2 : 0;
    }
    if (!strcmp(argv[0], "train")) return run_train(argc - 1, argv + 1);
    return cli_usage_error("tokenizer: unknown subcommand '%s' (expected 'train')", argv[0]);
}
