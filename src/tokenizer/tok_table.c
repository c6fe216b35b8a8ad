/* Hash tables and growable buffers for the tokenizer: open addressing with linear probing, power-of-two
 * capacities, load factor at most 1/2. Strings live in a pool owned by the map, so a map is three arrays and
 * one byte buffer, freed in one place. */
#include <string.h>

#include "core/alloc.h"
#include "tokenizer/tok_internal.h"

/* FNV-1a over 8-byte words then bytes, with a final avalanche: fast on the short keys tokenizers see. */
uint64_t tk_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull ^ (n * 0x9e3779b97f4a7c15ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    while (n--) h = (h ^ *s++) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static uint32_t capacity_for(uint32_t expected) {
    uint32_t cap = 16;
    while (cap < expected * 2u + 2u) cap <<= 1;
    return cap;
}

pc_status tk_strmap_init(tk_strmap *m, uint32_t expected, pc_error *err) {
    memset(m, 0, sizeof *m);
    m->cap = capacity_for(expected);
    m->slot_off = pc_calloc(m->cap, sizeof *m->slot_off);
    m->slot_len = pc_malloc((size_t)m->cap * sizeof *m->slot_len);
    m->slot_val = pc_malloc((size_t)m->cap * sizeof *m->slot_val);
    if (!m->slot_off || !m->slot_len || !m->slot_val) {
        tk_strmap_free(m);
        return pc_fail(err, PC_ERR_NOMEM, "tokenizer: out of memory for a hash table of %u entries", expected);
    }
    return PC_OK;
}

void tk_strmap_free(tk_strmap *m) {
    pc_free(m->slot_off);
    pc_free(m->slot_len);
    pc_free(m->slot_val);
    pc_free(m->pool);
    memset(m, 0, sizeof *m);
}

void tk_strmap_clear(tk_strmap *m) {
    if (m->slot_off) memset(m->slot_off, 0, (size_t)m->cap * sizeof *m->slot_off);
    m->count = 0;
    m->pool_len = 0;
}

static pc_status strmap_grow(tk_strmap *m, pc_error *err) {
    tk_strmap bigger = *m;
    bigger.cap = m->cap * 2;
    bigger.slot_off = pc_calloc(bigger.cap, sizeof *bigger.slot_off);
    bigger.slot_len = pc_malloc((size_t)bigger.cap * sizeof *bigger.slot_len);
    bigger.slot_val = pc_malloc((size_t)bigger.cap * sizeof *bigger.slot_val);
    if (!bigger.slot_off || !bigger.slot_len || !bigger.slot_val) {
        pc_free(bigger.slot_off);
        pc_free(bigger.slot_len);
        pc_free(bigger.slot_val);
        return pc_fail(err, PC_ERR_NOMEM, "tokenizer: out of memory growing a hash table");
    }
    for (uint32_t i = 0; i < m->cap; i++) {
        if (!m->slot_off[i]) continue;
        uint32_t j = (uint32_t)tk_hash_bytes(m->pool + m->slot_off[i] - 1, m->slot_len[i]) & (bigger.cap - 1);
        while (bigger.slot_off[j]) j = (j + 1) & (bigger.cap - 1);
        bigger.slot_off[j] = m->slot_off[i];
        bigger.slot_len[j] = m->slot_len[i];
        bigger.slot_val[j] = m->slot_val[i];
    }
    pc_free(m->slot_off);
    pc_free(m->slot_len);
    pc_free(m->slot_val);
    m->cap = bigger.cap;
    m->slot_off = bigger.slot_off;
    m->slot_len = bigger.slot_len;
    m->slot_val = bigger.slot_val;
    return PC_OK;
}

pc_status tk_strmap_put(tk_strmap *m, const char *s, size_t n, int32_t val, pc_error *err) {
    if ((m->count + 1) * 2 > m->cap) PC_TRY(strmap_grow(m, err));
    uint32_t j = (uint32_t)tk_hash_bytes(s, n) & (m->cap - 1);
    while (m->slot_off[j]) {
        if (m->slot_len[j] == n && memcmp(m->pool + m->slot_off[j] - 1, s, n) == 0) {
            m->slot_val[j] = val;
            return PC_OK;
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (m->pool_len + n + 1 > m->pool_cap) {
        size_t cap = m->pool_cap ? m->pool_cap : 4096;
        while (cap < m->pool_len + n + 1) cap *= 2;
        char *p = pc_realloc(m->pool, m->pool_cap, cap);
        if (!p) return pc_fail(err, PC_ERR_NOMEM, "tokenizer: out of memory for token strings");
        m->pool = p;
        m->pool_cap = cap;
    }
    if (m->pool_len + n + 1 > UINT32_MAX) return pc_fail(err, PC_ERR_NOMEM, "tokenizer: string pool over 4 GB");
    memcpy(m->pool + m->pool_len, s, n);
    m->slot_off[j] = (uint32_t)m->pool_len + 1;
    m->slot_len[j] = (uint32_t)n;
    m->slot_val[j] = val;
    m->pool_len += n;
    m->count++;
    return PC_OK;
}

int tk_strmap_get(const tk_strmap *m, const char *s, size_t n, int32_t *val) {
    if (!m->cap) return 0;
    uint32_t j = (uint32_t)tk_hash_bytes(s, n) & (m->cap - 1);
    while (m->slot_off[j]) {
        if (m->slot_len[j] == n && memcmp(m->pool + m->slot_off[j] - 1, s, n) == 0) {
            *val = m->slot_val[j];
            return 1;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return 0;
}

static inline uint32_t pair_slot(uint64_t key, uint32_t cap) {
    key ^= key >> 31;
    key *= 0x9e3779b97f4a7c15ull;
    return (uint32_t)(key >> 32) & (cap - 1);
}

pc_status tk_pairmap_init(tk_pairmap *m, uint32_t expected, pc_error *err) {
    memset(m, 0, sizeof *m);
    m->cap = capacity_for(expected);
    m->keys = pc_calloc(m->cap, sizeof *m->keys);
    m->rank = pc_malloc((size_t)m->cap * sizeof *m->rank);
    m->merged = pc_malloc((size_t)m->cap * sizeof *m->merged);
    if (!m->keys || !m->rank || !m->merged) {
        tk_pairmap_free(m);
        return pc_fail(err, PC_ERR_NOMEM, "tokenizer: out of memory for %u merges", expected);
    }
    return PC_OK;
}

void tk_pairmap_free(tk_pairmap *m) {
    pc_free(m->keys);
    pc_free(m->rank);
    pc_free(m->merged);
    memset(m, 0, sizeof *m);
}

/* Later entries overwrite earlier ones, as both reference implementations build their merge maps. */
void tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    uint64_t key = tk_pair_key(a, b);
    uint32_t j = pair_slot(key, m->cap);
    while (m->keys[j] && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
    if (!m->keys[j]) m->count++;
    m->keys[j] = key;
    m->rank[j] = rank;
    m->merged[j] = merged;
}

int tk_pairmap_get(const tk_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged) {
    if (!m->cap) return 0;
    uint64_t key = tk_pair_key(a, b);
    uint32_t j = pair_slot(key, m->cap);
    while (m->keys[j]) {
        if (m->keys[j] == key) {
            *rank = m->rank[j];
            *merged = m->merged[j];
            return 1;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return 0;
}

pc_status tk_bytes_reserve(tk_bytes *b, size_t extra, pc_error *err) {
    if (b->n + extra + 1 <= b->cap) return PC_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = pc_realloc(b->p, b->cap, cap);
    if (!p) return pc_fail(err, PC_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", cap);
    b->p = p;
    b->cap = cap;
    return PC_OK;
}

pc_status tk_bytes_append(tk_bytes *b, const void *s, size_t n, pc_error *err) {
    PC_TRY(tk_bytes_reserve(b, n, err));
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return PC_OK;
}

void tk_bytes_free(tk_bytes *b) {
    pc_free(b->p);
    memset(b, 0, sizeof *b);
}

pc_status tk_ids_append(tk_ids *v, const int32_t *ids, size_t n, pc_error *err) {
    if (v->n + n > v->cap) {
        size_t cap = v->cap ? v->cap : 256;
        while (cap < v->n + n) cap *= 2;
        int32_t *p = pc_realloc(v->p, v->cap * sizeof *v->p, cap * sizeof *v->p);
        if (!p) return pc_fail(err, PC_ERR_NOMEM, "tokenizer: out of memory for %zu ids", cap);
        v->p = p;
        v->cap = cap;
    }
    if (n) memcpy(v->p + v->n, ids, n * sizeof *ids);
    v->n += n;
    return PC_OK;
}

pc_status tk_ids_push(tk_ids *v, int32_t id, pc_error *err) {
    if (v->n < v->cap) {
        v->p[v->n++] = id;
        return PC_OK;
    }
    return tk_ids_append(v, &id, 1, err);
}

void tk_ids_free(tk_ids *v) {
    pc_free(v->p);
    memset(v, 0, sizeof *v);
}
