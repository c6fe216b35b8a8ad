/* data: the batcher — file order with wrap-around, padding never in the loss, per-epoch shuffles that
 * depend only on the seed, packing (doc ids, positions, no prediction across documents), n_targets, the
 * saved sampler state, and no allocation in pc_batcher_next. Expected batches are written out by hand. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "data/dataset.h"
#include "test_support.h"

/* An in-memory dataset: record i has the given ids; labels = ids unless given. */
typedef struct test_dataset {
    pc_dataset ds;
    pc_example ex[64];
    int32_t store[4096];
} test_dataset;

static void td_init(test_dataset *t) {
    memset(t, 0, sizeof *t);
    t->ds.examples = t->ex;
    t->ds.path = "test";
}
static void td_add(test_dataset *t, const int32_t *ids, const int32_t *labels, int n) {
    size_t off = 0;
    for (long i = 0; i < t->ds.count; i++) off += 2 * (size_t)t->ex[i].n;
    pc_example *e = &t->ex[t->ds.count++];
    e->ids = t->store + off;
    e->labels = t->store + off + n;
    e->n = n;
    e->class_label = -1;
    memcpy(e->ids, ids, (size_t)n * sizeof *ids);
    memcpy(e->labels, labels ? labels : ids, (size_t)n * sizeof *ids);
}
#define ADD(t, ...)                                               \
    do {                                                          \
        static const int32_t ids_[] = {__VA_ARGS__};              \
        td_add(t, ids_, NULL, (int)(sizeof ids_ / sizeof *ids_)); \
    } while (0)

static int rows_equal(const int32_t *got, const int32_t *want, int n) { return memcmp(got, want, (size_t)n * 4) == 0; }

