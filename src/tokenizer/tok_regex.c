/* Pre-tokenizer regexes through PCRE2 (UTF + UCP, JIT).
 *
 * The patterns in tokenizer.json are written for Rust's onig/regex and run in the JavaScript reference
 * encoders as `new RegExp(p, "gu")`. Two differences between PCRE2 and JavaScript matter for exact parity and
 * are rewritten here, exactly as the reference does or means:
 *  - `(?i:'s|'t|...)`: JavaScript cannot parse it, so transformers.js substitutes explicit [sS] classes. PCRE2
 *    with UCP would also fold 'ſ' (U+017F) and 'K' (U+212A) into s/k; the substitution avoids that.
 *  - `\s`/`\S`: JavaScript's set includes U+FEFF and excludes U+0085, Unicode's White_Space the opposite. */
#include <string.h>

#include "core/alloc.h"
#include "tokenizer/tok_internal.h"

#define JS_SPACE_SET "\\t\\n\\x0B\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"

static const char *const contraction_from = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
static const char *const contraction_to = "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))";

static pc_status emit(tk_bytes *b, const char *s, pc_error *err) { return tk_bytes_append(b, s, strlen(s), err); }

/* Rewrite pattern into out with JavaScript's \s. Tracks character classes so \s inside [...] expands to the
 * members only. */
static pc_status translate(const char *pattern, tk_bytes *out, pc_error *err) {
    int in_class = 0;
    size_t cf_len = strlen(contraction_from);
    for (const char *p = pattern; *p;) {
        if (!in_class && strncmp(p, contraction_from, cf_len) == 0) {
            PC_TRY(emit(out, contraction_to, err));
            p += cf_len;
            continue;
        }
        if (p[0] == '\\' && p[1]) {
            if (p[1] == 's') {
                PC_TRY(emit(out, in_class ? JS_SPACE_SET : "[" JS_SPACE_SET "]", err));
            } else if (p[1] == 'S' && !in_class) {
                PC_TRY(emit(out, "[^" JS_SPACE_SET "]", err));
            } else {
                PC_TRY(tk_bytes_append(out, p, 2, err));
            }
            p += 2;
            continue;
        }
        if (!in_class && p[0] == '[') {
            in_class = 1;
            PC_TRY(tk_bytes_append(out, p, 1, err));
            p++;
            /* A ']' right after '[' or '[^' is a literal member. */
            if (*p == '^') PC_TRY(tk_bytes_append(out, p++, 1, err));
            if (*p == ']') PC_TRY(tk_bytes_append(out, p++, 1, err));
            continue;
        }
        if (in_class && p[0] == ']') in_class = 0;
        PC_TRY(tk_bytes_append(out, p, 1, err));
        p++;
    }
    return PC_OK;
}

static void *re_malloc(size_t n, void *data) { (void)data; return pc_malloc(n); }
static void re_free(void *p, void *data) { (void)data; pc_free(p); }

pc_status tk_regex_compile(tk_regex *re, const char *pattern, int literal, const char *file, const char *where,
                           pc_error *err) {
    memset(re, 0, sizeof *re);
    /* cJSON accepts any bytes inside a string, and PCRE2 is told not to check (PCRE2_NO_UTF_CHECK): with
     * invalid UTF-8 in the pattern pcre2_compile reads out of bounds (found by fuzz_tokenizer, finding 19). */
    size_t valid = pc_utf8_valid_prefix(pattern, strlen(pattern));
    if (pattern[valid])
        return pc_fail(err, PC_ERR_FORMAT, "%s: %s: regex is not valid UTF-8 (byte %zu)", file, where, valid);
    tk_bytes src = {0};
    pc_status st = literal ? tk_bytes_append(&src, pattern, strlen(pattern), err) : translate(pattern, &src, err);
    if (st != PC_OK) {
        tk_bytes_free(&src);
        return st;
    }
    pcre2_general_context *gctx = pcre2_general_context_create(re_malloc, re_free, NULL);
    pcre2_compile_context *cctx = gctx ? pcre2_compile_context_create(gctx) : NULL;
    if (!cctx) {
        pcre2_general_context_free(gctx);
        tk_bytes_free(&src);
        return pc_fail(err, PC_ERR_NOMEM, "%s: %s: out of memory compiling a regex", file, where);
    }
    int code = 0;
    PCRE2_SIZE offset = 0;
    uint32_t opts = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    re->code = pcre2_compile((PCRE2_SPTR)src.p, src.n, opts, &code, &offset, cctx);
    pcre2_compile_context_free(cctx);
    pcre2_general_context_free(gctx);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        /* compile error 21 is PCRE2's "failed to allocate heap memory" */
        pc_fail(err, code == 121 ? PC_ERR_NOMEM : PC_ERR_UNSUPPORTED, "%s: %s: regex '%.200s' does not compile at offset %zu: %s", file, where,
                pattern, (size_t)offset, (const char *)msg);
        tk_bytes_free(&src);
        return code == 121 ? PC_ERR_NOMEM : PC_ERR_UNSUPPORTED;
    }
    tk_bytes_free(&src);
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    return PC_OK;
}

void tk_regex_free(tk_regex *re) {
    if (re->code) pcre2_code_free(re->code);
    re->code = NULL;
}
