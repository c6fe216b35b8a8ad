/* Merging LoRA into the base: for every LoRA golden the merged model gives the unmerged adapter's loss
 * (1e-5 relative); merged weights equal W + w·s·B·A computed here in double straight from the adapter file
 * with hand-derived scales (DoRA: rows rescaled to m/‖W+sBA‖); merge then unmerge restores the base (1e-6,
 * DoRA included); two adapters merge with weights.
 * `peftc merge` writes a model directory that loads back with the merged loss, in the base's dtype (BF16
 * too), with Conv1D weights back in [in, out], tokenizer files copied, and nothing left behind on failure. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "peft/lora_export.h"
#include "peft/method.h"
#include "test_support.h"

static char golden_dir[4096];

static const char *case_base(const char *name) {
    if (!strcmp(name, "lora_llama_rslora")) return "llama_tied";
    if (!strcmp(name, "lora_qwen2")) return "qwen2";
    if (!strncmp(name, "lora_gpt2", 9)) return "gpt2";
    return "llama_gqa";
}

/* The scale of one module, from tests/golden/README.md's case table (not from the code under test). */
static double hand_scale(const char *name, const char *module, int r) {
    double alpha = 8;
    if (!strcmp(name, "lora_llama_all") && !strcmp(module, "model.layers.1.self_attn.k_proj")) alpha = 24;
    return !strcmp(name, "lora_llama_rslora") ? alpha / sqrt((double)r) : alpha / r;
}

static void paths(const char *name, char *model, char *adapter) {
    snprintf(model, 4096, "%s/%s/model", golden_dir, case_base(name));
    snprintf(adapter, 4096, "%s/%s/adapter", golden_dir, name);
}

static const int32_t *golden_batch(pc_safetensors *g, const char *name, pc_model_batch *b) {
    char path[4200];
    pc_error err = {0};
    snprintf(path, sizeof path, "%s/%s/golden.safetensors", golden_dir, name);
    if (pc_safetensors_open(g, path, &err) != PC_OK) return NULL;
    const pc_st_entry *ids = pc_safetensors_find(g, "input_ids"), *labels = pc_safetensors_find(g, "labels");
    *b = (pc_model_batch){.B = (int)ids->shape[0], .T = (int)ids->shape[1], .ids = ids->data, .labels = labels->data};
    return ids->data;
}

static double eval_loss(pc_model *m, const pc_model_batch *b) {
    pc_forward_result r;
    pc_error err = {0};
    if (pc_model_forward(m, b, &r, &err) != PC_OK) {
        CHECK(0, "forward: %s", err.msg);
        return NAN;
    }
    return r.loss_sum / (double)r.n_targets;
}

/* expected[module] = W + Σ weight_k · s_k · B_k·A_k, for each adapter file, in double; compared with the
 * model's [out,in] weights. */
