/* peftc train: attach one or more methods to a model and train them on a JSONL dataset. With --method full
 * and --config instead of --model it trains a model from scratch. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "core/timer.h"
#include "train/trainer.h"

static const cli_opt train_opts[] = {
    CLI_MODEL_OPTS,
    CLI_METHOD_OPTS,
    {"--config", OPT_VALUE, "config.json: build the model with random weights (from-scratch training)"},
    {"--data", OPT_VALUE, "training JSONL"},
    {"--eval", OPT_VALUE, "held-out JSONL, evaluated every --eval-steps and at the end"},
    {"--method", OPT_MULTI, "lora|full|... (repeat to attach several)"},
    {"--init-adapter", OPT_VALUE, "start from this adapter directory"},
    {"--optim", OPT_VALUE, "adamw|sgd [adamw]"},
    {"--lr", OPT_VALUE, "learning rate [2e-4]"},
    {"--weight-decay", OPT_VALUE, "AdamW decoupled weight decay [0]"},
    {"--schedule", OPT_VALUE, "constant|linear|cosine [linear; constant for sgd]"},
    {"--warmup-steps", OPT_VALUE, "linear warm-up steps [0]"},
    {"--max-grad-norm", OPT_VALUE, "clip the global gradient norm [1.0 for adamw, off for sgd]"},
    {"--steps", OPT_VALUE, "optimizer steps"},
    {"--epochs", OPT_VALUE, "passes over the data (instead of --steps)"},
    {"--batch", OPT_VALUE, "records per micro-batch [4]"},
    {"--grad-accum", OPT_VALUE, "micro-batches per step [1]"},
    {"--seq-len", OPT_VALUE, "tokens per record, longer ones are cut [256]"},
    {"--pack", OPT_FLAG, "pack records into full rows (no attention across records)"},
    {"--no-shuffle", OPT_FLAG, "take records in file order"},
    {"--seed", OPT_VALUE, "seed of every random choice [42]"},
    {"--out", OPT_VALUE, "output directory"},
    {"--save-steps", OPT_VALUE, "write a resumable checkpoint every K steps"},
    {"--resume", OPT_FLAG, "continue from the newest complete checkpoint in --out"},
    {"--eval-steps", OPT_VALUE, "evaluate every K steps [only at the end]"},
    {"--log-steps", OPT_VALUE, "metrics line every K steps [1]"},
    {"--skip-nonfinite", OPT_FLAG, "skip steps with a non-finite gradient instead of stopping"},
    {"--gradient-checkpointing", OPT_FLAG, "recompute activations in backward: less memory, ~1/3 more time"},
    {"--quiet", OPT_FLAG, "no progress output"},
    {"--json", OPT_FLAG, "print one JSON object"},
    {"--help", OPT_FLAG, "this help"},
};
#define N_TRAIN_OPTS (int)(sizeof train_opts / sizeof train_opts[0])

typedef struct progress {
    int tty, quiet;
    double last_draw;
} progress;

static void format_eta(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) s = 0;
    long t = (long)s;
    if (t >= 3600) snprintf(buf, cap, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
}

/* A bar redrawn in place on a terminal; a plain line per event otherwise (logs, CI). */
static void on_event(void *ctx, const pc_train_event *ev) {
    progress *p = ctx;
    if (p->quiet) return;
    char eta[32];
    double per_step = ev->step > 0 ? ev->elapsed_s / (double)ev->step : 0;
    format_eta(eta, sizeof eta, per_step * (double)(ev->total_steps - ev->step));
    if (ev->kind == PC_EVENT_EVAL) {
        fprintf(stderr, "%sstep %ld: eval loss %.4f (perplexity %.2f)\n", p->tty ? "\r\033[K" : "", ev->step, ev->eval_loss,
                exp(ev->eval_loss));
        return;
    }
    if (ev->kind == PC_EVENT_SAVE) {
        fprintf(stderr, "%scheckpoint: %s\n", p->tty ? "\r\033[K" : "", ev->path);
        return;
    }
    if (ev->kind == PC_EVENT_SKIP) {
        fprintf(stderr, "%sstep %ld: non-finite gradient, step skipped\n", p->tty ? "\r\033[K" : "", ev->step);
        return;
    }
    if (p->tty) {
        double now = pc_time_now();
        if (now - p->last_draw < 0.1 && ev->step < ev->total_steps) return;
        p->last_draw = now;
        int width = 24, filled = (int)(width * ev->step / (ev->total_steps ? ev->total_steps : 1));
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r\033[K[%s] %ld/%ld loss %.4f lr %.2e %.0f tok/s ETA %s", bar, ev->step, ev->total_steps, ev->loss,
                ev->lr, ev->tokens_per_s, eta);
        if (ev->step == ev->total_steps) fputc('\n', stderr);
    } else {
        fprintf(stderr, "step %ld/%ld loss %.4f lr %.3e grad_norm %.3f %.0f tok/s ETA %s\n", ev->step, ev->total_steps,
                ev->loss, ev->lr, ev->grad_norm, ev->tokens_per_s, eta);
    }
}

