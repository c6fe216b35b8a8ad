/* peftc generate end to end (runs the binary, PEFTC_BIN):
 *   - greedy ids from --prompt-ids (base, and with LoRA, prompt-tuning and prefix-tuning adapters) are, step
 *     by step, the argmax of a full forward computed in this process over prompt + ids so far;
 *   - --prompt goes through the tokenizer: prompt_ids and text checked against a hand-made byte-level BPE
 *     tokenizer whose ids and characters are known here;
 *   - the same --seed reproduces a sampled run, another seed does not;
 *   - eos_token_id from config.json stops generation after that token ("stop": "eos"); --ignore-eos does not;
 *   - usage errors exit 2, a missing model exits 1, each with one "peftc: error:" line. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "model/model.h"
#include "peft/method.h"
#include "test_support.h"

static char g_tmp[256];
static char g_golden[4096];

typedef struct run_result {
    int rc;
    char out[65536]; /* stdout */
    char err[4096];  /* stderr */
} run_result;

static void read_small(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
}

/* Run `peftc generate <args>`; stdout and stderr captured. */
static void run_generate(run_result *r, const char *args) {
    char cmd[16384], errpath[512];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", g_tmp);
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 %s generate %s 2>%s", test_peftc_bin(), args, errpath);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(r->out, 1, sizeof r->out - 1, p) : 0;
    r->out[n] = 0;
    int st = p ? pclose(p) : -1;
    r->rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    read_small(errpath, r->err, sizeof r->err);
}

/* The last line of stdout as JSON (NULL if it is not an object). */
static cJSON *last_json(const run_result *r) {
    const char *end = r->out + strlen(r->out);
    while (end > r->out && end[-1] == '\n') end--;
    const char *start = end;
    while (start > r->out && start[-1] != '\n') start--;
    cJSON *o = cJSON_ParseWithLength(start, (size_t)(end - start));
    if (o && !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        o = NULL;
    }
    return o;
}

static int json_ids(const cJSON *o, const char *key, int32_t *ids, int cap) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, key);
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (n < cap && cJSON_IsNumber(it)) ids[n] = (int32_t)it->valuedouble;
        n++;
    }
    return cJSON_IsArray(arr) ? n : -1;
}

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(s) ? s->valuestring : NULL;
}

/* ---- greedy against the full forward -------------------------------------------------------------------- */

static void check_greedy_ids(const char *label, const char *adapter_case, const int32_t *prompt, int n_prompt,
                             const int32_t *ids, int n) {
    char dir[4200];
    pc_error err = {0};
    pc_model *m = NULL;
    pc_method *method = NULL;
    snprintf(dir, sizeof dir, "%s/llama_gqa/model", g_golden);
    if (pc_model_load(&m, dir, PC_BASE_F32, &err) != PC_OK) {
        test_fail_setup("%s", err.msg);
        return;
    }
    snprintf(dir, sizeof dir, "%s/%s/adapter", g_golden, adapter_case ? adapter_case : "");
    if (adapter_case && pc_method_load(&method, m, dir, &err) != PC_OK) {
        test_fail_setup("%s", err.msg);
        pc_model_free(m);
        return;
    }
    int V = m->cfg.vocab_size, T = n_prompt + n;
    int32_t *seq = pc_malloc(sizeof(int32_t) * (size_t)T);
    float *logits = pc_malloc(sizeof(float) * (size_t)pc_model_total_len(m, T) * V);
    memcpy(seq, prompt, sizeof(int32_t) * (size_t)n_prompt);
    memcpy(seq + n_prompt, ids, sizeof(int32_t) * (size_t)n);
    int agree = 0;
    for (int k = 0; k < n; k++) {
        pc_model_batch b = {.B = 1, .T = n_prompt + k, .ids = seq, .labels = seq};
        pc_forward_result res;
        if (pc_model_forward(m, &b, &res, &err) != PC_OK || pc_model_logits(m, logits, &err) != PC_OK) break;
        const float *last = logits + (size_t)(pc_model_total_len(m, n_prompt + k) - 1) * V;
        int best = 0;
        for (int i = 1; i < V; i++) best = last[i] > last[best] ? i : best;
        agree += ids[k] == best || fabsf(last[ids[k]] - last[best]) <= 1e-5f * fabsf(last[best]);
    }
    CHECK(agree == n, "%s: CLI greedy ids agree with the full forward's argmax at %d of %d steps", label, agree, n);
    pc_free(seq);
    pc_free(logits);
    pc_method_free(method);
    pc_model_free(m);
}

