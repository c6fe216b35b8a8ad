/* The tokenizer's internal structures, shared by the files of src/tokenizer/ only.
 *
 * Pipeline of one encode (mirrors Hugging Face tokenizers / transformers.js):
 *   raw text ─added-token split─► sections ─normalizers─► text ─pre-tokenizers─► pieces ─BPE─► ids
 *   ─post-processor─► ids
 * Byte-level vocabularies are handled in raw-byte space: every vocab entry is also indexed by the bytes it
 * stands for, so the ByteLevel pre-tokenizer never materialises the "Ġ" alphabet. */
#ifndef PC_TOKENIZER_TOK_INTERNAL_H
#define PC_TOKENIZER_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/tokenizer.h"

/* ---- hash tables (tok_table.c) ---- */

/* Byte string -> int32, strings stored in a pool owned by the map. */
typedef struct tk_strmap {
    uint32_t cap;   /* power of two */
    uint32_t count;
    uint32_t *slot_off; /* offset into pool + 1; 0 = empty */
    uint32_t *slot_len;
    int32_t *slot_val;
    char *pool;
    size_t pool_len, pool_cap;
} tk_strmap;
pc_status tk_strmap_init(tk_strmap *m, uint32_t expected, pc_error *err);
void tk_strmap_free(tk_strmap *m);
/* Insert or overwrite. */
pc_status tk_strmap_put(tk_strmap *m, const char *s, size_t n, int32_t val, pc_error *err);
/* Returns 1 and *val if present. */
int tk_strmap_get(const tk_strmap *m, const char *s, size_t n, int32_t *val);
void tk_strmap_clear(tk_strmap *m);
uint64_t tk_hash_bytes(const void *p, size_t n);

/* Pair of token ids -> (rank, merged id). */
typedef struct tk_pairmap {
    uint32_t cap;
    uint32_t count;
    uint64_t *keys; /* (a << 32 | b) + 1; 0 = empty */
    int32_t *rank;
    int32_t *merged;
} tk_pairmap;
pc_status tk_pairmap_init(tk_pairmap *m, uint32_t expected, pc_error *err);
void tk_pairmap_free(tk_pairmap *m);
void tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged); /* sized by init */
static inline uint64_t tk_pair_key(int32_t a, int32_t b) { return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1; }
int tk_pairmap_get(const tk_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged);

/* ---- growable buffers ---- */
typedef struct tk_bytes {
    char *p;
    size_t n, cap;
} tk_bytes;
pc_status tk_bytes_reserve(tk_bytes *b, size_t extra, pc_error *err);
pc_status tk_bytes_append(tk_bytes *b, const void *s, size_t n, pc_error *err);
void tk_bytes_free(tk_bytes *b);

typedef struct tk_ids {
    int32_t *p;
    size_t n, cap;
} tk_ids;
pc_status tk_ids_push(tk_ids *v, int32_t id, pc_error *err);
pc_status tk_ids_append(tk_ids *v, const int32_t *ids, size_t n, pc_error *err);
void tk_ids_free(tk_ids *v);

/* ---- Unicode helpers (tok_unicode.c) ---- */
/* Decode one code point at s (valid UTF-8 assumed); returns its byte length. */
int tk_utf8_decode(const unsigned char *s, int32_t *cp);
int tk_utf8_encode(int32_t cp, char out[4]);
/* ECMAScript's whitespace set (what \s, trim() mean in the JavaScript reference encoders). */
int tk_is_js_space(int32_t cp);
/* GPT-2's byte <-> unicode table: byte b is shown as code point tk_byte_to_cp(b). */
int32_t tk_byte_to_cp(int b);
int tk_cp_to_byte(int32_t cp); /* -1 if cp is not in the table */

/* ---- regex (tok_regex.c) ---- */
typedef struct tk_regex {
    pcre2_code *code;
    int jit;
} tk_regex;
/* Compiles a Hugging Face / transformers.js pattern with JavaScript's meaning of \s and \S (see the file). */
pc_status tk_regex_compile(tk_regex *re, const char *pattern, int literal, const char *file, const char *where,
                           pc_error *err);
void tk_regex_free(tk_regex *re);

/* ---- components ---- */
typedef enum {
    TK_NORM_NFC, TK_NORM_NFKC, TK_NORM_NFD, TK_NORM_NFKD, TK_NORM_PREPEND, TK_NORM_REPLACE, TK_NORM_LOWERCASE,
    TK_NORM_STRIP
} tk_norm_kind;
typedef struct tk_normalizer {
    tk_norm_kind kind;
    char *str;       /* Prepend: what; Replace: content */
    tk_regex re;     /* Replace: the pattern */
    int strip_left, strip_right;
} tk_normalizer;

typedef enum { TK_PRE_SPLIT, TK_PRE_BYTELEVEL, TK_PRE_DIGITS, TK_PRE_METASPACE } tk_pre_kind;
typedef enum {
    TK_SPLIT_REMOVED, TK_SPLIT_ISOLATED, TK_SPLIT_MERGED_PREV, TK_SPLIT_MERGED_NEXT, TK_SPLIT_CONTIGUOUS
} tk_split_behavior;
typedef enum { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER } tk_prepend_scheme;
typedef struct tk_pretok {
    tk_pre_kind kind;
    tk_regex re;                /* Split; ByteLevel with use_regex */
    tk_split_behavior behavior; /* Split */
    int invert;                 /* Split */
    int add_prefix_space;       /* ByteLevel */
    int use_regex;              /* ByteLevel */
    int individual_digits;      /* Digits */
    char replacement[8];        /* Metaspace, UTF-8 */
    int replacement_len;
    tk_prepend_scheme prepend;  /* Metaspace */
    int split;                  /* Metaspace */
} tk_pretok;

