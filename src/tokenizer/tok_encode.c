/* Encoding: added-token split of the raw text, then per section normalizers -> pre-tokenizers -> BPE, then
 * the post-processor's special tokens. Pre-tokenizers run as a recursion over stages: stage k splits its
 * piece and hands each part to stage k+1, so pieces that are substrings of the input are never copied; only
 * stages that rewrite text (Metaspace, a ByteLevel prefix space) write into their own scratch buffer. */
#include <string.h>

#include <utf8proc.h>

#include "core/alloc.h"
#include "tokenizer/tok_internal.h"

#define TK_CACHE_ENTRIES 65536

/* ---- per-call context ---- */

static void *run_malloc(size_t n, void *data) { (void)data; return pc_malloc(n); }
static void run_free(void *p, void *data) { (void)data; pc_free(p); }

static pc_status run_init(tk_run *r, const pc_tokenizer *tk, tk_ids *out, pc_error *err) {
    memset(r, 0, sizeof *r);
    r->tk = tk;
    r->out = out;
    r->cache.limit = TK_CACHE_ENTRIES;
    PC_TRY(tk_strmap_init(&r->cache.map, 1024, err));
    r->gctx = pcre2_general_context_create(run_malloc, run_free, NULL);
    if (r->gctx) r->md = pcre2_match_data_create(8, r->gctx);
    if (r->gctx) r->mctx = pcre2_match_context_create(r->gctx);
    if (r->gctx) r->jit_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, r->gctx);
    if (!r->md || !r->mctx || !r->jit_stack) return pc_fail(err, PC_ERR_NOMEM, "tokenizer: out of memory for regex matching");
    pcre2_jit_stack_assign(r->mctx, NULL, r->jit_stack);
    return PC_OK;
}

static void run_free_all(tk_run *r) {
    tk_strmap_free(&r->cache.map);
    tk_ids_free(&r->cache.ids);
    pc_free(r->sym);
    pc_free(r->heap);
    for (int i = 0; i < TK_MAX_STAGES + 2; i++) tk_bytes_free(&r->scratch[i]);
    if (r->md) pcre2_match_data_free(r->md);
    if (r->mctx) pcre2_match_context_free(r->mctx);
    if (r->jit_stack) pcre2_jit_stack_free(r->jit_stack);
    if (r->gctx) pcre2_general_context_free(r->gctx);
}

/* Next match of re in s[0..n) at or after pos: 1 with [*ms, *me), 0 if none, <0 on a matcher error. */
static int next_match(tk_run *r, const tk_regex *re, const char *s, size_t n, size_t pos, size_t *ms, size_t *me) {
    int rc = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)s, n, pos, 0, r->md, r->mctx)
                     : pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, r->md, r->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) return rc;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

static size_t char_len_at(const char *s, size_t i) {
    int32_t cp;
    return (size_t)tk_utf8_decode((const unsigned char *)s + i, &cp);
}

/* ---- pre-tokenizer stages ---- */

static pc_status stage(tk_run *r, int k, const char *s, size_t n, int first, pc_error *err);

typedef struct seg {
    size_t a, b;
    int match;
} seg;

/* Segments of s: matches and the text between them (Hugging Face's find_matches), as (a, b, is_match). */
static pc_status find_segments(tk_run *r, const tk_regex *re, const char *s, size_t n, tk_bytes *buf, size_t *count,
                               pc_error *err) {
    buf->n = 0;
    size_t pos = 0, last = 0, c = 0;
    while (pos <= n) {
        size_t ms, me;
        int rc = next_match(r, re, s, n, pos, &ms, &me);
        if (rc < 0) return pc_fail(err, PC_ERR_FORMAT, "%s: pre_tokenizer regex failed with PCRE2 error %d", r->tk->path, rc);
        if (rc == 0) break;
        if (me == ms) { /* empty matches split nothing */
            if (ms >= n) break;
            pos = ms + char_len_at(s, ms);
            continue;
        }
        seg sg[2] = {{last, ms, 0}, {ms, me, 1}};
        int first = ms > last ? 0 : 1;
        PC_TRY(tk_bytes_append(buf, &sg[first], (size_t)(2 - first) * sizeof(seg), err));
        c += (size_t)(2 - first);
        last = pos = me;
    }
    if (last < n) {
        seg tail = {last, n, 0};
        PC_TRY(tk_bytes_append(buf, &tail, sizeof tail, err));
        c++;
    }
    *count = c;
    return PC_OK;
}

