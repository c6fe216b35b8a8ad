/* Loss labels of a rendered conversation: which tokens of the whole text hold assistant bytes. The rule
 * and why it is the rule are in text_codec.h (pc_chat_labels). */
#include <string.h>

#include "core/alloc.h"
#include "data/text_codec.h"

/* Exact spans when the whole text tokenizes as the concatenation of its runs of equal mask: each token
 * then lies inside one run, and its span is that run ([start, end) is the run, enough for the mask).
 * *exact = 0 when some token crosses a run boundary. */
static pc_status spans_by_runs(const pc_text_codec *codec, const char *text, const unsigned char *mask, size_t len,
                               const int32_t *ids, size_t n, size_t *start, size_t *end, int *exact, pc_error *err) {
    *exact = 0;
    size_t k = 0; /* tokens matched so far */
    for (size_t a = 0; a < len;) {
        size_t b = a + 1;
        while (b < len && (mask[b] != 0) == (mask[a] != 0)) b++;
        int32_t *run = NULL;
        size_t m = 0;
        PC_TRY(codec->encode(codec->ctx, text + a, b - a, 0, &run, &m, err));
        int same = k + m <= n && (m == 0 || memcmp(run, ids + k, m * sizeof *run) == 0);
        pc_free(run);
        if (!same) return PC_OK;
        for (size_t i = k; i < k + m; i++) start[i] = a, end[i] = b;
        k += m;
        a = b;
    }
    *exact = k == n;
    return PC_OK;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Where piece p matches text at or after c, skipping only whitespace of the text (a decoder may drop a
 * token's leading space: SentencePiece's "▁Hello" decodes alone to "Hello"), or anything when `anywhere`
 * (after unplaced tokens, whose bytes are unknown); retried with p's own leading whitespace removed (the
 * "▁" a Prepend normalizer put after a special token is not in the text). */
static int piece_find(const char *text, size_t len, size_t c, const char *p, size_t pl, int anywhere, size_t *at,
                      size_t *mlen) {
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            size_t s = 0;
            while (s < pl && is_space(p[s])) s++;
            if (s == 0) break;
            p += s, pl -= s;
        }
        if (pl == 0) break;
        for (size_t x = c; x + pl <= len; x++) {
            if (memcmp(text + x, p, pl) == 0) return (*at = x), (*mlen = pl), 1;
            if (!anywhere && !is_space(text[x])) break;
        }
    }
    return 0;
}

/* Tokens whose piece cannot be placed alone (partial UTF-8 that a byte-level decoder turns into U+FFFD,
 * pieces the decoder empties) are pending; the pending group is decoded together after each new token, which
 * places byte-fallback and split characters exactly once they are complete. Pending tokens still unplaced when
 * a later token is placed share the gap before it, and the "any assistant byte" rule marks them by the bytes
 * they might hold. A group longer than a UTF-8 character's worth of tokens, or a gap wider than its tokens
 * could hold, means the decoder does not reproduce the text; marking by the gap would then train on the
 * template, so the record is refused. */
#define PENDING_MAX_TOKENS 8
#define GAP_BYTES_PER_TOKEN 32

static pc_status alignment_failed(size_t from, size_t to, size_t tokens, pc_error *err) {
    return pc_fail(err, PC_ERR_UNSUPPORTED,
                   "cannot align %zu tokens with bytes %zu..%zu of the rendered chat (the tokenizer's decode does "
                   "not reproduce the text)",
                   tokens, from, to);
}

/* Decode ids[0..n) and find the text at or after c. */
static pc_status place_tokens(const pc_text_codec *codec, const int32_t *ids, size_t n, const char *text, size_t len,
                              size_t c, int anywhere, int *found, size_t *at, size_t *ml, pc_error *err) {
    char *piece = NULL;
    size_t pl = 0;
    PC_TRY(codec->decode(codec->ctx, ids, n, &piece, &pl, err));
    *found = piece_find(text, len, c, piece, pl, anywhere, at, ml);
    pc_free(piece);
    return PC_OK;
}

static pc_status spans_by_alignment(const pc_text_codec *codec, const char *text, size_t len, const int32_t *ids,
                                    size_t n, size_t *start, size_t *end, pc_error *err) {
    size_t c = 0, first = 0; /* text cursor; first pending token */
    int pending = 0;
    for (size_t i = 0; i < n; i++) {
        size_t at = 0, ml = 0;
        int found = 0;
        PC_TRY(place_tokens(codec, ids + i, 1, text, len, c, pending, &found, &at, &ml, err));
        if (found) {
            if (pending) {
                if (at - c > GAP_BYTES_PER_TOKEN * (i - first)) return alignment_failed(c, at, i - first, err);
                for (size_t j = first; j < i; j++) start[j] = c, end[j] = at;
                start[i] = at;
            } else {
                start[i] = c; /* with the whitespace the decoder dropped */
            }
            end[i] = at + ml;
            c = at + ml;
            pending = 0;
            continue;
        }
        if (!pending) first = i, pending = 1;
        if (i + 1 - first > PENDING_MAX_TOKENS) return alignment_failed(c, len, i + 1 - first, err);
        if (i == first) continue;
        PC_TRY(place_tokens(codec, ids + first, i + 1 - first, text, len, c, 0, &found, &at, &ml, err));
        if (found) { /* the group is complete: it holds exactly these bytes */
            for (size_t j = first; j <= i; j++) start[j] = c, end[j] = at + ml;
            c = at + ml;
            pending = 0;
        }
    }
    if (pending) {
        if (len - c > GAP_BYTES_PER_TOKEN * (n - first)) return alignment_failed(c, len, n - first, err);
        for (size_t j = first; j < n; j++) start[j] = c, end[j] = len;
    } else if (n > 0 && c < len) {
        end[n - 1] = len;
    }
    return PC_OK;
}

pc_status pc_chat_labels(const pc_text_codec *codec, const char *text, const unsigned char *mask, size_t len,
                         const int32_t *ids, size_t n, int32_t *labels, pc_error *err) {
    if (n == 0) return PC_OK;
    size_t *start = pc_malloc(n * sizeof *start), *end = pc_malloc(n * sizeof *end);
    pc_status st = PC_OK;
    if (!start || !end) st = pc_fail(err, PC_ERR_NOMEM, "out of memory for %zu token spans", n);
    int exact = 0;
    if (st == PC_OK) st = spans_by_runs(codec, text, mask, len, ids, n, start, end, &exact, err);
    if (st == PC_OK && !exact) st = spans_by_alignment(codec, text, len, ids, n, start, end, err);
    for (size_t i = 0; st == PC_OK && i < n; i++) {
        int assistant = 0;
        for (size_t x = start[i]; x < end[i] && !assistant; x++) assistant = mask[x] != 0;
        labels[i] = assistant ? ids[i] : PC_IGNORE_INDEX;
    }
    pc_free(start);
    pc_free(end);
    return st;
}