static void check_merged_weights(const char *what, pc_model *merged, pc_model *base, const char **cases,
                                 const float *weights, int n_cases) {
    int n_lin = pc_model_linear_count(merged), checked = 0;
    for (int li = 0; li < n_lin; li++) {
        pc_linear *lin = pc_model_linear_at(merged, li), *lin0 = pc_model_linear_at(base, li);
        size_t n = (size_t)lin->out * lin->in;
        double *want = pc_malloc(n * sizeof(double));
        const float *w0 = lin0->weight->t.data;
        for (size_t k = 0; k < n; k++) want[k] = w0[k];
        int touched = 0;
        for (int c = 0; c < n_cases; c++) {
            char model[4096], adapter[4096], file[4200], key[300];
            paths(cases[c], model, adapter);
            snprintf(file, sizeof file, "%s/adapter_model.safetensors", adapter);
            pc_safetensors st;
            pc_error err = {0};
            if (pc_safetensors_open(&st, file, &err) != PC_OK) {
                test_fail_setup("%s", err.msg);
                continue;
            }
            snprintf(key, sizeof key, "base_model.model.%s.lora_A.weight", lin->name);
            const pc_st_entry *A = pc_safetensors_find(&st, key);
            snprintf(key, sizeof key, "base_model.model.%s.lora_B.weight", lin->name);
            const pc_st_entry *B = pc_safetensors_find(&st, key);
            if (A && B) {
                int r = (int)A->shape[0];
                double s = weights[c] * hand_scale(cases[c], lin->name, r);
                const float *a = A->data, *bm = B->data;
                for (int o = 0; o < lin->out; o++)
                    for (int i = 0; i < lin->in; i++) {
                        double d = 0;
                        for (int k = 0; k < r; k++) d += (double)bm[o * r + k] * a[(size_t)k * lin->in + i];
                        want[(size_t)o * lin->in + i] += s * d;
                    }
                touched = 1;
                /* DoRA (single adapter, weight 1): each row becomes m/‖row‖ · row. */
                snprintf(key, sizeof key, "base_model.model.%s.lora_magnitude_vector", lin->name);
                const pc_st_entry *mag = pc_safetensors_find(&st, key);
                for (int o = 0; mag && o < lin->out; o++) {
                    double norm = 0;
                    for (int i = 0; i < lin->in; i++) norm += want[(size_t)o * lin->in + i] * want[(size_t)o * lin->in + i];
                    for (int i = 0; i < lin->in; i++) want[(size_t)o * lin->in + i] *= ((const float *)mag->data)[o] / sqrt(norm);
                }
            }
            pc_safetensors_close(&st);
        }
        float *wantf = pc_malloc(n * sizeof(float));
        for (size_t k = 0; k < n; k++) wantf[k] = (float)want[k];
        double rel = max_rel_err(lin->weight->t.data, wantf, (long)n);
        CHECK(rel <= 1e-6, "%s: %s merged weight relative error %.3g", what, lin->name, rel);
        checked += touched;
        pc_free(want);
        pc_free(wantf);
    }
    CHECK(checked > 0, "%s: some module was merged", what);
}

static void check_case(const char *name) {
    char model_dir[4096], adapter_dir[4096];
    paths(name, model_dir, adapter_dir);
    pc_safetensors g;
    pc_model_batch b;
    pc_error err = {0};
    pc_model *m = NULL, *base = NULL;
    pc_method *lora = NULL;
    if (!golden_batch(&g, name, &b) || pc_model_load(&m, model_dir, PC_BASE_F32, &err) != PC_OK ||
        pc_model_load(&base, model_dir, PC_BASE_F32, &err) != PC_OK || pc_method_load(&lora, m, adapter_dir, &err) != PC_OK ||
        pc_method_plan(lora, b.B, b.T, &err) != PC_OK) {
        test_fail_setup("%s: %s", name, err.msg);
        pc_model_free(m);
        pc_model_free(base);
        return;
    }
    double unmerged = eval_loss(m, &b);
    const float *want = pc_safetensors_find(&g, "loss")->data;
    CHECK(fabs(unmerged - want[0]) <= 1e-5 * fabs(want[0]), "%s: adapter loss %.9g want %.9g", name, unmerged, want[0]);
    CHECK(lora->ops->merge(lora, 1.0f, &err) == PC_OK, "%s: merge: %s", name, err.msg);
    {
        /* Unmerge restores the base (DoRA too: the row factors of the merge are kept); merge again. */
        CHECK(lora->ops->unmerge(lora, 1.0f, &err) == PC_OK, "%s: unmerge: %s", name, err.msg);
        for (int i = 0; i < m->n_params; i++) {
            long n = (long)pc_tensor_numel(&m->params[i].t);
            double rel = max_rel_err(m->params[i].t.data, base->params[i].t.data, n);
            CHECK(rel <= 1e-6, "%s: after unmerge %s differs from the base by %.3g", name, m->params[i].name, rel);
        }
        CHECK(lora->ops->merge(lora, 1.0f, &err) == PC_OK, "%s: merge again: %s", name, err.msg);
    }
    pc_method_free(lora); /* detach: the merged weights alone must carry the adapter */
    double merged = eval_loss(m, &b);
    CHECK(fabs(merged - unmerged) <= 1e-5 * fabs(unmerged), "%s: merged loss %.9g, unmerged %.9g", name, merged, unmerged);
    {
        const char *cases[1] = {name};
        float weights[1] = {1.0f};
        check_merged_weights(name, m, base, cases, weights, 1);
    }
    pc_model_free(m);
    pc_model_free(base);
    pc_safetensors_close(&g);
}