/* Hugging Face's SplitDelimiterBehavior applied in place; returns the new count. */
static size_t apply_behavior(seg *sg, size_t n, tk_split_behavior behavior, int invert) {
    if (invert)
        for (size_t i = 0; i < n; i++) sg[i].match = !sg[i].match;
    size_t m = 0;
    int prev_match = 0;
    switch (behavior) {
    case TK_SPLIT_ISOLATED:
        return n;
    case TK_SPLIT_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!sg[i].match) sg[m++] = sg[i];
        return m;
    case TK_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < n; i++) {
            if (sg[i].match && !prev_match && m > 0) sg[m - 1].b = sg[i].b;
            else sg[m++] = sg[i];
            prev_match = sg[i].match;
        }
        return m;
    case TK_SPLIT_MERGED_NEXT: {
        /* right to left: a match joins the segment after it unless that one is a match too */
        size_t w = n;
        for (size_t i = n; i-- > 0;) {
            int is_match = sg[i].match;
            if (is_match && !prev_match && w < n) sg[w].a = sg[i].a;
            else sg[--w] = sg[i];
            prev_match = is_match;
        }
        memmove(sg, sg + w, (n - w) * sizeof *sg);
        return n - w;
    }
    case TK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            if (m > 0 && sg[i].match == prev_match) sg[m - 1].b = sg[i].b;
            else sg[m++] = sg[i];
            prev_match = sg[i].match;
        }
        return m;
    }
    return n;
}

/* Isolated and Removed need no look-around between segments: stream them (no segment list for a 10 MB
 * section). ms/me are copied out before recursing, as deeper stages reuse the match data. */
static pc_status stage_split_stream(tk_run *r, int k, const tk_pretok *pt, const char *s, size_t n, int first, pc_error *err) {
    int keep_match = pt->behavior == TK_SPLIT_ISOLATED || pt->invert;
    int keep_gap = pt->behavior == TK_SPLIT_ISOLATED || !pt->invert;
    size_t pos = 0, last = 0;
    while (pos <= n) {
        size_t ms, me;
        int rc = next_match(r, &pt->re, s, n, pos, &ms, &me);
        if (rc < 0) return pc_fail(err, PC_ERR_FORMAT, "%s: pre_tokenizer regex failed with PCRE2 error %d", r->tk->path, rc);
        if (rc == 0) break;
        if (me == ms) {
            if (ms >= n) break;
            pos = ms + char_len_at(s, ms);
            continue;
        }
        if (ms > last && keep_gap) PC_TRY(stage(r, k + 1, s + last, ms - last, first && last == 0, err));
        if (keep_match) PC_TRY(stage(r, k + 1, s + ms, me - ms, first && ms == 0, err));
        last = pos = me;
    }
    if (last < n && keep_gap) PC_TRY(stage(r, k + 1, s + last, n - last, first && last == 0, err));
    return PC_OK;
}

static pc_status stage_split(tk_run *r, int k, const tk_pretok *pt, const char *s, size_t n, int first, pc_error *err) {
    if (pt->behavior == TK_SPLIT_ISOLATED || pt->behavior == TK_SPLIT_REMOVED) return stage_split_stream(r, k, pt, s, n, first, err);
    tk_bytes *buf = &r->scratch[k];
    size_t count = 0;
    PC_TRY(find_segments(r, &pt->re, s, n, buf, &count, err));
    count = apply_behavior((seg *)buf->p, count, pt->behavior, pt->invert);
    /* buf is this stage's own scratch: deeper stages never touch it, so it can be read while recursing */
    for (size_t i = 0; i < count; i++) {
        seg sg = ((seg *)buf->p)[i];
        if (sg.b > sg.a) PC_TRY(stage(r, k + 1, s + sg.a, sg.b - sg.a, first && sg.a == 0, err));
    }
    return PC_OK;
}

