/* Allocation-failure sweep (SQLite-style, issue #7): run a whole cycle with the Nth allocation failing, for
 * N = 0, 1, 2, ... until the cycle succeeds. Every N must end in a clean PC_ERR_NOMEM (or success): no
 * crash, no other status, no leak (CI runs this under ASan + LeakSanitizer), and no half-written file — any
 * adapter or checkpoint file that exists afterwards is byte-identical to the one a fault-free run writes.
 *
 * Cycles:
 *   train   load the golden llama_gqa → attach LoRA → load JSONL → 2 AdamW steps with a checkpoint after step 1
 *           → save the adapter;
 *   resume  load the model → load the golden LoRA adapter directory → resume from the train cycle's checkpoint
 *           → 1 step → save;
 *   text    load a tokenizer.json → tokenize a JSONL of text and prompt/completion records.
 * Plus write failure: an adapter save under RLIMIT_FSIZE (in a child process) fails with PC_ERR_IO and leaves
 * the previous adapter file intact and no temp file behind. */
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <omp.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "data/dataset.h"
#include "model/model.h"
#include "peft/method.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "train/trainer.h"

static char work[] = "/tmp/peftc_alloc_sweep_XXXXXX";
static char model_dir[1024], data_path[1024], golden_adapter[1024];

/* ---- files ------------------------------------------------------------------------------------------- */

/* Names under dir (one level of subdirectories) that look like a temp file or a half-written checkpoint. */
static int find_partial(const char *dir, char *found, size_t cap, int depth) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (strstr(e->d_name, ".tmp")) {
            if (!n++) snprintf(found, cap, "%s", path);
        } else if (depth > 0 && pc_is_dir(path)) {
            char inner[2048] = "";
            int k = find_partial(path, inner, sizeof inner, depth - 1);
            if (k && !n) snprintf(found, cap, "%s", inner);
            n += k;
        }
    }
    closedir(d);
    return n;
}

/* Every file the cycle may leave must be absent or equal to the fault-free run's. */
static int outputs_consistent(const char *out, const char *ref, char *why, size_t cap) {
    static const char *files[] = {"adapter_model.safetensors", "adapter_config.json",
                                  "checkpoint-1/adapter_model.safetensors", "checkpoint-1/adapter_config.json",
                                  "checkpoint-1/trainer_state.bin", NULL};
    char partial[2048] = "";
    if (find_partial(out, partial, sizeof partial, 1)) {
        snprintf(why, cap, "temp file left behind: %s", partial);
        return 0;
    }
    for (int i = 0; files[i]; i++) {
        char a[2048], b[2048];
        snprintf(a, sizeof a, "%s/%s", out, files[i]);
        snprintf(b, sizeof b, "%s/%s", ref, files[i]);
        if (pc_path_exists(a) && !test_files_equal(a, b)) {
            snprintf(why, cap, "%s differs from the fault-free run's", files[i]);
            return 0;
        }
    }
    char ckpt[2048], state[2048];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint-1", out);
    snprintf(state, sizeof state, "%s/trainer_state.bin", ckpt);
    if (pc_path_exists(ckpt) && !pc_path_exists(state)) {
        snprintf(why, cap, "checkpoint-1 exists without its trainer_state.bin");
        return 0;
    }
    return 1;
}

/* ---- cycles ------------------------------------------------------------------------------------------ */

typedef struct cycle {
    const char *name;
    const char *out;   /* output directory (NULL: the cycle writes nothing) */
    const char *ref;   /* the fault-free run's output directory to compare with */
    int fresh_out;     /* remove out before each run */
    cJSON *lora_opts;  /* the caller's options, built once outside the sweep */
    const char *tok_path, *text_data;
} cycle;

static void train_options(pc_train_options *o, const char *out, long steps, int resume) {
    memset(o, 0, sizeof *o);
    o->optim.kind = PC_OPTIM_ADAMW;
    o->optim.lr = 1e-2;
    o->optim.beta1 = 0.9;
    o->optim.beta2 = 0.999;
    o->optim.eps = 1e-8;
    o->optim.max_grad_norm = 1.0;
    o->optim.schedule = PC_SCHEDULE_LINEAR;
    o->optim.total_steps = steps;
    o->steps = steps;
    o->grad_accum = 1;
    o->batch = 2;
    o->seq_len = 16;
    o->shuffle = 1;
    o->seed = 5;
    o->log_every = 1;
    o->save_every = 1;
    o->out_dir = out;
    o->resume = resume;
}

