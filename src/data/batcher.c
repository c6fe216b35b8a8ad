/* The sampler and batch builder: record order (file order or a per-epoch permutation), padding or packing
 * into [B,T] rows, and the sampler state as a byte blob for checkpoints. pc_batcher_next never allocates:
 * every buffer is sized in pc_batcher_init for the largest batch (B × T_max). */
#include <string.h>

#include "core/alloc.h"
#include "data/dataset.h"

static void order_new_epoch(pc_batcher *b) {
    long count = b->ds->count;
    for (long i = 0; i < count; i++) b->order[i] = (uint32_t)i;
    /* a fresh permutation from identity, so each epoch's order depends only on the RNG state */
    if (b->shuffle) pc_rng_shuffle_u32(&b->rng, b->order, count);
}

/* Move to the next record, starting a new epoch (and permutation) after the last. */
static void batcher_advance(pc_batcher *b) {
    b->piece = 0;
    if (++b->cursor < b->ds->count) return;
    b->cursor = 0;
    b->epoch++;
    order_new_epoch(b);
}

pc_status pc_batcher_init(pc_batcher *b, const pc_dataset *ds, int B, int T_max, int pack, int shuffle,
                          uint64_t seed, int32_t pad_id, pc_error *err) {
    memset(b, 0, sizeof *b);
    const char *path = ds && ds->path ? ds->path : "dataset";
    if (!ds || ds->count <= 0) return pc_fail(err, PC_ERR_USAGE, "%s: no records to batch", path);
    if (ds->count > (long)UINT32_MAX) return pc_fail(err, PC_ERR_USAGE, "%s: too many records (%ld)", path, ds->count);
    if (B < 1 || T_max < 1) return pc_fail(err, PC_ERR_USAGE, "%s: batch %d x %d is empty", path, B, T_max);
    for (long i = 0; i < ds->count; i++)
        if (ds->examples[i].n < 1) return pc_fail(err, PC_ERR_USAGE, "%s: record %ld has no tokens", path, i);
    b->ds = ds;
    b->B = B;
    b->T_max = T_max;
    b->pack = pack != 0;
    b->shuffle = shuffle != 0;
    b->pad_id = pad_id;
    pc_rng_seed(&b->rng, seed);
    size_t cells = (size_t)B * (size_t)T_max;
    pc_batch *bt = &b->batch;
    b->order = pc_malloc((size_t)ds->count * sizeof *b->order);
    bt->ids = pc_malloc(cells * sizeof *bt->ids);
    bt->labels = pc_malloc(cells * sizeof *bt->labels);
    bt->pos = pc_malloc(cells * sizeof *bt->pos);
    bt->doc = b->pack ? pc_malloc(cells * sizeof *bt->doc) : NULL;
    bt->row_len = pc_malloc((size_t)B * sizeof *bt->row_len);
    bt->class_label = pc_malloc((size_t)B * sizeof *bt->class_label);
    bt->record = pc_malloc((size_t)B * sizeof *bt->record);
    if (!b->order || !bt->ids || !bt->labels || !bt->pos || (b->pack && !bt->doc) || !bt->row_len ||
        !bt->class_label || !bt->record) {
        pc_batcher_free(b);
        return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory for a %d x %d batch", path, B, T_max);
    }
    order_new_epoch(b);
    bt->B = B;
    bt->T = b->pack ? T_max : 0;
    return PC_OK;
}

static long count_targets(const pc_batch *bt) {
    long n = 0;
    for (int r = 0; r < bt->B; r++) {
        const int32_t *lab = bt->labels + (size_t)r * bt->T;
        for (int t = 0; t + 1 < bt->T; t++) n += lab[t + 1] != PC_IGNORE_INDEX;
    }
    return n;
}

/* One record per row, right-padded to the longest row of the batch. */
static void batcher_next_padded(pc_batcher *b) {
    pc_batch *bt = &b->batch;
    int T = 1;
    for (int r = 0; r < b->B; r++) {
        bt->record[r] = b->order[b->cursor];
        int n = b->ds->examples[bt->record[r]].n;
        bt->row_len[r] = n < b->T_max ? n : b->T_max;
        if (bt->row_len[r] > T) T = bt->row_len[r];
        batcher_advance(b);
    }
    bt->T = T;
    for (int r = 0; r < b->B; r++) {
        const pc_example *e = &b->ds->examples[bt->record[r]];
        int len = bt->row_len[r];
        int32_t *ids = bt->ids + (size_t)r * T, *labels = bt->labels + (size_t)r * T, *pos = bt->pos + (size_t)r * T;
        memcpy(ids, e->ids, (size_t)len * sizeof *ids);
        memcpy(labels, e->labels, (size_t)len * sizeof *labels);
        for (int t = len; t < T; t++) ids[t] = b->pad_id, labels[t] = PC_IGNORE_INDEX;
        for (int t = 0; t < T; t++) pos[t] = t;
        bt->class_label[r] = e->class_label;
    }
}

/* Rows of exactly T_max tokens cut from the stream of records; see pc_batch in dataset.h. */
static void batcher_next_packed(pc_batcher *b) {
    pc_batch *bt = &b->batch;
    int T = b->T_max;
    bt->T = T;
    for (int r = 0; r < b->B; r++) {
        size_t row = (size_t)r * T;
        bt->record[r] = b->order[b->cursor];
        bt->row_len[r] = T;
        bt->class_label[r] = -1;
        int t = 0, d = 0;
        while (t < T) {
            const pc_example *e = &b->ds->examples[b->order[b->cursor]];
            int take = e->n - (int)b->piece;
            if (take > T - t) take = T - t;
            memcpy(bt->ids + row + t, e->ids + b->piece, (size_t)take * sizeof *bt->ids);
            memcpy(bt->labels + row + t, e->labels + b->piece, (size_t)take * sizeof *bt->labels);
            bt->labels[row + t] = PC_IGNORE_INDEX; /* no prediction across the document boundary */
            for (int j = 0; j < take; j++) bt->pos[row + t + j] = j, bt->doc[row + t + j] = d;
            t += take;
            d++;
            b->piece += take;
            if (b->piece == e->n) batcher_advance(b);
        }
    }
}

pc_status pc_batcher_next(pc_batcher *b, pc_error *err) {
    if (!b->ds || !b->order) return pc_fail(err, PC_ERR_USAGE, "batcher: not initialised");
    if (b->pack) batcher_next_packed(b);
    else batcher_next_padded(b);
    b->batch.n_targets = count_targets(&b->batch);
    return PC_OK;
}

void pc_batcher_free(pc_batcher *b) {
    if (!b) return;
    pc_free(b->order);
    pc_free(b->batch.ids);
    pc_free(b->batch.labels);
    pc_free(b->batch.pos);
    pc_free(b->batch.doc);
    pc_free(b->batch.row_len);
    pc_free(b->batch.class_label);
    pc_free(b->batch.record);
    memset(b, 0, sizeof *b);
}
