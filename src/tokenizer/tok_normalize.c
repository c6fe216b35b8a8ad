/* Normalizers: Unicode forms through utf8proc, Lowercase, Strip, Prepend, Replace. Each step reads one buffer
 * and writes another; tk_normalize chains them. */
#include <string.h>

#include <utf8proc.h>

#include "core/alloc.h"
#include "tokenizer/tok_internal.h"

static int all_below(const char *s, size_t n, unsigned char limit) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= limit) return 0;
    return 1;
}

static pc_status unicode_form(utf8proc_option_t opts, const char *s, size_t n, tk_bytes *out, pc_error *err) {
    /* Decompose into code points (retrying with the size utf8proc asks for), then let utf8proc_reencode
     * compose as asked and write UTF-8 over the same buffer. */
    size_t cap = n + 16;
    for (;;) {
        utf8proc_int32_t *buf = pc_malloc(cap * sizeof *buf);
        if (!buf) return pc_fail(err, PC_ERR_NOMEM, "tokenizer: out of memory normalizing %zu bytes", n);
        utf8proc_ssize_t got = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, buf,
                                                  (utf8proc_ssize_t)cap, opts);
        if (got < 0) {
            pc_free(buf);
            return pc_fail(err, PC_ERR_FORMAT, "tokenizer: normalizer: %s", utf8proc_errmsg(got));
        }
        if ((size_t)got > cap) {
            pc_free(buf);
            cap = (size_t)got;
            continue;
        }
        utf8proc_ssize_t bytes = utf8proc_reencode(buf, got, opts);
        pc_status st = bytes < 0 ? pc_fail(err, PC_ERR_FORMAT, "tokenizer: normalizer: %s", utf8proc_errmsg(bytes))
                                 : tk_bytes_append(out, buf, (size_t)bytes, err);
        pc_free(buf);
        return st;
    }
}

static pc_status lowercase(const char *s, size_t n, tk_bytes *out, pc_error *err) {
    PC_TRY(tk_bytes_reserve(out, n + 8, err));
    for (size_t i = 0; i < n;) {
        int32_t cp;
        i += (size_t)tk_utf8_decode((const unsigned char *)s + i, &cp);
        char enc[8];
        int len;
        if (cp == 0x130) { /* 'İ' lowercases to "i" + combining dot in full case mapping */
            memcpy(enc, "i\xCC\x87", 3);
            len = 3;
        } else {
            len = tk_utf8_encode(utf8proc_tolower(cp), enc);
        }
        PC_TRY(tk_bytes_append(out, enc, (size_t)len, err));
    }
    return PC_OK;
}

static size_t leading_space(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int32_t cp;
        int len = tk_utf8_decode((const unsigned char *)s + i, &cp);
        if (!tk_is_js_space(cp)) break;
        i += (size_t)len;
    }
    return i;
}

static size_t trailing_space_start(const char *s, size_t n) {
    size_t end = n;
    while (end > 0) {
        size_t st = end - 1;
        while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
        int32_t cp;
        tk_utf8_decode((const unsigned char *)s + st, &cp);
        if (!tk_is_js_space(cp)) break;
        end = st;
    }
    return end;
}

static pc_status replace_all(const tk_normalizer *nm, const char *s, size_t n, tk_bytes *out, pcre2_match_data *md,
                             pc_error *err) {
    size_t pos = 0, clen = strlen(nm->str);
    while (pos <= n) {
        int rc = nm->re.jit ? pcre2_jit_match(nm->re.code, (PCRE2_SPTR)s, n, pos, 0, md, NULL)
                            : pcre2_match(nm->re.code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* empty match: keep one character and move on */
            if (ms >= n) break;
            int32_t cp;
            size_t len = (size_t)tk_utf8_decode((const unsigned char *)s + ms, &cp);
            PC_TRY(tk_bytes_append(out, s + pos, ms + len - pos, err));
            pos = ms + len;
            continue;
        }
        PC_TRY(tk_bytes_append(out, s + pos, ms - pos, err));
        PC_TRY(tk_bytes_append(out, nm->str, clen, err));
        pos = me;
    }
    if (pos < n) PC_TRY(tk_bytes_append(out, s + pos, n - pos, err));
    return PC_OK;
}