static pc_status stage_bytelevel(tk_run *r, int k, const tk_pretok *pt, const char *s, size_t n, pc_error *err) {
    if (pt->add_prefix_space && s[0] != ' ') {
        tk_bytes *buf = &r->scratch[k];
        buf->n = 0;
        PC_TRY(tk_bytes_append(buf, " ", 1, err));
        PC_TRY(tk_bytes_append(buf, s, n, err));
        s = buf->p;
        n = buf->n;
    }
    if (!pt->use_regex) return stage(r, k + 1, s, n, 0, err);
    /* The reference keeps only the matches (text.match); the GPT-2 pattern matches every character. */
    size_t pos = 0, ms, me;
    while (pos < n) {
        int rc = next_match(r, &pt->re, s, n, pos, &ms, &me);
        if (rc < 0) return pc_fail(err, PC_ERR_FORMAT, "%s: ByteLevel regex failed with PCRE2 error %d", r->tk->path, rc);
        if (rc == 0) break;
        if (me == ms) {
            pos = ms + char_len_at(s, ms);
            continue;
        }
        PC_TRY(stage(r, k + 1, s + ms, me - ms, 0, err));
        pos = me;
    }
    return PC_OK;
}

static int is_numeric_at(const char *s, size_t i, size_t *len) {
    int32_t cp;
    *len = (size_t)tk_utf8_decode((const unsigned char *)s + i, &cp);
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

/* Digits: numeric characters apart from the rest; each alone with individual_digits, else runs. */
static pc_status stage_digits(tk_run *r, int k, const tk_pretok *pt, const char *s, size_t n, int first, pc_error *err) {
    size_t start = 0, i = 0, len;
    int run_numeric = -1;
    while (i < n) {
        int num = is_numeric_at(s, i, &len);
        if (i > start && (num != run_numeric || (num && pt->individual_digits))) {
            PC_TRY(stage(r, k + 1, s + start, i - start, first && start == 0, err));
            start = i;
        }
        run_numeric = num;
        i += len;
    }
    if (n > start) PC_TRY(stage(r, k + 1, s + start, n - start, first && start == 0, err));
    return PC_OK;
}

/* Metaspace: spaces become the replacement, optionally prepended; with split, each piece starts at one. */
static pc_status stage_metaspace(tk_run *r, int k, const tk_pretok *pt, const char *s, size_t n, int first, pc_error *err) {
    tk_bytes *buf = &r->scratch[k];
    buf->n = 0;
    int rl = pt->replacement_len;
    int starts_with = n >= (size_t)rl && !memcmp(s, pt->replacement, (size_t)rl);
    if (!starts_with && (pt->prepend == TK_PREPEND_ALWAYS || (pt->prepend == TK_PREPEND_FIRST && first)))
        PC_TRY(tk_bytes_append(buf, pt->replacement, (size_t)rl, err));
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') PC_TRY(tk_bytes_append(buf, pt->replacement, (size_t)rl, err));
        else PC_TRY(tk_bytes_append(buf, s + i, 1, err));
    }
    if (!pt->split) return stage(r, k + 1, buf->p, buf->n, first, err);
    size_t start = 0;
    for (size_t i = 0; i + (size_t)rl <= buf->n; i++) {
        if (i > start && !memcmp(buf->p + i, pt->replacement, (size_t)rl)) {
            PC_TRY(stage(r, k + 1, buf->p + start, i - start, first && start == 0, err));
            start = i;
        }
    }
    return buf->n > start ? stage(r, k + 1, buf->p + start, buf->n - start, first && start == 0, err) : PC_OK;
}

