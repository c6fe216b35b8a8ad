/* A toy tokenizer for the data tests, simple enough that every expected id can be derived on paper:
 *   specials  "<s>"=1  "</s>"=2  "<|im_start|>"=3  "<|im_end|>"=4   (matched first, like added tokens)
 *   words     "Hello"=10  " world"=11  "\nHi"=12  "user"=13  "assistant"=14   (longest match wins)
 *   any other byte b is the token 100+b  ('a'=197, 'b'=198, '\n'=110, ' '=132)
 * add_special puts BOS (1) in front if add_bos and EOS (2) behind if add_eos.
 * Decoding one token gives its text, with two switchable quirks of real decoders: strip_space drops a
 * leading space (SentencePiece's Strip decoder on "▁world"), lossy turns bytes that do not form complete
 * UTF-8 into U+FFFD (byte-level decoders on partial characters, as from_utf8_lossy); broken decodes every
 * token to "#" (a decoder that does not reproduce the text at all).
 * The chat template is ChatML: "<|im_start|>" role "\n" content "<|im_end|>\n" per message; the mask marks
 * the content bytes of assistant messages. */
#ifndef TEST_DATA_FAKE_CODEC_H
#define TEST_DATA_FAKE_CODEC_H

#include <string.h>

#include "core/alloc.h"
#include "data/line_reader.h"
#include "data/text_codec.h"

typedef struct fake_codec_options {
    int add_bos, add_eos, strip_space, lossy, broken;
} fake_codec_options;

static const char *const fake_specials[] = {"<s>", "</s>", "<|im_start|>", "<|im_end|>"};
static const char *const fake_words[] = {"Hello", " world", "\nHi", "user", "assistant"};

static int32_t fake_next_token(const char *s, size_t left, size_t *used) {
    for (int i = 0; i < 4; i++) {
        size_t l = strlen(fake_specials[i]);
        if (l <= left && memcmp(s, fake_specials[i], l) == 0) return (*used = l), 1 + i;
    }
    size_t best = 0;
    int32_t id = -1;
    for (int i = 0; i < 5; i++) {
        size_t l = strlen(fake_words[i]);
        if (l <= left && l > best && memcmp(s, fake_words[i], l) == 0) best = l, id = 10 + i;
    }
    if (id >= 0) return (*used = best), id;
    *used = 1;
    return 100 + (unsigned char)s[0];
}

static pc_status fake_encode(const void *ctx, const char *text, size_t len, int add_special, int32_t **ids, size_t *n,
                             pc_error *err) {
    const fake_codec_options *o = ctx;
    int32_t *out = pc_malloc((len + 2) * sizeof *out);
    if (!out) return pc_fail(err, PC_ERR_NOMEM, "fake: out of memory");
    size_t k = 0, used;
    if (add_special && o->add_bos) out[k++] = 1;
    for (size_t i = 0; i < len; i += used) out[k++] = fake_next_token(text + i, len - i, &used);
    if (add_special && o->add_eos) out[k++] = 2;
    *ids = out;
    *n = k;
    return PC_OK;
}

/* Replace each byte that does not start a complete UTF-8 sequence by U+FFFD, in place (out has room: the
 * caller allocated 16 bytes per token). Returns the new length. */
static size_t fake_lossy_utf8(char *s, size_t len) {
    char tmp[4096];
    size_t k = 0;
    for (size_t i = 0; i < len && k + 3 < sizeof tmp;) {
        unsigned char c = (unsigned char)s[i];
        size_t need = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (i + need <= len && pc_utf8_first_invalid(s + i, need) < 0) {
            memcpy(tmp + k, s + i, need);
            k += need, i += need;
        } else {
            memcpy(tmp + k, "\xEF\xBF\xBD", 3);
            k += 3, i += 1;
        }
    }
    memcpy(s, tmp, k);
    return k;
}

static pc_status fake_decode(const void *ctx, const int32_t *ids, size_t n, char **text, size_t *len, pc_error *err) {
    const fake_codec_options *o = ctx;
    char *out = pc_malloc(n * 16 + 1);
    if (!out) return pc_fail(err, PC_ERR_NOMEM, "fake: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        const char *s = NULL;
        char byte[4] = {0};
        if (id >= 1 && id <= 4) s = fake_specials[id - 1];
        else if (id >= 10 && id <= 14) s = fake_words[id - 10];
        else if (id >= 100 && id < 356) byte[0] = (char)(id - 100), s = byte;
        else s = "?";
        if (o->broken) s = "#";
        size_t l = s == byte ? 1 : strlen(s);
        memcpy(out + k, s, l);
        k += l;
    }
    if (o->lossy) k = fake_lossy_utf8(out, k);
    if (o->strip_space && k > 0 && out[0] == ' ') memmove(out, out + 1, --k);
    out[k] = '\0';
    *text = out;
    *len = k;
    return PC_OK;
}

static pc_status fake_render_chat(const void *ctx, const char *template_name, const pc_chat_message *msgs, int n_msgs,
                                  char **text, unsigned char **mask, size_t *len, pc_error *err) {
    size_t cap = 1;
    for (int i = 0; i < n_msgs; i++) cap += strlen(msgs[i].role) + strlen(msgs[i].content) + 32;
    char *t = pc_malloc(cap);
    unsigned char *m = pc_calloc(cap, 1);
    if (!t || !m) {
        pc_free(t);
        pc_free(m);
        return pc_fail(err, PC_ERR_NOMEM, "fake: out of memory");
    }
    size_t k = 0;
    for (int i = 0; i < n_msgs; i++) {
        int assistant = strcmp(msgs[i].role, "assistant") == 0;
        k += (size_t)sprintf(t + k, "<|im_start|>%s\n", msgs[i].role);
        size_t cl = strlen(msgs[i].content);
        memcpy(t + k, msgs[i].content, cl);
        if (assistant) memset(m + k, 1, cl);
        k += cl;
        k += (size_t)sprintf(t + k, "<|im_end|>\n");
    }
    *text = t;
    *mask = m;
    *len = k;
    return PC_OK;
}

static pc_text_codec fake_codec(const fake_codec_options *o) {
    pc_text_codec c = {.ctx = o, .encode = fake_encode, .decode = fake_decode, .render_chat = fake_render_chat,
                       .bos_id = 1, .eos_id = 2};
    return c;
}

#endif