static int parse_optim(const cli_args *a, pc_train_options *o) {
    const char *optim = cli_get(a, "--optim");
    o->optim.kind = PC_OPTIM_ADAMW;
    if (optim && !strcmp(optim, "sgd")) o->optim.kind = PC_OPTIM_SGD;
    else if (optim && strcmp(optim, "adamw")) return cli_usage_error("train: --optim '%s' is not adamw or sgd", optim);
    int sgd = o->optim.kind == PC_OPTIM_SGD;
    o->optim.lr = 2e-4;
    o->optim.beta1 = 0.9;
    o->optim.beta2 = 0.999;
    o->optim.eps = 1e-8;
    o->optim.max_grad_norm = sgd ? 0.0 : 1.0;
    o->optim.schedule = sgd ? PC_SCHEDULE_CONSTANT : PC_SCHEDULE_LINEAR;
    const char *sched = cli_get(a, "--schedule");
    if (sched) {
        if (!strcmp(sched, "constant")) o->optim.schedule = PC_SCHEDULE_CONSTANT;
        else if (!strcmp(sched, "linear")) o->optim.schedule = PC_SCHEDULE_LINEAR;
        else if (!strcmp(sched, "cosine")) o->optim.schedule = PC_SCHEDULE_COSINE;
        else return cli_usage_error("train: --schedule '%s' is not constant, linear or cosine", sched);
    }
    if (cli_get_double(a, "--lr", &o->optim.lr) || cli_get_double(a, "--weight-decay", &o->optim.weight_decay) ||
        cli_get_double(a, "--max-grad-norm", &o->optim.max_grad_norm) ||
        cli_get_long(a, "--warmup-steps", &o->optim.warmup_steps))
        return 2;
    if (!(o->optim.lr > 0) || o->optim.weight_decay < 0 || o->optim.max_grad_norm < 0 || o->optim.warmup_steps < 0)
        return cli_usage_error("train: --lr must be positive; weight decay, clipping and warm-up not negative");
    return 0;
}

static int parse_loop(const cli_args *a, pc_train_options *o, long *epochs) {
    long batch = 4, accum = 1, seq = 256, seed = 42, save = 0, eval = 0, log = 1;
    o->steps = 0;
    if (cli_get_long(a, "--batch", &batch) || cli_get_long(a, "--grad-accum", &accum) ||
        cli_get_long(a, "--seq-len", &seq) || cli_get_long(a, "--seed", &seed) || cli_get_long(a, "--steps", &o->steps) ||
        cli_get_long(a, "--epochs", epochs) || cli_get_long(a, "--save-steps", &save) ||
        cli_get_long(a, "--eval-steps", &eval) || cli_get_long(a, "--log-steps", &log))
        return 2;
    if (batch <= 0 || accum <= 0 || seq <= 1 || save < 0 || eval < 0 || log < 0)
        return cli_usage_error("train: --batch, --grad-accum, --seq-len must be positive");
    if (!o->steps && !*epochs) return cli_usage_error("train: give --steps N or --epochs E");
    o->batch = (int)batch;
    o->grad_accum = (int)accum;
    o->seq_len = (int)seq;
    o->seed = (uint64_t)seed;
    o->save_every = save;
    o->eval_every = eval;
    o->log_every = log;
    o->pack = cli_flag(a, "--pack");
    o->shuffle = !cli_flag(a, "--no-shuffle");
    o->resume = cli_flag(a, "--resume");
    o->skip_nonfinite = cli_flag(a, "--skip-nonfinite");
    o->gradient_checkpointing = cli_flag(a, "--gradient-checkpointing");
    o->out_dir = cli_get(a, "--out");
    if (!o->out_dir) return cli_usage_error("train: --out DIR is required");
    return 0;
}

