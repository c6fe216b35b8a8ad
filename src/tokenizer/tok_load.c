/* Loading a tokenizer: a Hugging Face tokenizer.json, or GPT-2's two-file form (vocab.json/encoder.json +
 * merges.txt/vocab.bpe), plus tokenizer_config.json beside either. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "io/json.h"
#include "tokenizer/tok_components.h"
#include "tokenizer/tok_internal.h"

#define TK_MAX_VOCAB (1 << 24)

/* ---- vocabulary ---- */

static pc_status alloc_id_table(pc_tokenizer *tk, int32_t vocab_size, pc_error *err) {
    tk->vocab_size = vocab_size;
    tk->tok_off = pc_calloc((size_t)vocab_size + 1, sizeof *tk->tok_off);
    tk->tok_len = pc_malloc(((size_t)vocab_size + 1) * sizeof *tk->tok_len);
    if (!tk->tok_off || !tk->tok_len) return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory for the vocabulary", tk->path);
    for (int32_t i = 0; i <= vocab_size; i++) tk->tok_len[i] = TK_NO_TOKEN;
    return PC_OK;
}

static pc_status set_token(pc_tokenizer *tk, int32_t id, const char *s, size_t n, pc_error *err) {
    tk->tok_off[id] = (uint32_t)tk->tok_pool.n;
    tk->tok_len[id] = (uint32_t)n;
    PC_TRY(tk_bytes_append(&tk->tok_pool, s, n, err));
    return tk_strmap_put(&tk->vocab, s, n, id, err);
}

/* The bytes a byte-level token stands for; 0 if some character is outside GPT-2's byte alphabet. */
static int byte_level_bytes(const char *s, size_t n, char *out, size_t *out_n) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        i += (size_t)tk_utf8_decode((const unsigned char *)s + i, &cp);
        int b = tk_cp_to_byte(cp);
        if (b < 0) return 0;
        out[k++] = (char)b;
    }
    *out_n = k;
    return 1;
}

/* After the vocabulary is in: byte-level raw index, single-byte ids, byte-fallback ids. */
static pc_status index_alphabet(pc_tokenizer *tk, pc_error *err) {
    for (int b = 0; b < 256; b++) tk->byte_id[b] = -1;
    if (tk->byte_level) {
        PC_TRY(tk_strmap_init(&tk->raw_vocab, (uint32_t)tk->n_vocab, err));
        char raw[1024];
        for (int32_t id = 0; id < tk->vocab_size; id++) {
            uint32_t n = tk->tok_len[id];
            if (n == TK_NO_TOKEN || n > sizeof raw) continue;
            size_t rn;
            if (!byte_level_bytes(tk->tok_pool.p + tk->tok_off[id], n, raw, &rn)) continue;
            int32_t existing;
            if (tk_strmap_get(&tk->raw_vocab, raw, rn, &existing)) continue; /* keep the model's (lower) id */
            PC_TRY(tk_strmap_put(&tk->raw_vocab, raw, rn, id, err));
            if (rn == 1) tk->byte_id[(unsigned char)raw[0]] = id;
        }
    } else {
        tk->cut_at_metaspace = 1;
        for (int32_t id = 0; id < tk->vocab_size && tk->cut_at_metaspace; id++) {
            uint32_t n = tk->tok_len[id];
            if (n == TK_NO_TOKEN || n < 4) continue;
            const char *s = tk->tok_pool.p + tk->tok_off[id];
            for (uint32_t i = 1; i + 3 <= n; i++)
                if (!memcmp(s + i, "\xE2\x96\x81", 3) && (i < 3 || memcmp(s + i - 3, "\xE2\x96\x81", 3))) {
                    tk->cut_at_metaspace = 0;
                    break;
                }
        }
    }
    if (!tk->byte_level && tk->byte_fallback) {
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            int32_t id;
            if (tk_strmap_get(&tk->vocab, name, 6, &id)) tk->byte_id[b] = id;
        }
    }
    return PC_OK;
}

