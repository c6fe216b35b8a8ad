/* Byte-level BPE training.
 *
 * 1. Split every file with the GPT-2 regex (JavaScript \s, as the encoder) and count distinct pieces.
 * 2. Each distinct piece is a list of byte-token ids; pair counts are weighted by piece frequency.
 * 3. Repeatedly merge the most frequent pair (ties: the smaller (left id, right id), for determinism): every
 *    piece containing it is rewritten and its pairs' counts are adjusted by the difference.
 * Token ids: special tokens first, then the 256 bytes in byte order, then one id per merge. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "io/json.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/tok_internal.h"

typedef struct pair_counts {
    uint32_t cap, count;
    uint64_t *keys; /* tk_pair_key; 0 empty */
    int64_t *val;
} pair_counts;

static uint32_t pc_slot(uint64_t key, uint32_t cap) {
    key ^= key >> 29;
    key *= 0xbf58476d1ce4e5b9ull;
    return (uint32_t)(key >> 32) & (cap - 1);
}

static pc_status counts_add(pair_counts *pcs, int32_t a, int32_t b, int64_t d, pc_error *err) {
    if ((pcs->count + 1) * 2 > pcs->cap) {
        pair_counts g = {pcs->cap ? pcs->cap * 2 : 1024, 0, NULL, NULL};
        g.keys = pc_calloc(g.cap, sizeof *g.keys);
        g.val = pc_malloc((size_t)g.cap * sizeof *g.val);
        if (!g.keys || !g.val) {
            pc_free(g.keys);
            pc_free(g.val);
            return pc_fail(err, PC_ERR_NOMEM, "tokenizer train: out of memory for pair counts");
        }
        for (uint32_t i = 0; i < pcs->cap; i++) {
            if (!pcs->keys[i]) continue;
            uint32_t j = pc_slot(pcs->keys[i], g.cap);
            while (g.keys[j]) j = (j + 1) & (g.cap - 1);
            g.keys[j] = pcs->keys[i];
            g.val[j] = pcs->val[i];
            g.count++;
        }
        pc_free(pcs->keys);
        pc_free(pcs->val);
        *pcs = g;
    }
    uint64_t key = tk_pair_key(a, b);
    uint32_t j = pc_slot(key, pcs->cap);
    while (pcs->keys[j] && pcs->keys[j] != key) j = (j + 1) & (pcs->cap - 1);
    if (!pcs->keys[j]) {
        pcs->keys[j] = key;
        pcs->val[j] = 0;
        pcs->count++;
    }
    pcs->val[j] += d;
    return PC_OK;
}

typedef struct trainer {
    tk_strmap pieces; /* piece bytes -> index */
    int64_t *freq;
    size_t n_pieces, freq_cap;
    int32_t *sym;     /* symbols of all pieces, back to back */
    size_t *off;      /* [n_pieces + 1] */
    int32_t *len;     /* current length of each piece */
    pair_counts pairs;
    tk_bytes *tokens; /* raw bytes of each id */
    int32_t n_tokens;
} trainer;

static pc_status count_file(trainer *t, const tk_regex *re, pcre2_match_data *md, const char *path, pc_error *err) {
    char *buf = NULL;
    size_t len = 0;
    PC_TRY(pc_read_file(path, &buf, &len, err));
    size_t bad = pc_utf8_valid_prefix(buf, len);
    pc_status st = bad == len ? PC_OK : pc_fail(err, PC_ERR_FORMAT, "%s: byte %zu: invalid UTF-8", path, bad);
    size_t pos = 0;
    while (st == PC_OK && pos < len) {
        int rc = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)buf, len, pos, 0, md, NULL)
                         : pcre2_match(re->code, (PCRE2_SPTR)buf, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) {
            pos = ov[0] + 1;
            continue;
        }
        int32_t idx;
        if (tk_strmap_get(&t->pieces, buf + ov[0], ov[1] - ov[0], &idx)) {
            t->freq[idx]++;
        } else {
            if (t->n_pieces == t->freq_cap) {
                size_t cap = t->freq_cap ? t->freq_cap * 2 : 4096;
                int64_t *f = pc_realloc(t->freq, t->freq_cap * sizeof *f, cap * sizeof *f);
                if (!f) {
                    st = pc_fail(err, PC_ERR_NOMEM, "tokenizer train: out of memory");
                    break;
                }
                t->freq = f;
                t->freq_cap = cap;
            }
            t->freq[t->n_pieces] = 1;
            st = tk_strmap_put(&t->pieces, buf + ov[0], ov[1] - ov[0], (int32_t)t->n_pieces, err);
            t->n_pieces++;
        }
        pos = ov[1];
    }
    pc_free(buf);
    return st;
}