static pc_status stage(tk_run *r, int k, const char *s, size_t n, int first, pc_error *err) {
    if (n == 0) return PC_OK;
    if (k == r->tk->n_pre) return tk_bpe_piece(r, s, n, err);
    const tk_pretok *pt = &r->tk->pre[k];
    switch (pt->kind) {
    case TK_PRE_SPLIT: return stage_split(r, k, pt, s, n, first, err);
    case TK_PRE_BYTELEVEL: return stage_bytelevel(r, k, pt, s, n, err);
    case TK_PRE_DIGITS: return stage_digits(r, k, pt, s, n, first, err);
    case TK_PRE_METASPACE: return stage_metaspace(r, k, pt, s, n, first, err);
    }
    return pc_fail(err, PC_ERR_INTERNAL, "tokenizer: unknown pre-tokenizer kind");
}

/* ---- added tokens ---- */

static int is_word_char_before(const char *s, size_t i) {
    if (i == 0) return 0;
    size_t st = i - 1;
    while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
    int32_t cp;
    tk_utf8_decode((const unsigned char *)s + st, &cp);
    return cp == '_' || utf8proc_category(cp) <= UTF8PROC_CATEGORY_NO;
}

static int is_word_char_at(const char *s, size_t n, size_t i) {
    if (i >= n) return 0;
    int32_t cp;
    tk_utf8_decode((const unsigned char *)s + i, &cp);
    return cp == '_' || (utf8proc_category(cp) >= UTF8PROC_CATEGORY_LU && utf8proc_category(cp) <= UTF8PROC_CATEGORY_NO);
}

/* Longest added token (of the wanted normalized-ness) starting at s[i], or -1. */
static int added_at(const pc_tokenizer *tk, const char *s, size_t n, size_t i, int normalized) {
    unsigned char b = (unsigned char)s[i];
    for (int k = tk->added_first[b]; k < tk->added_first[b + 1]; k++) {
        const tk_added *a = &tk->added[tk->added_order[k]];
        if (a->normalized != normalized || a->len > n - i || memcmp(s + i, a->content, a->len) != 0) continue;
        if (a->single_word && (is_word_char_before(s, i) || is_word_char_at(s, n, i + a->len))) continue;
        return tk->added_order[k];
    }
    return -1;
}

typedef struct section {
    size_t a, b;
    int added; /* index into tk->added, or -1 for text */
} section;

