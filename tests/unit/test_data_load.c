/* data: every JSONL record shape against ids derived by hand from the toy codec (test_data_fake_codec.h),
 * loss masks (prompts, non-assistant turns), truncation, class tables, the held-out split, UTF-8 checks and
 * every error path with its line number. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "data/dataset.h"
#include "data/line_reader.h"
#include "data/text_codec.h"
#include "test_data_fake_codec.h"
#include "test_support.h"

static char tmp_dir[256];

/* Write `content` (len bytes) to a fresh file in the temp dir and return its path (static buffer). */
static const char *write_file(const char *name, const char *content, size_t len) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) test_fail_setup("cannot write %s", path);
    fwrite(content, 1, len, f);
    fclose(f);
    return path;
}
static const char *write_text(const char *name, const char *content) { return write_file(name, content, strlen(content)); }

static int same_ids(const int32_t *got, int n_got, const int32_t *want, int n_want) {
    return n_got == n_want && memcmp(got, want, (size_t)n_want * sizeof *want) == 0;
}

static void print_ids(const char *what, const int32_t *a, int n) {
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", a[i]);
    fprintf(stderr, "\n");
}

#define EXPECT_EXAMPLE(ex, ids_, labels_)                                                                   \
    do {                                                                                                  \
        static const int32_t want_ids[] = ids_, want_labels[] = labels_;                                  \
        int nw = (int)(sizeof want_ids / sizeof *want_ids);                                               \
        int ok = same_ids((ex)->ids, (ex)->n, want_ids, nw) && same_ids((ex)->labels, (ex)->n, want_labels, nw); \
        CHECK(ok, "%s: ids/labels as derived by hand", #ex);                                            \
        if (!ok) print_ids("ids", (ex)->ids, (ex)->n), print_ids("labels", (ex)->labels, (ex)->n);       \
    } while (0)
#define A(...) {__VA_ARGS__}

static void test_pretokenized(void) {
    const char *path = write_text("ids.jsonl", "{\"input_ids\": [5, 6, 7]}\n"
                                               "\n"
                                               "   \r\n"
                                               "{\"input_ids\": [5, 6, 7], \"labels\": [-100, 6, 7]}\r\n"
                                               "{\"labels\": [1, -100], \"input_ids\": [8, 9]}");
    pc_dataset ds;
    pc_error err = {0};
    pc_data_options opt = {.seq_len = 0, .add_special = 1, .vocab_size = 10};
    CHECK(pc_dataset_load_codec(&ds, path, NULL, &opt, &err) == PC_OK, "pre-tokenized load: %s", err.msg);
    CHECK(ds.count == 3, "blank lines skipped, last line without newline read (count %ld)", ds.count);
    if (ds.count == 3) {
        EXPECT_EXAMPLE(&ds.examples[0], A(5, 6, 7), A(5, 6, 7));
        EXPECT_EXAMPLE(&ds.examples[1], A(5, 6, 7), A(-100, 6, 7));
        EXPECT_EXAMPLE(&ds.examples[2], A(8, 9), A(1, -100));
        CHECK(ds.examples[0].class_label == -1 && ds.n_classes == 0, "no classes");
    }
    pc_dataset_free(&ds);
}

static void test_text_and_prompt(void) {
    /* 'a'=197 'b'=198 'c'=199; "Hello world" = 10 11 */
    const char *path = write_text("text.jsonl", "{\"text\": \"ab\"}\n"
                                                "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
                                                "{\"prompt\": \"Hello\", \"completion\": \" world c\"}\n");
    fake_codec_options both = {.add_bos = 1, .add_eos = 1}, bos_only = {.add_bos = 1};
    pc_text_codec codec = fake_codec(&both);
    pc_dataset ds;
    pc_error err = {0};
    CHECK(pc_dataset_load_codec(&ds, path, &codec, NULL, &err) == PC_OK, "text load: %s", err.msg);
    if (ds.count == 3) {
        EXPECT_EXAMPLE(&ds.examples[0], A(1, 197, 198, 2), A(1, 197, 198, 2));
        /* the prompt's trailing EOS (add_eos) is dropped, the completion ends with EOS; prompt never a target */
        EXPECT_EXAMPLE(&ds.examples[1], A(1, 197, 198, 2), A(-100, -100, 198, 2));
        /* " world c" = " world" ' ' 'c' = 11 132 199 */
        EXPECT_EXAMPLE(&ds.examples[2], A(1, 10, 11, 132, 199, 2), A(-100, -100, 11, 132, 199, 2));
    }
    pc_dataset_free(&ds);

    codec = fake_codec(&bos_only);
    CHECK(pc_dataset_load_codec(&ds, path, &codec, NULL, &err) == PC_OK, "text load (BOS only): %s", err.msg);
    if (ds.count == 3) {
        EXPECT_EXAMPLE(&ds.examples[0], A(1, 197, 198), A(1, 197, 198));
        EXPECT_EXAMPLE(&ds.examples[1], A(1, 197, 198, 2), A(-100, -100, 198, 2));
    }
    pc_dataset_free(&ds);

    pc_data_options plain = {.add_special = 0};
    CHECK(pc_dataset_load_codec(&ds, path, &codec, &plain, &err) == PC_OK, "text load (no specials): %s", err.msg);
    if (ds.count == 3) {
        EXPECT_EXAMPLE(&ds.examples[0], A(197, 198), A(197, 198));
        EXPECT_EXAMPLE(&ds.examples[1], A(197, 198), A(-100, 198));
    }
    pc_dataset_free(&ds);
}

/* A prompt whose own text ends with the EOS string keeps it (only the post-processor's EOS is dropped). */
static void test_prompt_literal_eos(void) {
    const char *path = write_text("eos.jsonl", "{\"prompt\": \"a</s>\", \"completion\": \"b\"}\n");
    fake_codec_options bos_only = {.add_bos = 1};
    pc_text_codec codec = fake_codec(&bos_only);
    pc_dataset ds;
    pc_error err = {0};
    CHECK(pc_dataset_load_codec(&ds, path, &codec, NULL, &err) == PC_OK, "literal eos load: %s", err.msg);
    if (ds.count == 1) EXPECT_EXAMPLE(&ds.examples[0], A(1, 197, 2, 198, 2), A(-100, -100, -100, 198, 2));
    pc_dataset_free(&ds);
}

static void test_messages(void) {
    /* Rendered: "<|im_start|>user\nab<|im_end|>\n<|im_start|>assistant\nHello world<|im_end|>\n"
     *   -> 3 13 110 197 198 4 110 3 14 110 10 11 4 110; targets: 10 11 only. */
    const char *path = write_text(
        "chat.jsonl",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"ab\"}, {\"role\": \"assistant\", \"content\": \"Hello world\"}]}\n"
        /* "\nHi" straddles "assistant\n" (template) and "Hi" (assistant): a target. In the user turn the same
         * token holds no assistant byte: never a target. Rendered:
         * 3 13 12 4 110 3 14 12 132 198 4 110 3 13 198 4 110 */
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hi b\"},"
        " {\"role\": \"user\", \"content\": \"b\"}]}\n"
        /* system + two assistant turns: 3 's' 'y' 's' 't' 'e' 'm' 110 197 4 110 | 3 14 110 198 4 110 | 3 14 110 10 4 110 */
        "{\"messages\": [{\"role\": \"system\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"},"
        " {\"role\": \"assistant\", \"content\": \"Hello\"}]}\n");
    fake_codec_options plain = {.add_bos = 1, .add_eos = 1};
    fake_codec_options quirky = {.add_bos = 1, .add_eos = 1, .strip_space = 1};
    const fake_codec_options *variants[2] = {&plain, &quirky};
    for (int v = 0; v < 2; v++) {
        pc_text_codec codec = fake_codec(variants[v]);
        pc_dataset ds;
        pc_error err = {0};
        CHECK(pc_dataset_load_codec(&ds, path, &codec, NULL, &err) == PC_OK, "chat load (variant %d): %s", v, err.msg);
        if (ds.count != 3) continue;
        EXPECT_EXAMPLE(&ds.examples[0], A(3, 13, 110, 197, 198, 4, 110, 3, 14, 110, 10, 11, 4, 110),
                       A(-100, -100, -100, -100, -100, -100, -100, -100, -100, -100, 10, 11, -100, -100));
        EXPECT_EXAMPLE(&ds.examples[1], A(3, 13, 12, 4, 110, 3, 14, 12, 132, 198, 4, 110, 3, 13, 110, 198, 4, 110),
                       A(-100, -100, -100, -100, -100, -100, -100, 12, 132, 198, -100, -100, -100, -100, -100, -100, -100,
                         -100));
        EXPECT_EXAMPLE(&ds.examples[2],
                       A(3, 215, 221, 215, 216, 201, 209, 110, 197, 4, 110, 3, 14, 110, 198, 4, 110, 3, 14, 110, 10, 4, 110),
                       A(-100, -100, -100, -100, -100, -100, -100, -100, -100, -100, -100, -100, -100, -100, 198, -100, -100,
                         -100, -100, -100, 10, -100, -100));
        pc_dataset_free(&ds);
    }
}