/* Lay out the symbols of every distinct piece and count the initial pairs. */
static pc_status build_symbols(trainer *t, int n_special, pc_error *err) {
    t->off = pc_malloc((t->n_pieces + 1) * sizeof *t->off);
    t->len = pc_malloc((t->n_pieces + 1) * sizeof *t->len);
    t->sym = pc_malloc((t->pieces.pool_len + 1) * sizeof *t->sym);
    if (!t->off || !t->len || !t->sym) return pc_fail(err, PC_ERR_NOMEM, "tokenizer train: out of memory");
    /* walk the map's slots to find each piece's bytes */
    for (uint32_t s = 0; s < t->pieces.cap; s++) {
        if (!t->pieces.slot_off[s]) continue;
        int32_t idx = t->pieces.slot_val[s];
        t->off[idx] = t->pieces.slot_off[s] - 1;
        t->len[idx] = (int32_t)t->pieces.slot_len[s];
    }
    for (size_t i = 0; i < t->n_pieces; i++) {
        const unsigned char *p = (const unsigned char *)t->pieces.pool + t->off[i];
        for (int32_t k = 0; k < t->len[i]; k++) t->sym[t->off[i] + k] = n_special + p[k];
        for (int32_t k = 0; k + 1 < t->len[i]; k++)
            PC_TRY(counts_add(&t->pairs, t->sym[t->off[i] + k], t->sym[t->off[i] + k + 1], t->freq[i], err));
    }
    return PC_OK;
}

static int best_pair(const pair_counts *pcs, uint64_t *key, int64_t *count) {
    int64_t best = 0;
    uint64_t bk = 0;
    for (uint32_t i = 0; i < pcs->cap; i++) {
        if (!pcs->keys[i]) continue;
        int64_t v = pcs->val[i];
        if (v > best || (v == best && v > 0 && pcs->keys[i] < bk)) {
            best = v;
            bk = pcs->keys[i];
        }
    }
    *key = bk;
    *count = best;
    return best > 0;
}

/* Rewrite every piece that holds (a, b) as new_id, moving the pair counts. */
static pc_status apply_merge(trainer *t, int32_t a, int32_t b, int32_t new_id, pc_error *err) {
    for (size_t i = 0; i < t->n_pieces; i++) {
        int32_t n = t->len[i];
        if (n < 2) continue;
        int32_t *s = t->sym + t->off[i];
        int found = 0;
        for (int32_t k = 0; k + 1 < n && !found; k++) found = s[k] == a && s[k + 1] == b;
        if (!found) continue;
        int64_t f = t->freq[i];
        for (int32_t k = 0; k + 1 < n; k++) PC_TRY(counts_add(&t->pairs, s[k], s[k + 1], -f, err));
        int32_t w = 0;
        for (int32_t k = 0; k < n; k++) {
            if (k + 1 < n && s[k] == a && s[k + 1] == b) {
                s[w++] = new_id;
                k++;
            } else {
                s[w++] = s[k];
            }
        }
        t->len[i] = w;
        for (int32_t k = 0; k + 1 < w; k++) PC_TRY(counts_add(&t->pairs, s[k], s[k + 1], f, err));
    }
    return PC_OK;
}

/* Display form of raw bytes: GPT-2's byte-to-code-point map. */
static pc_status display(const tk_bytes *raw, char *out, size_t cap, pc_error *err) {
    size_t k = 0;
    for (size_t i = 0; i < raw->n; i++) {
        char enc[4];
        int l = tk_utf8_encode(tk_byte_to_cp((unsigned char)raw->p[i]), enc);
        if (k + (size_t)l + 1 > cap) return pc_fail(err, PC_ERR_INTERNAL, "tokenizer train: token too long");
        memcpy(out + k, enc, (size_t)l);
        k += (size_t)l;
    }
    out[k] = '\0';
    return PC_OK;
}