typedef enum {
    TK_DEC_BYTELEVEL, TK_DEC_METASPACE, TK_DEC_REPLACE, TK_DEC_BYTEFALLBACK, TK_DEC_FUSE, TK_DEC_STRIP
} tk_dec_kind;
typedef struct tk_decoder {
    tk_dec_kind kind;
    char *pattern, *content; /* Replace (string patterns only), Strip content */
    int start, stop;         /* Strip */
    char replacement[8];     /* Metaspace */
    int replacement_len;
    int add_prefix_space;    /* Metaspace: drop the leading space of the first token */
} tk_decoder;

typedef struct tk_added {
    char *content;
    size_t len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
} tk_added;

#define TK_MAX_STAGES 16
#define TK_NO_TOKEN UINT32_MAX

struct pc_tokenizer {
    char *path;
    /* model */
    int32_t n_vocab;         /* model vocab entries (ids 0..n_vocab-1 may be sparse) */
    int32_t vocab_size;      /* max id + 1 over model and added tokens */
    tk_bytes tok_pool;       /* token texts as written in the file, back to back */
    uint32_t *tok_off;       /* [vocab_size] offset into tok_pool */
    uint32_t *tok_len;       /* [vocab_size] length; TK_NO_TOKEN for ids no token has */
    tk_strmap vocab;         /* token text -> id */
    tk_strmap raw_vocab;     /* byte-level only: the bytes a token stands for -> id */
    tk_pairmap merges;
    int byte_level;          /* model alphabet is bytes (a ByteLevel pre-tokenizer is present) */
    int32_t byte_id[256];    /* byte-level: id of each single byte; byte_fallback: id of <0xXX> */
    int byte_fallback, fuse_unk, ignore_merges;
    /* No token has a non-"▁" character followed by "▁", so no merge crosses the start of a "▁word": long
     * SentencePiece-style pieces (Llama 2 has no pre-tokenizer) can be cut there without changing the result. */
    int cut_at_metaspace;
    int32_t unk_id;
    /* added tokens, bucketed by first byte, longest first */
    tk_added *added;
    int n_added;
    int *added_order;        /* indices sorted by (first byte, length desc) */
    int added_first[257];    /* bucket start per first byte */
    int any_normalized_added;
    /* pipeline */
    tk_normalizer norm[TK_MAX_STAGES];
    int n_norm;
    tk_pretok pre[TK_MAX_STAGES];
    int n_pre;
    tk_decoder dec[TK_MAX_STAGES];
    int n_dec;
    /* post-processor: template for a single sequence: ids before and after */
    int32_t post_before[8], post_after[8];
    int n_post_before, n_post_after;
    /* tokenizer_config.json */
    int32_t bos_id, eos_id, pad_id;
    char *chat_template;
};

/* ---- per-call scratch (tok_encode.c, tok_bpe.c) ---- */
typedef struct tk_symbol {
    int32_t id;
    int32_t prev, next; /* -1 = none */
    uint32_t start, len; /* bytes of the piece (for unknown symbols) */
} tk_symbol;
typedef struct tk_heap_item {
    int32_t rank;
    int32_t pos;   /* left symbol index (= its original position: ties go left) */
    int32_t left_id, right_id;
} tk_heap_item;

typedef struct tk_cache {
    tk_strmap map;   /* piece -> offset into ids */
    tk_ids ids;      /* [len, ids...] records */
    uint32_t limit;  /* entries before it is cleared */
} tk_cache;

typedef struct tk_run {
    const pc_tokenizer *tk;
    tk_ids *out;
    tk_cache cache;
    tk_symbol *sym;
    size_t sym_cap;
    tk_heap_item *heap;
    size_t heap_cap;
    tk_bytes scratch[TK_MAX_STAGES + 2];
    pcre2_match_data *md;
    pcre2_jit_stack *jit_stack;
    pcre2_match_context *mctx;
    pcre2_general_context *gctx;
    const char *file; /* for messages */
} tk_run;

/* BPE of one piece (raw bytes if byte-level, UTF-8 text otherwise); appends ids to r->out. */
pc_status tk_bpe_piece(tk_run *r, const char *s, size_t n, pc_error *err);
/* Normalize text into out (replacing its content). */
pc_status tk_normalize(const pc_tokenizer *tk, const char *s, size_t n, tk_bytes *out, tk_bytes *tmp,
                       pcre2_match_data *md, pc_error *err);
pc_status tk_normalize_one(const tk_normalizer *nm, const char *s, size_t n, tk_bytes *out, pcre2_match_data *md,
                           pc_error *err);

/* Loading helpers (tok_load.c) used by the trainer's tests. */
pc_status tk_finish_added(pc_tokenizer *tk, pc_error *err);

#endif
