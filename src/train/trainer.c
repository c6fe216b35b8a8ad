/* The training loop. One optimizer step = grad_accum micro-batches, each contributing the mean loss over
 * its target tokens divided by grad_accum (the classic Hugging Face Trainer definition), then global-norm
 * clipping, a finiteness check, and the update. Everything that decides the next step — parameters,
 * moments, the sampler's position and the trainer's RNG — is in the checkpoint, so a resumed run ends
 * bit-identical to an uninterrupted one. */
#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "core/timer.h"
#include "eval/evaluate.h"
#include "train/checkpoint.h"

pc_status pc_save_methods(pc_method **methods, int n_methods, const char *dir, pc_error *err) {
    if (n_methods == 1) return pc_method_save(methods[0], dir, err);
    for (int i = 0; i < n_methods; i++) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", dir, methods[i]->ops->name);
        PC_TRY(pc_method_save(methods[i], sub, err));
    }
    return PC_OK;
}

typedef struct trainer {
    pc_model *model;
    pc_method **methods;
    int n_methods;
    pc_params *blocks[16];
    int n_blocks;
    const pc_train_options *opt;
    pc_batcher batcher;
    pc_rng rng;
    long step, tokens;
    FILE *metrics;
} trainer;

/* Never write NaN weights: with --skip-nonfinite a run that started from non-finite values (a broken
 * --init-adapter) skips every step and would otherwise save them unchanged. */
static pc_status check_params_finite(const trainer *t, pc_error *err) {
    for (int b = 0; b < t->n_blocks; b++) {
        const pc_params *p = t->blocks[b];
        for (size_t i = 0; i < p->count; i++)
            if (!isfinite(p->data[i]))
                return pc_fail(err, PC_ERR_NUMERIC, "step %ld: trainable parameters are not finite (block %d, element %zu); "
                               "nothing was saved", t->step, b, i);
    }
    return PC_OK;
}

static pc_status write_checkpoint(trainer *t, char *path, size_t cap, pc_error *err) {
    PC_TRY(check_params_finite(t, err));
    pc_checkpoint_state cs = {.step = t->step, .tokens = t->tokens, .rng = t->rng};
    cs.sampler_len = pc_batcher_state_size(&t->batcher);
    cs.sampler = pc_malloc(cs.sampler_len);
    if (!cs.sampler) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    pc_status st = pc_batcher_state_save(&t->batcher, cs.sampler, cs.sampler_len, err);
    if (st == PC_OK)
        st = pc_checkpoint_write(t->opt->out_dir, &cs, t->methods, t->n_methods, t->blocks, t->n_blocks, path, cap, err);
    pc_free(cs.sampler);
    return st;
}

static pc_status resume(trainer *t, pc_train_result *res, pc_error *err) {
    pc_checkpoint_clean_partial(t->opt->out_dir); /* a killed run's temp files and half-written checkpoint */
    long step = pc_checkpoint_newest(t->opt->out_dir);
    if (step < 0) return PC_OK; /* nothing to resume: start from the beginning */
    pc_checkpoint_state cs = {0};
    PC_TRY(pc_checkpoint_read(t->opt->out_dir, step, &cs, t->blocks, t->n_blocks, err));
    pc_status st = pc_batcher_state_restore(&t->batcher, cs.sampler, cs.sampler_len, err);
    pc_free(cs.sampler);
    if (st != PC_OK) return pc_error_prefix(err, "%s/checkpoint-%ld: ", t->opt->out_dir, step);
    t->step = cs.step;
    t->tokens = cs.tokens;
    t->rng = cs.rng;
    res->resumed_from = step;
    return PC_OK;
}

/* A resumed run keeps the metrics lines of the steps its checkpoint covers and drops the rest (steps that
 * will be trained again, and a last line a kill may have cut short), so the log reads as one run. */
static pc_status trim_metrics(const char *path, long step, pc_error *err) {
    if (!pc_path_exists(path)) return PC_OK;
    char *text;
    size_t len;
    PC_TRY(pc_read_file(path, &text, &len, err));
    pc_atomic_file af;
    pc_status st = pc_atomic_open(&af, path, err);
    for (size_t start = 0; st == PC_OK && start < len;) {
        const char *nl = memchr(text + start, '\n', len - start);
        if (!nl) break; /* an unfinished last line */
        size_t end = (size_t)(nl - text) + 1;
        const char *key = strstr(text + start, "\"step\": ");
        long line_step = key && key < nl ? strtol(key + 8, NULL, 10) : step + 1;
        if (line_step <= step) st = pc_atomic_write(&af, text + start, end - start, err);
        start = end;
    }
    pc_free(text);
    if (st != PC_OK) {
        pc_atomic_abort(&af);
        return st;
    }
    return pc_atomic_commit(&af, err);
}

