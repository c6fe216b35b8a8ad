/* LoRA against PyTorch: for every LoRA golden written by tests/golden/gen_goldens.py (llama q/v, all seven
 * projections with rank_pattern/alpha_pattern, rsLoRA on a tied llama, DoRA, qwen2 with biases, gpt2 Conv1D
 * with and without DoRA), a PEFT adapter directory loaded onto the base must give PyTorch's loss within 1e-5
 * relative, PyTorch's gradient of every adapter tensor (per-tensor metric of tests/golden/README.md), and
 * after one plain SGD step p − lr·g PyTorch's updated tensor within 1e-4 relative. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "peft/method.h"
#include "test_support.h"

static const float *golden(const pc_safetensors *g, const char *name, long *count) {
    const pc_st_entry *e = pc_safetensors_find(g, name);
    if (!e || e->dtype != PC_F32) return NULL;
    if (count) *count = (long)(e->nbytes / 4);
    return e->data;
}

static float max_abs(const float *x, long n) {
    float m = 0;
    for (long i = 0; i < n; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

/* Gradients, and the SGD step built from them, for every tensor of the adapter. */
static void check_gradients(const char *name, const pc_method *lora, const pc_safetensors *g, float lr) {
    int checked = 0;
    for (int i = 0; i < lora->params.n_views; i++) {
        const pc_param_view *v = &lora->params.views[i];
        char key[256];
        long n = 0, n_sgd = 0;
        snprintf(key, sizeof key, "grad.%s", v->name);
        const float *want_grad = golden(g, key, &n);
        snprintf(key, sizeof key, "sgd.%s", v->name);
        const float *want_sgd = golden(g, key, &n_sgd);
        CHECK(want_grad && want_sgd && n == (long)v->count && n_sgd == n, "%s: golden has grad/sgd of %s (%ld values)",
              name, v->name, n);
        if (!want_grad || !want_sgd || n != (long)v->count || n_sgd != n) continue;
        const float *grad = pc_params_grad(&lora->params, i), *p = pc_params_data(&lora->params, i);
        char what[300];
        snprintf(what, sizeof what, "%s: grad %s", name, v->name);
        expect_close(what, grad, want_grad, n, 1e-4, 1e-4 * max_abs(want_grad, n));
        float *stepped = pc_malloc(sizeof(float) * (size_t)n);
        for (long k = 0; k < n; k++) stepped[k] = p[k] - lr * grad[k];
        double rel = max_rel_err(stepped, want_sgd, n);
        CHECK(rel <= 1e-4, "%s: sgd %s relative error %.3g", name, v->name, rel);
        /* The step must be visible at this tolerance, or the comparison proves nothing about the gradient. */
        double moved = max_rel_err(p, want_sgd, n);
        CHECK(moved > 1e-3, "%s: %s moved by only %.3g", name, v->name, moved);
        pc_free(stepped);
        checked++;
    }
    int golden_grads = 0;
    for (int i = 0; i < g->count; i++) golden_grads += strncmp(g->entries[i].name, "grad.", 5) == 0;
    CHECK(checked == golden_grads && checked > 0, "%s: checked %d tensors, golden has %d", name, checked, golden_grads);
}

static void check_case(const char *name, int n_tensors_expected) {
    char dir[4096], path[4096];
    snprintf(dir, sizeof dir, "%s/tests/golden/data/%s", test_source_dir(), name);
    pc_error err = {0};
    cJSON *cs = NULL;
    const char *base = NULL;
    snprintf(path, sizeof path, "%s/case.json", dir);
    if (pc_json_load(&cs, path, &err) != PC_OK || pc_json_string(cs, "base", 1, &base, path, &err) != PC_OK) {
        test_fail_setup("%s", err.msg);
        cJSON_Delete(cs);
        return;
    }
    char model_dir[4096], adapter_dir[4096];
    snprintf(model_dir, sizeof model_dir, "%s/tests/golden/data/%s/model", test_source_dir(), base);
    snprintf(adapter_dir, sizeof adapter_dir, "%s/adapter", dir);
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    cJSON_Delete(cs);
    pc_safetensors g;
    if (pc_safetensors_open(&g, path, &err) != PC_OK) {
        test_fail_setup("%s", err.msg);
        return;
    }
    pc_model *m = NULL;
    pc_method *lora = NULL;
    if (pc_model_load(&m, model_dir, PC_BASE_F32, &err) != PC_OK || pc_method_load(&lora, m, adapter_dir, &err) != PC_OK) {
        test_fail_setup("%s: %s", name, err.msg);
        pc_model_free(m);
        pc_safetensors_close(&g);
        return;
    }
    CHECK(lora->params.n_views == n_tensors_expected, "%s: %d adapter tensors, want %d", name, lora->params.n_views,
          n_tensors_expected);
    const pc_st_entry *ids = pc_safetensors_find(&g, "input_ids"), *labels = pc_safetensors_find(&g, "labels");
    pc_model_batch b = {.B = (int)ids->shape[0], .T = (int)ids->shape[1], .ids = ids->data, .labels = labels->data};
    CHECK(pc_method_plan(lora, b.B, b.T, &err) == PC_OK, "%s: plan: %s", name, err.msg);
    pc_forward_result res;
    CHECK(pc_model_forward(m, &b, &res, &err) == PC_OK, "%s: forward: %s", name, err.msg);
    const float *want_loss = golden(&g, "loss", NULL), *lr = golden(&g, "lr", NULL);
    float loss = (float)(res.loss_sum / (double)res.n_targets);
    CHECK(want_loss && fabsf(loss - want_loss[0]) <= 1e-5f * fabsf(want_loss[0]), "%s: loss %.9g want %.9g", name, loss,
          want_loss ? want_loss[0] : NAN);
    pc_rng rng;
    pc_rng_seed(&rng, 7);
    pc_forward_result res_train;
    CHECK(pc_model_forward_backward(m, &b, 1.0f / (float)res.n_targets, &rng, &res_train, &err) == PC_OK,
          "%s: backward: %s", name, err.msg);
    /* Training mode with dropout 0 must be the same function. */
    CHECK(res_train.loss_sum == res.loss_sum && res_train.n_targets == res.n_targets, "%s: train loss %.9g eval %.9g",
          name, res_train.loss_sum, res.loss_sum);
    if (lr) check_gradients(name, lora, &g, lr[0]);
    else CHECK(0, "%s: golden has no lr", name);
    pc_method_free(lora);
    pc_model_free(m);
    pc_safetensors_close(&g);
}

int main(void) {
    check_case("lora_llama", 2 * 2 * 2);          /* 2 layers × q,v × A,B */
    check_case("lora_llama_all", 2 * 7 * 2);      /* every projection; rank/alpha patterns */
    check_case("lora_llama_rslora", 2 * 4 * 2);   /* tied llama, q,k,v,o */
    check_case("lora_llama_dora", 2 * 3 * 3);     /* q,v,down × A,B,magnitude */
    check_case("lora_qwen2", 2 * 4 * 2);
    check_case("lora_gpt2", 2 * 3 * 2);           /* c_attn, attn.c_proj, mlp.c_proj */
    check_case("lora_gpt2_dora", 2 * 3 * 3);
    return test_finish();
}
