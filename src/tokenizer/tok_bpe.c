/* Byte-pair encoding of one pre-token.
 *
 * Symbols form a doubly linked list over an array; candidate merges sit in a binary min-heap keyed by
 * (merge rank, position of the left symbol), so the lowest-ranked pair is merged first and ties go to the
 * leftmost pair — the order of both Hugging Face tokenizers and transformers.js. A heap entry remembers the
 * two ids it was made for; if the symbols at its position no longer carry them it is stale and skipped.
 * Results of short pieces are cached per call (bounded), as most words repeat. */
#include <string.h>

#include "core/alloc.h"
#include "tokenizer/tok_internal.h"

#define TK_CACHE_MAX_PIECE 256

static inline int heap_less(const tk_heap_item *a, const tk_heap_item *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(tk_heap_item *h, size_t *n, tk_heap_item it) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static tk_heap_item heap_pop(tk_heap_item *h, size_t *n) {
    tk_heap_item top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static void consider_pair(const pc_tokenizer *tk, const tk_symbol *sym, int32_t left, tk_heap_item *heap, size_t *n) {
    int32_t right = sym[left].next;
    if (right < 0 || sym[left].id < 0 || sym[right].id < 0) return;
    int32_t rank, merged;
    if (!tk_pairmap_get(&tk->merges, sym[left].id, sym[right].id, &rank, &merged)) return;
    tk_heap_item it = {rank, left, sym[left].id, sym[right].id};
    heap_push(heap, n, it);
}

static pc_status ensure_work(tk_run *r, size_t n, pc_error *err) {
    if (n <= r->sym_cap) return PC_OK;
    size_t cap = r->sym_cap ? r->sym_cap : 64;
    while (cap < n) cap *= 2;
    tk_symbol *s = pc_malloc(cap * sizeof *s);
    tk_heap_item *h = pc_malloc(cap * 2 * sizeof *h);
    if (!s || !h) {
        pc_free(s);
        pc_free(h);
        return pc_fail(err, PC_ERR_NOMEM, "tokenizer: out of memory for a %zu-byte word", n);
    }
    pc_free(r->sym);
    pc_free(r->heap);
    r->sym = s;
    r->heap = h;
    r->sym_cap = cap;
    r->heap_cap = cap * 2;
    return PC_OK;
}

/* Initial symbols: bytes (byte-level) or characters; characters outside the vocabulary get id -1. */
static pc_status initial_symbols(tk_run *r, const char *s, size_t n, int32_t *count, pc_error *err) {
    const pc_tokenizer *tk = r->tk;
    int32_t k = 0;
    for (size_t i = 0; i < n; k++) {
        size_t len = 1;
        int32_t id;
        if (tk->byte_level) {
            id = tk->byte_id[(unsigned char)s[i]];
            if (id < 0) return pc_fail(err, PC_ERR_FORMAT, "%s: the vocabulary has no token for byte 0x%02X", tk->path, (unsigned char)s[i]);
        } else {
            int32_t cp;
            len = (size_t)tk_utf8_decode((const unsigned char *)s + i, &cp);
            if (!tk_strmap_get(&tk->vocab, s + i, len, &id)) id = -1;
        }
        r->sym[k] = (tk_symbol){id, k - 1, -1, (uint32_t)i, (uint32_t)len};
        if (k > 0) r->sym[k - 1].next = k;
        i += len;
    }
    *count = k;
    return PC_OK;
}

/* A character without a token: its UTF-8 bytes as <0xXX> tokens if all exist, else unk. */
static pc_status emit_unknown(tk_run *r, const char *s, const tk_symbol *sym, int *last_was_unk, pc_error *err) {
    const pc_tokenizer *tk = r->tk;
    if (tk->byte_fallback) {
        int all = 1;
        for (uint32_t b = 0; b < sym->len; b++) all &= tk->byte_id[(unsigned char)s[sym->start + b]] >= 0;
        if (all) {
            for (uint32_t b = 0; b < sym->len; b++) PC_TRY(tk_ids_push(r->out, tk->byte_id[(unsigned char)s[sym->start + b]], err));
            *last_was_unk = 0;
            return PC_OK;
        }
    }
    if (tk->unk_id < 0)
        return pc_fail(err, PC_ERR_FORMAT, "%s: the text has the character '%.*s' that has no token, and there is no unk_token",
                       tk->path, (int)sym->len, s + sym->start);
    if (!(tk->fuse_unk && *last_was_unk)) PC_TRY(tk_ids_push(r->out, tk->unk_id, err));
    *last_was_unk = 1;
    return PC_OK;
}

static pc_status merge_word(tk_run *r, const char *s, size_t n, pc_error *err) {
    const pc_tokenizer *tk = r->tk;
    PC_TRY(ensure_work(r, n, err));
    int32_t count;
    PC_TRY(initial_symbols(r, s, n, &count, err));
    tk_symbol *sym = r->sym;
    size_t hn = 0;
    for (int32_t i = 0; i + 1 < count; i++) consider_pair(tk, sym, i, r->heap, &hn);
    while (hn) {
        tk_heap_item it = heap_pop(r->heap, &hn);
        int32_t left = it.pos, right = sym[left].next;
        if (sym[left].len == 0 || right < 0 || sym[left].id != it.left_id || sym[right].id != it.right_id) continue;
        int32_t rank, merged;
        tk_pairmap_get(&tk->merges, it.left_id, it.right_id, &rank, &merged);
        sym[left].id = merged;
        sym[left].len += sym[right].len;
        sym[left].next = sym[right].next;
        if (sym[right].next >= 0) sym[sym[right].next].prev = left;
        sym[right].len = 0;
        sym[right].id = -2;
        if (sym[left].prev >= 0) consider_pair(tk, sym, sym[left].prev, r->heap, &hn);
        consider_pair(tk, sym, left, r->heap, &hn);
    }
    int last_was_unk = 0;
    for (int32_t i = 0; i >= 0 && i < count; i = sym[i].next) {
        if (sym[i].id >= 0) {
            PC_TRY(tk_ids_push(r->out, sym[i].id, err));
            last_was_unk = 0;
        } else {
            PC_TRY(emit_unknown(r, s, &sym[i], &last_was_unk, err));
        }
    }
    return PC_OK;
}

static pc_status bpe_one(tk_run *r, const char *s, size_t n, pc_error *err);

pc_status tk_bpe_piece(tk_run *r, const char *s, size_t n, pc_error *err) {
    if (!r->tk->cut_at_metaspace || n < 8) return bpe_one(r, s, n, err);
    /* cut before each "▁" that follows something other than "▁" (see cut_at_metaspace) */
    size_t start = 0;
    for (size_t i = 3; i + 3 <= n; i++) {
        if (memcmp(s + i, "\xE2\x96\x81", 3) || !memcmp(s + i - 3, "\xE2\x96\x81", 3)) continue;
        PC_TRY(bpe_one(r, s + start, i - start, err));
        start = i;
    }
    return bpe_one(r, s + start, n - start, err);
}

static pc_status bpe_one(tk_run *r, const char *s, size_t n, pc_error *err) {
    const pc_tokenizer *tk = r->tk;
    if (n == 0) return PC_OK;
    int32_t id;
    if (tk->ignore_merges && tk_strmap_get(tk->byte_level ? &tk->raw_vocab : &tk->vocab, s, n, &id))
        return tk_ids_push(r->out, id, err);
    tk_cache *c = &r->cache;
    int32_t at;
    if (n < TK_CACHE_MAX_PIECE && tk_strmap_get(&c->map, s, n, &at))
        return tk_ids_append(r->out, c->ids.p + at + 1, (size_t)c->ids.p[at], err);
    size_t before = r->out->n;
    PC_TRY(merge_word(r, s, n, err));
    if (n >= TK_CACHE_MAX_PIECE) return PC_OK;
    if (c->map.count >= c->limit) { /* bounded: start over rather than grow without end */
        tk_strmap_clear(&c->map);
        c->ids.n = 0;
    }
    size_t produced = r->out->n - before;
    at = (int32_t)c->ids.n;
    PC_TRY(tk_ids_push(&c->ids, (int32_t)produced, err));
    PC_TRY(tk_ids_append(&c->ids, r->out->p + before, produced, err));
    return tk_strmap_put(&c->map, s, n, at, err);
}
