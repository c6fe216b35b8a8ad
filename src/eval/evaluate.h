/* Held-out loss: the mean natural-log cross-entropy over every target token of a dataset, in file order,
 * each record once. */
#ifndef PC_EVAL_EVALUATE_H
#define PC_EVAL_EVALUATE_H

#include "data/dataset.h"
#include "model/model.h"

typedef struct pc_eval_result {
    double loss, perplexity;
    long tokens;
} pc_eval_result;

/* Batches of `batch` records, each cut to seq_len tokens (0 = as long as the model allows), right-padded. */
pc_status pc_evaluate(pc_model *m, const pc_dataset *ds, int batch, int seq_len, int32_t pad_id, pc_eval_result *res,
                      pc_error *err);

#endif
