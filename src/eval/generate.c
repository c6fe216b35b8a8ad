/* Sampling and the generation loop. The warpers follow Hugging Face's LogitsWarpers, in its order:
 *   temperature  z = logits / T
 *   top-k        keep the tokens whose z is at least the k-th largest (ties with it are kept)
 *   top-p        in descending probability order, keep a token while the mass of the tokens before it is
 *                below top_p (the smallest set whose mass reaches top_p; at least one token)
 * then softmax over what is kept and one draw. Greedy (T = 0) is argmax. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "eval/generate.h"

typedef struct scored {
    float z;     /* tempered logit, then probability */
    int32_t id;
} scored;

size_t pc_sample_scratch_bytes(int V) { return sizeof(scored) * (size_t)(V > 0 ? V : 1); }

static int32_t argmax(const float *x, int V) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Descending score, ascending id among equals: a total order, so the result does not depend on qsort. */
static int by_score_desc(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    if (a->z != b->z) return a->z > b->z ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static int filters_active(const pc_sampling *s, int V) { return (s->top_k > 0 && s->top_k < V) || s->top_p < 1.0f; }

/* The kept candidates in sc[0 … count−1] with z turned into probabilities summing to 1. Sorted most likely
 * first when top-k or top-p is active (otherwise in id order: no sort needed to draw). */
static int kept_distribution(const float *logits, int V, const pc_sampling *s, scored *sc) {
    for (int i = 0; i < V; i++) {
        float z = logits[i] / s->temperature;
        sc[i].z = isnan(z) ? -INFINITY : z;
        sc[i].id = i;
    }
    int n = V;
    if (filters_active(s, V)) {
        qsort(sc, (size_t)V, sizeof *sc, by_score_desc);
        if (s->top_k > 0 && s->top_k < V) {
            n = s->top_k;
            while (n < V && sc[n].z == sc[s->top_k - 1].z) n++;
        }
    }
    float zmax = -INFINITY;
    for (int i = 0; i < n; i++) zmax = sc[i].z > zmax ? sc[i].z : zmax;
    double total = 0;
    for (int i = 0; i < n; i++) total += exp((double)sc[i].z - (double)zmax);
    for (int i = 0; i < n; i++) sc[i].z = (float)(exp((double)sc[i].z - (double)zmax) / total);
    if (s->top_p < 1.0f) {
        double before = 0;
        int keep = 0;
        while (keep < n && (keep == 0 || before < (double)s->top_p)) before += sc[keep++].z;
        double kept_mass = 0;
        for (int i = 0; i < keep; i++) kept_mass += sc[i].z;
        for (int i = 0; i < keep; i++) sc[i].z = (float)(sc[i].z / kept_mass);
        n = keep;
    }
    return n;
}

void pc_sample_probs(const float *logits, int V, const pc_sampling *s, float *probs, void *scratch) {
    memset(probs, 0, sizeof(float) * (size_t)V);
    if (!(s->temperature > 0)) {
        probs[argmax(logits, V)] = 1.0f;
        return;
    }
    scored *sc = scratch;
    int n = kept_distribution(logits, V, s, sc);
    for (int i = 0; i < n; i++) probs[sc[i].id] = sc[i].z;
}

int32_t pc_sample_token(const float *logits, int V, const pc_sampling *s, pc_rng *rng, void *scratch) {
    if (!(s->temperature > 0)) return argmax(logits, V);
    scored *sc = scratch;
    int n = kept_distribution(logits, V, s, sc);
    /* 53 random bits: even tokens of probability ~1e-9 in a large vocabulary are drawn at their rate. */
    double u = (double)(pc_rng_u64(rng) >> 11) * (1.0 / 9007199254740992.0), cum = 0;
    for (int i = 0; i < n; i++) {
        cum += sc[i].z;
        if (u < cum) return sc[i].id;
    }
    for (int i = n - 1; i > 0; i--) /* rounding left u just above the total: the last token with mass */
        if (sc[i].z > 0) return sc[i].id;
    return sc[0].id;
}

/* ---- the generation loop ---------------------------------------------------------------------------- */

static int is_stop(const pc_generate_opts *o, int32_t id) {
    for (int i = 0; i < o->n_stop_ids; i++)
        if (o->stop_ids[i] == id) return 1;
    return 0;
}

enum { PREFILL_CHUNK = 256 }; /* prompt rows per forward: bounds the scratch of long prompts */

pc_status pc_generate(pc_model *m, const int32_t *prompt, int n_prompt, const pc_generate_opts *o, int32_t *out_ids,
                      int *n_out, pc_error *err) {
    *n_out = 0;
    if (!prompt || n_prompt <= 0) return pc_fail(err, PC_ERR_USAGE, "generate: the prompt is empty");
    if (o->max_new_tokens < 0) return pc_fail(err, PC_ERR_USAGE, "generate: max_new_tokens must not be negative");
    if (o->max_new_tokens == 0) return PC_OK;
    const pc_sampling *s = &o->sampling;
    if (s->temperature < 0 || !(s->top_p > 0 && s->top_p <= 1) || s->top_k < 0)
        return pc_fail(err, PC_ERR_USAGE, "generate: need temperature >= 0, 0 < top_p <= 1, top_k >= 0");
    int chunk = n_prompt < PREFILL_CHUNK ? n_prompt : PREFILL_CHUNK;
    /* The last new token is returned, never fed back: the cache needs one row less. */
    long need = (long)n_prompt + o->max_new_tokens - 1;
    if (need > m->cfg.max_positions)
        return pc_fail(err, PC_ERR_USAGE, "generate: %d prompt tokens + %d new tokens exceed the model's %d positions",
                       n_prompt, o->max_new_tokens, m->cfg.max_positions);
    pc_kv_cache *cache = NULL;
    PC_TRY(pc_kv_cache_create(&cache, m, (int)need, chunk, err));
    int V = m->cfg.vocab_size;
    float *logits = pc_malloc(sizeof(float) * (size_t)V);
    void *scratch = pc_malloc(pc_sample_scratch_bytes(V));
    pc_status st = logits && scratch ? PC_OK : pc_fail(err, PC_ERR_NOMEM, "generate: out of memory");
    pc_rng rng;
    pc_rng_seed(&rng, o->seed);
    if (st == PC_OK) st = pc_model_prefill(m, cache, prompt, n_prompt, logits, err);
    while (st == PC_OK) {
        int32_t id = pc_sample_token(logits, V, s, &rng, scratch);
        out_ids[(*n_out)++] = id;
        if (o->on_token) o->on_token(o->on_token_ctx, id);
        if (is_stop(o, id) || *n_out == o->max_new_tokens) break;
        st = pc_model_decode_step(m, cache, id, logits, err);
    }
    pc_free(scratch);
    pc_free(logits);
    pc_kv_cache_free(cache);
    return st;
}
