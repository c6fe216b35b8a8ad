/* Reading the pipeline components of a tokenizer.json: normalizer, pre_tokenizer, post_processor, decoder
 * (formats.md §5). A component type peftc does not implement is refused with PC_ERR_UNSUPPORTED naming the
 * file and the component: a tokenizer that silently skipped a step would give different ids. */
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "tokenizer/tok_components.h"

static const char *str_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int bool_field(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static const char *type_of(const cJSON *o) {
    const char *t = str_field(o, "type");
    return t ? t : "";
}

/* {"String": "..."} or {"Regex": "..."}: returns the text and whether it is literal. */
static pc_status pattern_of(const cJSON *o, const char *file, const char *where, const char **text, int *literal,
                            pc_error *err) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const char *s = p ? str_field(p, "String") : NULL;
    if (s) {
        *text = s;
        *literal = 1;
        return PC_OK;
    }
    s = p ? str_field(p, "Regex") : NULL;
    if (s) {
        *text = s;
        *literal = 0;
        return PC_OK;
    }
    return pc_fail(err, PC_ERR_FORMAT, "%s: %s: 'pattern' must be {\"String\": ...} or {\"Regex\": ...}", file, where);
}

static int set_replacement(char out[8], int *out_len, const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 7) return 0;
    memcpy(out, s, n + 1);
    *out_len = (int)n;
    return 1;
}

pc_status tk_parse_normalizer(pc_tokenizer *tk, const cJSON *o, const char *file, pc_error *err) {
    if (!o || cJSON_IsNull(o)) return PC_OK;
    const char *t = type_of(o);
    if (!strcmp(t, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "normalizers");
        if (!cJSON_IsArray(list)) return pc_fail(err, PC_ERR_FORMAT, "%s: normalizer Sequence: 'normalizers' must be a list", file);
        for (const cJSON *c = list->child; c; c = c->next) PC_TRY(tk_parse_normalizer(tk, c, file, err));
        return PC_OK;
    }
    if (tk->n_norm >= TK_MAX_STAGES) return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: normalizer: more than %d steps", file, TK_MAX_STAGES);
    tk_normalizer *nm = &tk->norm[tk->n_norm];
    memset(nm, 0, sizeof *nm);
    if (!strcmp(t, "NFC")) nm->kind = TK_NORM_NFC;
    else if (!strcmp(t, "NFKC")) nm->kind = TK_NORM_NFKC;
    else if (!strcmp(t, "NFD")) nm->kind = TK_NORM_NFD;
    else if (!strcmp(t, "NFKD")) nm->kind = TK_NORM_NFKD;
    else if (!strcmp(t, "Lowercase")) nm->kind = TK_NORM_LOWERCASE;
    else if (!strcmp(t, "Strip")) {
        nm->kind = TK_NORM_STRIP;
        nm->strip_left = bool_field(o, "strip_left", 1);
        nm->strip_right = bool_field(o, "strip_right", 1);
    } else if (!strcmp(t, "Prepend")) {
        nm->kind = TK_NORM_PREPEND;
        const char *s = str_field(o, "prepend");
        if (!s) return pc_fail(err, PC_ERR_FORMAT, "%s: normalizer Prepend: missing 'prepend'", file);
        if (!(nm->str = pc_strdup(s))) return pc_fail(err, PC_ERR_NOMEM, "%s: normalizer: out of memory", file);
    } else if (!strcmp(t, "Replace")) {
        nm->kind = TK_NORM_REPLACE;
        const char *pat, *content = str_field(o, "content");
        int literal;
        PC_TRY(pattern_of(o, file, "normalizer Replace", &pat, &literal, err));
        if (!content) return pc_fail(err, PC_ERR_FORMAT, "%s: normalizer Replace: missing 'content'", file);
        if (!(nm->str = pc_strdup(content))) return pc_fail(err, PC_ERR_NOMEM, "%s: normalizer: out of memory", file);
        tk->n_norm++; /* owned from here, so a failed compile is freed with the tokenizer */
        return tk_regex_compile(&nm->re, pat, literal, file, "normalizer Replace", err);
    } else {
        return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: normalizer: type '%s' is not supported", file, t);
    }
    tk->n_norm++;
    return PC_OK;
}

