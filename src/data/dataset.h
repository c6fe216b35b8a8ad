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
    /* classification ({"text","label"}): string labels numbered in order of first appearance (class_names[i]
     * is class i), or integer labels as given (class_names NULL); n_classes = 0 when there are none */
    char **class_names;
    int n_classes;
    long n_truncated; /* records cut to seq_len */
} pc_dataset;

/* tk may be NULL when every record is pre-tokenized ({"input_ids": ...}). */
pc_status pc_dataset_load(pc_dataset *ds, const char *path, const pc_tokenizer *tk, const pc_data_options *opt,
                          pc_error *err);
void pc_dataset_free(pc_dataset *ds);

/* Deterministic held-out split: record i (from 0) goes to heldout iff (i+1) % every_nth == 0 (the 10th,
 * 20th, ... record for every_nth = 10), else to train. Both get their own copies (free each); both must be
 * non-empty. Class tables are copied to both so class ids agree. */
pc_status pc_dataset_split(const pc_dataset *all, int every_nth, pc_dataset *train, pc_dataset *heldout,
                           pc_error *err);

/* A batch [B,T], right-padded to its longest row (or packed to exactly T with --pack).
 * Without pack: row r is one record cut to T_max tokens; T = the longest row; padding has id pad_id,
 * label -100 and positions continuing len, len+1, ...
 * With pack: every row has exactly T = T_max tokens, filled with records in order; a record that does not
 * fit continues in the next row (or batch). Each piece of a record is a document of the row: doc numbers
 * them 0, 1, ... within the row, pos restarts at 0 in each, and the label of each piece's first token is
 * -100 so that no token predicts the first token of the next document (the model reads labels[t+1] at t).
 * The model must not attend across documents (doc tells it where they are). */
typedef struct pc_batch {
    int B, T;
    int32_t *ids;    /* [B,T] padding = pad id */
    int32_t *labels; /* [B,T] aligned, -100 where not in the loss (padding, prompts, ...) */
    int32_t *pos;    /* [B,T] position of each token in its document */
    int32_t *doc;    /* [B,T] document index within the row when packed, else NULL */
    long n_targets;  /* number of loss terms after the model's shift: t < T-1 with labels[t+1] != -100 */
    int32_t *row_len;     /* [B] tokens before the padding (T in every row when packed) */
    int32_t *class_label; /* [B] the record's class label (text+label records), else -1; -1 when packed */
    uint32_t *record;     /* [B] dataset index of each row's record (of its first piece when packed) */
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
    long piece;    /* packing: tokens of order[cursor] already placed in earlier rows */
    pc_rng rng;
    pc_batch batch; /* storage for the current batch, sized once */
} pc_batcher;

pc_status pc_batcher_init(pc_batcher *b, const pc_dataset *ds, int B, int T_max, int pack, int shuffle,
                          uint64_t seed, int32_t pad_id, pc_error *err);
/* Fills b->batch with the next batch (wrapping at the end, reshuffling per epoch when shuffle). */
pc_status pc_batcher_next(pc_batcher *b, pc_error *err);
void pc_batcher_free(pc_batcher *b);

/* Checkpoints: the sampler's position as a byte blob (little-endian, versioned): order, cursor, epoch,
 * piece and the RNG. restore checks that the blob belongs to a batcher of the same dataset size, B, T,
 * pack and shuffle settings; after it, pc_batcher_next continues exactly where the saved batcher was. */
size_t pc_batcher_state_size(const pc_batcher *b);
pc_status pc_batcher_state_save(const pc_batcher *b, void *buf, size_t cap, pc_error *err);
pc_status pc_batcher_state_restore(pc_batcher *b, const void *buf, size_t len, pc_error *err);

#endif
