/* peftc generate: continue a prompt with a model (+ adapters, applied unmerged through their hooks), greedy
 * or sampled, with a KV cache. Output: the continuation's text (without the prompt); with --json one object
 * {"text": ..., "ids": [...], "prompt_ids": [...], "stop": "eos"|"length"} as the last line. "ids" are the
 * new tokens only (an end-of-sequence token that stopped generation is included, as Hugging Face does;
 * "text" drops special tokens). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "core/alloc.h"
#include "core/timer.h"
#include "eval/generate.h"

static const cli_opt generate_opts[] = {
    CLI_MODEL_OPTS,
    {"--adapter", OPT_MULTI, "adapter directory (repeatable, or comma-separated)"},
    {"--prompt", OPT_VALUE, "prompt text (tokenized with the model's tokenizer, BOS/EOS as it specifies)"},
    {"--prompt-ids", OPT_VALUE, "prompt as token ids, e.g. \"1,2,3\" (no tokenizer needed)"},
    {"--max-new-tokens", OPT_VALUE, "tokens to generate at most [32]"},
    {"--temperature", OPT_VALUE, "0 = greedy [0]"},
    {"--top-p", OPT_VALUE, "nucleus sampling mass [1 = off]"},
    {"--top-k", OPT_VALUE, "keep the k most likely tokens [0 = off]"},
    {"--seed", OPT_VALUE, "random seed for sampling [0]"},
    {"--ignore-eos", OPT_FLAG, "do not stop at the end-of-sequence token"},
    {"--json", OPT_FLAG, "print one JSON object"},
    {"--help", OPT_FLAG, "this help"},
};
#define N_GENERATE_OPTS (int)(sizeof generate_opts / sizeof generate_opts[0])

/* "1,2,3" (spaces and surrounding brackets allowed) → ids; returns 0, or 2 after a usage error. */
static int parse_ids(const char *text, int vocab, int32_t **out, int *n_out) {
    size_t cap = strlen(text) / 2 + 1;
    int32_t *ids = pc_malloc(sizeof(int32_t) * cap);
    if (!ids) return cli_usage_error("generate: out of memory");
    int n = 0;
    const char *p = text;
    while (*p == ' ' || *p == '[') p++;
    while (*p && *p != ']') {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v >= vocab) {
            pc_free(ids);
            return cli_usage_error("generate: --prompt-ids: '%s' is not a list of token ids below %d", text, vocab);
        }
        ids[n++] = (int32_t)v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        while (*p == ' ') p++;
    }
    if (n == 0) {
        pc_free(ids);
        return cli_usage_error("generate: --prompt-ids is empty");
    }
    *out = ids;
    *n_out = n;
    return 0;
}

typedef struct gen_settings {
    long max_new, seed, top_k;
    double temperature, top_p;
} gen_settings;

static int read_settings(const cli_args *a, gen_settings *g) {
    g->max_new = 32;
    g->seed = 0;
    g->top_k = 0;
    g->temperature = 0;
    g->top_p = 1;
    if (cli_get_long(a, "--max-new-tokens", &g->max_new) || cli_get_long(a, "--seed", &g->seed) ||
        cli_get_long(a, "--top-k", &g->top_k) || cli_get_double(a, "--temperature", &g->temperature) ||
        cli_get_double(a, "--top-p", &g->top_p))
        return 2;
    if (g->max_new < 0 || g->max_new > 1000000) return cli_usage_error("generate: --max-new-tokens must be in 0..1000000");
    if (!(g->temperature >= 0)) return cli_usage_error("generate: --temperature must be >= 0");
    if (!(g->top_p > 0 && g->top_p <= 1)) return cli_usage_error("generate: --top-p must be in (0, 1]");
    if (g->top_k < 0) return cli_usage_error("generate: --top-k must be >= 0");
    return 0;
}

