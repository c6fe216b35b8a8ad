#include "eval/evaluate.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"

static int record_len(const pc_example *e, int seq_len) { return seq_len > 0 && e->n > seq_len ? seq_len : e->n; }

pc_status pc_evaluate(pc_model *m, const pc_dataset *ds, int batch, int seq_len, int32_t pad_id, pc_eval_result *res,
                      pc_error *err) {
    memset(res, 0, sizeof *res);
    if (batch <= 0) return pc_fail(err, PC_ERR_USAGE, "eval batch must be positive");
    int limit = m->cfg.max_positions - (pc_model_total_len(m, 0));
    if (seq_len <= 0 || seq_len > limit) seq_len = limit;
    int T = 1;
    for (long i = 0; i < ds->count; i++) {
        int n = record_len(&ds->examples[i], seq_len);
        if (n > T) T = n;
    }
    size_t cells = (size_t)batch * (size_t)T;
    int32_t *ids = pc_malloc(cells * sizeof(int32_t)), *labels = pc_malloc(cells * sizeof(int32_t));
    if (!ids || !labels) {
        pc_free(ids);
        pc_free(labels);
        return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    }
    double loss_sum = 0.0;
    long targets = 0;
    pc_status st = PC_OK;
    for (long first = 0; first < ds->count && st == PC_OK; first += batch) {
        int B = (int)(ds->count - first < batch ? ds->count - first : batch), Tb = 1;
        for (int r = 0; r < B; r++) {
            int n = record_len(&ds->examples[first + r], seq_len);
            if (n > Tb) Tb = n;
        }
        for (int r = 0; r < B; r++) {
            const pc_example *e = &ds->examples[first + r];
            int n = record_len(e, seq_len);
            for (int t = 0; t < Tb; t++) {
                ids[(size_t)r * Tb + t] = t < n ? e->ids[t] : pad_id;
                labels[(size_t)r * Tb + t] = t < n ? e->labels[t] : PC_IGNORE_INDEX;
            }
        }
        pc_model_batch b = {.B = B, .T = Tb, .ids = ids, .labels = labels};
        pc_forward_result fr;
        st = pc_model_forward(m, &b, &fr, err);
        if (st != PC_OK) pc_error_prefix(err, "%s: records %ld-%ld: ", ds->path ? ds->path : "data", first + 1, first + B);
        loss_sum += fr.loss_sum;
        targets += fr.n_targets;
    }
    pc_free(ids);
    pc_free(labels);
    if (st != PC_OK) return st;
    if (targets == 0) return pc_fail(err, PC_ERR_USAGE, "%s: no target tokens to evaluate", ds->path ? ds->path : "data");
    res->tokens = targets;
    res->loss = loss_sum / (double)targets;
    res->perplexity = exp(res->loss);
    return PC_OK;
}