/* One merge "a b": both sides and their concatenation must be tokens (as Hugging Face requires). */
static pc_status add_merge(pc_tokenizer *tk, const char *a, size_t an, const char *b, size_t bn, int32_t rank,
                           const char *where, pc_error *err) {
    int32_t ia, ib, im;
    if (!tk_strmap_get(&tk->vocab, a, an, &ia))
        return pc_fail(err, PC_ERR_FORMAT, "%s: %s %d: token '%.*s' is not in the vocabulary", tk->path, where, rank, (int)an, a);
    if (!tk_strmap_get(&tk->vocab, b, bn, &ib))
        return pc_fail(err, PC_ERR_FORMAT, "%s: %s %d: token '%.*s' is not in the vocabulary", tk->path, where, rank, (int)bn, b);
    char buf[2048];
    if (an + bn > sizeof buf) return pc_fail(err, PC_ERR_FORMAT, "%s: %s %d: token too long", tk->path, where, rank);
    memcpy(buf, a, an);
    memcpy(buf + an, b, bn);
    if (!tk_strmap_get(&tk->vocab, buf, an + bn, &im))
        return pc_fail(err, PC_ERR_FORMAT, "%s: %s %d: merged token '%.*s' is not in the vocabulary", tk->path, where, rank,
                       (int)(an + bn), buf);
    tk_pairmap_put(&tk->merges, ia, ib, rank, im);
    return PC_OK;
}

static pc_status add_merge_line(pc_tokenizer *tk, const char *s, size_t n, int32_t rank, const char *where, pc_error *err) {
    const char *sp = memchr(s, ' ', n);
    if (!sp || sp == s || sp + 1 == s + n || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1)))
        return pc_fail(err, PC_ERR_FORMAT, "%s: %s %d: expected two tokens separated by one space", tk->path, where, rank);
    return add_merge(tk, s, (size_t)(sp - s), sp + 1, (size_t)(s + n - sp - 1), rank, where, err);
}

static pc_status load_merges_json(pc_tokenizer *tk, const cJSON *merges, pc_error *err) {
    int n = cJSON_GetArraySize(merges);
    PC_TRY(tk_pairmap_init(&tk->merges, (uint32_t)n, err));
    int32_t rank = 0;
    for (const cJSON *m = merges->child; m; m = m->next, rank++) {
        if (cJSON_IsString(m)) {
            PC_TRY(add_merge_line(tk, m->valuestring, strlen(m->valuestring), rank, "model.merges", err));
        } else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            const char *a = m->child->valuestring, *b = m->child->next->valuestring;
            PC_TRY(add_merge(tk, a, strlen(a), b, strlen(b), rank, "model.merges", err));
        } else {
            return pc_fail(err, PC_ERR_FORMAT, "%s: model.merges %d: expected \"a b\" or [\"a\", \"b\"]", tk->path, rank);
        }
    }
    return PC_OK;
}

/* vocab object: size the id table from the largest id over the vocab and the added tokens. */
static pc_status load_vocab_object(pc_tokenizer *tk, const cJSON *vocab, const cJSON *added, const char *where,
                                   pc_error *err) {
    int32_t max_id = -1;
    int count = 0;
    for (const cJSON *v = vocab->child; v; v = v->next, count++) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= TK_MAX_VOCAB || v->valuedouble != (double)v->valueint)
            return pc_fail(err, PC_ERR_FORMAT, "%s: %s: token '%.100s' has a bad id", tk->path, where, v->string);
        if (v->valueint > max_id) max_id = v->valueint;
    }
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= TK_MAX_VOCAB)
            return pc_fail(err, PC_ERR_FORMAT, "%s: added_tokens: entry without a valid 'id'", tk->path);
        if (id->valueint > max_id) max_id = id->valueint;
    }
    if (count == 0) return pc_fail(err, PC_ERR_FORMAT, "%s: %s: the vocabulary is empty", tk->path, where);
    tk->n_vocab = count;
    PC_TRY(alloc_id_table(tk, max_id + 1, err));
    PC_TRY(tk_strmap_init(&tk->vocab, (uint32_t)count + 1024u, err));
    for (const cJSON *v = vocab->child; v; v = v->next) PC_TRY(set_token(tk, v->valueint, v->string, strlen(v->string), err));
    return PC_OK;
}