/* The alignment path directly: a lossy decoder turns each byte of "é" (C3 A9) into U+FFFD, so those tokens
 * are placed by the gap between their neighbours. In an assistant turn they are targets; in a user turn not. */
static void test_chat_labels_alignment(void) {
    fake_codec_options lossy = {.lossy = 1, .strip_space = 1};
    pc_text_codec codec = fake_codec(&lossy);
    const char *text = "<|im_start|>user\n\xC3\xA9<|im_end|>\n<|im_start|>assistant\nHi \xC3\xA9 world<|im_end|>\n";
    size_t len = strlen(text);
    unsigned char mask[128] = {0};
    const char *content = strstr(text, "assistant\n") + strlen("assistant\n");
    memset(mask + (content - text), 1, strlen("Hi \xC3\xA9 world"));
    int32_t *ids = NULL;
    size_t n = 0;
    pc_error err = {0};
    fake_encode(&lossy, text, len, 0, &ids, &n, &err);
    /* 3 13 110 295 269 4 110 3 14 12 132 295 269 11 4 110 — "\nHi" makes the run encoding differ, so this
     * goes through the alignment */
    static const int32_t want_ids[] = {3, 13, 110, 295, 269, 4, 110, 3, 14, 12, 132, 295, 269, 11, 4, 110};
    static const int32_t want_labels[] = {-100, -100, -100, -100, -100, -100, -100, -100, -100,
                                          12,   132,  295,  269,  11,   -100, -100};
    CHECK(same_ids(ids, (int)n, want_ids, 16), "toy encoding of the chat text");
    int32_t labels[16];
    CHECK(n == 16 && pc_chat_labels(&codec, text, mask, len, ids, n, labels, &err) == PC_OK, "chat labels: %s", err.msg);
    int ok = n == 16 && same_ids(labels, 16, want_labels, 16);
    CHECK(ok, "alignment labels with lossy pieces");
    if (!ok) print_ids("labels", labels, (int)n);
    /* a decoder that reproduces nothing: refused rather than marking by guesswork */
    fake_codec_options broken = {.broken = 1};
    codec = fake_codec(&broken);
    CHECK(n == 16 && pc_chat_labels(&codec, text, mask, len, ids, n, labels, &err) == PC_ERR_UNSUPPORTED &&
              strstr(err.msg, "cannot align"),
          "unalignable decode refused: %s", err.msg);
    pc_free(ids);
}