/* Two adapters on one base, weighted; and with weights 1, 1 the same loss as both attached unmerged. */
static void check_weighted_merge(void) {
    const char *cases[2] = {"lora_llama", "lora_llama_all"};
    float weights[2] = {0.7f, -0.4f};
    char model_dir[4096], a0[4096], a1[4096];
    paths(cases[0], model_dir, a0);
    paths(cases[1], model_dir, a1);
    pc_error err = {0};
    pc_model *m = NULL, *base = NULL;
    if (pc_model_load(&m, model_dir, PC_BASE_F32, &err) != PC_OK || pc_model_load(&base, model_dir, PC_BASE_F32, &err) != PC_OK) {
        test_fail_setup("%s", err.msg);
        pc_model_free(m);
        return;
    }
    CHECK(pc_adapter_merge_dir(m, a0, weights[0], &err) == PC_OK && pc_adapter_merge_dir(m, a1, weights[1], &err) == PC_OK,
          "weighted merge: %s", err.msg);
    check_merged_weights("weighted merge", m, base, cases, weights, 2);
    pc_model_free(m);

    pc_safetensors g;
    pc_model_batch b;
    pc_method *l0 = NULL, *l1 = NULL;
    if (!golden_batch(&g, cases[0], &b) || pc_method_load(&l0, base, a0, &err) != PC_OK ||
        pc_method_load(&l1, base, a1, &err) != PC_OK || pc_method_plan(l0, b.B, b.T, &err) != PC_OK ||
        pc_method_plan(l1, b.B, b.T, &err) != PC_OK) {
        test_fail_setup("two adapters: %s", err.msg);
    } else {
        double both = eval_loss(base, &b);
        CHECK(l0->ops->merge(l0, 1, &err) == PC_OK && l1->ops->merge(l1, 1, &err) == PC_OK, "merge both: %s", err.msg);
        pc_method_free(l0);
        pc_method_free(l1);
        l0 = l1 = NULL;
        double merged = eval_loss(base, &b);
        CHECK(fabs(merged - both) <= 1e-5 * fabs(both), "two adapters: merged %.9g, attached %.9g", merged, both);
        pc_safetensors_close(&g);
    }
    pc_method_free(l0);
    pc_method_free(l1);
    pc_model_free(base);
}