static int json_flag(const cJSON *o, const char *key) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key)); }

static pc_status load_added_tokens(pc_tokenizer *tk, const cJSON *added, pc_error *err) {
    int n = cJSON_GetArraySize(added);
    if (n == 0) return PC_OK;
    tk->added = pc_calloc((size_t)n, sizeof *tk->added);
    if (!tk->added) return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory for added tokens", tk->path);
    for (const cJSON *a = added->child; a; a = a->next) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        if (!cJSON_IsString(content) || !content->valuestring[0])
            return pc_fail(err, PC_ERR_FORMAT, "%s: added_tokens %d: missing 'content'", tk->path, tk->n_added);
        tk_added *t = &tk->added[tk->n_added];
        t->id = cJSON_GetObjectItemCaseSensitive(a, "id")->valueint;
        t->len = strlen(content->valuestring);
        if (!(t->content = pc_strdup(content->valuestring))) return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory", tk->path);
        tk->n_added++;
        t->special = json_flag(a, "special");
        t->lstrip = json_flag(a, "lstrip");
        t->rstrip = json_flag(a, "rstrip");
        t->single_word = json_flag(a, "single_word");
        /* Hugging Face's default: special tokens are matched on raw text, others after normalization. */
        const cJSON *norm = cJSON_GetObjectItemCaseSensitive(a, "normalized");
        t->normalized = cJSON_IsBool(norm) ? cJSON_IsTrue(norm) : !t->special;
        if (t->normalized) tk->any_normalized_added = 1;
        if (tk->tok_len[t->id] == TK_NO_TOKEN) {
            tk->tok_off[t->id] = (uint32_t)tk->tok_pool.n;
            tk->tok_len[t->id] = (uint32_t)t->len;
            PC_TRY(tk_bytes_append(&tk->tok_pool, t->content, t->len, err));
        }
        /* The reference encoders also let BPE output resolve to added tokens; keep the model's id if both. */
        int32_t existing;
        if (!tk_strmap_get(&tk->vocab, t->content, t->len, &existing)) PC_TRY(tk_strmap_put(&tk->vocab, t->content, t->len, t->id, err));
    }
    return tk_finish_added(tk, err);
}

/* Buckets of added tokens by first byte, longest first, so the first match at a position is the longest. */
pc_status tk_finish_added(pc_tokenizer *tk, pc_error *err) {
    pc_free(tk->added_order);
    tk->added_order = pc_malloc((size_t)(tk->n_added ? tk->n_added : 1) * sizeof *tk->added_order);
    if (!tk->added_order) return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory", tk->path);
    for (int i = 0; i < tk->n_added; i++) tk->added_order[i] = i;
    /* insertion sort: n is small (hundreds) and this keeps the comparator free of global state */
    for (int i = 1; i < tk->n_added; i++) {
        int v = tk->added_order[i], j = i;
        while (j > 0) {
            const tk_added *a = &tk->added[tk->added_order[j - 1]], *b = &tk->added[v];
            int fa = (unsigned char)a->content[0], fb = (unsigned char)b->content[0];
            if (fa < fb || (fa == fb && a->len >= b->len)) break;
            tk->added_order[j] = tk->added_order[j - 1];
            j--;
        }
        tk->added_order[j] = v;
    }
    int k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < tk->n_added && (unsigned char)tk->added[tk->added_order[k]].content[0] < b) k++;
        tk->added_first[b] = k;
    }
    return PC_OK;
}