static pc_status split_added(const pc_tokenizer *tk, const char *s, size_t n, int normalized, tk_bytes *buf,
                             size_t *count, pc_error *err) {
    buf->n = 0;
    size_t start = 0, c = 0;
    for (size_t i = 0; i < n;) {
        int k = tk->added_first[(unsigned char)s[i]] < tk->added_first[(unsigned char)s[i] + 1] ? added_at(tk, s, n, i, normalized) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        if (i > start) {
            section t = {start, i, -1};
            PC_TRY(tk_bytes_append(buf, &t, sizeof t, err));
            c++;
        }
        section t = {i, i + tk->added[k].len, k};
        PC_TRY(tk_bytes_append(buf, &t, sizeof t, err));
        c++;
        i += tk->added[k].len;
        start = i;
    }
    if (start < n) {
        section t = {start, n, -1};
        PC_TRY(tk_bytes_append(buf, &t, sizeof t, err));
        c++;
    }
    *count = c;
    /* lstrip / rstrip: whitespace beside the token belongs to it */
    section *sec = (section *)buf->p;
    for (size_t i = 0; i < c; i++) {
        if (sec[i].added < 0) continue;
        const tk_added *a = &tk->added[sec[i].added];
        if (a->lstrip && i > 0 && sec[i - 1].added < 0) {
            while (sec[i - 1].b > sec[i - 1].a) {
                size_t st = sec[i - 1].b - 1;
                while (st > sec[i - 1].a && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
                int32_t cp;
                tk_utf8_decode((const unsigned char *)s + st, &cp);
                if (!tk_is_js_space(cp)) break;
                sec[i - 1].b = st;
            }
        }
        if (a->rstrip && i + 1 < c && sec[i + 1].added < 0) {
            while (sec[i + 1].a < sec[i + 1].b) {
                int32_t cp;
                int len = tk_utf8_decode((const unsigned char *)s + sec[i + 1].a, &cp);
                if (!tk_is_js_space(cp)) break;
                sec[i + 1].a += (size_t)len;
            }
        }
    }
    return PC_OK;
}

/* One text section: normalize, then (if some added tokens match normalized text) split again, pre-tokenize. */
static pc_status encode_text_section(tk_run *r, const char *s, size_t n, int first, pc_error *err) {
    const pc_tokenizer *tk = r->tk;
    tk_bytes *norm = &r->scratch[TK_MAX_STAGES], *tmp = &r->scratch[TK_MAX_STAGES + 1];
    if (tk->n_norm > 0) {
        PC_TRY(tk_normalize(tk, s, n, norm, tmp, r->md, err));
        s = norm->p;
        n = norm->n;
        /* The regexes run with PCRE2_NO_UTF_CHECK: what the normalizers made must still be UTF-8 (it is, when
         * the input and tokenizer.json are; this keeps a broken invariant from becoming an out-of-bounds read). */
        if (pc_utf8_valid_prefix(s, n) != n)
            return pc_fail(err, PC_ERR_INTERNAL, "%s: normalizers produced text that is not UTF-8", tk->path);
    }
    if (n == 0) return PC_OK;
    if (!tk->any_normalized_added) return stage(r, 0, s, n, first, err);
    tk_bytes secs = {0};
    size_t count = 0;
    pc_status st = split_added(tk, s, n, 1, &secs, &count, err);
    for (size_t i = 0; st == PC_OK && i < count; i++) {
        const section *sec = &((const section *)secs.p)[i];
        if (sec->added >= 0) st = tk_ids_push(r->out, tk->added[sec->added].id, err);
        else st = stage(r, 0, s + sec->a, sec->b - sec->a, first && sec->a == 0, err);
    }
    tk_bytes_free(&secs);
    return st;
}

static pc_status encode_all(tk_run *r, const char *text, size_t len, int add_special, pc_error *err) {
    const pc_tokenizer *tk = r->tk;
    if (add_special) PC_TRY(tk_ids_append(r->out, tk->post_before, (size_t)tk->n_post_before, err));
    tk_bytes secs = {0};
    size_t count = 0;
    pc_status st = split_added(tk, text, len, 0, &secs, &count, err);
    for (size_t i = 0; st == PC_OK && i < count; i++) {
        const section *sec = &((const section *)secs.p)[i];
        if (sec->added >= 0) st = tk_ids_push(r->out, tk->added[sec->added].id, err);
        else if (sec->b > sec->a) st = encode_text_section(r, text + sec->a, sec->b - sec->a, i == 0, err);
    }
    tk_bytes_free(&secs);
    if (st == PC_OK && add_special) st = tk_ids_append(r->out, tk->post_after, (size_t)tk->n_post_after, err);
    return st;
}

pc_status pc_tokenizer_encode(const pc_tokenizer *tk, const char *text, size_t len, int add_special, int32_t **ids,
                              size_t *n_ids, pc_error *err) {
    *ids = NULL;
    *n_ids = 0;
    size_t valid = pc_utf8_valid_prefix(text, len);
    if (valid != len) return pc_fail(err, PC_ERR_FORMAT, "tokenizer: input: invalid UTF-8 at byte %zu", valid);
    tk_ids out = {0};
    tk_run r;
    pc_status st = run_init(&r, tk, &out, err);
    if (st == PC_OK) st = encode_all(&r, text, len, add_special, err);
    run_free_all(&r);
    if (st != PC_OK) {
        tk_ids_free(&out);
        return st;
    }
    if (!out.p && !(out.p = pc_malloc(sizeof(int32_t)))) return pc_fail(err, PC_ERR_NOMEM, "tokenizer: out of memory");
    *ids = out.p;
    *n_ids = out.n;
    return PC_OK;
}