static int run(const char *fmt, const char *a, const char *b, const char *c, const char *d) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, fmt, test_peftc_bin(), a, b, c, d);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* The CLI writes a directory that loads back with the merged loss, in the base's dtype. */
static void check_cli_case(const char *tmp, const char *name, const char *model_sub, pc_dtype want_dtype, double tol) {
    char model_dir[4096], adapter_dir[4096], out[4200];
    paths(name, model_dir, adapter_dir);
    snprintf(model_dir, sizeof model_dir, "%s/%s/%s", golden_dir, case_base(name), model_sub);
    snprintf(out, sizeof out, "%s/merged_%s_%s", tmp, name, model_sub);
    int rc = run("%s merge --model %s --adapter %s --out %s%s 2>/dev/null", model_dir, adapter_dir, out, "");
    CHECK(rc == 0, "peftc merge %s exit %d", name, rc);
    pc_safetensors g, st;
    pc_model_batch b;
    pc_error err = {0};
    pc_model *m = NULL;
    char file[4300];
    snprintf(file, sizeof file, "%s/model.safetensors", out);
    if (!golden_batch(&g, name, &b) || pc_model_load(&m, out, PC_BASE_F32, &err) != PC_OK ||
        pc_safetensors_open(&st, file, &err) != PC_OK) {
        CHECK(0, "%s: merged directory does not load: %s", name, err.msg);
        pc_model_free(m);
        return;
    }
    double loss = eval_loss(m, &b);
    const float *want = pc_safetensors_find(&g, "loss")->data;
    CHECK(fabs(loss - want[0]) <= tol * fabs(want[0]), "%s (%s): merged directory loss %.9g want %.9g", name, model_sub,
          loss, want[0]);
    int same_dtype = 1;
    for (int i = 0; i < st.count; i++) same_dtype &= st.entries[i].dtype == want_dtype;
    CHECK(same_dtype, "%s: merged file is in the base's dtype %s", name, pc_dtype_name(want_dtype));
    if (!strcmp(name, "lora_gpt2")) {
        /* Conv1D on disk is [in, out]: the file holds W + (s·B·A)ᵀ. */
        const pc_st_entry *w = pc_safetensors_find(&st, "transformer.h.1.attn.c_attn.weight");
        CHECK(w && w->shape[0] == 48 && w->shape[1] == 144, "%s: c_attn stays [48,144]", name);
        snprintf(file, sizeof file, "%s/gpt2/model/model.safetensors", golden_dir);
        pc_safetensors base, ad;
        char afile[4300];
        snprintf(afile, sizeof afile, "%s/adapter_model.safetensors", adapter_dir);
        if (w && pc_safetensors_open(&base, file, &err) == PC_OK && pc_safetensors_open(&ad, afile, &err) == PC_OK) {
            const float *w0 = pc_safetensors_find(&base, "transformer.h.1.attn.c_attn.weight")->data;
            const float *A = pc_safetensors_find(&ad, "base_model.model.transformer.h.1.attn.c_attn.lora_A.weight")->data;
            const float *B = pc_safetensors_find(&ad, "base_model.model.transformer.h.1.attn.c_attn.lora_B.weight")->data;
            float *expect = pc_malloc(sizeof(float) * 48 * 144);
            for (int i = 0; i < 48; i++)
                for (int o = 0; o < 144; o++) {
                    double d = 0;
                    for (int k = 0; k < 4; k++) d += (double)B[o * 4 + k] * A[k * 48 + i];
                    expect[i * 144 + o] = (float)(w0[i * 144 + o] + 2.0 * d);
                }
            double rel = max_rel_err(w->data, expect, 48 * 144);
            CHECK(rel <= 1e-6, "%s: file c_attn = W + (sBA)ᵀ, relative error %.3g", name, rel);
            pc_free(expect);
            pc_safetensors_close(&base);
            pc_safetensors_close(&ad);
        }
    }
    pc_safetensors_close(&st);
    pc_safetensors_close(&g);
    pc_model_free(m);
}

static int count_entries(const char *dir) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