static void test_classification(void) {
    const char *path = write_text("cls.jsonl", "{\"text\": \"a\", \"label\": \"spam\"}\n"
                                               "{\"text\": \"b\", \"label\": \"ham\"}\n"
                                               "{\"text\": \"ab\", \"label\": \"spam\"}\n");
    fake_codec_options o = {.add_bos = 1};
    pc_text_codec codec = fake_codec(&o);
    pc_dataset ds;
    pc_error err = {0};
    CHECK(pc_dataset_load_codec(&ds, path, &codec, NULL, &err) == PC_OK, "classification load: %s", err.msg);
    CHECK(ds.count == 3 && ds.n_classes == 2 && ds.class_names && strcmp(ds.class_names[0], "spam") == 0 &&
              strcmp(ds.class_names[1], "ham") == 0,
          "string labels numbered in order of first appearance");
    if (ds.count == 3) {
        CHECK(ds.examples[0].class_label == 0 && ds.examples[1].class_label == 1 && ds.examples[2].class_label == 0,
              "class ids 0 1 0");
        EXPECT_EXAMPLE(&ds.examples[2], A(1, 197, 198), A(-100, -100, -100));
    }
    pc_dataset_free(&ds);

    path = write_text("cls_int.jsonl", "{\"text\": \"a\", \"label\": 2}\n{\"text\": \"b\", \"label\": 0}\n");
    CHECK(pc_dataset_load_codec(&ds, path, &codec, NULL, &err) == PC_OK, "int labels: %s", err.msg);
    CHECK(ds.n_classes == 3 && !ds.class_names && ds.count == 2 && ds.examples[0].class_label == 2 &&
              ds.examples[1].class_label == 0,
          "integer labels kept, n_classes = max + 1");
    pc_dataset_free(&ds);
}