static pc_status load_bpe_model(pc_tokenizer *tk, const cJSON *model, const cJSON *added, pc_error *err) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "BPE") != 0)
        return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: model: type '%s' is not supported (only BPE)", tk->path, type->valuestring);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab)) return pc_fail(err, PC_ERR_FORMAT, "%s: model: 'vocab' must be an object", tk->path);
    if (!cJSON_IsArray(merges)) return pc_fail(err, PC_ERR_FORMAT, "%s: model: 'merges' must be a list", tk->path);
    const char *fields[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(model, fields[i]);
        if (cJSON_IsString(f) && f->valuestring[0])
            return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: model: '%s' is not supported", tk->path, fields[i]);
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0.0)
        return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: model: BPE dropout is not supported at inference", tk->path);
    tk->byte_fallback = json_flag(model, "byte_fallback");
    tk->fuse_unk = json_flag(model, "fuse_unk");
    tk->ignore_merges = json_flag(model, "ignore_merges");
    PC_TRY(load_vocab_object(tk, vocab, added, "model.vocab", err));
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    tk->unk_id = -1;
    if (cJSON_IsString(unk) && !tk_strmap_get(&tk->vocab, unk->valuestring, strlen(unk->valuestring), &tk->unk_id))
        return pc_fail(err, PC_ERR_FORMAT, "%s: model: unk_token '%s' is not in the vocabulary", tk->path, unk->valuestring);
    PC_TRY(load_merges_json(tk, merges, err));
    return PC_OK;
}

static pc_status load_tokenizer_json(pc_tokenizer *tk, const cJSON *root, pc_error *err) {
    if (!cJSON_IsObject(root)) return pc_fail(err, PC_ERR_FORMAT, "%s: top level must be an object", tk->path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return pc_fail(err, PC_ERR_FORMAT, "%s: missing 'model'", tk->path);
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added))
        return pc_fail(err, PC_ERR_FORMAT, "%s: 'added_tokens' must be a list", tk->path);
    if (cJSON_IsNull(added)) added = NULL;
    /* Pre-tokenizer first: whether the model's alphabet is bytes depends on it. */
    PC_TRY(tk_parse_normalizer(tk, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), tk->path, err));
    PC_TRY(tk_parse_pretokenizer(tk, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), tk->path, err));
    PC_TRY(tk_parse_decoder(tk, cJSON_GetObjectItemCaseSensitive(root, "decoder"), tk->path, err));
    PC_TRY(load_bpe_model(tk, model, added, err));
    PC_TRY(index_alphabet(tk, err));
    if (added) PC_TRY(load_added_tokens(tk, added, err));
    else PC_TRY(tk_finish_added(tk, err));
    return tk_parse_postprocessor(tk, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), tk->path, err);
}

/* ---- GPT-2 two-file form ---- */

static pc_status load_merges_text(pc_tokenizer *tk, const char *path, pc_error *err) {
    char *buf = NULL;
    size_t len = 0;
    PC_TRY(pc_read_file(path, &buf, &len, err));
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    pc_status st = tk_pairmap_init(&tk->merges, (uint32_t)lines, err);
    int32_t rank = 0;
    size_t line_no = 0;
    for (size_t i = 0; st == PC_OK && i < len;) {
        size_t j = i;
        while (j < len && buf[j] != '\n') j++;
        size_t n = j - i;
        if (n && buf[i + n - 1] == '\r') n--;
        line_no++;
        if (n && !(line_no == 1 && n >= 8 && !memcmp(buf + i, "#version", 8))) {
            st = add_merge_line(tk, buf + i, n, rank, "merge", err);
            if (st != PC_OK) pc_error_prefix(err, "line %zu: ", line_no);
            rank++;
        }
        i = j + 1;
    }
    pc_free(buf);
    return st;
}

static pc_status load_two_file(pc_tokenizer *tk, const cJSON *vocab, const char *dir, pc_error *err) {
    char merges[4096];
    const char *names[] = {"merges.txt", "vocab.bpe"};
    int found = 0;
    for (int i = 0; i < 2 && !found; i++)
        found = pc_path_join(merges, sizeof merges, dir, names[i]) == 0 && pc_path_exists(merges);
    if (!found) return pc_fail(err, PC_ERR_IO, "%s: no merges.txt or vocab.bpe beside it", tk->path);
    /* GPT-2: ByteLevel pre-tokenizer (no prefix space, GPT-2 regex) and ByteLevel decoder. */
    tk->pre[0].kind = TK_PRE_BYTELEVEL;
    tk->pre[0].use_regex = 1;
    tk->n_pre = 1;
    tk->byte_level = 1;
    PC_TRY(tk_regex_compile(&tk->pre[0].re,
                            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", 0,
                            tk->path, "GPT-2 regex", err));
    tk->dec[0].kind = TK_DEC_BYTELEVEL;
    tk->n_dec = 1;
    tk->unk_id = -1;
    PC_TRY(load_vocab_object(tk, vocab, NULL, "vocabulary", err));
    PC_TRY(load_merges_text(tk, merges, err));
    PC_TRY(index_alphabet(tk, err));
    return tk_finish_added(tk, err);
}