/* The prompt's ids from --prompt (tokenizer) or --prompt-ids. */
static pc_status prompt_ids(const cli_session *s, const cli_args *a, int32_t **ids, int *n, int *usage, pc_error *err) {
    const char *text = cli_get(a, "--prompt"), *list = cli_get(a, "--prompt-ids");
    if (list) {
        *usage = parse_ids(list, s->model->cfg.vocab_size, ids, n);
        return *usage ? PC_ERR_USAGE : PC_OK;
    }
    if (!s->tokenizer)
        return pc_fail(err, PC_ERR_USAGE, "generate: %s has no tokenizer (give --tokenizer FILE or --prompt-ids)",
                       cli_get(a, "--model"));
    size_t count = 0;
    PC_TRY(pc_tokenizer_encode(s->tokenizer, text, strlen(text), 1, ids, &count, err));
    /* A tokenizer that appends EOS (add_eos_token) would end the prompt as a finished document: a prompt
     * is to be continued, so an EOS the post-processor added is dropped (one the user typed stays). */
    int32_t eos = pc_tokenizer_eos_id(s->tokenizer);
    if (count > 1 && eos >= 0 && (*ids)[count - 1] == eos) {
        int32_t *plain = NULL;
        size_t plain_n = 0;
        PC_TRY(pc_tokenizer_encode(s->tokenizer, text, strlen(text), 0, &plain, &plain_n, err));
        int typed = plain_n > 0 && plain[plain_n - 1] == eos;
        pc_free(plain);
        if (!typed) count--;
    }
    if (count == 0) return pc_fail(err, PC_ERR_USAGE, "generate: the prompt has no tokens");
    for (size_t i = 0; i < count; i++)
        if ((*ids)[i] >= s->model->cfg.vocab_size)
            return pc_fail(err, PC_ERR_FORMAT, "generate: the tokenizer gives id %d, outside the model's vocabulary (%d)",
                           (*ids)[i], s->model->cfg.vocab_size);
    *n = (int)count;
    return PC_OK;
}

/* End-of-sequence ids from config.json and the tokenizer (either may be missing). */
static int stop_ids(const cli_session *s, int32_t out[2]) {
    int n = 0;
    if (s->model->cfg.eos_id >= 0) out[n++] = s->model->cfg.eos_id;
    int32_t t = s->tokenizer ? pc_tokenizer_eos_id(s->tokenizer) : -1;
    if (t >= 0 && (n == 0 || out[0] != t)) out[n++] = t;
    return n;
}

static cJSON *id_array(const int32_t *ids, int n, int *failed) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) pc_json_append(arr, cJSON_CreateNumber(ids[i]), failed);
    return arr;
}