static void dump(const char *what, const int32_t *a, int n) {
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", a[i]);
    fprintf(stderr, "\n");
}
#define EXPECT_ARRAY(got, n, ...)                                            \
    do {                                                                     \
        static const int32_t want_[] = {__VA_ARGS__};                        \
        int ok_ = (int)(sizeof want_ / sizeof *want_) == (n) && rows_equal(got, want_, n); \
        CHECK(ok_, "%s as derived by hand", #got);                         \
        if (!ok_) dump(#got, got, n);                                       \
    } while (0)

/* Five records of lengths 3, 1, 4, 2, 5; B = 2, no shuffle: records (0,1), (2,3), (4,0), (1,2), ... */
static void test_padded_file_order(void) {
    test_dataset t;
    td_init(&t);
    ADD(&t, 10, 11, 12);
    ADD(&t, 20);
    ADD(&t, 30, 31, 32, 33);
    ADD(&t, 40, 41);
    ADD(&t, 50, 51, 52, 53, 54);
    t.ex[1].class_label = 7;
    pc_batcher b;
    pc_error err = {0};
    CHECK(pc_batcher_init(&b, &t.ds, 2, 16, 0, 0, 1, -1, &err) == PC_OK, "init: %s", err.msg);
    const pc_batch *bt = &b.batch;

    CHECK(pc_batcher_next(&b, &err) == PC_OK && bt->B == 2 && bt->T == 3 && bt->doc == NULL, "step 0 shape");
    EXPECT_ARRAY(bt->ids, 6, 10, 11, 12, 20, -1, -1);
    EXPECT_ARRAY(bt->labels, 6, 10, 11, 12, 20, -100, -100);
    EXPECT_ARRAY(bt->pos, 6, 0, 1, 2, 0, 1, 2);
    EXPECT_ARRAY(bt->row_len, 2, 3, 1);
    EXPECT_ARRAY(bt->class_label, 2, -1, 7);
    CHECK(bt->n_targets == 2, "step 0: targets 11, 12 (got %ld)", bt->n_targets);

    CHECK(pc_batcher_next(&b, &err) == PC_OK && bt->T == 4, "step 1 shape");
    EXPECT_ARRAY(bt->ids, 8, 30, 31, 32, 33, 40, 41, -1, -1);
    EXPECT_ARRAY(bt->labels, 8, 30, 31, 32, 33, 40, 41, -100, -100);
    CHECK(bt->n_targets == 4 && b.epoch == 0, "step 1: 3 + 1 targets");

    CHECK(pc_batcher_next(&b, &err) == PC_OK && bt->T == 5, "step 2 wraps");
    EXPECT_ARRAY(bt->ids, 10, 50, 51, 52, 53, 54, 10, 11, 12, -1, -1);
    EXPECT_ARRAY(bt->pos, 10, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4);
    CHECK(bt->n_targets == 6 && b.epoch == 1, "step 2: 4 + 2 targets, epoch 1");
    pc_batcher_next(&b, &err);
    EXPECT_ARRAY((const int32_t *)bt->record, 2, 1, 2);
    pc_batcher_free(&b);

    /* T_max cuts long rows */
    CHECK(pc_batcher_init(&b, &t.ds, 3, 3, 0, 0, 1, 0, &err) == PC_OK, "init T_max 3");
    pc_batcher_next(&b, &err);
    pc_batcher_next(&b, &err); /* records 3, 4, 0 */
    CHECK(bt->T == 3, "T capped at 3");
    EXPECT_ARRAY(bt->ids, 9, 40, 41, 0, 50, 51, 52, 10, 11, 12);
    EXPECT_ARRAY(bt->labels, 9, 40, 41, -100, 50, 51, 52, 10, 11, 12);
    EXPECT_ARRAY(bt->row_len, 3, 2, 3, 3);
    CHECK(bt->n_targets == 5, "1 + 2 + 2 targets (got %ld)", bt->n_targets);
    pc_batcher_free(&b);
}

/* Prompt-masked records: labels -100 in the record stay -100; padding is never a target. */
static void test_masked_labels(void) {
    test_dataset t;
    td_init(&t);
    static const int32_t ids0[] = {1, 2, 3, 4}, lab0[] = {-100, -100, 3, 4};
    static const int32_t ids1[] = {5, 6}, lab1[] = {-100, 6};
    td_add(&t, ids0, lab0, 4);
    td_add(&t, ids1, lab1, 2);
    pc_batcher b;
    pc_error err = {0};
    CHECK(pc_batcher_init(&b, &t.ds, 2, 8, 0, 0, 0, 99, &err) == PC_OK, "init");
    pc_batcher_next(&b, &err);
    EXPECT_ARRAY(b.batch.ids, 8, 1, 2, 3, 4, 5, 6, 99, 99);
    EXPECT_ARRAY(b.batch.labels, 8, -100, -100, 3, 4, -100, 6, -100, -100);
    CHECK(b.batch.n_targets == 3, "targets: 3, 4 and 6 (got %ld)", b.batch.n_targets);
    pc_batcher_free(&b);
}

/* Packing: records [11 12 13], [21 22], [31 32 33 34], T = 4, B = 2. */
static void test_packing(void) {
    test_dataset t;
    td_init(&t);
    ADD(&t, 11, 12, 13);
    ADD(&t, 21, 22);
    ADD(&t, 31, 32, 33, 34);
    pc_batcher b;
    pc_error err = {0};
    CHECK(pc_batcher_init(&b, &t.ds, 2, 4, 1, 0, 0, 0, &err) == PC_OK, "init pack");
    const pc_batch *bt = &b.batch;
    CHECK(pc_batcher_next(&b, &err) == PC_OK && bt->T == 4, "packed T");
    EXPECT_ARRAY(bt->ids, 8, 11, 12, 13, 21, 22, 31, 32, 33);
    EXPECT_ARRAY(bt->doc, 8, 0, 0, 0, 1, 0, 1, 1, 1);
    EXPECT_ARRAY(bt->pos, 8, 0, 1, 2, 0, 0, 0, 1, 2);
    EXPECT_ARRAY(bt->labels, 8, -100, 12, 13, -100, -100, -100, 32, 33);
    CHECK(bt->n_targets == 4, "packed step 0: 2 + 2 targets (got %ld)", bt->n_targets);
    CHECK(pc_batcher_next(&b, &err) == PC_OK, "packed step 1");
    EXPECT_ARRAY(bt->ids, 8, 34, 11, 12, 13, 21, 22, 31, 32);
    EXPECT_ARRAY(bt->doc, 8, 0, 1, 1, 1, 0, 0, 1, 1);
    EXPECT_ARRAY(bt->pos, 8, 0, 0, 1, 2, 0, 1, 0, 1);
    EXPECT_ARRAY(bt->labels, 8, -100, -100, 12, 13, -100, 22, -100, 32);
    EXPECT_ARRAY(bt->row_len, 2, 4, 4);
    CHECK(bt->n_targets == 4, "packed step 1: 12, 13 and 22, 32 (got %ld)", bt->n_targets);
    CHECK(b.epoch == 1, "epoch 1 after the wrap");
    pc_batcher_free(&b);

    /* A record longer than a row is cut into pieces, each its own document */
    td_init(&t);
    ADD(&t, 1, 2, 3, 4, 5, 6, 7);
    CHECK(pc_batcher_init(&b, &t.ds, 3, 3, 1, 0, 0, 0, &err) == PC_OK, "init long pack");
    pc_batcher_next(&b, &err);
    EXPECT_ARRAY(b.batch.ids, 9, 1, 2, 3, 4, 5, 6, 7, 1, 2);
    EXPECT_ARRAY(b.batch.doc, 9, 0, 0, 0, 0, 0, 0, 0, 1, 1);
    EXPECT_ARRAY(b.batch.pos, 9, 0, 1, 2, 0, 1, 2, 0, 0, 1);
    EXPECT_ARRAY(b.batch.labels, 9, -100, 2, 3, -100, 5, 6, -100, -100, 2);
    pc_batcher_free(&b);
}

/* Shuffle: each epoch a permutation; same seed, same order; another seed, another order. */
static void collect_order(const pc_dataset *ds, uint64_t seed, int steps, int B, uint32_t *out) {
    pc_batcher b;
    pc_error err = {0};
    pc_batcher_init(&b, ds, B, 64, 0, 1, seed, 0, &err);
    for (int s = 0; s < steps; s++) {
        pc_batcher_next(&b, &err);
        memcpy(out + (size_t)s * B, b.batch.record, (size_t)B * sizeof *out);
    }
    pc_batcher_free(&b);
}

static void test_shuffle(void) {
    test_dataset t;
    td_init(&t);
    for (int i = 0; i < 20; i++) {
        int32_t id = i;
        td_add(&t, &id, NULL, 1);
    }
    uint32_t a[80], a2[80], c[80];
    collect_order(&t.ds, 7, 20, 4, a); /* 4 epochs of 5 steps */
    collect_order(&t.ds, 7, 20, 4, a2);
    collect_order(&t.ds, 8, 20, 4, c);
    CHECK(memcmp(a, a2, sizeof a) == 0, "same seed, same order");
    CHECK(memcmp(a, c, sizeof a) != 0, "another seed, another order");
    int perm = 1, in_file_order = 1, epochs_differ = 0;
    for (int e = 0; e < 4; e++) {
        int seen[20] = {0};
        for (int i = 0; i < 20; i++) seen[a[e * 20 + i]]++, in_file_order &= a[e * 20 + i] == (uint32_t)i;
        for (int i = 0; i < 20; i++) perm &= seen[i] == 1;
        if (e > 0) epochs_differ |= memcmp(a + e * 20, a, 20 * sizeof *a) != 0;
    }
    CHECK(perm, "every epoch is a permutation of the records");
    CHECK(!in_file_order && epochs_differ, "shuffled, and differently per epoch");
    /* the first epoch is the seed's Fisher-Yates permutation of 0..19, computed here from pc_rng directly */
    pc_rng rng;
    pc_rng_seed(&rng, 7);
    uint32_t want[20];
    for (uint32_t i = 0; i < 20; i++) want[i] = i;
    for (long i = 19; i > 0; i--) {
        uint32_t j = pc_rng_below(&rng, (uint32_t)(i + 1)), tmp = want[i];
        want[i] = want[j];
        want[j] = tmp;
    }
    CHECK(memcmp(a, want, sizeof want) == 0, "epoch 0 = Fisher-Yates with the batcher's seeded RNG");
}

/* Save after k steps, restore into a fresh batcher: the following batches are identical. */
static void test_state_roundtrip(int pack, int shuffle) {
    test_dataset t;
    td_init(&t);
    for (int i = 0; i < 13; i++) {
        int32_t ids[9];
        for (int k = 0; k <= i % 9; k++) ids[k] = 100 * i + k;
        td_add(&t, ids, NULL, i % 9 + 1);
    }
    pc_batcher a, c;
    pc_error err = {0};
    pc_batcher_init(&a, &t.ds, 3, 5, pack, shuffle, 42, 0, &err);
    for (int s = 0; s < 7; s++) pc_batcher_next(&a, &err);
    size_t size = pc_batcher_state_size(&a);
    unsigned char *blob = malloc(size);
    CHECK(pc_batcher_state_save(&a, blob, size, &err) == PC_OK, "save: %s", err.msg);
    CHECK(pc_batcher_state_save(&a, blob, size - 1, &err) != PC_OK, "save refuses a short buffer");
    pc_batcher_init(&c, &t.ds, 3, 5, pack, shuffle, 999, 0, &err);
    pc_batcher_next(&c, &err);
    CHECK(pc_batcher_state_restore(&c, blob, size, &err) == PC_OK, "restore: %s", err.msg);
    int same = 1;
    for (int s = 0; s < 20; s++) {
        pc_batcher_next(&a, &err);
        pc_batcher_next(&c, &err);
        int n = a.batch.B * a.batch.T;
        same &= a.batch.T == c.batch.T && rows_equal(a.batch.ids, c.batch.ids, n) &&
                rows_equal(a.batch.labels, c.batch.labels, n) && rows_equal(a.batch.pos, c.batch.pos, n) &&
                (!pack || rows_equal(a.batch.doc, c.batch.doc, n)) && a.batch.n_targets == c.batch.n_targets;
    }
    CHECK(same, "pack %d shuffle %d: restored batcher continues identically", pack, shuffle);
    /* refusals: another batch size, a corrupt order, a truncated blob */
    pc_batcher d;
    pc_batcher_init(&d, &t.ds, 4, 5, pack, shuffle, 1, 0, &err);
    CHECK(pc_batcher_state_restore(&d, blob, size, &err) == PC_ERR_USAGE, "restore into another batch size refused");
    pc_batcher_free(&d);
    blob[size - 4] = blob[size - 8];
    blob[size - 3] = blob[size - 7];
    blob[size - 2] = blob[size - 6];
    blob[size - 1] = blob[size - 5];
    CHECK(pc_batcher_state_restore(&c, blob, size, &err) == PC_ERR_FORMAT, "duplicate in order refused: %s", err.msg);
    CHECK(pc_batcher_state_restore(&c, blob, 20, &err) == PC_ERR_FORMAT, "truncated blob refused");
    free(blob);
    pc_batcher_free(&a);
    pc_batcher_free(&c);
}

/* pc_batcher_next allocates nothing, even across epochs with reshuffles. */
static void test_no_allocation(void) {
    test_dataset t;
    td_init(&t);
    for (int i = 0; i < 7; i++) {
        int32_t ids[5] = {i, i, i, i, i};
        td_add(&t, ids, NULL, 1 + i % 5);
    }
    for (int pack = 0; pack < 2; pack++) {
        pc_batcher b;
        pc_error err = {0};
        pc_batcher_init(&b, &t.ds, 3, 4, pack, 1, 3, 0, &err);
        pc_alloc_fail_after(0);
        int ok = 1;
        for (int s = 0; s < 50; s++) ok &= pc_batcher_next(&b, &err) == PC_OK;
        long allocs = pc_alloc_count();
        pc_alloc_fail_after(-1);
        CHECK(ok && allocs == 0 && b.epoch > 5, "pack %d: 50 steps without allocating", pack);
        pc_batcher_free(&b);
    }
    pc_batcher b;
    pc_error err = {0};
    int clean = 1;
    for (long n = 0; n < 12; n++) {
        pc_alloc_fail_after(n);
        pc_status st = pc_batcher_init(&b, &t.ds, 3, 4, 1, 1, 3, 0, &err);
        pc_alloc_fail_after(-1);
        clean &= st == PC_OK || st == PC_ERR_NOMEM;
        pc_batcher_free(&b);
    }
    CHECK(clean, "init under allocation failure: NOMEM or OK");
    td_init(&t);
    CHECK(pc_batcher_init(&b, &t.ds, 3, 4, 0, 0, 0, 0, &err) == PC_ERR_USAGE, "empty dataset refused");
}

int main(void) {
    test_padded_file_order();
    test_masked_labels();
    test_packing();
    test_shuffle();
    for (int pack = 0; pack < 2; pack++)
        for (int shuffle = 0; shuffle < 2; shuffle++) test_state_roundtrip(pack, shuffle);
    test_no_allocation();
    return test_finish();
}