/* NFC over long text without running utf8proc on all of it: an ASCII character never composes with what
 * precedes it, so NFC(s) is the concatenation of NFC over pieces that each start at an ASCII character. Only
 * runs of non-ASCII text that hold a code point >= U+0300 (lead byte >= 0xCC) can change; each is normalized
 * together with the ASCII character before it (a base letter its marks may compose with). */
static pc_status nfc_by_runs(const char *s, size_t n, tk_bytes *out, pc_error *err) {
    size_t done = 0, i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        size_t a = i, hi = 0;
        while (i < n && (unsigned char)s[i] >= 0x80) hi |= (unsigned char)s[i++] >= 0xCC;
        if (!hi) continue;
        size_t start = a > done ? a - 1 : a; /* include the ASCII base character */
        if (a == 0) start = 0;
        PC_TRY(tk_bytes_append(out, s + done, start - done, err));
        PC_TRY(unicode_form(UTF8PROC_STABLE | UTF8PROC_COMPOSE, s + start, i - start, out, err));
        done = i;
    }
    return tk_bytes_append(out, s + done, n - done, err);
}

pc_status tk_normalize_one(const tk_normalizer *nm, const char *s, size_t n, tk_bytes *out, pcre2_match_data *md,
                           pc_error *err) {
    out->n = 0;
    PC_TRY(tk_bytes_reserve(out, n + 16, err));
    out->p[0] = '\0';
    switch (nm->kind) {
    case TK_NORM_NFC:
        /* Code points below U+0300 are NFC-stable and never compose with each other. */
        if (all_below(s, n, 0xCC)) return tk_bytes_append(out, s, n, err);
        return nfc_by_runs(s, n, out, err);
    case TK_NORM_NFKC:
        if (all_below(s, n, 0x80)) return tk_bytes_append(out, s, n, err);
        return unicode_form(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, s, n, out, err);
    case TK_NORM_NFD:
        if (all_below(s, n, 0x80)) return tk_bytes_append(out, s, n, err);
        return unicode_form(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, s, n, out, err);
    case TK_NORM_NFKD:
        if (all_below(s, n, 0x80)) return tk_bytes_append(out, s, n, err);
        return unicode_form(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, s, n, out, err);
    case TK_NORM_LOWERCASE:
        return lowercase(s, n, out, err);
    case TK_NORM_STRIP: {
        size_t a = nm->strip_left ? leading_space(s, n) : 0;
        size_t b = nm->strip_right ? trailing_space_start(s, n) : n;
        return tk_bytes_append(out, s + a, b > a ? b - a : 0, err);
    }
    case TK_NORM_PREPEND:
        if (n == 0) return PC_OK;
        PC_TRY(tk_bytes_append(out, nm->str, strlen(nm->str), err));
        return tk_bytes_append(out, s, n, err);
    case TK_NORM_REPLACE:
        return replace_all(nm, s, n, out, md, err);
    }
    return pc_fail(err, PC_ERR_INTERNAL, "tokenizer: unknown normalizer kind %d", (int)nm->kind);
}

pc_status tk_normalize(const pc_tokenizer *tk, const char *s, size_t n, tk_bytes *out, tk_bytes *tmp,
                       pcre2_match_data *md, pc_error *err) {
    /* Ping-pong between out and tmp so that step k reads what step k-1 wrote. */
    tk_bytes *bufs[2] = {out, tmp};
    if (tk->n_norm % 2 == 0) {
        bufs[0] = tmp;
        bufs[1] = out;
    }
    const char *cur = s;
    size_t cur_n = n;
    for (int i = 0; i < tk->n_norm; i++) {
        tk_bytes *dst = bufs[i % 2];
        PC_TRY(tk_normalize_one(&tk->norm[i], cur, cur_n, dst, md, err));
        cur = dst->p;
        cur_n = dst->n;
    }
    if (tk->n_norm == 0) {
        out->n = 0;
        PC_TRY(tk_bytes_append(out, s, n, err));
    }
    return PC_OK;
}