static void test_truncation_and_long_lines(void) {
    /* one line of 200000 ids (about 1.3 MB), then a record cut to seq_len */
    int n_long = 200000;
    size_t cap = (size_t)n_long * 8 + 64, k = 0;
    char *buf = malloc(cap);
    k += (size_t)sprintf(buf + k, "{\"input_ids\": [");
    for (int i = 0; i < n_long; i++) k += (size_t)sprintf(buf + k, i ? ",%d" : "%d", i % 1000);
    k += (size_t)sprintf(buf + k, "]}\n{\"input_ids\": [1,2,3,4,5,6,7,8,9,10]}\n");
    const char *path = write_file("long.jsonl", buf, k);
    free(buf);
    pc_dataset ds;
    pc_error err = {0};
    CHECK(pc_dataset_load_codec(&ds, path, NULL, NULL, &err) == PC_OK, "long line: %s", err.msg);
    CHECK(ds.count == 2 && ds.examples[0].n == n_long && ds.examples[0].ids[123456] == 456 && ds.n_truncated == 0,
          "a 1.3 MB line read whole");
    pc_dataset_free(&ds);
    pc_data_options opt = {.seq_len = 4, .add_special = 1};
    CHECK(pc_dataset_load_codec(&ds, path, NULL, &opt, &err) == PC_OK, "truncation: %s", err.msg);
    if (ds.count == 2) {
        EXPECT_EXAMPLE(&ds.examples[1], A(1, 2, 3, 4), A(1, 2, 3, 4));
        CHECK(ds.examples[0].n == 4 && ds.n_truncated == 2, "both records cut to 4 (n_truncated %ld)", ds.n_truncated);
    }
    pc_dataset_free(&ds);
}

static void test_split(void) {
    char buf[2048];
    size_t k = 0;
    for (int i = 1; i <= 25; i++) k += (size_t)sprintf(buf + k, "{\"input_ids\": [%d, %d]}\n", i, i + 100);
    const char *path = write_file("split.jsonl", buf, k);
    pc_dataset all, train, held;
    pc_error err = {0};
    CHECK(pc_dataset_load_codec(&all, path, NULL, NULL, &err) == PC_OK, "split load: %s", err.msg);
    CHECK(pc_dataset_split(&all, 10, &train, &held, &err) == PC_OK, "split: %s", err.msg);
    /* records 10 and 20 (1-based) are held out */
    CHECK(held.count == 2 && held.examples[0].ids[0] == 10 && held.examples[1].ids[0] == 20 &&
              held.examples[1].labels[1] == 120,
          "every 10th record held out");
    int ok = train.count == 23;
    for (long i = 0, want = 1; ok && i < train.count; i++, want++) {
        if (want % 10 == 0) want++;
        ok = train.examples[i].ids[0] == want && train.examples[i].n == 2;
    }
    CHECK(ok, "the other 23 records in order in train");
    pc_dataset_free(&train);
    pc_dataset_free(&held);
    CHECK(pc_dataset_split(&all, 30, &train, &held, &err) == PC_ERR_USAGE, "too few records to hold out");
    CHECK(pc_dataset_split(&all, 1, &train, &held, &err) == PC_ERR_USAGE, "every_nth 1 refused");
    pc_dataset_free(&all);
}

