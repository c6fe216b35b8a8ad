/* libFuzzer target: pc_dataset_load on arbitrary bytes as a JSONL file, without a tokenizer (pre-tokenized
 * records) and with a small byte-level BPE tokenizer (text, prompt/completion, chat, classification records).
 * Checks what a load promises: a failure names the file (and a line, for a record error); every loaded id is
 * inside the vocabulary, every label is -100 or inside it, and no record exceeds seq_len. */
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

#define VOCAB 128
#define SEQ_LEN 24

static const char tokenizer_json[] =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":0,\"content\":\"<s>\",\"special\":true},"
    "{\"id\":1,\"content\":\"</s>\",\"special\":true}],\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
    "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<s>\",\"continuing_subword_prefix\":null,"
    "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,"
    "\"vocab\":{\"<s>\":0,\"</s>\":1,\"a\":2,\"b\":3,\"c\":4,\"\\u0120\":5,\"ab\":6,\"\\u0120a\":7,\"{\":8,\"}\":9,"
    "\"\\\"\":10,\":\":11,\"e\":12,\"t\":13,\"x\":14},"
    "\"merges\":[\"a b\",\"\\u0120 a\"]}}";

static pc_tokenizer *tokenizer; /* loaded once; read-only afterwards */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char path[64];
    int fd = fuzz_memfile((const uint8_t *)tokenizer_json, sizeof tokenizer_json - 1, path, sizeof path);
    pc_error err = {0};
    if (fd < 0 || pc_tokenizer_load(&tokenizer, path, &err) != PC_OK) {
        fprintf(stderr, "fuzz_jsonl: the built-in tokenizer does not load: %s\n", err.msg);
        abort();
    }
    close(fd);
    return 0;
}

static void load(const char *path, const pc_tokenizer *tk) {
    pc_data_options opt = {.seq_len = SEQ_LEN, .add_special = 1, .vocab_size = VOCAB};
    pc_dataset ds = {0};
    pc_error err = {0};
    if (pc_dataset_load(&ds, path, tk, &opt, &err) != PC_OK) {
        FUZZ_ASSERT(strstr(err.msg, path) != NULL);
        pc_dataset_free(&ds);
        return;
    }
    FUZZ_ASSERT(ds.count > 0);
    for (long r = 0; r < ds.count; r++) {
        const pc_example *e = &ds.examples[r];
        FUZZ_ASSERT(e->n >= 0 && e->n <= SEQ_LEN);
        for (int i = 0; i < e->n; i++) {
            FUZZ_ASSERT(e->ids[i] >= 0 && e->ids[i] < VOCAB);
            FUZZ_ASSERT(e->labels[i] == PC_IGNORE_INDEX || (e->labels[i] >= 0 && e->labels[i] < VOCAB));
        }
    }
    pc_dataset_free(&ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    load(path, NULL);
    load(path, tokenizer);
    close(fd);
    return 0;
}
