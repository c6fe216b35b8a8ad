/* The sampler state as bytes for checkpoints. Layout (little-endian):
 *   u32 magic "PCBS", u32 version 1, u64 count, u32 B, u32 T_max, u32 pack, u32 shuffle,
 *   u64 cursor, u64 epoch, u64 piece, u64 rng[4], u32 order[count]
 * The batch buffers are not saved: the next call to pc_batcher_next rebuilds the batch from this state. */
#include <string.h>

#include "core/alloc.h"
#include "data/dataset.h"

#define STATE_MAGIC 0x53424350u /* "PCBS" */
#define STATE_VERSION 1u
#define STATE_HEADER_BYTES (4 + 4 + 8 + 4 * 4 + 8 * 3 + 8 * 4)

static unsigned char *put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
    return p + 4;
}
static unsigned char *put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
    return p + 8;
}
static uint32_t get_u32(const unsigned char **p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)(*p)[i] << (8 * i);
    *p += 4;
    return v;
}
static uint64_t get_u64(const unsigned char **p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)(*p)[i] << (8 * i);
    *p += 8;
    return v;
}

size_t pc_batcher_state_size(const pc_batcher *b) { return STATE_HEADER_BYTES + 4 * (size_t)b->ds->count; }

pc_status pc_batcher_state_save(const pc_batcher *b, void *buf, size_t cap, pc_error *err) {
    size_t need = pc_batcher_state_size(b);
    if (cap < need) return pc_fail(err, PC_ERR_USAGE, "batcher state: buffer of %zu bytes, need %zu", cap, need);
    unsigned char *p = buf;
    p = put_u32(p, STATE_MAGIC);
    p = put_u32(p, STATE_VERSION);
    p = put_u64(p, (uint64_t)b->ds->count);
    p = put_u32(p, (uint32_t)b->B);
    p = put_u32(p, (uint32_t)b->T_max);
    p = put_u32(p, (uint32_t)b->pack);
    p = put_u32(p, (uint32_t)b->shuffle);
    p = put_u64(p, (uint64_t)b->cursor);
    p = put_u64(p, (uint64_t)b->epoch);
    p = put_u64(p, (uint64_t)b->piece);
    for (int i = 0; i < 4; i++) p = put_u64(p, b->rng.s[i]);
    for (long i = 0; i < b->ds->count; i++) p = put_u32(p, b->order[i]);
    return PC_OK;
}

/* The saved order must be a permutation of the records (a corrupt blob must not index out of range). */
static pc_status check_permutation(const unsigned char *p, long count, pc_error *err) {
    unsigned char *seen = pc_calloc((size_t)count, 1);
    if (!seen) return pc_fail(err, PC_ERR_NOMEM, "batcher state: out of memory checking %ld records", count);
    pc_status st = PC_OK;
    for (long i = 0; i < count && st == PC_OK; i++) {
        uint32_t v = get_u32(&p);
        if (v >= (uint64_t)count || seen[v]) st = pc_fail(err, PC_ERR_FORMAT, "batcher state: order[%ld] = %u is invalid", i, v);
        else seen[v] = 1;
    }
    pc_free(seen);
    return st;
}

pc_status pc_batcher_state_restore(pc_batcher *b, const void *buf, size_t len, pc_error *err) {
    if (len < STATE_HEADER_BYTES) return pc_fail(err, PC_ERR_FORMAT, "batcher state: %zu bytes is too short", len);
    const unsigned char *p = buf;
    uint32_t magic = get_u32(&p), version = get_u32(&p);
    if (magic != STATE_MAGIC) return pc_fail(err, PC_ERR_FORMAT, "batcher state: bad magic 0x%08x", magic);
    if (version != STATE_VERSION) return pc_fail(err, PC_ERR_UNSUPPORTED, "batcher state: version %u", version);
    uint64_t count = get_u64(&p);
    uint32_t B = get_u32(&p), T = get_u32(&p), pack = get_u32(&p), shuffle = get_u32(&p);
    if (count != (uint64_t)b->ds->count || B != (uint32_t)b->B || T != (uint32_t)b->T_max ||
        pack != (uint32_t)b->pack || shuffle != (uint32_t)b->shuffle)
        return pc_fail(err, PC_ERR_USAGE,
                       "batcher state: saved for %llu records, batch %u x %u, pack %u, shuffle %u; this run has %ld "
                       "records, batch %d x %d, pack %d, shuffle %d",
                       (unsigned long long)count, B, T, pack, shuffle, b->ds->count, b->B, b->T_max, b->pack,
                       b->shuffle);
    if (len != pc_batcher_state_size(b))
        return pc_fail(err, PC_ERR_FORMAT, "batcher state: %zu bytes, expected %zu", len, pc_batcher_state_size(b));
    uint64_t cursor = get_u64(&p), epoch = get_u64(&p), piece = get_u64(&p);
    pc_rng rng;
    for (int i = 0; i < 4; i++) rng.s[i] = get_u64(&p);
    PC_TRY(check_permutation(p, b->ds->count, err));
    if (cursor >= count) return pc_fail(err, PC_ERR_FORMAT, "batcher state: cursor %llu out of range", (unsigned long long)cursor);
    uint32_t rec = p[4 * cursor] | (uint32_t)p[4 * cursor + 1] << 8 | (uint32_t)p[4 * cursor + 2] << 16 |
                   (uint32_t)p[4 * cursor + 3] << 24;
    if (piece >= (uint64_t)b->ds->examples[rec].n || (piece && !pack))
        return pc_fail(err, PC_ERR_FORMAT, "batcher state: piece %llu out of range", (unsigned long long)piece);
    if (epoch > (uint64_t)INT64_MAX) return pc_fail(err, PC_ERR_FORMAT, "batcher state: epoch out of range");
    for (long i = 0; i < b->ds->count; i++) b->order[i] = get_u32(&p);
    b->cursor = (long)cursor;
    b->epoch = (long)epoch;
    b->piece = (long)piece;
    b->rng = rng;
    return PC_OK;
}