static cJSON *bytelevel_component(int add_prefix_space, int trim_offsets, int *failed) {
    cJSON *o = cJSON_CreateObject();
    pc_json_put(o, "type", cJSON_CreateString("ByteLevel"), failed);
    pc_json_put(o, "add_prefix_space", cJSON_CreateBool(add_prefix_space), failed);
    pc_json_put(o, "trim_offsets", cJSON_CreateBool(trim_offsets), failed);
    pc_json_put(o, "use_regex", cJSON_CreateTrue(), failed);
    return o;
}

static cJSON *added_tokens_json(const pc_bpe_train_options *opt, int *failed) {
    cJSON *added = cJSON_CreateArray();
    for (int i = 0; i < opt->n_special; i++) {
        cJSON *a = cJSON_CreateObject();
        pc_json_put(a, "id", cJSON_CreateNumber(i), failed);
        pc_json_put(a, "content", cJSON_CreateString(opt->special_tokens[i]), failed);
        pc_json_put(a, "single_word", cJSON_CreateFalse(), failed);
        pc_json_put(a, "lstrip", cJSON_CreateFalse(), failed);
        pc_json_put(a, "rstrip", cJSON_CreateFalse(), failed);
        pc_json_put(a, "normalized", cJSON_CreateFalse(), failed);
        pc_json_put(a, "special", cJSON_CreateTrue(), failed);
        pc_json_append(added, a, failed);
    }
    return added;
}