static void check_cli(const char *tmp) {
    check_cli_case(tmp, "lora_llama", "model", PC_F32, 1e-5);
    check_cli_case(tmp, "lora_gpt2", "model", PC_F32, 1e-5);
    check_cli_case(tmp, "lora_llama_dora", "model", PC_F32, 1e-5);
    /* A BF16 base gives a BF16 merged model: its loss is the adapter's up to BF16 rounding of the weights. */
    check_cli_case(tmp, "lora_llama", "model_bf16", PC_BF16, 2e-2);

    /* Tokenizer files are copied; two adapters with weights. */
    char base[4200], cmd[16384], out[4300], f[4400];
    snprintf(base, sizeof base, "%s/base_with_tokenizer", tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/llama_gqa/model/* %s/ && printf '{\"model\":{}}' > %s/tokenizer.json",
             base, golden_dir, base, base);
    CHECK(system(cmd) == 0, "prepare a base with a tokenizer");
    snprintf(out, sizeof out, "%s/two", tmp);
    char a0[4096], a1[4096], m0[4096];
    paths("lora_llama", m0, a0);
    paths("lora_llama_all", m0, a1);
    snprintf(cmd, sizeof cmd, "%s,%s", a0, a1);
    int rc = run("%s merge --model %s --adapter %s --weights 0.5,1.5 --out %s%s 2>/dev/null", base, cmd, out, "");
    CHECK(rc == 0, "merge two adapters: exit %d", rc);
    snprintf(f, sizeof f, "%s/tokenizer.json", out);
    CHECK(pc_path_exists(f), "tokenizer.json copied into the merged directory");
    pc_model *m = NULL, *b0 = NULL;
    pc_error err = {0};
    if (pc_model_load(&m, out, PC_BASE_F32, &err) == PC_OK && pc_model_load(&b0, base, PC_BASE_F32, &err) == PC_OK) {
        const char *cases[2] = {"lora_llama", "lora_llama_all"};
        float weights[2] = {0.5f, 1.5f};
        check_merged_weights("cli two adapters", m, b0, cases, weights, 2);
    } else {
        CHECK(0, "two-adapter merge loads: %s", err.msg);
    }
    pc_model_free(m);
    pc_model_free(b0);

    /* Failures: usage errors exit 2, work errors 1, and nothing is left in the output's directory. */
    int before = count_entries(tmp);
    snprintf(out, sizeof out, "%s/never", tmp);
    CHECK(run("%s merge --model %s --adapter %s --out %s%s 2>/dev/null", base, "/nonexistent/adapter", out, "") == 1,
          "missing adapter: exit 1");
    CHECK(run("%s merge --model %s --adapter %s,%s --weights 1 --out %s 2>/dev/null", base, a0, a1, out) == 2,
          "weights count mismatch: exit 2");
    CHECK(run("%s merge --model %s --adapter %s --weights 1,x --out %s 2>/dev/null", base, a0, out, "") == 2,
          "malformed --weights: exit 2");
    CHECK(run("%s merge --model %s --bogus %s%s%s 2>/dev/null", base, "", "", "") == 2, "unknown option: exit 2");
    char gpt2_adapter[4096], unused[4096];
    paths("lora_gpt2", unused, gpt2_adapter);
    CHECK(run("%s merge --model %s --adapter %s --out %s%s 2>/dev/null", base, gpt2_adapter, out, "") == 1,
          "adapter for another architecture: exit 1");
    CHECK(!pc_path_exists(out) && count_entries(tmp) == before, "failed merges leave nothing behind (%d entries, was %d)",
          count_entries(tmp), before);
    /* An existing non-empty --out is refused and left as it was. */
    snprintf(out, sizeof out, "%s/two", tmp);
    CHECK(run("%s merge --model %s --adapter %s --out %s%s 2>/dev/null", base, a0, out, "") != 0, "existing --out refused");
    snprintf(f, sizeof f, "%s/model.safetensors", out);
    CHECK(pc_path_exists(f) && count_entries(tmp) == before, "existing --out untouched");
}

/* Every allocation of writing a merged directory failing in turn: a clean error, nothing left behind. */
static void check_allocation_failures(const char *tmp) {
    char model_dir[4096], out[4200];
    snprintf(model_dir, sizeof model_dir, "%s/gpt2/model", golden_dir);
    snprintf(out, sizeof out, "%s/nomem", tmp);
    pc_error err = {0};
    pc_model *m = NULL;
    if (pc_model_load(&m, model_dir, PC_BASE_F32, &err) != PC_OK) {
        test_fail_setup("nomem: %s", err.msg);
        return;
    }
    int before = count_entries(tmp), failures = 0, clean = 1;
    for (long n = 0; n < 10000; n++) {
        pc_error e = {0};
        pc_alloc_fail_after(n);
        pc_status st = pc_merged_model_write(m, out, &e);
        pc_alloc_fail_after(-1);
        if (st == PC_OK) break;
        failures++;
        clean &= e.msg[0] != 0 && count_entries(tmp) == before;
    }
    CHECK(failures > 0 && clean, "merged write under %d allocation failures: clean errors, nothing left", failures);
    CHECK(pc_path_exists(out), "merged write succeeds once allocations do");
    pc_model_free(m);
}

int main(void) {
    snprintf(golden_dir, sizeof golden_dir, "%s/tests/golden/data", test_source_dir());
    check_case("lora_llama");
    check_case("lora_llama_all");
    check_case("lora_llama_rslora");
    check_case("lora_qwen2");
    check_case("lora_gpt2");
    check_case("lora_llama_dora");
    check_case("lora_gpt2_dora");
    check_weighted_merge();
    char tmp[] = "/tmp/peftc_lora_merge_XXXXXX";
    if (!mkdtemp(tmp)) {
        test_fail_setup("mkdtemp failed");
    } else {
        check_cli(tmp);
        check_allocation_failures(tmp);
        pc_remove_tree(tmp);
    }
    return test_finish();
}
