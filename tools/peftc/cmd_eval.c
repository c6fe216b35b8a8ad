/* peftc eval: mean cross-entropy and perplexity of a model (with adapters) over a JSONL dataset. */
#include <stdio.h>

#include "common.h"
#include "eval/evaluate.h"

static const cli_opt eval_opts[] = {
    CLI_MODEL_OPTS,
    {"--adapter", OPT_MULTI, "adapter directory (repeatable, or comma-separated)"},
    {"--data", OPT_VALUE, "JSONL dataset"},
    {"--batch", OPT_VALUE, "records per forward [8]"},
    {"--seq-len", OPT_VALUE, "truncate records to this many tokens [model maximum]"},
    {"--json", OPT_FLAG, "print one JSON object"},
    {"--help", OPT_FLAG, "this help"},
};
#define N_EVAL_OPTS (int)(sizeof eval_opts / sizeof eval_opts[0])

int cmd_eval(int argc, char **argv) {
    cli_args a;
    if (cli_parse(&a, eval_opts, N_EVAL_OPTS, argc, argv, "eval")) return 2;
    if (cli_flag(&a, "--help")) {
        cli_print_help("eval", "--model DIR [--adapter DIR] --data FILE [--json]", eval_opts, N_EVAL_OPTS);
        return 0;
    }
    long batch = 8, seq_len = 0;
    if (cli_get_long(&a, "--batch", &batch) || cli_get_long(&a, "--seq-len", &seq_len)) return 2;
    const char *data = cli_get(&a, "--data");
    if (!data) return cli_usage_error("eval: --data FILE is required");
    if (!cli_get(&a, "--model")) return cli_usage_error("eval: --model DIR is required");
    if (batch <= 0 || seq_len < 0) return cli_usage_error("eval: --batch must be positive and --seq-len not negative");
    pc_error err = {0};
    cli_session s = {0};
    pc_dataset ds = {0};
    pc_eval_result r;
    pc_status st = cli_load_model(&s, &a, &err);
    if (st == PC_OK) st = cli_load_adapters(&s, &a, &err);
    if (st == PC_OK) st = cli_load_dataset(&s, data, (int)seq_len, &ds, &err);
    if (st == PC_OK) st = pc_evaluate(s.model, &ds, (int)batch, (int)seq_len, cli_pad_id(&s), &r, &err);
    pc_dataset_free(&ds);
    cli_session_free(&s);
    if (st != PC_OK) return cli_report(&err);
    if (cli_flag(&a, "--json")) {
        cJSON *o = cJSON_CreateObject();
        int failed = 0;
        pc_json_put(o, "loss", cJSON_CreateNumber(r.loss), &failed);
        pc_json_put(o, "perplexity", cJSON_CreateNumber(r.perplexity), &failed);
        pc_json_put(o, "tokens", cJSON_CreateNumber((double)r.tokens), &failed);
        st = cli_print_json(o, failed, &err);
        cJSON_Delete(o);
        if (st != PC_OK) return cli_report(&err);
    } else {
        printf("loss %.6f  perplexity %.4f  tokens %ld\n", r.loss, r.perplexity, r.tokens);
    }
    return 0;
}