static void log_metrics(trainer *t, const char *kind, double loss, double lr, double gnorm, double tps) {
    if (!t->metrics) return;
    /* JSON has no NaN: a skipped step's non-finite loss and norm are written as null. */
    char loss_s[32] = "null", gnorm_s[32] = "null";
    if (isfinite(loss)) snprintf(loss_s, sizeof loss_s, "%.6f", loss);
    if (isfinite(gnorm)) snprintf(gnorm_s, sizeof gnorm_s, "%.6g", gnorm);
    fprintf(t->metrics, "{\"kind\": \"%s\", \"step\": %ld, \"loss\": %s, \"lr\": %.6g, \"grad_norm\": %s, \"tokens\": %ld, \"tokens_per_s\": %.1f}\n",
            kind, t->step, loss_s, lr, gnorm_s, t->tokens, tps);
    fflush(t->metrics);
}

/* One optimizer step; *loss receives the mean micro-batch loss. */
static pc_status train_step(trainer *t, double *loss, double *gnorm, int *skipped, pc_error *err) {
    const pc_train_options *o = t->opt;
    for (int b = 0; b < t->n_blocks; b++) pc_params_zero_grad(t->blocks[b]);
    double loss_acc = 0.0;
    int loss_nonfinite = 0;
    for (int micro = 0; micro < o->grad_accum; micro++) {
        PC_TRY(pc_batcher_next(&t->batcher, err));
        const pc_batch *bt = &t->batcher.batch;
        pc_model_batch mb = {bt->B, bt->T, bt->ids, bt->labels, bt->pos, bt->doc};
        float scale = bt->n_targets > 0 ? 1.0f / ((float)bt->n_targets * (float)o->grad_accum) : 0.0f;
        pc_forward_result fr;
        pc_status fst = pc_model_forward_backward(t->model, &mb, scale, &t->rng, &fr, err);
        /* The model stops before backward on a non-finite loss; the step is then judged below like a
         * non-finite gradient (stop, or skip under --skip-nonfinite). The remaining micro-batches still run so
         * a skipped step consumes the same data as any other. */
        if (fst == PC_ERR_NUMERIC) loss_nonfinite = 1;
        else if (fst != PC_OK) return fst;
        else loss_acc += fr.n_targets ? fr.loss_sum / (double)fr.n_targets : 0.0;
        t->tokens += (long)bt->B * bt->T;
    }
    *loss = loss_nonfinite ? NAN : loss_acc / o->grad_accum;
    *gnorm = pc_grad_norm(t->blocks, t->n_blocks);
    *skipped = 0;
    /* The loss too: a non-finite loss with a finite gradient still means the step saw garbage. */
    /* One check covers every gradient: a NaN or inf element makes the global norm non-finite. */
    if (!isfinite(*loss) || !isfinite(*gnorm)) {
        if (!o->skip_nonfinite)
            return pc_fail(err, PC_ERR_NUMERIC, "step %ld: the %s is not finite (loss %g); nothing was updated "
                           "(--skip-nonfinite skips such steps)", t->step + 1, isfinite(*loss) ? "gradient" : "loss", *loss);
        *skipped = 1;
        t->step++;
        return PC_OK;
    }
    float clip = 1.0f;
    if (o->optim.max_grad_norm > 0 && *gnorm > o->optim.max_grad_norm) clip = (float)(o->optim.max_grad_norm / (*gnorm + 1e-6));
    double lr = pc_lr_at(&o->optim, t->step);
    t->step++;
    pc_optim_step(&o->optim, t->blocks, t->n_blocks, lr, t->step, clip);
    return PC_OK;
}

