/* Datasets: JSONL records of every common shape turned into token ids and aligned labels (the Hugging Face
 * convention: labels[t] is the target at t, -100 = not in the loss; the model shifts). See CLI.md for the
 * record shapes. Errors name the file and the line. */
#ifndef PC_DATA_DATASET_H
#define PC_DATA_DATASET_H

#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"
#include "tokenizer/tokenizer.h"

#define PC_IGNORE_INDEX (-100)

typedef struct pc_example {
    int32_t *ids;
    int32_t *labels;   /* aligned with ids */
    int n;
    int class_label;   /* text+label records; -1 otherwise */
} pc_example;

typedef struct pc_data_options {
    int seq_len;        /* truncate records to this many tokens (0 = no limit) */
    int add_special;    /* BOS/EOS per the tokenizer for text records (default 1) */
    int vocab_size;     /* ids must be < vocab_size (0 = unchecked) */
    const char *chat_template; /* NULL = the model's own */
} pc_data_options;

typedef struct pc_dataset {
    char *path;
    pc_example *examples;
    long count;
    int32_t *storage; /* one owner for every example's ids and labels */
} pc_dataset;

/* tk may be NULL when every record is pre-tokenized ({"input_ids": ...}). */
pc_status pc_dataset_load(pc_dataset *ds, const char *path, const pc_tokenizer *tk, const pc_data_options *opt,
                          pc_error *err);
void pc_dataset_free(pc_dataset *ds);

/* A batch [B,T], right-padded to its longest row (or packed to exactly T with --pack). */
typedef struct pc_batch {
    int B, T;
    int32_t *ids;    /* [B,T] padding = pad id */
    int32_t *labels; /* [B,T] aligned, -100 where not in the loss (padding, prompts, ...) */
    int32_t *pos;    /* [B,T] position of each token in its document */
    int32_t *doc;    /* [B,T] document index within the row when packed, else NULL */
    long n_targets;  /* number of loss terms after the model's shift */
} pc_batch;

/* The sampler: the order of records, the position in it, and its RNG are plain data so a checkpoint
 * can save and restore them exactly. */
typedef struct pc_batcher {
    const pc_dataset *ds;
    int B, T_max, pack, shuffle;
    int32_t pad_id;
    uint32_t *order;
    long cursor;   /* index into order of the next record */
    long epoch;
    pc_rng rng;
    pc_batch batch; /* storage for the current batch, sized once */
} pc_batcher;

pc_status pc_batcher_init(pc_batcher *b, const pc_dataset *ds, int B, int T_max, int pack, int shuffle,
                          uint64_t seed, int32_t pad_id, pc_error *err);
/* Fills b->batch with the next batch (wrapping at the end, reshuffling per epoch when shuffle). */
pc_status pc_batcher_next(pc_batcher *b, pc_error *err);
void pc_batcher_free(pc_batcher *b);

#endif
