/* Tokenizer behaviour on small hand-written tokenizer.json files whose expected ids are derived by hand from
 * the Hugging Face semantics (merge order, Split behaviours, Metaspace, Digits, normalizers, added-token
 * flags, decoders), malformed files (one-line errors naming the file), allocation failures, and the BPE
 * trainer on a corpus small enough to derive its merges by hand. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "test_support.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/tokenizer.h"

static char tmpdir[] = "/tmp/peftc-tokunit-XXXXXX";

static const char *write_tmp(const char *name, const char *text) {
    static char path[4][512];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    return p;
}

/* A tokenizer.json with a BPE over single characters plus the given extra tokens and merges. */
static const char *make_tok(const char *name, const char *extra_vocab, const char *merges, const char *pre,
                            const char *norm, const char *added, const char *decoder) {
    static char buf[8192];
    snprintf(buf, sizeof buf,
             "{\"added_tokens\": [%s], \"normalizer\": %s, \"pre_tokenizer\": %s, \"post_processor\": null,"
             " \"decoder\": %s, \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true,"
             " \"vocab\": {\"<unk>\": 0, \"a\": 1, \"b\": 2, \"c\": 3, \"-\": 4, \" \": 5, \"1\": 6, \"2\": 7, \"x\": 8,"
             " \"\\u2581\": 9, \"f\": 10, \"i\": 11 %s}, \"merges\": [%s]}}",
             added ? added : "", norm ? norm : "null", pre ? pre : "null", decoder ? decoder : "null",
             extra_vocab ? extra_vocab : "", merges ? merges : "");
    return write_tmp(name, buf);
}

static int expect_ids(const char *what, const char *path, const char *text, int n, ...) {
    pc_tokenizer *tk = NULL;
    pc_error err = {0};
    if (pc_tokenizer_load(&tk, path, &err) != PC_OK) {
        CHECK(0, "%s: load failed: %s", what, err.msg);
        return 0;
    }
    int32_t *ids = NULL;
    size_t got = 0;
    pc_status st = pc_tokenizer_encode(tk, text, strlen(text), 0, &ids, &got, &err);
    int ok = st == PC_OK && got == (size_t)n;
    va_list ap;
    va_start(ap, n);
    for (int i = 0; ok && i < n; i++) ok = ids[i] == va_arg(ap, int);
    va_end(ap);
    if (!ok) {
        fprintf(stderr, "  %s: got", what);
        for (size_t i = 0; i < got; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, " (%s)\n", st == PC_OK ? "ok" : err.msg);
    }
    CHECK(ok, "%s: ids for \"%s\"", what, text);
    pc_free(ids);
    pc_tokenizer_free(tk);
    return ok;
}

static void test_merge_order(void) {
    /* ids 12.. : ab bc abc */
    const char *v = ", \"ab\": 12, \"bc\": 13, \"abc\": 14";
    /* "b c" has rank 0: b+c first, then a+bc. */
    expect_ids("merge rank decides", make_tok("m1.json", v, "\"b c\", \"a b\", \"a bc\"", 0, 0, 0, 0), "abc", 1, 14);
    /* "a b" first, then no merge for (ab, c): two tokens. */
    expect_ids("lower rank wins", make_tok("m2.json", v, "\"a b\", \"b c\"", 0, 0, 0, 0), "abc", 2, 12, 3);
    /* pair form ["a","b"] reads the same */
    expect_ids("pair-form merges", make_tok("m3.json", v, "[\"a\", \"b\"], [\"b\", \"c\"]", 0, 0, 0, 0), "abc", 2, 12, 3);
    /* equal pairs: leftmost first: "bbb" with "b b" -> [bb, b] */
    expect_ids("ties go left", make_tok("m4.json", ", \"bb\": 12", "\"b b\"", 0, 0, 0, 0), "bbb", 2, 12, 2);
    /* unknown characters fuse into one <unk> (fuse_unk) */
    expect_ids("fuse_unk", make_tok("m5.json", "", "", 0, 0, 0, 0), "azzb", 3, 1, 0, 2);
}

