/* peftc bench: throughput and memory of training steps on random tokens. It builds the model (random
 * weights from a config.json, bf16 base by default, or a model directory), attaches one method, plans the
 * step once, runs warm-up steps and then N timed steps (forward + backward + gradient norm + AdamW on the
 * method's parameters), and reports tokens/s, the median step time, peak RSS, the achieved GFLOP/s under a
 * stated FLOP count, and a per-phase breakdown taken from the model's phase timers.
 *
 * FLOP count per token (a multiply-add is 2 FLOPs; only matrix products are counted):
 *   frozen projection [out,in] (lm_head included):  2·in·out forward + 2·in·out input gradient
 *   trainable base tensor (full, ...):               + 2·in·out weight gradient
 *   method parameters (P of them):                   6·P (forward 2·P, both backward products 4·P); exact for
 *                                                    LoRA, whose A [r,in] and B [out,r] are each applied to
 *                                                    every token; DoRA's per-step weight norm is not counted
 *   attention, per layer:                            3 · 4 · T_eff · H·hd, T_eff = (T+1)/2 + prefix: Q·Kᵀ and
 *                                                    P·V over the keys a causal query sees on average, ×3
 *                                                    for forward + backward (backward = 2× forward; the
 *                                                    recomputed scores of flash-style backward are not
 *                                                    counted as useful work).
 * With --gradient-checkpointing the layer forwards re-run in backward are not counted either: the FLOP count
 * is the step's useful work, so GFLOP/s drops by what recomputation costs. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "core/alloc.h"
#include "core/timer.h"
#include "train/optimizer.h"

static const cli_opt bench_opts[] = {
    {"--model", OPT_VALUE, "model directory (config.json + model.safetensors)"},
    {"--config", OPT_VALUE, "config.json: build the architecture with random weights"},
    {"--base-dtype", OPT_VALUE, "fp32|bf16: frozen weights [bf16 with --config, the checkpoint's with --model]"},
    CLI_METHOD_OPTS,
    {"--method", OPT_VALUE, "lora|ia3|prompt-tuning|... [lora]"},
    {"--batch", OPT_VALUE, "rows per step [4]"},
    {"--seq-len", OPT_VALUE, "tokens per row [256]"},
    {"--steps", OPT_VALUE, "timed steps [5]"},
    {"--warmup", OPT_VALUE, "untimed steps first (primitive creation, page faults) [1]"},
    {"--threads", OPT_VALUE, "OpenMP threads [OMP_NUM_THREADS or every core]"},
    {"--seed", OPT_VALUE, "seed of the weights and tokens [42]"},
    {"--gradient-checkpointing", OPT_FLAG, "recompute activations in backward (as peftc train)"},
    {"--json", OPT_FLAG, "print one JSON object"},
    {"--help", OPT_FLAG, "this help"},
};
#define N_BENCH_OPTS (int)(sizeof bench_opts / sizeof bench_opts[0])

typedef struct bench_flops {
    double frozen, trainable_base, method, attention; /* per token */
} bench_flops;

typedef struct bench_result {
    double step_median, step_min, step_max, tokens_per_s, peak_rss_mb, gflops_per_s, flops_per_step;
    double optimizer_s;            /* mean per step */
    double recompute_s;            /* mean per step: checkpointing's re-run layer forwards (inside backward) */
    double plan_mb;                /* the model's activation plan (methods' own step buffers not included) */
    double cpu_s;                  /* user + system CPU time per timed step (all threads): on a machine shared
                                    * with other work, cpu_s / step time shows how much of the cores the step got */
    pc_step_profile phases;        /* mean per step */
    bench_flops flops;
} bench_result;

static double projection_flops(const pc_param *w, double in, double out, double *trainable) {
    if (w->grad) *trainable += 2.0 * in * out;
    return 4.0 * in * out;
}

