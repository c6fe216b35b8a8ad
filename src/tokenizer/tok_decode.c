/* Decoding ids back to text through the file's decoder chain (Hugging Face semantics): each decoder maps a
 * list of token strings to a new list; the result is their concatenation. For byte-level vocabularies this
 * is exact: decode(encode(x)) == x for any valid UTF-8 x. */
#include <string.h>

#include "core/alloc.h"
#include "tokenizer/tok_internal.h"

typedef struct strvec {
    tk_bytes buf;
    tk_bytes idx; /* size_t pairs (offset, length) */
    size_t n;
} strvec;

static pc_status vec_push(strvec *v, const char *s, size_t n, pc_error *err) {
    size_t pair[2] = {v->buf.n, n};
    PC_TRY(tk_bytes_append(&v->buf, s, n, err));
    PC_TRY(tk_bytes_append(&v->idx, pair, sizeof pair, err));
    v->n++;
    return PC_OK;
}

/* Start a new empty element and append to it with vec_extend. */
static pc_status vec_open(strvec *v, pc_error *err) { return vec_push(v, "", 0, err); }
static pc_status vec_extend(strvec *v, const char *s, size_t n, pc_error *err) {
    PC_TRY(tk_bytes_append(&v->buf, s, n, err));
    ((size_t *)v->idx.p)[2 * (v->n - 1) + 1] += n;
    return PC_OK;
}

static const char *vec_at(const strvec *v, size_t i, size_t *n) {
    const size_t *pair = (const size_t *)v->idx.p + 2 * i;
    *n = pair[1];
    return v->buf.p + pair[0];
}

static void vec_free(strvec *v) {
    tk_bytes_free(&v->buf);
    tk_bytes_free(&v->idx);
    v->n = 0;
}

/* Bytes to text, replacing invalid sequences with U+FFFD (one per invalid byte run start, like from_utf8_lossy). */
static pc_status append_lossy(strvec *v, const char *s, size_t n, pc_error *err) {
    size_t i = 0;
    while (i < n) {
        size_t ok = pc_utf8_valid_prefix(s + i, n - i);
        PC_TRY(vec_extend(v, s + i, ok, err));
        i += ok;
        if (i >= n) break;
        PC_TRY(vec_extend(v, "\xEF\xBF\xBD", 3, err));
        /* skip the bad byte and any stray continuation bytes after it */
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
    }
    return PC_OK;
}

static pc_status dec_bytelevel(const strvec *in, strvec *out, pc_error *err) {
    tk_bytes raw = {0};
    pc_status st = PC_OK;
    for (size_t i = 0; st == PC_OK && i < in->n; i++) {
        size_t n;
        const char *s = vec_at(in, i, &n);
        size_t mark = raw.n;
        int ok = 1;
        for (size_t j = 0; ok && j < n && st == PC_OK;) {
            int32_t cp;
            j += (size_t)tk_utf8_decode((const unsigned char *)s + j, &cp);
            int b = tk_cp_to_byte(cp);
            if (b < 0) ok = 0;
            else {
                char c = (char)b;
                st = tk_bytes_append(&raw, &c, 1, err);
            }
        }
        if (!ok) { /* a token outside the byte alphabet (an added token): its own UTF-8 */
            raw.n = mark;
            st = tk_bytes_append(&raw, s, n, err);
        }
    }
    if (st == PC_OK) st = vec_open(out, err);
    if (st == PC_OK) st = append_lossy(out, raw.p ? raw.p : "", raw.n, err);
    tk_bytes_free(&raw);
    return st;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static pc_status flush_bytes(tk_bytes *pending, strvec *out, pc_error *err) {
    if (pending->n == 0) return PC_OK;
    if (pc_utf8_valid_prefix(pending->p, pending->n) == pending->n) {
        PC_TRY(vec_push(out, pending->p, pending->n, err));
    } else {
        for (size_t k = 0; k < pending->n; k++) PC_TRY(vec_push(out, "\xEF\xBF\xBD", 3, err));
    }
    pending->n = 0;
    return PC_OK;
}

static pc_status dec_bytefallback(const strvec *in, strvec *out, pc_error *err) {
    tk_bytes pending = {0};
    pc_status st = PC_OK;
    for (size_t i = 0; st == PC_OK && i < in->n; i++) {
        size_t n;
        const char *s = vec_at(in, i, &n);
        if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && hexval(s[3]) >= 0 && hexval(s[4]) >= 0) {
            char b = (char)(hexval(s[3]) * 16 + hexval(s[4]));
            st = tk_bytes_append(&pending, &b, 1, err);
            continue;
        }
        st = flush_bytes(&pending, out, err);
        if (st == PC_OK) st = vec_push(out, s, n, err);
    }
    if (st == PC_OK) st = flush_bytes(&pending, out, err);
    tk_bytes_free(&pending);
    return st;
}