static const char *const gpt2_pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static pc_status parse_split(tk_pretok *pt, const cJSON *o, const char *file, pc_error *err) {
    const char *pat, *beh = str_field(o, "behavior");
    int literal;
    PC_TRY(pattern_of(o, file, "pre_tokenizer Split", &pat, &literal, err));
    if (!beh || !strcmp(beh, "Isolated")) pt->behavior = TK_SPLIT_ISOLATED;
    else if (!strcmp(beh, "Removed")) pt->behavior = TK_SPLIT_REMOVED;
    else if (!strcmp(beh, "MergedWithPrevious")) pt->behavior = TK_SPLIT_MERGED_PREV;
    else if (!strcmp(beh, "MergedWithNext")) pt->behavior = TK_SPLIT_MERGED_NEXT;
    else if (!strcmp(beh, "Contiguous")) pt->behavior = TK_SPLIT_CONTIGUOUS;
    else return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: pre_tokenizer Split: behavior '%s' is not supported", file, beh);
    pt->invert = bool_field(o, "invert", 0);
    return tk_regex_compile(&pt->re, pat, literal, file, "pre_tokenizer Split", err);
}

static pc_status parse_metaspace(tk_pretok *pt, const cJSON *o, const char *file, pc_error *err) {
    if (!set_replacement(pt->replacement, &pt->replacement_len, str_field(o, "replacement")))
        return pc_fail(err, PC_ERR_FORMAT, "%s: pre_tokenizer Metaspace: bad 'replacement'", file);
    const char *scheme = str_field(o, "prepend_scheme");
    if (scheme) {
        if (!strcmp(scheme, "always")) pt->prepend = TK_PREPEND_ALWAYS;
        else if (!strcmp(scheme, "first")) pt->prepend = TK_PREPEND_FIRST;
        else if (!strcmp(scheme, "never")) pt->prepend = TK_PREPEND_NEVER;
        else return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: pre_tokenizer Metaspace: prepend_scheme '%s'", file, scheme);
    } else {
        pt->prepend = bool_field(o, "add_prefix_space", 1) ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
    }
    pt->split = bool_field(o, "split", 1);
    return PC_OK;
}