/* Attach the methods named by --method (or start from --init-adapter). */
static pc_status attach_methods(cli_session *s, const cli_args *a, uint64_t seed, pc_error *err) {
    const char *init = cli_get(a, "--init-adapter");
    if (init) {
        PC_TRY(pc_method_load(&s->methods[0], s->model, init, err));
        s->n_methods = 1;
        return PC_OK;
    }
    cJSON *opts;
    PC_TRY(cli_method_options(a, &opts, err));
    pc_rng rng;
    pc_rng_seed(&rng, seed);
    pc_status st = PC_OK;
    int n = cli_count(a, "--method");
    if (n == 0) st = pc_fail(err, PC_ERR_USAGE, "train: --method is required (%s)", pc_method_names());
    for (int i = 0; i < n && st == PC_OK; i++) {
        const char *name = cli_get_nth(a, "--method", i);
        const pc_method_ops *ops = pc_method_find(name);
        if (!ops) {
            st = pc_fail(err, PC_ERR_USAGE, "train: unknown method '%s' (known: %s)", name, pc_method_names());
            break;
        }
        if (s->n_methods == (int)(sizeof s->methods / sizeof s->methods[0])) {
            st = pc_fail(err, PC_ERR_USAGE, "train: too many methods");
            break;
        }
        st = pc_method_create(&s->methods[s->n_methods], ops, s->model, opts, &rng, err);
        if (st == PC_OK) s->n_methods++;
    }
    cJSON_Delete(opts);
    return st;
}

int cmd_train(int argc, char **argv) {
    cli_args a;
    if (cli_parse(&a, train_opts, N_TRAIN_OPTS, argc, argv, "train")) return 2;
    if (cli_flag(&a, "--help")) {
        cli_print_help("train", "--model DIR --data FILE --method lora [options] --out DIR", train_opts, N_TRAIN_OPTS);
        return 0;
    }
    pc_train_options o = {0};
    long epochs = 0;
    if (parse_optim(&a, &o) || parse_loop(&a, &o, &epochs)) return 2;
    const char *data = cli_get(&a, "--data"), *eval_path = cli_get(&a, "--eval"), *config = cli_get(&a, "--config");
    if (!data) return cli_usage_error("train: --data FILE is required");
    if (!cli_get(&a, "--model") && !config) return cli_usage_error("train: --model DIR (or --config FILE) is required");

    pc_error err = {0};
    cli_session s = {0};
    pc_dataset train = {0}, eval = {0};
    pc_train_result res;
    pc_status st = config && !cli_get(&a, "--model") ? cli_create_model_from_config(&s, config, &a, o.seed, &err)
                                                      : cli_load_model(&s, &a, &err);
    if (st == PC_OK) st = attach_methods(&s, &a, o.seed, &err);
    /* Without --seq-len, rows are as long as the default allows and the model can take. */
    if (st == PC_OK && !cli_get(&a, "--seq-len") && o.seq_len > pc_model_max_seq_len(s.model))
        o.seq_len = pc_model_max_seq_len(s.model);
    if (st == PC_OK) st = cli_load_dataset(&s, data, o.seq_len, &train, &err);
    if (st == PC_OK && eval_path) st = cli_load_dataset(&s, eval_path, o.seq_len, &eval, &err);
    if (st == PC_OK) {
        if (epochs > 0) {
            long per_step = (long)o.batch * o.grad_accum;
            o.steps = (epochs * train.count + per_step - 1) / per_step;
        }
        o.optim.total_steps = o.steps;
        o.pad_id = cli_pad_id(&s);
        if (eval_path && o.eval_every == 0) o.eval_every = o.steps;
        progress p = {isatty(2), cli_flag(&a, "--quiet"), 0};
        st = pc_train(s.model, s.methods, s.n_methods, &train, eval_path ? &eval : NULL, &o, on_event, &p, &res, &err);
    }
    /* A model trained from a bare config gets the tokenizer it was trained with. */
    if (st == PC_OK && config && !cli_get(&a, "--model") && cli_get(&a, "--tokenizer"))
        st = cli_copy_tokenizer_files(cli_get(&a, "--tokenizer"), o.out_dir, &err);
    pc_dataset_free(&train);
    pc_dataset_free(&eval);
    cli_session_free(&s);
    if (st != PC_OK) return cli_report(&err);
    if (cli_flag(&a, "--json")) {
        cJSON *j = cJSON_CreateObject();
        int failed = 0;
        pc_json_put(j, "steps", cJSON_CreateNumber((double)res.steps), &failed);
        pc_json_put(j, "final_loss", cJSON_CreateNumber(res.final_loss), &failed);
        if (eval_path) pc_json_put(j, "eval_loss", cJSON_CreateNumber(res.eval_loss), &failed);
        pc_json_put(j, "tokens_per_s", cJSON_CreateNumber(res.tokens_per_s), &failed);
        pc_json_put(j, "peak_rss_mb", cJSON_CreateNumber(pc_peak_rss_mb()), &failed);
        st = cli_print_json(j, failed, &err);
        cJSON_Delete(j);
        if (st != PC_OK) return cli_report(&err);
    } else if (!cli_flag(&a, "--quiet")) {
        fprintf(stderr, "done: %ld steps, final loss %.4f, %.0f tokens/s; wrote %s\n", res.steps, res.final_loss,
                res.tokens_per_s, o.out_dir);
    }
    return 0;
}
