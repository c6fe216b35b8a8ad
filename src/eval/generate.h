/* Text generation: sample the next token from logits (greedy, temperature, top-k, top-p) and continue a
 * prompt with the model's key/value cache (model.h, decoding block), with any attached methods' hooks
 * running unmerged. */
#ifndef PC_EVAL_GENERATE_H
#define PC_EVAL_GENERATE_H

#include <stdint.h>

#include "core/rng.h"
#include "model/model.h"

/* Hugging Face's sampling warpers, applied in HF's order: temperature, then top-k, then top-p. */
typedef struct pc_sampling {
    float temperature; /* 0: greedy (argmax; the lowest id wins a tie) */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off; else keep the most likely tokens until their probability reaches top_p */
} pc_sampling;

/* The next token from logits [V]. scratch holds V floats and V ints (pc_sample_scratch_bytes); it is
 * overwritten. With temperature 0 the RNG is not used. */
size_t pc_sample_scratch_bytes(int V);
int32_t pc_sample_token(const float *logits, int V, const pc_sampling *s, pc_rng *rng, void *scratch);

/* The distribution pc_sample_token draws from: probs [V] (0 outside the kept set). For tests and for
 * callers that want probabilities. Same scratch contract. */
void pc_sample_probs(const float *logits, int V, const pc_sampling *s, float *probs, void *scratch);

typedef struct pc_generate_opts {
    int max_new_tokens;
    pc_sampling sampling;
    uint64_t seed;
    const int32_t *stop_ids; /* generation ends after producing any of these (the stop token is kept) */
    int n_stop_ids;
    /* Called with each new token as it is produced (may be NULL). */
    void (*on_token)(void *ctx, int32_t id);
    void *on_token_ctx;
} pc_generate_opts;

/* Continue prompt[n_prompt] by up to max_new_tokens tokens into out_ids (room for max_new_tokens); *n_out
 * receives how many. Methods attached to m act through their hooks, unmerged. Fails with a usage error when
 * prompt + max_new_tokens (+ virtual tokens and prefixes) do not fit the model's positions. */
pc_status pc_generate(pc_model *m, const int32_t *prompt, int n_prompt, const pc_generate_opts *opts, int32_t *out_ids,
                      int *n_out, pc_error *err);

#endif