pc_status tk_parse_pretokenizer(pc_tokenizer *tk, const cJSON *o, const char *file, pc_error *err) {
    if (!o || cJSON_IsNull(o)) return PC_OK;
    const char *t = type_of(o);
    if (!strcmp(t, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers");
        if (!cJSON_IsArray(list)) return pc_fail(err, PC_ERR_FORMAT, "%s: pre_tokenizer Sequence: 'pretokenizers' must be a list", file);
        for (const cJSON *c = list->child; c; c = c->next) PC_TRY(tk_parse_pretokenizer(tk, c, file, err));
        return PC_OK;
    }
    if (tk->n_pre >= TK_MAX_STAGES) return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: pre_tokenizer: more than %d steps", file, TK_MAX_STAGES);
    if (tk->byte_level)
        return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: pre_tokenizer: '%s' after ByteLevel is not supported (ByteLevel must come last)", file, t);
    tk_pretok *pt = &tk->pre[tk->n_pre];
    memset(pt, 0, sizeof *pt);
    if (!strcmp(t, "Split")) {
        pt->kind = TK_PRE_SPLIT;
        tk->n_pre++;
        return parse_split(pt, o, file, err);
    }
    if (!strcmp(t, "ByteLevel")) {
        pt->kind = TK_PRE_BYTELEVEL;
        pt->add_prefix_space = bool_field(o, "add_prefix_space", 1);
        pt->use_regex = bool_field(o, "use_regex", 1);
        tk->byte_level = 1;
        tk->n_pre++;
        return pt->use_regex ? tk_regex_compile(&pt->re, gpt2_pattern, 0, file, "pre_tokenizer ByteLevel", err) : PC_OK;
    }
    if (!strcmp(t, "Digits")) {
        pt->kind = TK_PRE_DIGITS;
        pt->individual_digits = bool_field(o, "individual_digits", 0);
        tk->n_pre++;
        return PC_OK;
    }
    if (!strcmp(t, "Metaspace")) {
        pt->kind = TK_PRE_METASPACE;
        tk->n_pre++;
        return parse_metaspace(pt, o, file, err);
    }
    return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: pre_tokenizer: type '%s' is not supported", file, t);
}

pc_status tk_parse_decoder(pc_tokenizer *tk, const cJSON *o, const char *file, pc_error *err) {
    if (!o || cJSON_IsNull(o)) return PC_OK;
    const char *t = type_of(o);
    if (!strcmp(t, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "decoders");
        if (!cJSON_IsArray(list)) return pc_fail(err, PC_ERR_FORMAT, "%s: decoder Sequence: 'decoders' must be a list", file);
        for (const cJSON *c = list->child; c; c = c->next) PC_TRY(tk_parse_decoder(tk, c, file, err));
        return PC_OK;
    }
    if (tk->n_dec >= TK_MAX_STAGES) return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: decoder: more than %d steps", file, TK_MAX_STAGES);
    tk_decoder *d = &tk->dec[tk->n_dec];
    memset(d, 0, sizeof *d);
    if (!strcmp(t, "ByteLevel")) d->kind = TK_DEC_BYTELEVEL;
    else if (!strcmp(t, "ByteFallback")) d->kind = TK_DEC_BYTEFALLBACK;
    else if (!strcmp(t, "Fuse")) d->kind = TK_DEC_FUSE;
    else if (!strcmp(t, "Metaspace")) {
        d->kind = TK_DEC_METASPACE;
        if (!set_replacement(d->replacement, &d->replacement_len, str_field(o, "replacement")))
            return pc_fail(err, PC_ERR_FORMAT, "%s: decoder Metaspace: bad 'replacement'", file);
        const char *scheme = str_field(o, "prepend_scheme");
        d->add_prefix_space = scheme ? strcmp(scheme, "never") != 0 : bool_field(o, "add_prefix_space", 1);
    } else if (!strcmp(t, "Replace")) {
        d->kind = TK_DEC_REPLACE;
        const char *pat, *content = str_field(o, "content");
        int literal;
        PC_TRY(pattern_of(o, file, "decoder Replace", &pat, &literal, err));
        if (!literal) return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: decoder Replace: Regex patterns are not supported", file);
        if (!content) return pc_fail(err, PC_ERR_FORMAT, "%s: decoder Replace: missing 'content'", file);
        if (!*pat) return pc_fail(err, PC_ERR_FORMAT, "%s: decoder Replace: empty pattern", file);
        d->pattern = pc_strdup(pat);
        d->content = pc_strdup(content);
        tk->n_dec++;
        if (!d->pattern || !d->content) return pc_fail(err, PC_ERR_NOMEM, "%s: decoder: out of memory", file);
        return PC_OK;
    } else if (!strcmp(t, "Strip")) {
        d->kind = TK_DEC_STRIP;
        const char *content = str_field(o, "content");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(o, "start"), *stop = cJSON_GetObjectItemCaseSensitive(o, "stop");
        if (!content || !cJSON_IsNumber(start) || !cJSON_IsNumber(stop))
            return pc_fail(err, PC_ERR_FORMAT, "%s: decoder Strip: needs 'content', 'start', 'stop'", file);
        d->start = start->valueint;
        d->stop = stop->valueint;
        d->content = pc_strdup(content);
        tk->n_dec++;
        if (!d->content) return pc_fail(err, PC_ERR_NOMEM, "%s: decoder: out of memory", file);
        return PC_OK;
    } else {
        return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: decoder: type '%s' is not supported", file, t);
    }
    tk->n_dec++;
    return PC_OK;
}

static pc_status post_push(pc_tokenizer *tk, int after, int32_t id, const char *file, pc_error *err) {
    int32_t *list = after ? tk->post_after : tk->post_before;
    int *n = after ? &tk->n_post_after : &tk->n_post_before;
    if (*n >= 8) return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: post_processor: more than 8 special tokens on a side", file);
    list[(*n)++] = id;
    return PC_OK;
}

/* TemplateProcessing "single": SpecialToken items before the "A" sequence go before, those after go after. */
static pc_status parse_template(pc_tokenizer *tk, const cJSON *o, const char *file, pc_error *err) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(o, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
    if (!cJSON_IsArray(single)) return pc_fail(err, PC_ERR_FORMAT, "%s: post_processor TemplateProcessing: 'single' must be a list", file);
    int after = 0;
    for (const cJSON *item = single->child; item; item = item->next) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
        if (cJSON_GetObjectItemCaseSensitive(item, "Sequence")) {
            after = 1;
            continue;
        }
        const char *name = sp ? str_field(sp, "id") : NULL;
        if (!name) return pc_fail(err, PC_ERR_FORMAT, "%s: post_processor TemplateProcessing: bad item in 'single'", file);
        const cJSON *def = specials ? cJSON_GetObjectItemCaseSensitive(specials, name) : NULL;
        const cJSON *ids = def ? cJSON_GetObjectItemCaseSensitive(def, "ids") : NULL;
        if (!cJSON_IsArray(ids))
            return pc_fail(err, PC_ERR_FORMAT, "%s: post_processor TemplateProcessing: special token '%s' not in 'special_tokens'", file, name);
        for (const cJSON *id = ids->child; id; id = id->next) {
            if (!cJSON_IsNumber(id) || id->valueint < 0 || id->valueint >= tk->vocab_size)
                return pc_fail(err, PC_ERR_FORMAT, "%s: post_processor TemplateProcessing: special token '%s' has a bad id", file, name);
            PC_TRY(post_push(tk, after, id->valueint, file, err));
        }
    }
    return PC_OK;
}