/* ---- tokenizer_config.json ---- */

static const char *config_token(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return NULL;
}

static pc_status apply_config(pc_tokenizer *tk, const cJSON *cfg, const char *cfg_path, pc_error *err) {
    const char *bos = config_token(cfg, "bos_token"), *eos = config_token(cfg, "eos_token");
    const char *pad = config_token(cfg, "pad_token");
    if (bos) tk->bos_id = pc_tokenizer_token_to_id(tk, bos);
    if (eos) tk->eos_id = pc_tokenizer_token_to_id(tk, eos);
    if (pad) tk->pad_id = pc_tokenizer_token_to_id(tk, pad);
    /* Explicit add_bos_token/add_eos_token decide the special tokens around a sequence, as transformers'
     * Llama-family tokenizers rebuild their post-processor from them. */
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
    const cJSON *ae = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
    if (cJSON_IsBool(ab) || cJSON_IsBool(ae)) {
        int add_bos = cJSON_IsBool(ab) ? cJSON_IsTrue(ab) : tk->n_post_before > 0;
        int add_eos = cJSON_IsBool(ae) ? cJSON_IsTrue(ae) : tk->n_post_after > 0;
        if (add_bos && tk->bos_id < 0) return pc_fail(err, PC_ERR_FORMAT, "%s: add_bos_token is true but there is no bos_token", cfg_path);
        if (add_eos && tk->eos_id < 0) return pc_fail(err, PC_ERR_FORMAT, "%s: add_eos_token is true but there is no eos_token", cfg_path);
        tk->n_post_before = tk->n_post_after = 0;
        if (add_bos) tk->post_before[tk->n_post_before++] = tk->bos_id;
        if (add_eos) tk->post_after[tk->n_post_after++] = tk->eos_id;
    }
    const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    const char *text = cJSON_IsString(tpl) ? tpl->valuestring : NULL;
    if (cJSON_IsArray(tpl)) /* [{"name": ..., "template": ...}]: the "default" one */
        for (const cJSON *t = tpl->child; t; t = t->next) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
            const cJSON *body = cJSON_GetObjectItemCaseSensitive(t, "template");
            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default") && cJSON_IsString(body)) text = body->valuestring;
        }
    if (text && !(tk->chat_template = pc_strdup(text))) return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory", cfg_path);
    return PC_OK;
}

/* Without a config: BOS/EOS from the post-processor template, else well-known end-of-text tokens. */
static void infer_special_ids(pc_tokenizer *tk) {
    if (tk->bos_id < 0 && tk->n_post_before > 0) tk->bos_id = tk->post_before[0];
    if (tk->eos_id < 0 && tk->n_post_after > 0) tk->eos_id = tk->post_after[tk->n_post_after - 1];
    const char *eos_names[] = {"</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>"};
    for (int i = 0; i < 4 && tk->eos_id < 0; i++) tk->eos_id = pc_tokenizer_token_to_id(tk, eos_names[i]);
    const char *bos_names[] = {"<s>", "<|begin_of_text|>", "<bos>"};
    for (int i = 0; i < 3 && tk->bos_id < 0; i++) tk->bos_id = pc_tokenizer_token_to_id(tk, bos_names[i]);
}

/* ---- entry point ---- */

static void dir_of(const char *path, char *out, size_t cap) {
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash) *slash = '\0';
    else snprintf(out, cap, ".");
}