static int greedy_run(const char *label, const char *adapter_case, int32_t *ids, int cap) {
    char args[8192];
    const int32_t prompt[5] = {5, 17, 99, 3, 42};
    if (adapter_case)
        snprintf(args, sizeof args, "--model %s/llama_gqa/model --adapter %s/%s/adapter --prompt-ids 5,17,99,3,42 "
                 "--max-new-tokens 20 --ignore-eos --json", g_golden, g_golden, adapter_case);
    else
        snprintf(args, sizeof args, "--model %s/llama_gqa/model --prompt-ids 5,17,99,3,42 --max-new-tokens 20 "
                 "--ignore-eos --json", g_golden);
    run_result *r = pc_malloc(sizeof *r);
    run_generate(r, args);
    CHECK(r->rc == 0, "%s: exit %d: %s", label, r->rc, r->err);
    cJSON *o = last_json(r);
    CHECK(o != NULL, "%s: last line is a JSON object: %s", label, r->out);
    int n = o ? json_ids(o, "ids", ids, cap) : -1;
    int32_t p[8];
    int np = o ? json_ids(o, "prompt_ids", p, 8) : -1;
    CHECK(n == 20, "%s: 20 ids, got %d", label, n);
    CHECK(np == 5 && memcmp(p, prompt, sizeof prompt) == 0, "%s: prompt_ids echo the prompt", label);
    CHECK(o && json_str(o, "text") && !strcmp(json_str(o, "text"), ""), "%s: no tokenizer, empty text", label);
    CHECK(o && json_str(o, "stop") && !strcmp(json_str(o, "stop"), "length"), "%s: stopped by length", label);
    if (n == 20) check_greedy_ids(label, adapter_case, prompt, 5, ids, n);
    cJSON_Delete(o);
    pc_free(r);
    return n;
}

/* ---- a tokenizer whose ids are known: byte-level BPE over printable ASCII ---------------------------------- */

/* id of character c (33..126) is c − 32; 'Ġ' (the byte-level space) is 95; merges "h e" → 100, "l l" → 101;
 * <s> 120, </s> 121. */
static int tokenizer_char(int id, char *c) {
    if (id >= 1 && id <= 94) *c = (char)(id + 32);
    else if (id == 95) *c = ' ';
    else return 0;
    return 1;
}

static void write_tokenizer(const char *path) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    const char *special[2] = {"<s>", "</s>"};
    for (int i = 0; i < 2; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "id", 120 + i);
        cJSON_AddStringToObject(t, "content", special[i]);
        cJSON_AddBoolToObject(t, "single_word", 0);
        cJSON_AddBoolToObject(t, "lstrip", 0);
        cJSON_AddBoolToObject(t, "rstrip", 0);
        cJSON_AddBoolToObject(t, "normalized", 0);
        cJSON_AddBoolToObject(t, "special", 1);
        cJSON_AddItemToArray(added, t);
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
    cJSON_AddBoolToObject(pre, "trim_offsets", 1);
    cJSON_AddBoolToObject(pre, "use_regex", 1);
    cJSON_AddNullToObject(root, "post_processor");
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    for (int id = 1; id <= 94; id++) {
        char s[2] = {(char)(id + 32), 0};
        cJSON_AddNumberToObject(vocab, s, id);
    }
    cJSON_AddNumberToObject(vocab, "\xc4\xa0", 95); /* Ġ */
    cJSON_AddNumberToObject(vocab, "he", 100);
    cJSON_AddNumberToObject(vocab, "ll", 101);
    cJSON_AddNumberToObject(vocab, "<s>", 120);
    cJSON_AddNumberToObject(vocab, "</s>", 121);
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    cJSON_AddItemToArray(merges, cJSON_CreateString("h e"));
    cJSON_AddItemToArray(merges, cJSON_CreateString("l l"));
    cJSON_AddItemToObject(root, "model", model);
    char *text = cJSON_PrintUnformatted(root);
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    free(text);
    cJSON_Delete(root);
}