/* Bert/RobertaProcessing: "cls": [token, id], "sep": [token, id] around the sequence. */
static pc_status parse_cls_sep(pc_tokenizer *tk, const cJSON *o, const char *file, pc_error *err) {
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(o, "cls"), *sep = cJSON_GetObjectItemCaseSensitive(o, "sep");
    if (cJSON_GetArraySize(cls) != 2 || cJSON_GetArraySize(sep) != 2)
        return pc_fail(err, PC_ERR_FORMAT, "%s: post_processor: 'cls' and 'sep' must be [token, id]", file);
    PC_TRY(post_push(tk, 0, cJSON_GetArrayItem(cls, 1)->valueint, file, err));
    return post_push(tk, 1, cJSON_GetArrayItem(sep, 1)->valueint, file, err);
}

pc_status tk_parse_postprocessor(pc_tokenizer *tk, const cJSON *o, const char *file, pc_error *err) {
    if (!o || cJSON_IsNull(o)) return PC_OK;
    const char *t = type_of(o);
    if (!strcmp(t, "ByteLevel")) return PC_OK; /* only adjusts offsets; ids unchanged */
    if (!strcmp(t, "TemplateProcessing")) return parse_template(tk, o, file, err);
    if (!strcmp(t, "BertProcessing") || !strcmp(t, "RobertaProcessing")) return parse_cls_sep(tk, o, file, err);
    if (!strcmp(t, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "processors");
        if (!cJSON_IsArray(list)) return pc_fail(err, PC_ERR_FORMAT, "%s: post_processor Sequence: 'processors' must be a list", file);
        for (const cJSON *c = list->child; c; c = c->next) PC_TRY(tk_parse_postprocessor(tk, c, file, err));
        return PC_OK;
    }
    return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: post_processor: type '%s' is not supported", file, t);
}

void tk_components_free(pc_tokenizer *tk) {
    for (int i = 0; i < tk->n_norm; i++) {
        pc_free(tk->norm[i].str);
        tk_regex_free(&tk->norm[i].re);
    }
    for (int i = 0; i < tk->n_pre; i++) tk_regex_free(&tk->pre[i].re);
    for (int i = 0; i < tk->n_dec; i++) {
        pc_free(tk->dec[i].pattern);
        pc_free(tk->dec[i].content);
    }
    tk->n_norm = tk->n_pre = tk->n_dec = 0;
}