static pc_status cycle_train(const cycle *c, pc_error *err) {
    pc_model *model = NULL;
    pc_method *lora = NULL;
    pc_dataset ds = {0};
    pc_rng rng;
    pc_rng_seed(&rng, 5);
    pc_train_options o;
    train_options(&o, c->out, 2, 0);
    pc_train_result res;
    pc_status st = pc_model_load(&model, model_dir, PC_BASE_AUTO, err);
    if (st == PC_OK) st = pc_method_create(&lora, pc_method_find("lora"), model, c->lora_opts, &rng, err);
    pc_data_options dopt = {.seq_len = 16, .add_special = 1, .vocab_size = st == PC_OK ? model->cfg.vocab_size : 0};
    if (st == PC_OK) st = pc_dataset_load(&ds, data_path, NULL, &dopt, err);
    if (st == PC_OK) st = pc_train(model, &lora, 1, &ds, NULL, &o, NULL, NULL, &res, err);
    pc_dataset_free(&ds);
    pc_method_free(lora);
    pc_model_free(model);
    return st;
}

static pc_status cycle_resume(const cycle *c, pc_error *err) {
    pc_model *model = NULL;
    pc_method *lora = NULL;
    pc_dataset ds = {0};
    pc_train_options o;
    train_options(&o, c->out, 2, 1);
    pc_train_result res;
    pc_status st = pc_model_load(&model, model_dir, PC_BASE_AUTO, err);
    if (st == PC_OK) st = pc_method_load(&lora, model, golden_adapter, err);
    pc_data_options dopt = {.seq_len = 16, .add_special = 1, .vocab_size = st == PC_OK ? model->cfg.vocab_size : 0};
    if (st == PC_OK) st = pc_dataset_load(&ds, data_path, NULL, &dopt, err);
    if (st == PC_OK) st = pc_train(model, &lora, 1, &ds, NULL, &o, NULL, NULL, &res, err);
    if (st == PC_OK && res.resumed_from != 1) st = pc_fail(err, PC_ERR_INTERNAL, "resumed from %ld, want 1", res.resumed_from);
    pc_dataset_free(&ds);
    pc_method_free(lora);
    pc_model_free(model);
    return st;
}

static pc_status cycle_text(const cycle *c, pc_error *err) {
    pc_tokenizer *tk = NULL;
    pc_dataset ds = {0};
    pc_data_options dopt = {.seq_len = 32, .add_special = 1, .vocab_size = 128};
    pc_status st = pc_tokenizer_load(&tk, c->tok_path, err);
    if (st == PC_OK) st = pc_dataset_load(&ds, c->text_data, tk, &dopt, err);
    pc_dataset_free(&ds);
    pc_tokenizer_free(tk);
    return st;
}

typedef pc_status (*cycle_fn)(const cycle *c, pc_error *err);

/* Run fn with the Nth allocation failing for N = 0, 1, ... until the failure no longer happens: persistent
 * (every allocation from the Nth on fails) or transient (only the Nth; the cycle may then succeed, and its
 * files must be the fault-free run's: a failure shrugged off must not change what is written). */
static void sweep(const cycle *c, cycle_fn fn, int transient) {
    long bad_status = 0, bad_files = 0, n;
    char first_bad[1200] = "";
    const long limit = 200000;
    int fired = 1;
    for (n = 0; n < limit && fired; n++) {
        if (c->out && c->fresh_out) pc_remove_tree(c->out);
        pc_error err = {0};
        if (transient) pc_alloc_fail_once(n);
        else pc_alloc_fail_after(n);
        pc_status st = fn(c, &err);
        fired = pc_alloc_count() > n;
        pc_alloc_fail_after(-1);
        char why[1100] = "";
        if (st != PC_OK && st != PC_ERR_NOMEM) {
            if (!bad_status++) snprintf(first_bad, sizeof first_bad, "N=%ld: status '%s': %s", n, pc_status_name(st), err.msg);
        } else if (st == PC_ERR_NOMEM && !err.msg[0]) {
            if (!bad_status++) snprintf(first_bad, sizeof first_bad, "N=%ld: out of memory without a message", n);
        } else if (c->out && !outputs_consistent(c->out, c->ref, why, sizeof why)) {
            if (!bad_files++) snprintf(first_bad, sizeof first_bad, "N=%ld: %s", n, why);
        } else if (!fired && st != PC_OK) {
            if (!bad_status++) snprintf(first_bad, sizeof first_bad, "N=%ld: no allocation failed, yet: %s", n, err.msg);
        }
    }
    n--; /* the last run had no failure */
    printf("%s (%s): %ld allocation failure points, every one clean: %s\n", c->name,
           transient ? "transient" : "persistent", n, bad_status || bad_files ? "no" : "yes");
    CHECK(!fired, "%s: still failing after %ld allocation failure points", c->name, limit);
    CHECK(n > 10, "%s: only %ld allocations: is the fault hook wired in?", c->name, n);
    CHECK(bad_status == 0, "%s: %ld failure points ended in another status or no message; first: %s", c->name,
          bad_status, first_bad);
    CHECK(bad_files == 0, "%s: %ld failure points left inconsistent files; first: %s", c->name, bad_files, first_bad);
}