static void test_utf8_validator(void) {
    struct {
        const char *s;
        long want;
    } cases[] = {
        {"plain ascii", -1},      {"caf\xC3\xA9", -1},          {"\xE2\x82\xAC", -1},       {"\xF0\x9F\x98\x80", -1},
        {"\xF4\x8F\xBF\xBF", -1}, {"ab\x80", 2},                {"a\xC3", 1},               {"\xC0\xAF", 0},
        {"x\xE0\x80\xAF", 1},     {"\xED\xA0\x80", 0},          {"\xF4\x90\x80\x80", 0},    {"\xF5\x80\x80\x80", 0},
        {"ok\xE2\x82", 2},        {"\xE2\x28\xA1", 0},          {"\xF0\x9F\x98\x28", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        long got = pc_utf8_first_invalid(cases[i].s, strlen(cases[i].s));
        CHECK(got == cases[i].want, "utf8 case %zu: first invalid %ld, want %ld", i, got, cases[i].want);
    }
    CHECK(pc_utf8_first_invalid("a\0b", 3) == 1, "NUL byte is invalid in a JSONL line");
}

static void path_and_options_empty_text(const pc_text_codec *codec) {
    const char *path = write_text("emptytext.jsonl", "{\"text\": \"a\"}\n{\"text\": \"\", \"label\": 1}\n");
    pc_data_options opt = {.add_special = 0};
    pc_dataset ds;
    pc_error err = {0};
    CHECK(pc_dataset_load_codec(&ds, path, codec, &opt, &err) == PC_ERR_FORMAT && strstr(err.msg, "line 2: empty record"),
          "empty text: %s", err.msg);
}

/* Each error on line 3 after two good lines; the message names the file, the line and the problem. */
static void expect_error_line3(const char *name, const char *bad_line, size_t bad_len, const pc_text_codec *codec,
                               int vocab, pc_status want_status, const char *want_text) {
    char buf[512];
    size_t k = (size_t)sprintf(buf, "{\"input_ids\": [1, 2]}\n%s\n", codec ? "{\"text\": \"a\"}" : "{\"input_ids\": [3]}");
    memcpy(buf + k, bad_line, bad_len);
    k += bad_len;
    k += (size_t)sprintf(buf + k, "\n{\"input_ids\": [3]}\n");
    const char *path = write_file(name, buf, k);
    pc_dataset ds;
    pc_error err = {0};
    pc_data_options opt = {.add_special = 1, .vocab_size = vocab};
    pc_status st = pc_dataset_load_codec(&ds, path, codec, &opt, &err);
    int ok = st == want_status && strstr(err.msg, name) && strstr(err.msg, ": line 3: ") && strstr(err.msg, want_text);
    CHECK(ok, "%s: status %s, message \"%s\" (want \"line 3\" and \"%s\")", name, pc_status_name(st), err.msg,
          want_text);
    CHECK(ds.count == 0 && ds.examples == NULL, "%s: dataset left empty on error", name);
}
#define BAD(name, line, want) expect_error_line3(name, line, strlen(line), &codec, 300, PC_ERR_FORMAT, want)

static void test_errors(void) {
    fake_codec_options o = {.add_bos = 1};
    pc_text_codec codec = fake_codec(&o);
    BAD("json.jsonl", "{\"input_ids\": [1, 2", "bad JSON");
    BAD("trailing.jsonl", "{\"input_ids\": [1]} x", "bad JSON");
    BAD("two.jsonl", "{\"input_ids\": [1]}{\"input_ids\": [1]}", "bad JSON");
    BAD("notobj.jsonl", "[1, 2]", "JSON object");
    BAD("missing.jsonl", "{\"foo\": 1}", "missing field");
    BAD("nocompletion.jsonl", "{\"prompt\": \"a\"}", "missing field 'completion'");
    BAD("noprompt.jsonl", "{\"completion\": \"a\"}", "missing field 'prompt'");
    BAD("textnum.jsonl", "{\"text\": 5}", "'text' must be a string");
    BAD("idsstr.jsonl", "{\"input_ids\": \"abc\"}", "'input_ids' must be an array");
    BAD("idsfloat.jsonl", "{\"input_ids\": [1, 2.5]}", "input_ids[1] is not an integer");
    BAD("idsbig.jsonl", "{\"input_ids\": [1, 5000000000]}", "input_ids[1] is not an integer");
    BAD("labelsstr.jsonl", "{\"input_ids\": [1, 2], \"labels\": [1, \"x\"]}", "labels[1] is not an integer");
    BAD("range.jsonl", "{\"input_ids\": [1, 300]}", "out of range");
    BAD("negative.jsonl", "{\"input_ids\": [-5]}", "out of range");
    BAD("labelrange.jsonl", "{\"input_ids\": [1, 2], \"labels\": [-1, 2]}", "out of range");
    BAD("labelslen.jsonl", "{\"input_ids\": [1, 2, 3], \"labels\": [1, 2]}", "'labels' has 2 entries");
    BAD("emptyids.jsonl", "{\"input_ids\": []}", "empty record");
    BAD("emptymsgs.jsonl", "{\"messages\": []}", "empty record");
    BAD("msgcontent.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\"}]}",
        "messages[1] has no 'content'");
    BAD("msgrole.jsonl", "{\"messages\": [{\"role\": 1, \"content\": \"a\"}]}", "messages[0] has a 'role' that is not");
    BAD("msgnotarr.jsonl", "{\"messages\": \"hi\"}", "'messages' must be an array");
    BAD("labeltype.jsonl", "{\"text\": \"a\", \"label\": [1]}", "'label' must be an integer or a string");
    BAD("utf8.jsonl", "{\"text\": \"a\xFF\"}", "invalid UTF-8 at byte 12");
    BAD("overlong.jsonl", "{\"text\": \"\xC0\xAF\"}", "invalid UTF-8");
    BAD("surrogate.jsonl", "{\"text\": \"\xED\xA0\x80\"}", "invalid UTF-8");
    BAD("escsurrogate.jsonl", "{\"text\": \"\\uD800x\"}", "bad JSON");
    expect_error_line3("nul.jsonl", "{\"text\": \"a\0b\"}", 15, &codec, 0, PC_ERR_FORMAT, "NUL byte");
    /* a text record with no tokenizer: a usage error, still naming the line */
    expect_error_line3("notok.jsonl", "{\"text\": \"a\"}", 13, NULL, 0, PC_ERR_USAGE, "needs a tokenizer");

    /* a text that encodes to nothing */
    path_and_options_empty_text(&codec);

    /* mixed label kinds: the error is on the first record of the other kind */
    const char *path = write_text("mixed.jsonl", "{\"text\": \"a\", \"label\": 1}\n\n{\"text\": \"b\", \"label\": \"x\"}\n");
    pc_dataset ds;
    pc_error err = {0};
    CHECK(pc_dataset_load_codec(&ds, path, &codec, NULL, &err) == PC_ERR_FORMAT && strstr(err.msg, "line 3: ") &&
              strstr(err.msg, "earlier labels are integers"),
          "mixed labels: %s", err.msg);
    CHECK(pc_dataset_load_codec(&ds, "/nonexistent/peftc/data.jsonl", NULL, NULL, &err) == PC_ERR_IO &&
              strstr(err.msg, "/nonexistent/peftc/data.jsonl"),
          "missing file: %s", err.msg);
    path = write_text("blank.jsonl", "\n  \n\r\n");
    CHECK(pc_dataset_load_codec(&ds, path, NULL, NULL, &err) == PC_ERR_FORMAT && strstr(err.msg, "no records"),
          "file of blank lines: %s", err.msg);
}

/* Every allocation failing in turn: a clean PC_ERR_NOMEM (or success once enough succeed), never a crash. */
static void test_allocation_failures(void) {
    const char *path = write_text(
        "alloc.jsonl", "{\"input_ids\": [1, 2, 3]}\n{\"prompt\": \"a\", \"completion\": \"b\"}\n"
                       "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hi\"}]}\n"
                       "{\"text\": \"a\", \"label\": \"x\"}\n");
    fake_codec_options o = {.add_bos = 1, .add_eos = 1};
    pc_text_codec codec = fake_codec(&o);
    int clean = 1, succeeded = 0;
    for (long n = 0; n < 200 && !succeeded; n++) {
        pc_dataset ds;
        pc_error err = {0};
        pc_alloc_fail_after(n);
        pc_status st = pc_dataset_load_codec(&ds, path, &codec, NULL, &err);
        pc_alloc_fail_after(-1);
        if (st == PC_OK) {
            succeeded = ds.count == 4;
            pc_dataset_free(&ds);
        } else if (st != PC_ERR_NOMEM) {
            clean = 0;
            fprintf(stderr, "  fail after %ld: %s\n", n, err.msg);
        }
    }
    CHECK(clean && succeeded, "allocation failures give PC_ERR_NOMEM until the load succeeds");
}

/* The committed fixtures stay what tests/data/README.md says they are. */
static void test_fixtures(void) {
    fake_codec_options o = {.add_bos = 1, .add_eos = 1};
    pc_text_codec codec = fake_codec(&o);
    struct {
        const char *name;
        long count;
        const char *error;
    } files[] = {{"ids_small.jsonl", 4, NULL},         {"prompt_completion.jsonl", 3, NULL},
                 {"chat.jsonl", 2, NULL},              {"classification.jsonl", 4, NULL},
                 {"bad_json_line3.jsonl", 0, "line 3: bad JSON"},
                 {"bad_utf8_line3.jsonl", 0, "line 3: invalid UTF-8"},
                 {"missing_field_line3.jsonl", 0, "line 3: missing field 'completion'"}};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tests/data/%s", test_source_dir(), files[i].name);
        pc_dataset ds;
        pc_error err = {0};
        pc_status st = pc_dataset_load_codec(&ds, path, &codec, NULL, &err);
        if (files[i].error)
            CHECK(st == PC_ERR_FORMAT && strstr(err.msg, files[i].error), "%s: %s", files[i].name, err.msg);
        else
            CHECK(st == PC_OK && ds.count == files[i].count, "%s: %s", files[i].name, err.msg);
        if (st == PC_OK && strcmp(files[i].name, "chat.jsonl") == 0) {
            /* second conversation: the targets are exactly the bytes of "Blue." and "Red." (one token each byte) */
            const pc_example *e = &ds.examples[1];
            char targets[32];
            int k = 0;
            for (int t = 0; t < e->n && k < 31; t++)
                if (e->labels[t] != -100) targets[k++] = (char)(e->labels[t] - 100);
            targets[k] = '\0';
            CHECK(strcmp(targets, "Blue.Red.") == 0, "chat fixture targets \"%s\"", targets);
        }
        if (st == PC_OK) pc_dataset_free(&ds);
    }
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/peftc_test_data_XXXXXX");
    if (!mkdtemp(tmp_dir)) test_fail_setup("mkdtemp failed");
    test_pretokenized();
    test_text_and_prompt();
    test_prompt_literal_eos();
    test_messages();
    test_chat_labels_alignment();
    test_classification();
    test_truncation_and_long_lines();
    test_split();
    test_utf8_validator();
    test_errors();
    test_allocation_failures();
    test_fixtures();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return test_finish();
}
