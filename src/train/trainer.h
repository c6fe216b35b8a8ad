/* The training loop: batches → forward/backward through the model and the attached methods → clipping →
 * optimizer → schedule, with periodic evaluation, resumable checkpoints and a final adapter. The loop itself
 * prints nothing; it reports events to a callback (the CLI draws progress from them). */
#ifndef PC_TRAIN_TRAINER_H
#define PC_TRAIN_TRAINER_H

#include "data/dataset.h"
#include "peft/method.h"
#include "train/optimizer.h"

typedef struct pc_train_options {
    pc_optim_config optim;
    long steps;            /* optimizer steps */
    int grad_accum;        /* micro-batches per step */
    int batch, seq_len, pack, shuffle;
    uint64_t seed;
    long log_every, eval_every, save_every;
    const char *out_dir;   /* adapter, checkpoints, metrics.jsonl */
    int resume;            /* continue from the newest complete checkpoint in out_dir */
    int skip_nonfinite;    /* skip a step whose gradient is not finite instead of stopping */
    int gradient_checkpointing; /* recompute each layer's activations in backward (pc_model.gradient_checkpointing) */
    int32_t pad_id;
} pc_train_options;

typedef enum pc_train_event_kind { PC_EVENT_STEP, PC_EVENT_EVAL, PC_EVENT_SAVE, PC_EVENT_SKIP } pc_train_event_kind;

typedef struct pc_train_event {
    pc_train_event_kind kind;
    long step, total_steps;
    double loss, lr, grad_norm, tokens_per_s, elapsed_s, eval_loss;
    const char *path;      /* SAVE: the checkpoint written */
} pc_train_event;

typedef void (*pc_train_callback)(void *ctx, const pc_train_event *ev);

typedef struct pc_train_result {
    long steps, resumed_from;
    double final_loss, tokens_per_s, eval_loss;
    long tokens;
} pc_train_result;

pc_status pc_train(pc_model *model, pc_method **methods, int n_methods, const pc_dataset *train,
                   const pc_dataset *eval, const pc_train_options *opt, pc_train_callback cb, void *cb_ctx,
                   pc_train_result *res, pc_error *err);

/* Save the methods' result into dir: one method → its files in dir; several → dir/<method name>/. */
pc_status pc_save_methods(pc_method **methods, int n_methods, const char *dir, pc_error *err);

#endif