/* ---- write failure ----------------------------------------------------------------------------------- */

/* In a child: save an adapter into dir under RLIMIT_FSIZE = limit bytes. Exit 0 if the save failed with
 * PC_ERR_IO naming the file, 1 if it succeeded, 2 on another failure. SIGXFSZ is ignored so the write returns
 * EFBIG, as a full disk returns ENOSPC. */
static int save_under_limit(pc_method *m, const char *dir, rlim_t limit) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {limit, limit};
        setrlimit(RLIMIT_FSIZE, &rl);
        pc_error err = {0};
        pc_status st = pc_method_save(m, dir, &err);
        if (st == PC_OK) _exit(1);
        _exit(st == PC_ERR_IO && strstr(err.msg, dir) ? 0 : 2);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static void write_failure(const cycle *c) {
    pc_error err = {0};
    pc_model *model = NULL;
    pc_method *lora = NULL;
    pc_rng rng;
    pc_rng_seed(&rng, 9);
    pc_status st = pc_model_load(&model, model_dir, PC_BASE_AUTO, &err);
    if (st == PC_OK) st = pc_method_create(&lora, pc_method_find("lora"), model, c->lora_opts, &rng, &err);
    CHECK(st == PC_OK, "write failure: setup: %s", err.msg);
    if (st != PC_OK) {
        pc_model_free(model);
        return;
    }
    char dir[1200], file[1300], keep[1300], partial[2048] = "";
    snprintf(dir, sizeof dir, "%s/fsize", work);
    snprintf(file, sizeof file, "%s/adapter_model.safetensors", dir);
    snprintf(keep, sizeof keep, "%s/previous.safetensors", work);
    /* A complete earlier adapter in place: a failed save must leave it as it was. */
    st = pc_method_save(lora, dir, &err);
    CHECK(st == PC_OK, "write failure: first save: %s", err.msg);
    pc_copy_file_atomic(file, keep, &err);
    for (int i = 0; i < lora->params.n_views; i++) pc_params_data(&lora->params, i)[0] += 1.0f; /* new values */
    /* Limits below, inside and just short of the ~6 KB file (header, tensor data, the final bytes). */
    static const rlim_t limits[] = {0, 100, 1000, 4000, 6000};
    for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
        int rc = save_under_limit(lora, dir, limits[k]);
        CHECK(rc == 0, "write failure: limit %lu bytes: child result %d (0 = clean PC_ERR_IO naming the file)",
              (unsigned long)limits[k], rc);
        CHECK(test_files_equal(file, keep), "write failure: limit %lu bytes: the previous adapter file changed",
              (unsigned long)limits[k]);
        CHECK(!find_partial(dir, partial, sizeof partial, 0), "write failure: limit %lu bytes: left %s",
              (unsigned long)limits[k], partial);
    }
    /* Without a limit the same save succeeds (the failures above were the limit's). */
    CHECK(save_under_limit(lora, dir, RLIM_INFINITY) == 1, "write failure: unlimited save should succeed");
    CHECK(!test_files_equal(file, keep), "write failure: the unlimited save should have replaced the file");
    pc_method_free(lora);
    pc_model_free(model);
}

/* ---- main -------------------------------------------------------------------------------------------- */

static const char *TOKENIZER_JSON =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":0,\"content\":\"<s>\",\"special\":true},"
    "{\"id\":1,\"content\":\"</s>\",\"special\":true}],\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
    "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
    "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,"
    "\"vocab\":{\"<s>\":0,\"</s>\":1,\"a\":2,\"b\":3,\"c\":4,\"\\u0120\":5,\"ab\":6,\"\\u0120a\":7},"
    "\"merges\":[\"a b\",\"\\u0120 a\"]}}";