static pc_status replace_in(const char *s, size_t n, const char *pat, const char *with, strvec *out, pc_error *err) {
    size_t pl = strlen(pat), wl = strlen(with);
    PC_TRY(vec_open(out, err));
    size_t i = 0;
    while (i < n) {
        if (pl && i + pl <= n && !memcmp(s + i, pat, pl)) {
            PC_TRY(vec_extend(out, with, wl, err));
            i += pl;
        } else {
            PC_TRY(vec_extend(out, s + i, 1, err));
            i++;
        }
    }
    return PC_OK;
}

static pc_status dec_strip(const tk_decoder *d, const char *s, size_t n, strvec *out, pc_error *err) {
    size_t cl = strlen(d->content), a = 0, b = n;
    for (int k = 0; k < d->start && cl && a + cl <= b && !memcmp(s + a, d->content, cl); k++) a += cl;
    for (int k = 0; k < d->stop && cl && b >= a + cl && !memcmp(s + b - cl, d->content, cl); k++) b -= cl;
    return vec_push(out, s + a, b - a, err);
}

static pc_status apply_decoder(const tk_decoder *d, const strvec *in, strvec *out, pc_error *err) {
    switch (d->kind) {
    case TK_DEC_BYTELEVEL: return dec_bytelevel(in, out, err);
    case TK_DEC_BYTEFALLBACK: return dec_bytefallback(in, out, err);
    case TK_DEC_FUSE:
        PC_TRY(vec_open(out, err));
        return vec_extend(out, in->buf.p ? in->buf.p : "", in->buf.n, err);
    default: break;
    }
    for (size_t i = 0; i < in->n; i++) {
        size_t n;
        const char *s = vec_at(in, i, &n);
        if (d->kind == TK_DEC_REPLACE) {
            PC_TRY(replace_in(s, n, d->pattern, d->content, out, err));
        } else if (d->kind == TK_DEC_STRIP) {
            PC_TRY(dec_strip(d, s, n, out, err));
        } else { /* Metaspace */
            char rep[8];
            memcpy(rep, d->replacement, sizeof rep);
            size_t before = out->buf.n;
            PC_TRY(replace_in(s, n, rep, " ", out, err));
            size_t *pair = (size_t *)out->idx.p + 2 * (out->n - 1);
            if (d->add_prefix_space && i == 0 && pair[1] > 0 && out->buf.p[before] == ' ') {
                pair[0]++;
                pair[1]--;
            }
        }
    }
    return PC_OK;
}

static int is_special_id(const pc_tokenizer *tk, int32_t id) {
    for (int i = 0; i < tk->n_added; i++)
        if (tk->added[i].id == id && tk->added[i].special) return 1;
    return 0;
}

pc_status pc_tokenizer_decode(const pc_tokenizer *tk, const int32_t *ids, size_t n_ids, int skip_special, char **text,
                              size_t *len, pc_error *err) {
    *text = NULL;
    *len = 0;
    strvec a = {0}, b = {0};
    pc_status st = PC_OK;
    for (size_t i = 0; st == PC_OK && i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tk->vocab_size || tk->tok_len[id] == TK_NO_TOKEN) {
            st = pc_fail(err, PC_ERR_FORMAT, "%s: decode: id %d at position %zu is not a token", tk->path, id, i);
            break;
        }
        if (skip_special && is_special_id(tk, id)) continue;
        st = vec_push(&a, tk->tok_pool.p + tk->tok_off[id], tk->tok_len[id], err);
    }
    for (int k = 0; st == PC_OK && k < tk->n_dec; k++) {
        st = apply_decoder(&tk->dec[k], &a, &b, err);
        vec_free(&a);
        a = b;
        memset(&b, 0, sizeof b);
    }
    /* No decoder: Hugging Face joins the tokens with spaces. */
    tk_bytes res = {0};
    for (size_t i = 0; st == PC_OK && i < a.n; i++) {
        size_t n;
        const char *s = vec_at(&a, i, &n);
        if (tk->n_dec == 0 && i > 0) st = tk_bytes_append(&res, " ", 1, err);
        if (st == PC_OK) st = tk_bytes_append(&res, s, n, err);
    }
    if (st == PC_OK) st = tk_bytes_reserve(&res, 0, err);
    vec_free(&a);
    vec_free(&b);
    if (st != PC_OK) {
        tk_bytes_free(&res);
        return st;
    }
    res.p[res.n] = '\0';
    *text = res.p;
    *len = res.n;
    return PC_OK;
}