/* The "model" object: BPE settings, vocab (display strings → ids) and the merges as [left, right] pairs. */
static pc_status bpe_model_json(const trainer *t, const pc_bpe_train_options *opt, const int32_t *merges,
                                int n_merges, cJSON *model, int *failed, pc_error *err) {
    pc_json_put(model, "type", cJSON_CreateString("BPE"), failed);
    static const char *const nulls[] = {"dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++) pc_json_put(model, nulls[i], cJSON_CreateNull(), failed);
    pc_json_put(model, "fuse_unk", cJSON_CreateFalse(), failed);
    pc_json_put(model, "byte_fallback", cJSON_CreateFalse(), failed);
    pc_json_put(model, "ignore_merges", cJSON_CreateFalse(), failed);
    cJSON *vocab = cJSON_CreateObject(), *mlist = cJSON_CreateArray();
    char name[4096], left[4096], right[4096];
    pc_status st = PC_OK;
    for (int i = 0; i < opt->n_special; i++) pc_json_put(vocab, opt->special_tokens[i], cJSON_CreateNumber(i), failed);
    for (int32_t id = opt->n_special; st == PC_OK && id < t->n_tokens; id++) {
        st = display(&t->tokens[id], name, sizeof name, err);
        if (st == PC_OK) pc_json_put(vocab, name, cJSON_CreateNumber(id), failed);
    }
    for (int m = 0; st == PC_OK && m < n_merges; m++) {
        st = display(&t->tokens[merges[2 * m]], left, sizeof left, err);
        if (st == PC_OK) st = display(&t->tokens[merges[2 * m + 1]], right, sizeof right, err);
        if (st != PC_OK) break;
        cJSON *pair = cJSON_CreateArray();
        pc_json_append(pair, cJSON_CreateString(left), failed);
        pc_json_append(pair, cJSON_CreateString(right), failed);
        pc_json_append(mlist, pair, failed);
    }
    pc_json_put(model, "vocab", vocab, failed);
    pc_json_put(model, "merges", mlist, failed);
    return st;
}

static pc_status write_json(const trainer *t, const pc_bpe_train_options *opt, const int32_t *merges, int n_merges,
                            const char *out_path, pc_error *err) {
    int failed = 0;
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject();
    pc_json_put(root, "version", cJSON_CreateString("1.0"), &failed);
    pc_json_put(root, "truncation", cJSON_CreateNull(), &failed);
    pc_json_put(root, "padding", cJSON_CreateNull(), &failed);
    pc_json_put(root, "added_tokens", added_tokens_json(opt, &failed), &failed);
    pc_json_put(root, "normalizer", cJSON_CreateNull(), &failed);
    pc_json_put(root, "pre_tokenizer", bytelevel_component(0, 1, &failed), &failed);
    pc_json_put(root, "post_processor", bytelevel_component(1, 0, &failed), &failed);
    pc_json_put(root, "decoder", bytelevel_component(1, 1, &failed), &failed);
    pc_status st = bpe_model_json(t, opt, merges, n_merges, model, &failed, err);
    pc_json_put(root, "model", model, &failed);
    if (st == PC_OK) st = pc_json_built(failed, out_path, err);
    if (st == PC_OK) st = pc_json_write_atomic(root, out_path, err);
    cJSON_Delete(root);
    return st;
}

static pc_status train(trainer *t, const char *const *files, int n_files, const pc_bpe_train_options *opt,
                       const char *out_path, int *n_merges_out, pc_error *err) {
    if (opt->vocab_size < opt->n_special + 256)
        return pc_fail(err, PC_ERR_USAGE, "tokenizer train: --vocab-size %d is below %d (special tokens + 256 bytes)",
                       opt->vocab_size, opt->n_special + 256);
    tk_regex re;
    PC_TRY(tk_regex_compile(&re, "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", 0,
                            "tokenizer train", "GPT-2 regex", err));
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    pc_status st = md ? tk_strmap_init(&t->pieces, 1 << 16, err) : pc_fail(err, PC_ERR_NOMEM, "tokenizer train: out of memory");
    for (int i = 0; st == PC_OK && i < n_files; i++) st = count_file(t, &re, md, files[i], err);
    if (md) pcre2_match_data_free(md);
    tk_regex_free(&re);
    PC_TRY(st);
    PC_TRY(build_symbols(t, opt->n_special, err));
    t->tokens = pc_calloc((size_t)opt->vocab_size, sizeof *t->tokens);
    int32_t *merges = pc_malloc((size_t)(opt->vocab_size + 1) * 2 * sizeof *merges);
    if (!t->tokens || !merges) {
        pc_free(merges);
        return pc_fail(err, PC_ERR_NOMEM, "tokenizer train: out of memory");
    }
    t->n_tokens = opt->n_special;
    for (int b = 0; st == PC_OK && b < 256; b++) {
        char c = (char)b;
        st = tk_bytes_append(&t->tokens[t->n_tokens++], &c, 1, err);
    }
    int n_merges = 0, min_freq = opt->min_frequency > 0 ? opt->min_frequency : 2;
    while (st == PC_OK && t->n_tokens < opt->vocab_size) {
        uint64_t key;
        int64_t count;
        if (!best_pair(&t->pairs, &key, &count) || count < min_freq) break;
        key -= 1;
        int32_t a = (int32_t)(key >> 32), b = (int32_t)(key & 0xffffffffu), id = t->n_tokens++;
        st = tk_bytes_append(&t->tokens[id], t->tokens[a].p, t->tokens[a].n, err);
        if (st == PC_OK) st = tk_bytes_append(&t->tokens[id], t->tokens[b].p, t->tokens[b].n, err);
        merges[2 * n_merges] = a;
        merges[2 * n_merges + 1] = b;
        n_merges++;
        if (st == PC_OK) st = apply_merge(t, a, b, id, err);
    }
    if (st == PC_OK) st = write_json(t, opt, merges, n_merges, out_path, err);
    pc_free(merges);
    if (n_merges_out) *n_merges_out = n_merges;
    return st;
}

pc_status pc_bpe_train(const char *const *files, int n_files, const pc_bpe_train_options *opt, const char *out_path,
                       int *n_merges, pc_error *err) {
    trainer t;
    memset(&t, 0, sizeof t);
    pc_status st = train(&t, files, n_files, opt, out_path, n_merges, err);
    tk_strmap_free(&t.pieces);
    pc_free(t.freq);
    pc_free(t.sym);
    pc_free(t.off);
    pc_free(t.len);
    pc_free(t.pairs.keys);
    pc_free(t.pairs.val);
    if (t.tokens)
        for (int32_t i = 0; i < opt->vocab_size; i++) tk_bytes_free(&t.tokens[i]);
    pc_free(t.tokens);
    return st;
}