static const char *TEXT_JSONL = "{\"text\": \"ab a c\"}\n{\"prompt\": \"ab\", \"completion\": \" a c\"}\n"
                                "{\"text\": \"cab ab\"}\n";

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

int main(void) {
    omp_set_num_threads(1); /* tiny model; and allocations must not race with the fault countdown */
    if (!mkdtemp(work)) test_fail_setup("mkdtemp failed");
    snprintf(model_dir, sizeof model_dir, "%s/tests/golden/data/llama_gqa/model", test_source_dir());
    snprintf(data_path, sizeof data_path, "%s/tests/golden/data/lora_llama/data.jsonl", test_source_dir());
    snprintf(golden_adapter, sizeof golden_adapter, "%s/tests/golden/data/lora_llama/adapter", test_source_dir());
    if (!pc_path_exists(model_dir) || !pc_path_exists(data_path) || !pc_path_exists(golden_adapter))
        test_fail_setup("golden data missing under %s/tests/golden/data", test_source_dir());

    cJSON *opts = cJSON_Parse("{\"r\": 4, \"lora_alpha\": 8, \"lora_dropout\": 0.0, "
                              "\"target_modules\": [\"q_proj\", \"v_proj\"]}");
    char ref[1200], out[1200], tok[1200], text[1200];
    snprintf(ref, sizeof ref, "%s/ref", work);
    snprintf(out, sizeof out, "%s/out", work);
    snprintf(tok, sizeof tok, "%s/tokenizer.json", work);
    snprintf(text, sizeof text, "%s/text.jsonl", work);
    write_text(tok, TOKENIZER_JSON);
    write_text(text, TEXT_JSONL);

    /* The fault-free reference run (its checkpoint-1 also seeds the resume cycle). */
    cycle train = {"train", ref, ref, 0, opts, NULL, NULL};
    pc_error err = {0};
    pc_status st = cycle_train(&train, &err);
    CHECK(st == PC_OK, "fault-free train cycle: %s", err.msg);
    if (st == PC_OK) {
        train.out = out;
        train.fresh_out = 1;
        sweep(&train, cycle_train, 0);
        sweep(&train, cycle_train, 1);

        /* Resume: the output directory holds the reference's checkpoint-1; only the final adapter is written. */
        char resume_dir[1200], resume_ref[1200], ck_src[1300], ck_dst[1300];
        snprintf(resume_dir, sizeof resume_dir, "%s/resume", work);
        snprintf(resume_ref, sizeof resume_ref, "%s/resume_ref", work);
        static const char *names[] = {"adapter_model.safetensors", "adapter_config.json", "trainer_state.bin", NULL};
        for (int d = 0; d < 2; d++) {
            const char *dst = d ? resume_ref : resume_dir;
            for (int i = 0; names[i]; i++) {
                snprintf(ck_src, sizeof ck_src, "%s/checkpoint-1/%s", ref, names[i]);
                snprintf(ck_dst, sizeof ck_dst, "%s/checkpoint-1", dst);
                pc_mkdir_p(ck_dst, &err);
                snprintf(ck_dst, sizeof ck_dst, "%s/checkpoint-1/%s", dst, names[i]);
                pc_copy_file_atomic(ck_src, ck_dst, &err);
            }
        }
        cycle resume = {"resume", resume_ref, resume_ref, 0, opts, NULL, NULL};
        st = cycle_resume(&resume, &err);
        CHECK(st == PC_OK, "fault-free resume cycle: %s", err.msg);
        /* Resuming restores the same parameters the train cycle had after step 1: same final adapter. */
        char a[1300], b[1300];
        snprintf(a, sizeof a, "%s/adapter_model.safetensors", resume_ref);
        snprintf(b, sizeof b, "%s/adapter_model.safetensors", ref);
        CHECK(test_files_equal(a, b), "resume from checkpoint-1 should end with the uninterrupted run's adapter");
        if (st == PC_OK) {
            resume.out = resume_dir;
            {
                sweep(&resume, cycle_resume, 0);
                sweep(&resume, cycle_resume, 1);
            }
        }
    }

    cycle textc = {"text", NULL, NULL, 0, NULL, tok, text};
    st = cycle_text(&textc, &err);
    CHECK(st == PC_OK, "fault-free text cycle: %s", err.msg);
    if (st == PC_OK) {
        sweep(&textc, cycle_text, 0);
        sweep(&textc, cycle_text, 1);
    }

    write_failure(&train);
    cJSON_Delete(opts);
    pc_remove_tree(work);
    return test_finish();
}