static pc_status print_result(const cli_args *a, const char *text, const int32_t *prompt, int n_prompt,
                              const int32_t *ids, int n, int stopped, pc_error *err) {
    if (cli_flag(a, "--json")) {
        cJSON *o = cJSON_CreateObject();
        int failed = 0;
        pc_json_put(o, "text", cJSON_CreateString(text ? text : ""), &failed);
        pc_json_put(o, "ids", id_array(ids, n, &failed), &failed);
        pc_json_put(o, "prompt_ids", id_array(prompt, n_prompt, &failed), &failed);
        pc_json_put(o, "stop", cJSON_CreateString(stopped ? "eos" : "length"), &failed);
        pc_status st = cli_print_json(o, failed, err);
        cJSON_Delete(o);
        return st;
    } else if (text) {
        printf("%s\n", text);
    } else {
        for (int i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
    }
    return PC_OK;
}

/* The text of ids. Hugging Face's tokenizers skip ids the tokenizer does not have (a model's embedding table
 * is often padded past the tokenizer's vocabulary); so do we, and say so on stderr. */
static pc_status decode_text(const pc_tokenizer *tk, const int32_t *ids, int n, char **text, pc_error *err) {
    int32_t *known = pc_malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    if (!known) return pc_fail(err, PC_ERR_NOMEM, "generate: out of memory");
    int k = 0;
    for (int i = 0; i < n; i++) {
        char *piece = NULL;
        size_t len = 0;
        pc_error ignored = {0};
        if (pc_tokenizer_decode(tk, &ids[i], 1, 0, &piece, &len, &ignored) == PC_OK) known[k++] = ids[i];
        pc_free(piece);
    }
    if (k < n) fprintf(stderr, "peftc: %d generated ids are not in the tokenizer; the text leaves them out\n", n - k);
    size_t len = 0;
    pc_status st = pc_tokenizer_decode(tk, known, (size_t)k, 1, text, &len, err);
    pc_free(known);
    return st;
}

static pc_status run(cli_session *s, const cli_args *a, const gen_settings *g, int *usage, pc_error *err) {
    int32_t *prompt = NULL, *ids = NULL, stops[2];
    int n_prompt = 0, n = 0;
    char *text = NULL;
    pc_status st = prompt_ids(s, a, &prompt, &n_prompt, usage, err);
    pc_generate_opts o = {.max_new_tokens = (int)g->max_new,
                          .sampling = {(float)g->temperature, (int)g->top_k, (float)g->top_p},
                          .seed = (uint64_t)g->seed};
    if (!cli_flag(a, "--ignore-eos")) {
        o.n_stop_ids = stop_ids(s, stops);
        o.stop_ids = stops;
    }
    if (st == PC_OK && !(ids = pc_malloc(sizeof(int32_t) * (size_t)(g->max_new > 0 ? g->max_new : 1))))
        st = pc_fail(err, PC_ERR_NOMEM, "generate: out of memory");
    double t0 = pc_time_now();
    if (st == PC_OK) st = pc_generate(s->model, prompt, n_prompt, &o, ids, &n, err);
    double dt = pc_time_now() - t0;
    if (st == PC_OK && s->tokenizer) st = decode_text(s->tokenizer, ids, n, &text, err);
    if (st == PC_OK) {
        fprintf(stderr, "peftc: %d prompt tokens, %d new in %.2f s (%.1f new tokens/s)\n", n_prompt, n, dt,
                dt > 0 ? n / dt : 0.0);
        int stopped = n > 0 && n < g->max_new;
        for (int i = 0; !stopped && n > 0 && i < o.n_stop_ids; i++) stopped = ids[n - 1] == stops[i];
        st = print_result(a, text, prompt, n_prompt, ids, n, stopped, err);
    }
    pc_free(text);
    pc_free(ids);
    pc_free(prompt);
    return st;
}

int cmd_generate(int argc, char **argv) {
    cli_args a;
    if (cli_parse(&a, generate_opts, N_GENERATE_OPTS, argc, argv, "generate")) return 2;
    if (cli_flag(&a, "--help")) {
        cli_print_help("generate", "--model DIR [--adapter DIR] --prompt TEXT|--prompt-ids IDS [--json]", generate_opts,
                       N_GENERATE_OPTS);
        return 0;
    }
    if (a.n_positional) return cli_usage_error("generate: unexpected argument '%s'", a.positional[0]);
    if (!cli_get(&a, "--model")) return cli_usage_error("generate: --model DIR is required");
    if (!cli_get(&a, "--prompt") == !cli_get(&a, "--prompt-ids"))
        return cli_usage_error("generate: give exactly one of --prompt TEXT and --prompt-ids IDS");
    gen_settings g;
    if (read_settings(&a, &g)) return 2;
    pc_error err = {0};
    cli_session s = {0};
    int usage = 0;
    pc_status st = cli_load_model(&s, &a, &err);
    if (st == PC_OK) st = cli_load_adapters(&s, &a, &err);
    if (st == PC_OK) st = run(&s, &a, &g, &usage, &err);
    cli_session_free(&s);
    if (usage) return usage;
    return st == PC_OK ? 0 : cli_report(&err);
}