static void check_text_prompt(void) {
    char tok[512], args[8192];
    snprintf(tok, sizeof tok, "%s/tokenizer.json", g_tmp);
    write_tokenizer(tok);
    snprintf(args, sizeof args,
             "--model %s/llama_gqa/model --tokenizer %s --prompt 'hello world' --max-new-tokens 16 --ignore-eos --json",
             g_golden, tok);
    run_result *r = pc_malloc(sizeof *r);
    run_generate(r, args);
    CHECK(r->rc == 0, "text prompt: exit %d: %s", r->rc, r->err);
    cJSON *o = last_json(r);
    int32_t p[32], ids[32];
    /* "hello world" → he ll o Ġ w o r l d */
    const int32_t want[9] = {100, 101, 'o' - 32, 95, 'w' - 32, 'o' - 32, 'r' - 32, 'l' - 32, 'd' - 32};
    int np = o ? json_ids(o, "prompt_ids", p, 32) : -1, n = o ? json_ids(o, "ids", ids, 32) : -1;
    CHECK(np == 9 && memcmp(p, want, sizeof want) == 0, "text prompt: prompt_ids are the tokenizer's (%d ids)", np);
    CHECK(n == 16, "text prompt: 16 new ids, got %d", n);
    /* The text is the new ids' characters; ids the tokenizer lacks (and specials) are left out. */
    char expect[64] = {0};
    int k = 0;
    for (int i = 0; i < n && i < 32; i++) {
        char c;
        if (tokenizer_char(ids[i], &c)) expect[k++] = c;
        else if (ids[i] == 100) k += snprintf(expect + k, sizeof expect - k, "he");
        else if (ids[i] == 101) k += snprintf(expect + k, sizeof expect - k, "ll");
    }
    const char *text = o ? json_str(o, "text") : NULL;
    CHECK(text && !strcmp(text, expect), "text prompt: text '%s', want '%s'", text ? text : "(none)", expect);
    cJSON_Delete(o);
    /* Without --json: the text alone. */
    snprintf(args, sizeof args, "--model %s/llama_gqa/model --tokenizer %s --prompt 'hello world' --max-new-tokens 16 --ignore-eos",
             g_golden, tok);
    run_generate(r, args);
    size_t len = strlen(r->out);
    CHECK(r->rc == 0 && len > 0 && r->out[len - 1] == '\n' && strncmp(r->out, expect, strlen(expect)) == 0,
          "text prompt: plain output is the text: '%s'", r->out);
    pc_free(r);
}

/* ---- seeds and stops ------------------------------------------------------------------------------------ */

static int sampled(const char *seed, int32_t *ids) {
    char args[8192];
    snprintf(args, sizeof args,
             "--model %s/llama_gqa/model --adapter %s/lora_llama/adapter --prompt-ids 7,8,9 --max-new-tokens 24 "
             "--temperature 1.2 --top-p 0.9 --seed %s --ignore-eos --json",
             g_golden, g_golden, seed);
    run_result *r = pc_malloc(sizeof *r);
    run_generate(r, args);
    cJSON *o = last_json(r);
    int n = o ? json_ids(o, "ids", ids, 24) : -1;
    CHECK(r->rc == 0 && n == 24, "sampled seed %s: exit %d, %d ids: %s", seed, r->rc, n, r->err);
    cJSON_Delete(o);
    pc_free(r);
    return n;
}

static void check_seeds(void) {
    int32_t a[24] = {0}, b[24] = {0}, c[24] = {0};
    sampled("5", a);
    sampled("5", b);
    sampled("6", c);
    CHECK(memcmp(a, b, sizeof a) == 0, "the same --seed reproduces the sampled ids");
    CHECK(memcmp(a, c, sizeof a) != 0, "another --seed samples other ids");
}

/* A copy of llama_gqa whose config.json says eos_token_id = eos (weights linked). */
static void model_with_eos(const char *dir, int eos) {
    char src[4200], dst[4200];
    pc_error err = {0};
    pc_mkdir_p(dir, &err);
    snprintf(src, sizeof src, "%s/llama_gqa/model/model.safetensors", g_golden);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    unlink(dst);
    CHECK(symlink(src, dst) == 0, "link %s", dst);
    snprintf(src, sizeof src, "%s/llama_gqa/model/config.json", g_golden);
    char *text = NULL;
    size_t len = 0;
    if (pc_read_file(src, &text, &len, &err) != PC_OK) {
        test_fail_setup("%s", err.msg);
        return;
    }
    cJSON *cfg = cJSON_Parse(text);
    cJSON_ReplaceItemInObject(cfg, "eos_token_id", cJSON_CreateNumber(eos));
    char *out = cJSON_Print(cfg);
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    CHECK(pc_write_file_atomic(dst, out, strlen(out), &err) == PC_OK, "write %s: %s", dst, err.msg);
    free(out);
    cJSON_Delete(cfg);
    pc_free(text);
}