static void test_split_behaviours(void) {
    const char *v = ", \"a-\": 12, \"-b\": 13, \"--\": 14";
    const char *m = "\"a -\", \"- b\", \"- -\"";
    char pre[256];
    const char *names[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext"};
    for (int i = 0; i < 4; i++) {
        snprintf(pre, sizeof pre, "{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"%s\", \"invert\": false}", names[i]);
        const char *p = make_tok("split.json", v, m, pre, 0, 0, 0);
        if (i == 0) expect_ids("Split Isolated", p, "a-b", 3, 1, 4, 2);
        if (i == 1) expect_ids("Split Removed", p, "a-b", 2, 1, 2);
        if (i == 2) expect_ids("Split MergedWithPrevious", p, "a-b", 2, 12, 2);
        if (i == 3) expect_ids("Split MergedWithNext", p, "a-b", 2, 1, 13);
    }
    snprintf(pre, sizeof pre, "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"-\"}, \"behavior\": \"Contiguous\", \"invert\": false}");
    expect_ids("Split Contiguous", make_tok("split2.json", v, m, pre, 0, 0, 0), "a--b", 3, 1, 14, 2);
    snprintf(pre, sizeof pre, "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"-\"}, \"behavior\": \"Isolated\", \"invert\": false}");
    expect_ids("Split Isolated keeps --", make_tok("split3.json", v, m, pre, 0, 0, 0), "a--b", 4, 1, 4, 4, 2);
    /* invert: matches and the text between swap roles; Removed then drops the text between ("c") */
    snprintf(pre, sizeof pre, "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[ab]-\"}, \"behavior\": \"Removed\", \"invert\": true}");
    expect_ids("Split invert", make_tok("split4.json", v, m, pre, 0, 0, 0), "a-cb-", 3, 12, 2, 4);
}

static void test_metaspace_digits_normalizers(void) {
    const char *v = ", \"\\u2581a\": 12, \"\\u2581b\": 13, \"12\": 14, \"fi\": 15";
    const char *m = "\"\\u2581 a\", \"\\u2581 b\", \"1 2\", \"f i\"";
    const char *meta = "{\"type\": \"Metaspace\", \"replacement\": \"\\u2581\", \"prepend_scheme\": \"first\", \"split\": true}";
    /* "a b": prepend -> "▁a▁b" -> pieces "▁a", "▁b" */
    expect_ids("Metaspace first+split", make_tok("meta.json", v, m, meta, 0, 0, 0), "a b", 2, 12, 13);
    const char *never = "{\"type\": \"Metaspace\", \"replacement\": \"\\u2581\", \"prepend_scheme\": \"never\", \"split\": true}";
    expect_ids("Metaspace never", make_tok("meta2.json", v, m, never, 0, 0, 0), "a b", 2, 1, 13);
    const char *digits = "{\"type\": \"Digits\", \"individual_digits\": true}";
    expect_ids("Digits individual", make_tok("dig.json", v, m, digits, 0, 0, 0), "12", 2, 6, 7);
    const char *runs = "{\"type\": \"Digits\", \"individual_digits\": false}";
    expect_ids("Digits runs", make_tok("dig2.json", v, m, runs, 0, 0, 0), "a12", 2, 1, 14);
    const char *norm = "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}, {\"type\": \"Lowercase\"},"
                       " {\"type\": \"Strip\", \"strip_left\": true, \"strip_right\": true}]}";
    /* U+FB01 (fi ligature) -> "fi" under NFKC; "AB" -> "ab"; spaces stripped */
    expect_ids("NFKC+Lowercase+Strip", make_tok("norm.json", v, m, 0, norm, 0, 0), "  \xEF\xAC\x81" "AB  ", 3, 15, 1, 2);
    const char *rep = "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\\u2581\"},"
                      " {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}]}";
    expect_ids("Prepend+Replace", make_tok("norm2.json", v, m, 0, rep, 0, 0), "a b", 2, 12, 13);
}

static void test_added_tokens(void) {
    const char *plain = "{\"id\": 20, \"content\": \"<x>\", \"special\": true, \"normalized\": false}";
    expect_ids("added token split", make_tok("add1.json", "", "", 0, 0, plain, 0), "a<x>b", 3, 1, 20, 2);
    const char *lr = "{\"id\": 20, \"content\": \"<x>\", \"special\": true, \"normalized\": false, \"lstrip\": true, \"rstrip\": true}";
    expect_ids("lstrip/rstrip eat spaces", make_tok("add2.json", "", "", 0, 0, lr, 0), "a <x> b", 3, 1, 20, 2);
    expect_ids("no strip keeps spaces", make_tok("add3.json", "", "", 0, 0, plain, 0), "a <x> b", 5, 1, 5, 20, 5, 2);
    const char *sw = "{\"id\": 20, \"content\": \"ab\", \"special\": true, \"normalized\": false, \"single_word\": true}";
    expect_ids("single_word alone", make_tok("add4.json", "", "", 0, 0, sw, 0), "ab c", 3, 20, 5, 3);
    expect_ids("single_word inside a word", make_tok("add5.json", "", "", 0, 0, sw, 0), "cab", 3, 3, 1, 2);
    const char *two = "{\"id\": 20, \"content\": \"<x>\", \"special\": true}, {\"id\": 21, \"content\": \"<x>y\", \"special\": true}";
    expect_ids("longest added token wins", make_tok("add6.json", ", \"y\": 22", "", 0, 0, two, 0), "<x>y<x>", 2, 21, 20);
}

static void decode_is(const char *what, const char *path, const int32_t *ids, size_t n, int skip, const char *want) {
    pc_tokenizer *tk = NULL;
    pc_error err = {0};
    if (pc_tokenizer_load(&tk, path, &err) != PC_OK) {
        CHECK(0, "%s: %s", what, err.msg);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    pc_status st = pc_tokenizer_decode(tk, ids, n, skip, &text, &len, &err);
    CHECK(st == PC_OK && len == strlen(want) && !memcmp(text, want, len), "%s: got \"%s\" want \"%s\"", what, text ? text : err.msg, want);
    pc_free(text);
    pc_tokenizer_free(tk);
}

static void test_decoders(void) {
    /* SentencePiece style: Replace ▁->' ', ByteFallback, Fuse, Strip one leading space. */
    const char *dec = "{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"\\u2581\"},"
                      " \"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"},"
                      " {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]}";
    const char *v = ", \"\\u2581a\": 12, \"<0xC3>\": 13, \"<0xA9>\": 14";
    const char *p = make_tok("dec1.json", v, "", 0, 0, 0, dec);
    int32_t ids1[] = {12, 2, 9, 13, 14}; /* "▁a" "b" "▁" <0xC3><0xA9> -> " ab é" -> strip 1 -> "ab é" */
    decode_is("spm decoders", p, ids1, 5, 0, "ab \xC3\xA9");
    int32_t ids2[] = {12, 13}; /* a lone 0xC3 byte is not UTF-8: U+FFFD */
    decode_is("byte fallback invalid", p, ids2, 2, 0, "a\xEF\xBF\xBD");
    const char *meta = "{\"type\": \"Metaspace\", \"replacement\": \"\\u2581\", \"prepend_scheme\": \"always\", \"split\": true}";
    int32_t ids3[] = {12, 9, 2};
    decode_is("Metaspace decoder", make_tok("dec2.json", v, "", 0, 0, 0, meta), ids3, 3, 0, "a b");
    const char *added = "{\"id\": 20, \"content\": \"<x>\", \"special\": true}";
    int32_t ids4[] = {1, 20, 2};
    decode_is("skip special", make_tok("dec3.json", "", "", 0, 0, added, "{\"type\": \"Fuse\"}"), ids4, 3, 1, "ab");
    decode_is("keep special", make_tok("dec3.json", "", "", 0, 0, added, "{\"type\": \"Fuse\"}"), ids4, 3, 0, "a<x>b");
}

static void expect_load_error(const char *what, const char *name, const char *json, pc_status want, const char *needle) {
    const char *path = write_tmp(name, json);
    pc_tokenizer *tk = NULL;
    pc_error err = {0};
    pc_status st = pc_tokenizer_load(&tk, path, &err);
    CHECK(st == want && tk == NULL, "%s: status %d (want %d): %s", what, (int)st, (int)want, err.msg);
    CHECK(strstr(err.msg, name) != NULL && strchr(err.msg, '\n') == NULL, "%s: message names the file on one line: %s", what, err.msg);
    CHECK(needle == NULL || strstr(err.msg, needle) != NULL, "%s: message mentions '%s': %s", what, needle, err.msg);
    pc_tokenizer_free(tk);
}

static void test_malformed(void) {
    expect_load_error("bad JSON", "bad.json", "{\"model\": {\"type\": \"BPE\", ", PC_ERR_FORMAT, "invalid JSON");
    expect_load_error("missing model", "nomodel.json", "{\"added_tokens\": []}", PC_ERR_FORMAT, "model");
    expect_load_error("unknown model", "wp.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", PC_ERR_UNSUPPORTED, "WordPiece");
    expect_load_error("unknown normalizer", "nrm.json",
                      "{\"normalizer\": {\"type\": \"BertNormalizer\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                      PC_ERR_UNSUPPORTED, "BertNormalizer");
    expect_load_error("unknown pre-tokenizer", "pre.json",
                      "{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                      PC_ERR_UNSUPPORTED, "Whitespace");
    expect_load_error("unknown decoder", "dec.json",
                      "{\"decoder\": {\"type\": \"CTC\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                      PC_ERR_UNSUPPORTED, "CTC");
    expect_load_error("merge of unknown token", "merge.json",
                      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a q\"]}}",
                      PC_ERR_FORMAT, "'q'");
    expect_load_error("merge result missing", "merge2.json",
                      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}", PC_ERR_FORMAT, "'ab'");
    expect_load_error("bad regex", "re.json",
                      "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\"},"
                      " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                      PC_ERR_UNSUPPORTED, "regex");
    expect_load_error("negative id", "neg.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", PC_ERR_FORMAT, "bad id");
    /* invalid UTF-8 input is an error, not a crash */
    pc_tokenizer *tk = NULL;
    pc_error err = {0};
    if (pc_tokenizer_load(&tk, make_tok("ok.json", "", "", 0, 0, 0, 0), &err) == PC_OK) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(pc_tokenizer_encode(tk, "a\xC3(", 3, 0, &ids, &n, &err) == PC_ERR_FORMAT && strstr(err.msg, "invalid UTF-8"),
              "invalid UTF-8 input: %s", err.msg);
        int32_t bad[] = {1, 99999};
        char *text = NULL;
        size_t len = 0;
        CHECK(pc_tokenizer_decode(tk, bad, 2, 0, &text, &len, &err) == PC_ERR_FORMAT, "decode of an unknown id fails: %s", err.msg);
        pc_tokenizer_free(tk);
    }
}

/* Every allocation failure while loading and encoding becomes PC_ERR_NOMEM, never a crash. */
static void test_alloc_failures(void) {
    const char *meta = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"},"
                       " \"behavior\": \"Isolated\"}, {\"type\": \"Metaspace\", \"replacement\": \"\\u2581\", \"prepend_scheme\": \"always\"}]}";
    const char *path = make_tok("alloc.json", ", \"ab\": 12", "\"a b\"", meta, "{\"type\": \"NFC\"}",
                                "{\"id\": 20, \"content\": \"<x>\", \"special\": true}", "{\"type\": \"Fuse\"}");
    int clean = 1, succeeded = 0;
    for (long n = 0; n < 400 && !succeeded; n++) {
        pc_alloc_fail_after(n);
        pc_tokenizer *tk = NULL;
        pc_error err = {0};
        pc_status st = pc_tokenizer_load(&tk, path, &err);
        if (st == PC_OK) {
            int32_t *ids = NULL;
            size_t k = 0;
            st = pc_tokenizer_encode(tk, "ab c<x>\xC3\xA9 ab", 12, 1, &ids, &k, &err);
            if (st == PC_OK) succeeded = 1;
            pc_free(ids);
            pc_tokenizer_free(tk);
        }
        if (st != PC_OK && st != PC_ERR_NOMEM) {
            clean = 0;
            fprintf(stderr, "  allocation %ld failing gave status %d: %s\n", n, (int)st, err.msg);
        }
    }
    pc_alloc_fail_after(-1);
    CHECK(clean, "allocation failures give PC_ERR_NOMEM");
    CHECK(succeeded, "load+encode eventually succeed with enough allocations");
}

/* "ab ab ab ab ab abc abc abc" -> GPT-2 pieces "ab" x1, " ab" x4, " abc" x3.
 * pairs: (a,b) 8, (Ġ,a) 7, (b,c) 3 -> merge a+b; then (Ġ,ab) 7, (ab,c) 3 -> Ġ+ab; then (Ġab,c) 3. */
static void test_trainer(void) {
    const char *data = write_tmp("train.txt", "ab ab ab ab ab abc abc abc");
    const char *files[] = {data};
    const char *specials[] = {"<|endoftext|>"};
    pc_bpe_train_options opt = {1 + 256 + 3, 2, specials, 1};
    char out[600];
    snprintf(out, sizeof out, "%s/trained.json", tmpdir);
    pc_error err = {0};
    int n_merges = 0;
    CHECK(pc_bpe_train(files, 1, &opt, out, &n_merges, &err) == PC_OK, "train: %s", err.msg);
    CHECK(n_merges == 3, "train: %d merges, want 3", n_merges);
    FILE *f = fopen(out, "r");
    char buf[1 << 16];
    size_t len = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[len] = '\0';
    const char *want = "\"merges\":\t[[\"a\", \"b\"], [\"\xC4\xA0\", \"ab\"], [\"\xC4\xA0" "ab\", \"c\"]]";
    CHECK(strstr(buf, want) != NULL, "train: merges are a+b, Ġ+ab, Ġab+c");
    pc_tokenizer *tk = NULL;
    CHECK(pc_tokenizer_load(&tk, out, &err) == PC_OK, "trained tokenizer loads: %s", err.msg);
    if (!tk) return;
    /* ids: 0 special, 1..256 bytes, 257 "ab", 258 "Ġab", 259 "Ġabc" */
    int32_t *ids = NULL;
    size_t n = 0;
    const char *text = "ab abc<|endoftext|> ab";
    CHECK(pc_tokenizer_encode(tk, text, strlen(text), 0, &ids, &n, &err) == PC_OK, "encode: %s", err.msg);
    int32_t want_ids[] = {257, 259, 0, 258};
    CHECK(n == 4 && !memcmp(ids, want_ids, sizeof want_ids), "trained tokenizer ids (n=%zu)", n);
    char *back = NULL;
    size_t bl = 0;
    CHECK(pc_tokenizer_decode(tk, ids, n, 0, &back, &bl, &err) == PC_OK && bl == strlen(text) && !memcmp(back, text, bl),
          "trained tokenizer round trip");
    CHECK(pc_tokenizer_vocab_size(tk) == 260, "vocab size %d", pc_tokenizer_vocab_size(tk));
    pc_free(back);
    pc_free(ids);
    pc_tokenizer_free(tk);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        test_fail_setup("cannot create a temporary directory");
        return test_finish();
    }
    test_merge_order();
    test_split_behaviours();
    test_metaspace_digits_normalizers();
    test_added_tokens();
    test_decoders();
    test_malformed();
    test_alloc_failures();
    test_trainer();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_finish();
}