static bench_flops count_flops(pc_model *m, const pc_method *method, int T) {
    bench_flops f = {0};
    const pc_model_config *c = &m->cfg;
    for (int i = 0; i < pc_model_linear_count(m); i++) {
        pc_linear *lin = pc_model_linear_at(m, i);
        f.frozen += projection_flops(lin->weight, lin->in, lin->out, &f.trainable_base);
    }
    f.frozen += projection_flops(m->lm_head, c->hidden, c->vocab_size, &f.trainable_base);
    f.method = 6.0 * (double)method->params.count;
    int prefix = 0; /* prefix tuning: keys every query sees in front of the sequence */
    for (int l = 0; l < c->n_layers; l++) {
        int p = 0;
        for (int h = 0; h < m->layers[l].attn_kv.count; h++) p += m->layers[l].attn_kv.hooks[h].n_prefix;
        prefix = p > prefix ? p : prefix;
    }
    int T_total = pc_model_total_len(m, T);
    double t_eff = (T_total + 1) / 2.0 + prefix;
    f.attention = 12.0 * t_eff * (double)c->n_heads * c->head_dim * c->n_layers;
    return f;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Random token ids; labels are the ids (the model shifts), so every position but the last is a target. */
static void random_batch(int32_t *ids, long n, int V, pc_rng *rng) {
    for (long i = 0; i < n; i++) ids[i] = (int32_t)pc_rng_below(rng, (uint32_t)V);
}

typedef struct bench_setup {
    int B, T, steps, warmup;
    uint64_t seed;
} bench_setup;

/* One training step as the trainer does it: zero, forward + backward, global norm, clipping, AdamW. */
static pc_status bench_step(pc_model *m, pc_method *method, const pc_model_batch *mb, const pc_optim_config *oc,
                            long step, pc_rng *rng, double *optim_s, pc_error *err) {
    pc_params *blocks[1] = {&method->params};
    pc_params_zero_grad(&method->params);
    pc_forward_result fr;
    long targets = (long)mb->B * (mb->T - 1);
    PC_TRY(pc_model_forward_backward(m, mb, 1.0f / (float)targets, rng, &fr, err));
    double t0 = pc_time_now();
    double norm = pc_grad_norm(blocks, 1);
    float clip = norm > oc->max_grad_norm ? (float)(oc->max_grad_norm / (norm + 1e-6)) : 1.0f;
    pc_optim_step(oc, blocks, 1, oc->lr, step, clip);
    *optim_s += pc_time_now() - t0;
    return PC_OK;
}

static pc_status run_bench(pc_model *m, pc_method *method, const bench_setup *bs, bench_result *r, pc_error *err) {
    size_t n = (size_t)bs->B * (size_t)bs->T;
    int32_t *ids = pc_malloc(n * sizeof *ids);
    double *times = pc_malloc(sizeof(double) * (size_t)bs->steps);
    pc_status st = ids && times ? PC_OK : pc_fail(err, PC_ERR_NOMEM, "bench: out of memory");
    if (st == PC_OK) st = pc_params_alloc_moments(&method->params, err);
    if (st == PC_OK) st = pc_model_plan(m, bs->B, bs->T, 1, err);
    pc_optim_config oc = {.kind = PC_OPTIM_ADAMW, .lr = 1e-4, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                          .max_grad_norm = 1.0};
    pc_rng rng;
    pc_rng_seed(&rng, bs->seed ^ 0xbe7c4ull);
    pc_model_batch mb = {bs->B, bs->T, ids, ids, NULL, NULL};
    pc_step_profile prof;
    double optim_s = 0.0, cpu0 = 0.0;
    for (int i = 0; st == PC_OK && i < bs->warmup + bs->steps; i++) {
        int timed = i >= bs->warmup;
        if (i == bs->warmup) {
            memset(&prof, 0, sizeof prof);
            optim_s = 0.0;
            m->profile = &prof;
            cpu0 = pc_cpu_time_now();
        }
        random_batch(ids, (long)n, m->cfg.vocab_size, &rng);
        double t0 = pc_time_now();
        st = bench_step(m, method, &mb, &oc, i + 1, &rng, &optim_s, err);
        if (timed) times[i - bs->warmup] = pc_time_now() - t0;
    }
    m->profile = NULL;
    if (st == PC_OK) {
        r->cpu_s = (pc_cpu_time_now() - cpu0) / bs->steps;
        qsort(times, (size_t)bs->steps, sizeof *times, compare_double);
        int k = bs->steps;
        r->step_median = k % 2 ? times[k / 2] : 0.5 * (times[k / 2 - 1] + times[k / 2]);
        r->step_min = times[0];
        r->step_max = times[k - 1];
        r->tokens_per_s = (double)n / r->step_median;
        r->flops = count_flops(m, method, bs->T);
        const bench_flops *f = &r->flops;
        r->flops_per_step = (f->frozen + f->trainable_base + f->method + f->attention) * (double)n;
        r->gflops_per_s = r->flops_per_step / r->step_median * 1e-9;
        r->peak_rss_mb = pc_peak_rss_mb();
        r->optimizer_s = optim_s / k;
        r->recompute_s = prof.recompute / k;
        r->plan_mb = (double)pc_model_plan_bytes(m) / (1024.0 * 1024.0);
        for (int p = 0; p < PC_PROF_COUNT; p++) {
            r->phases.forward[p] = prof.forward[p] / k;
            r->phases.backward[p] = prof.backward[p] / k;
            r->phases.forward_cpu[p] = prof.forward_cpu[p] / k;
            r->phases.backward_cpu[p] = prof.backward_cpu[p] / k;
        }
    }
    pc_free(ids);
    pc_free(times);
    return st;
}

static const char *phase_names[PC_PROF_COUNT] = {"embedding", "attention", "mlp", "head_xent"};

static void print_text(const pc_model *m, const pc_method *method, const bench_setup *bs, const bench_result *r,
                       int threads) {
    const pc_model_config *c = &m->cfg;
    const bench_flops *f = &r->flops;
    printf("model     %s: %d layers, hidden %d, heads %d/%d, intermediate %d, vocab %d; base %s; matmul %s\n",
           c->arch->model_type, c->n_layers, c->hidden, c->n_heads, c->n_kv_heads, c->intermediate, c->vocab_size,
           m->compute_dtype == PC_BF16 ? "bf16" : "fp32", pc_matmul_backend(m->mm));
    printf("method    %s: %zu trainable parameters\n", method->ops->name, method->params.count);
    printf("shape     batch %d x seq %d, %d threads, %d warm-up + %d timed steps\n", bs->B, bs->T, threads, bs->warmup,
           bs->steps);
    printf("step      median %.3f s (min %.3f, max %.3f)\n", r->step_median, r->step_min, r->step_max);
    printf("tokens/s  %.1f\n", r->tokens_per_s);
    printf("CPU       %.3f s per step over all threads (%.2f cores busy on average)\n", r->cpu_s,
           r->cpu_s / r->step_median);
    printf("peak RSS  %.1f MB (activation plan %.1f MB, gradient checkpointing %s)\n", r->peak_rss_mb, r->plan_mb,
           m->gradient_checkpointing ? "on" : "off");
    printf("FLOPs     %.2f GFLOP per step = tokens x (frozen %.1fM + trainable base %.1fM + method %.1fM + attention "
           "%.1fM)\n",
           r->flops_per_step * 1e-9, f->frozen * 1e-6, f->trainable_base * 1e-6, f->method * 1e-6,
           f->attention * 1e-6);
    printf("GFLOP/s   %.1f\n", r->gflops_per_s);
    printf("phase        forward_s  backward_s   share  cores busy\n");
    double total = r->optimizer_s;
    for (int p = 0; p < PC_PROF_COUNT; p++) total += r->phases.forward[p] + r->phases.backward[p];
    for (int p = 0; p < PC_PROF_COUNT; p++) {
        double wall = r->phases.forward[p] + r->phases.backward[p];
        double cpu = r->phases.forward_cpu[p] + r->phases.backward_cpu[p];
        printf("%-12s %9.4f  %10.4f  %5.1f%%  %10.2f\n", phase_names[p], r->phases.forward[p], r->phases.backward[p],
               100.0 * wall / total, wall > 0 ? cpu / wall : 0.0);
    }
    printf("%-12s %9s  %10.4f  %5.1f%%\n", "optimizer", "-", r->optimizer_s, 100.0 * r->optimizer_s / total);
    if (m->gradient_checkpointing)
        printf("(recomputation: %.4f s of the attention and MLP backward re-ran the layer forwards)\n", r->recompute_s);
    printf("(head_xent: the LM head and cross-entropy run fused, forward and backward, and are timed as backward)\n");
    printf("(cores busy: process CPU time / wall time of the phase; waiting OpenMP workers spin and count as busy\n"
           " unless OMP_WAIT_POLICY=passive)\n");
}

static pc_status print_json(const pc_model *m, const pc_method *method, const bench_setup *bs, const bench_result *r,
                            int threads, pc_error *err) {
    cJSON *j = cJSON_CreateObject(), *ph = cJSON_CreateObject();
    int failed = 0;
    const struct {
        const char *key;
        double value;
    } numbers[] = {{"tokens_per_s", r->tokens_per_s},     {"step_s_median", r->step_median},
                   {"peak_rss_mb", r->peak_rss_mb},       {"gflops_per_s", r->gflops_per_s},
                   {"flops_per_step", r->flops_per_step}, {"step_s_min", r->step_min},
                   {"step_s_max", r->step_max},           {"cpu_s_per_step", r->cpu_s},
                   {"batch", bs->B},                      {"seq_len", bs->T},
                   {"steps", bs->steps},                  {"threads", threads}};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        pc_json_put(j, numbers[i].key, cJSON_CreateNumber(numbers[i].value), &failed);
    pc_json_put(j, "base_dtype", cJSON_CreateString(m->compute_dtype == PC_BF16 ? "bf16" : "fp32"), &failed);
    pc_json_put(j, "matmul", cJSON_CreateString(pc_matmul_backend(m->mm)), &failed);
    pc_json_put(j, "method", cJSON_CreateString(method->ops->name), &failed);
    pc_json_put(j, "trainable_params", cJSON_CreateNumber((double)method->params.count), &failed);
    pc_json_put(j, "gradient_checkpointing", cJSON_CreateBool(m->gradient_checkpointing), &failed);
    pc_json_put(j, "activation_plan_mb", cJSON_CreateNumber(r->plan_mb), &failed);
    pc_json_put(j, "recompute_s", cJSON_CreateNumber(r->recompute_s), &failed);
    for (int p = 0; p < PC_PROF_COUNT; p++) {
        cJSON *o = cJSON_CreateObject();
        pc_json_put(o, "forward", cJSON_CreateNumber(r->phases.forward[p]), &failed);
        pc_json_put(o, "backward", cJSON_CreateNumber(r->phases.backward[p]), &failed);
        pc_json_put(o, "forward_cpu", cJSON_CreateNumber(r->phases.forward_cpu[p]), &failed);
        pc_json_put(o, "backward_cpu", cJSON_CreateNumber(r->phases.backward_cpu[p]), &failed);
        pc_json_put(ph, phase_names[p], o, &failed);
    }
    pc_json_put(ph, "optimizer", cJSON_CreateNumber(r->optimizer_s), &failed);
    pc_json_put(j, "phases_s", ph, &failed);
    pc_status st = cli_print_json(j, failed, err);
    cJSON_Delete(j);
    return st;
}

static int parse_setup(const cli_args *a, bench_setup *bs, long *threads) {
    long B = 4, T = 256, steps = 5, warmup = 1, seed = 42;
    if (cli_get_long(a, "--batch", &B) || cli_get_long(a, "--seq-len", &T) || cli_get_long(a, "--steps", &steps) ||
        cli_get_long(a, "--warmup", &warmup) || cli_get_long(a, "--seed", &seed) ||
        cli_get_long(a, "--threads", threads))
        return 2;
    if (B <= 0 || T <= 1 || steps <= 0 || warmup < 0 || *threads < 0 || B * T > (1L << 24))
        return cli_usage_error("bench: --batch, --steps positive, --seq-len > 1, --warmup and --threads not negative");
    *bs = (bench_setup){(int)B, (int)T, (int)steps, (int)warmup, (uint64_t)seed};
    return 0;
}

static pc_status build_model(pc_model **m, const cli_args *a, uint64_t seed, pc_error *err) {
    const char *v = cli_get(a, "--base-dtype");
    pc_base_dtype bd = PC_BASE_AUTO;
    if (v && !strcmp(v, "fp32")) bd = PC_BASE_F32;
    else if (v && !strcmp(v, "bf16")) bd = PC_BASE_BF16;
    else if (v) return pc_fail(err, PC_ERR_USAGE, "--base-dtype: '%s' is not fp32 or bf16", v);
    const char *dir = cli_get(a, "--model"), *config = cli_get(a, "--config");
    if (dir) return pc_model_load(m, dir, bd, err);
    /* CLI.md: bench --config defaults to a bf16 base. */
    return pc_model_create_random(m, config, bd == PC_BASE_F32 ? PC_BASE_F32 : PC_BASE_BF16, seed, err);
}

int cmd_bench(int argc, char **argv) {
    cli_args a;
    if (cli_parse(&a, bench_opts, N_BENCH_OPTS, argc, argv, "bench")) return 2;
    if (cli_flag(&a, "--help")) {
        cli_print_help("bench", "--model DIR | --config FILE [--method lora] [method options] --batch B --seq-len T",
                       bench_opts, N_BENCH_OPTS);
        return 0;
    }
    bench_setup bs = {0};
    long threads = 0;
    if (parse_setup(&a, &bs, &threads)) return 2;
    if (!cli_get(&a, "--model") == !cli_get(&a, "--config"))
        return cli_usage_error("bench: give exactly one of --model DIR and --config FILE");
    const char *method_name = cli_get(&a, "--method") ? cli_get(&a, "--method") : "lora";
    const pc_method_ops *ops = pc_method_find(method_name);
    if (!ops) return cli_usage_error("bench: unknown method '%s' (known: %s)", method_name, pc_method_names());
    if (threads > 0) omp_set_num_threads((int)threads);
    int nthreads = omp_get_max_threads();

    pc_error err = {0};
    pc_model *m = NULL;
    pc_method *method = NULL;
    cJSON *opts = NULL;
    pc_rng rng;
    pc_rng_seed(&rng, bs.seed);
    pc_status st = build_model(&m, &a, bs.seed, &err);
    if (st == PC_OK) st = cli_method_options(&a, &opts, &err);
    if (st == PC_OK) st = pc_method_create(&method, ops, m, opts, &rng, &err);
    if (st == PC_OK && method->params.count == 0)
        st = pc_fail(&err, PC_ERR_USAGE, "bench: method '%s' has no trainable parameters here", method_name);
    if (st == PC_OK) m->gradient_checkpointing = cli_flag(&a, "--gradient-checkpointing");
    bench_result r = {0};
    if (st == PC_OK) st = run_bench(m, method, &bs, &r, &err);
    if (st == PC_OK) {
        if (cli_flag(&a, "--json")) st = print_json(m, method, &bs, &r, nthreads, &err);
        else print_text(m, method, &bs, &r, nthreads);
    }
    cJSON_Delete(opts);
    pc_method_free(method);
    pc_model_free(m);
    return st == PC_OK ? 0 : cli_report(&err);
}