static void check_eos(const int32_t *greedy, int n) {
    char dir[512], args[8192];
    int eos = greedy[3], first = 0;
    while (greedy[first] != eos) first++;
    snprintf(dir, sizeof dir, "%s/eos_model", g_tmp);
    model_with_eos(dir, eos);
    snprintf(args, sizeof args, "--model %s --prompt-ids 5,17,99,3,42 --max-new-tokens 20 --json", dir);
    run_result *r = pc_malloc(sizeof *r);
    run_generate(r, args);
    cJSON *o = last_json(r);
    int32_t ids[32];
    int m = o ? json_ids(o, "ids", ids, 32) : -1;
    CHECK(r->rc == 0 && m == first + 1 && memcmp(ids, greedy, sizeof(int32_t) * (size_t)(first + 1)) == 0,
          "eos_token_id %d ends generation after it (%d ids, want %d)", eos, m, first + 1);
    CHECK(o && json_str(o, "stop") && !strcmp(json_str(o, "stop"), "eos"), "stop is \"eos\"");
    cJSON_Delete(o);
    snprintf(args, sizeof args, "--model %s --prompt-ids 5,17,99,3,42 --max-new-tokens 20 --ignore-eos --json", dir);
    run_generate(r, args);
    o = last_json(r);
    m = o ? json_ids(o, "ids", ids, 32) : -1;
    CHECK(m == n && memcmp(ids, greedy, sizeof(int32_t) * (size_t)n) == 0, "--ignore-eos runs to the length");
    cJSON_Delete(o);
    pc_free(r);
}

/* ---- errors ---------------------------------------------------------------------------------------------- */

static void expect_error(const char *args_tail, int want_rc, const char *what) {
    char args[8192];
    snprintf(args, sizeof args, args_tail, g_golden);
    run_result *r = pc_malloc(sizeof *r);
    run_generate(r, args);
    int one_line = strncmp(r->err, "peftc: error: ", 14) == 0 && strchr(r->err, '\n') == r->err + strlen(r->err) - 1;
    CHECK(r->rc == want_rc && one_line, "%s: exit %d (want %d), stderr '%s'", what, r->rc, want_rc, r->err);
    pc_free(r);
}

static void check_errors(void) {
    expect_error("--model %s/llama_gqa/model", 2, "no prompt");
    expect_error("--model %s/llama_gqa/model --prompt hi --prompt-ids 1", 2, "two prompts");
    expect_error("--model %s/llama_gqa/model --prompt-ids 1,x", 2, "malformed ids");
    expect_error("--model %s/llama_gqa/model --prompt-ids 1,128", 2, "id outside the vocabulary");
    expect_error("--model %s/llama_gqa/model --prompt-ids 1,2 --max-new-tokens 100", 2, "beyond the positions");
    expect_error("--model %s/llama_gqa/model --prompt-ids 1,2 --top-p 0", 2, "top-p 0");
    expect_error("--model %s/llama_gqa/model --prompt-ids 1,2 --temperature -1", 2, "negative temperature");
    expect_error("--model %s/llama_gqa/model --prompt hello", 2, "text prompt without a tokenizer");
    expect_error("--model %s/no_such_model --prompt-ids 1,2", 1, "missing model directory");
}

int main(void) {
    snprintf(g_golden, sizeof g_golden, "%s/tests/golden/data", test_source_dir());
    snprintf(g_tmp, sizeof g_tmp, "/tmp/peftc_test_generate_cli_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        test_fail_setup("mkdtemp failed");
        return test_finish();
    }
    int32_t greedy[32];
    int n = greedy_run("llama_gqa greedy", NULL, greedy, 32);
    int32_t with_lora[32];
    greedy_run("llama_gqa+lora greedy", "lora_llama", with_lora, 32);
    CHECK(memcmp(greedy, with_lora, sizeof(int32_t) * 20) != 0, "the adapter changes the greedy continuation");
    int32_t other[32];
    greedy_run("llama_gqa+prompt tuning greedy", "prompt_tuning_llama", other, 32);
    greedy_run("llama_gqa+prefix tuning greedy", "prefix_tuning_llama", other, 32);
    check_text_prompt();
    check_seeds();
    if (n == 20) check_eos(greedy, n);
    check_errors();
    pc_remove_tree(g_tmp);
    return test_finish();
}