static pc_status setup(trainer *t, const pc_dataset *train, pc_error *err) {
    const pc_train_options *o = t->opt;
    for (int i = 0; i < t->n_methods; i++) {
        if (t->methods[i]->params.count == 0) continue;
        if (t->n_blocks == (int)(sizeof t->blocks / sizeof t->blocks[0])) return pc_fail(err, PC_ERR_USAGE, "too many methods");
        t->blocks[t->n_blocks++] = &t->methods[i]->params;
        if (o->optim.kind == PC_OPTIM_ADAMW) PC_TRY(pc_params_alloc_moments(&t->methods[i]->params, err));
    }
    if (t->n_blocks == 0) return pc_fail(err, PC_ERR_USAGE, "the attached methods have no trainable parameters");
    pc_rng_seed(&t->rng, o->seed ^ 0x5eed5eed5eedull);
    PC_TRY(pc_batcher_init(&t->batcher, train, o->batch, o->seq_len, o->pack, o->shuffle, o->seed, o->pad_id, err));
    /* Plan the largest step now, so the loop allocates nothing. */
    t->model->gradient_checkpointing = o->gradient_checkpointing;
    return pc_model_plan(t->model, o->batch, o->seq_len, 1, err);
}

pc_status pc_train(pc_model *model, pc_method **methods, int n_methods, const pc_dataset *train,
                   const pc_dataset *eval, const pc_train_options *opt, pc_train_callback cb, void *cb_ctx,
                   pc_train_result *res, pc_error *err) {
    memset(res, 0, sizeof *res);
    res->resumed_from = -1;
    if (opt->steps <= 0 || opt->batch <= 0 || opt->seq_len <= 0 || opt->grad_accum <= 0)
        return pc_fail(err, PC_ERR_USAGE, "steps, batch, seq-len and grad-accum must be positive");
    trainer t = {.model = model, .methods = methods, .n_methods = n_methods, .opt = opt};
    pc_status st = pc_mkdir_p(opt->out_dir, err);
    if (st == PC_OK) st = setup(&t, train, err);
    if (st == PC_OK && opt->resume) st = resume(&t, res, err);
    char path[4096];
    if (st == PC_OK) {
        snprintf(path, sizeof path, "%s/metrics.jsonl", opt->out_dir);
        if (t.step > 0) st = trim_metrics(path, t.step, err);
        t.metrics = st == PC_OK ? fopen(path, t.step > 0 ? "a" : "w") : NULL;
        if (st == PC_OK && !t.metrics) st = pc_fail(err, PC_ERR_IO, "%s: cannot open for writing", path);
    }
    double start = pc_time_now(), loss = 0.0, gnorm = 0.0;
    long start_tokens = t.tokens;
    while (st == PC_OK && t.step < opt->steps) {
        int skipped;
        st = train_step(&t, &loss, &gnorm, &skipped, err);
        if (st != PC_OK) break;
        double elapsed = pc_time_now() - start, tps = elapsed > 0 ? (double)(t.tokens - start_tokens) / elapsed : 0.0;
        pc_train_event ev = {skipped ? PC_EVENT_SKIP : PC_EVENT_STEP, t.step, opt->steps, loss, pc_lr_at(&opt->optim, t.step - 1),
                             gnorm, tps, elapsed, 0, NULL};
        if (cb) cb(cb_ctx, &ev);
        if (opt->log_every > 0 && (t.step % opt->log_every == 0 || t.step == opt->steps))
            log_metrics(&t, skipped ? "skip" : "train", loss, ev.lr, gnorm, tps);
        if (eval && opt->eval_every > 0 && (t.step % opt->eval_every == 0 || t.step == opt->steps)) {
            pc_eval_result er;
            st = pc_evaluate(model, eval, opt->batch, opt->seq_len, opt->pad_id, &er, err);
            if (st != PC_OK) break;
            res->eval_loss = er.loss;
            ev.kind = PC_EVENT_EVAL;
            ev.eval_loss = er.loss;
            if (cb) cb(cb_ctx, &ev);
            log_metrics(&t, "eval", er.loss, ev.lr, 0, tps);
            st = pc_model_plan(model, opt->batch, opt->seq_len, 1, err);
        }
        if (st == PC_OK && opt->save_every > 0 && t.step % opt->save_every == 0 && t.step < opt->steps) {
            st = write_checkpoint(&t, path, sizeof path, err);
            ev.kind = PC_EVENT_SAVE;
            ev.path = path;
            if (st == PC_OK && cb) cb(cb_ctx, &ev);
        }
        res->tokens_per_s = tps;
    }
    if (st == PC_OK) st = check_params_finite(&t, err);
    if (st == PC_OK) st = pc_save_methods(methods, n_methods, opt->out_dir, err);
    if (t.metrics) fclose(t.metrics);
    pc_batcher_free(&t.batcher);
    res->steps = t.step;
    res->final_loss = loss;
    res->tokens = t.tokens;
    return st;
}