static pc_status resolve_path(const char *path, char *file, size_t cap, char *dir, size_t dcap, pc_error *err) {
    if (!pc_is_dir(path)) {
        if (!pc_path_exists(path)) return pc_fail(err, PC_ERR_IO, "%s: no such file", path);
        snprintf(file, cap, "%s", path);
        dir_of(path, dir, dcap);
        return PC_OK;
    }
    snprintf(dir, dcap, "%s", path);
    const char *names[] = {"tokenizer.json", "vocab.json", "encoder.json"};
    for (int i = 0; i < 3; i++)
        if (pc_path_join(file, cap, path, names[i]) == 0 && pc_path_exists(file)) return PC_OK;
    return pc_fail(err, PC_ERR_IO, "%s: no tokenizer.json, vocab.json or encoder.json in this directory", path);
}

static pc_status load_into(pc_tokenizer *tk, const char *file, const char *dir, pc_error *err) {
    cJSON *root = NULL;
    PC_TRY(pc_json_load(&root, file, err));
    pc_status st = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "model")) || !cJSON_IsObject(root) ||
                           !cJSON_IsNumber(root->child)
                       ? load_tokenizer_json(tk, root, err)
                       : load_two_file(tk, root, dir, err);
    cJSON_Delete(root);
    if (st != PC_OK) return st;
    char cfg_path[4096];
    if (pc_path_join(cfg_path, sizeof cfg_path, dir, "tokenizer_config.json") == 0 && pc_path_exists(cfg_path)) {
        cJSON *cfg = NULL;
        PC_TRY(pc_json_load(&cfg, cfg_path, err));
        st = cJSON_IsObject(cfg) ? apply_config(tk, cfg, cfg_path, err)
                                 : pc_fail(err, PC_ERR_FORMAT, "%s: top level must be an object", cfg_path);
        cJSON_Delete(cfg);
        if (st != PC_OK) return st;
    }
    infer_special_ids(tk);
    return PC_OK;
}

pc_status pc_tokenizer_load(pc_tokenizer **out, const char *path, pc_error *err) {
    *out = NULL;
    char file[4096], dir[4096];
    PC_TRY(resolve_path(path, file, sizeof file, dir, sizeof dir, err));
    pc_tokenizer *tk = pc_calloc(1, sizeof *tk);
    if (!tk || !(tk->path = pc_strdup(file))) {
        pc_free(tk);
        return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory", path);
    }
    tk->bos_id = tk->eos_id = tk->pad_id = tk->unk_id = -1;
    pc_status st = load_into(tk, file, dir, err);
    if (st != PC_OK) {
        pc_tokenizer_free(tk);
        return st;
    }
    *out = tk;
    return PC_OK;
}

void pc_tokenizer_free(pc_tokenizer *tk) {
    if (!tk) return;
    tk_components_free(tk);
    tk_strmap_free(&tk->vocab);
    tk_strmap_free(&tk->raw_vocab);
    tk_pairmap_free(&tk->merges);
    tk_bytes_free(&tk->tok_pool);
    pc_free(tk->tok_off);
    pc_free(tk->tok_len);
    for (int i = 0; i < tk->n_added; i++) pc_free(tk->added[i].content);
    pc_free(tk->added);
    pc_free(tk->added_order);
    pc_free(tk->chat_template);
    pc_free(tk->path);
    pc_free(tk);
}

int32_t pc_tokenizer_vocab_size(const pc_tokenizer *tk) { return tk->vocab_size; }
int32_t pc_tokenizer_bos_id(const pc_tokenizer *tk) { return tk->bos_id; }
int32_t pc_tokenizer_eos_id(const pc_tokenizer *tk) { return tk->eos_id; }
int32_t pc_tokenizer_pad_id(const pc_tokenizer *tk) { return tk->pad_id >= 0 ? tk->pad_id : tk->eos_id >= 0 ? tk->eos_id : 0; }

int32_t pc_tokenizer_token_to_id(const pc_tokenizer *tk, const char *token) {
    int32_t id;
    return tk_strmap_get(&tk->vocab, token, strlen(token), &id) ? id : -1;
}
