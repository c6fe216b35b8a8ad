#ifndef PC_TRAIN_CHECKPOINT_H
#define PC_TRAIN_CHECKPOINT_H

#include "core/rng.h"
#include "train/trainer.h"

typedef struct pc_checkpoint_state {
    long step;            /* optimizer steps completed */
    long tokens;
    pc_rng rng;           /* the trainer's RNG (dropout) */
    void *sampler;        /* the batcher's state blob (owned: pc_free) */
    size_t sampler_len;
} pc_checkpoint_state;

/* Write DIR/checkpoint-<step>/ atomically; *written receives its path. */
pc_status pc_checkpoint_write(const char *out_dir, const pc_checkpoint_state *cs, pc_method **methods, int n_methods,
                              pc_params *const *blocks, int n_blocks, char *written, size_t written_cap, pc_error *err);
/* Remove what a killed run left half-written in out_dir: "checkpoint-<step>.tmp-<pid>" directories and the
 * "<file>.tmp.<pid>" files of atomic writes (in out_dir and in its subdirectories one level down). Called on
 * --resume, when out_dir belongs to this run. */
void pc_checkpoint_clean_partial(const char *out_dir);
/* The newest complete checkpoint's step, or −1. */
long pc_checkpoint_newest(const char *out_dir);
/* Restore parameters, moments, RNG and sampler blob (cs->sampler allocated) from a checkpoint. */
pc_status pc_checkpoint_read(const char *out_dir, long step, pc_checkpoint_state *cs, pc_params *const *blocks,
                             int n_blocks, pc_error *err);

#endif
