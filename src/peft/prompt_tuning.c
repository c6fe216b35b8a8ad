/* Prompt tuning (Lester et al.) at the INPUT site, with Hugging Face PEFT's PROMPT_TUNING semantics and file.
 *
 *   embeddings' = [P ; E(ids)]      P = prompt_embeddings [n_virtual, C], the same rows for every sequence
 *
 * The model puts the virtual rows in front of each sequence, numbers their positions 0…n−1 and gives them
 * −100 labels (the last virtual position predicts the first real token, as in PEFT). The hook only copies P
 * into those rows on the way forward and sums their gradient over the batch on the way back.
 *
 * Initialisation (PEFT's prompt_tuning_init): RANDOM = N(0, 1) like torch.nn.Embedding; SAMPLE_VOCAB = rows
 * of the token embedding at uniformly drawn ids; TEXT = the embeddings of the tokenised init text, repeated
 * or cut to n_virtual rows. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "io/json.h"
#include "peft/method.h"
#include "tokenizer/tokenizer.h"

typedef enum prompt_init { PROMPT_INIT_RANDOM, PROMPT_INIT_VOCAB, PROMPT_INIT_TEXT } prompt_init;

typedef struct prompt_state {
    int n_virtual, C;
    int table;             /* parameter index of prompt_embeddings */
    prompt_init init;
    char *init_text;       /* TEXT only (pc_malloc'd copy) */
    char *tokenizer_path;  /* NULL: the model directory */
} prompt_state;

static const char *init_name(prompt_init i) {
    return i == PROMPT_INIT_TEXT ? "TEXT" : i == PROMPT_INIT_VOCAB ? "SAMPLE_VOCAB" : "RANDOM";
}

static char *copy_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *c = pc_malloc(n);
    if (c) memcpy(c, s, n);
    return c;
}

/* Two spellings: PEFT's (prompt_tuning_init + prompt_tuning_init_text, as in adapter_config.json) and the
 * CLI's --prompt-init random|vocab|text:"..." (key prompt_init). The CLI's wins when both are given. */
static pc_status parse_init(prompt_state *s, const cJSON *opt, pc_error *err) {
    const char *text = pc_opt_string(opt, "prompt_tuning_init_text", NULL);
    const char *peft = pc_opt_string(opt, "prompt_tuning_init", "RANDOM");
    const char *cli = pc_opt_string(opt, "prompt_init", NULL);
    if (cli) {
        if (!strcasecmp(cli, "random")) peft = "RANDOM";
        else if (!strcasecmp(cli, "vocab")) peft = "SAMPLE_VOCAB";
        else if (!strncasecmp(cli, "text:", 5)) peft = "TEXT", text = cli + 5;
        else if (!strcasecmp(cli, "text")) peft = "TEXT";
        else return pc_fail(err, PC_ERR_USAGE, "prompt-tuning: --prompt-init '%s' is not random, vocab or text:\"...\"", cli);
    }
    if (!strcasecmp(peft, "RANDOM")) s->init = PROMPT_INIT_RANDOM;
    else if (!strcasecmp(peft, "SAMPLE_VOCAB")) s->init = PROMPT_INIT_VOCAB;
    else if (!strcasecmp(peft, "TEXT")) s->init = PROMPT_INIT_TEXT;
    else return pc_fail(err, PC_ERR_USAGE, "prompt-tuning: prompt_tuning_init '%s' is not RANDOM, SAMPLE_VOCAB or TEXT", peft);
    if (s->init == PROMPT_INIT_TEXT) {
        if (!text || !text[0]) return pc_fail(err, PC_ERR_USAGE, "prompt-tuning: text initialisation needs a non-empty text");
        if (!(s->init_text = copy_string(text))) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    }
    const char *tok = pc_opt_string(opt, "tokenizer_name_or_path", NULL);
    if (tok && tok[0] && !(s->tokenizer_path = copy_string(tok))) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    return PC_OK;
}

static pc_status prompt_attach(pc_method *m, const cJSON *opt, pc_error *err) {
    prompt_state *s = pc_calloc(1, sizeof *s);
    if (!s) return pc_fail(err, PC_ERR_NOMEM, "out of memory");
    m->impl = s;
    s->C = m->model->cfg.hidden;
    s->n_virtual = (int)pc_opt_number(opt, "num_virtual_tokens", 20);
    if (s->n_virtual <= 0) return pc_fail(err, PC_ERR_USAGE, "prompt-tuning: num_virtual_tokens must be positive");
    if ((int)pc_opt_number(opt, "num_transformer_submodules", 1) != 1)
        return pc_fail(err, PC_ERR_UNSUPPORTED, "prompt-tuning: num_transformer_submodules must be 1 (causal LM)");
    int token_dim = (int)pc_opt_number(opt, "token_dim", s->C);
    if (token_dim != s->C)
        return pc_fail(err, PC_ERR_FORMAT, "prompt-tuning: token_dim %d does not match the model's hidden size %d", token_dim,
                       s->C);
    PC_TRY(parse_init(s, opt, err));
    int64_t shape[2] = {s->n_virtual, s->C};
    return pc_params_declare(&m->params, "prompt_embeddings", 2, shape, &s->table, err);
}

/* Row `id` of the token embedding, in fp32 whatever the base dtype. */
static void embedding_row(const pc_model *model, int id, float *dst) {
    const pc_tensor *E = &model->embed->t;
    size_t C = (size_t)model->cfg.hidden;
    pc_convert_to_f32(dst, (const char *)E->data + (size_t)id * C * pc_dtype_size(E->dtype), E->dtype, C);
}

static pc_status init_from_text(pc_method *m, float *P, pc_error *err) {
    prompt_state *s = m->impl;
    const char *path = s->tokenizer_path ? s->tokenizer_path : m->model->dir;
    if (!path) return pc_fail(err, PC_ERR_USAGE, "prompt-tuning: text initialisation needs a tokenizer (tokenizer_name_or_path)");
    pc_tokenizer *tk;
    pc_status st = pc_tokenizer_load(&tk, path, err);
    if (st != PC_OK) return pc_error_prefix(err, "prompt-tuning: text initialisation: ");
    int32_t *ids = NULL;
    size_t n = 0;
    /* PEFT calls tokenizer(text): special tokens (BOS) included. */
    st = pc_tokenizer_encode(tk, s->init_text, strlen(s->init_text), 1, &ids, &n, err);
    pc_tokenizer_free(tk);
    if (st != PC_OK) return pc_error_prefix(err, "prompt-tuning: text initialisation: ");
    if (n == 0) st = pc_fail(err, PC_ERR_USAGE, "prompt-tuning: the init text tokenises to nothing");
    for (size_t i = 0; i < n && st == PC_OK; i++)
        if (ids[i] < 0 || ids[i] >= m->model->cfg.vocab_size)
            st = pc_fail(err, PC_ERR_FORMAT, "prompt-tuning: init text token %d is outside the model's vocabulary (%d)", ids[i],
                         m->model->cfg.vocab_size);
    /* Repeated when shorter, cut when longer (PEFT). */
    for (int j = 0; j < s->n_virtual && st == PC_OK; j++) embedding_row(m->model, ids[(size_t)j % n], P + (size_t)j * s->C);
    pc_free(ids);
    return st;
}

static void prompt_forward(void *owner, pc_site *site);
static void prompt_backward(void *owner, pc_site *site);

static pc_status prompt_register(pc_method *m, pc_error *err) {
    prompt_state *s = m->impl;
    pc_hook h = {.owner = m, .state = s, .phases = PC_PHASE_POST, .forward = prompt_forward, .backward = prompt_backward,
                 .n_virtual = s->n_virtual};
    return pc_hook_add(&m->model->input_hooks, &h, err);
}

static pc_status prompt_init_and_hook(pc_method *m, pc_rng *rng, pc_error *err) {
    prompt_state *s = m->impl;
    float *P = pc_params_data(&m->params, s->table);
    long n = (long)s->n_virtual * s->C;
    if (s->init == PROMPT_INIT_RANDOM) {
        pc_rng_fill_normal(rng, P, n, 0.0f, 1.0f);
    } else if (s->init == PROMPT_INIT_VOCAB) {
        for (int j = 0; j < s->n_virtual; j++)
            embedding_row(m->model, (int)pc_rng_below(rng, (uint32_t)m->model->cfg.vocab_size), P + (size_t)j * s->C);
    } else {
        PC_TRY(init_from_text(m, P, err));
    }
    return prompt_register(m, err);
}

/* out [B,T,C]: rows virtual_offset … virtual_offset+n−1 of every sequence ← P [n,C]. */
static void prompt_forward(void *owner, pc_site *site) {
    pc_method *m = owner;
    const prompt_state *s = site->state;
    const float *P = pc_params_data(&m->params, s->table);
    size_t rowsz = sizeof(float) * (size_t)s->C;
    for (int b = 0; b < site->B; b++) {
        float *dst = site->out + ((size_t)b * (size_t)site->T + (size_t)site->virtual_offset) * (size_t)s->C;
        memcpy(dst, P, rowsz * (size_t)s->n_virtual);
    }
}

/* dP [n,C] += Σ_b d_out[b, virtual_offset + j, :]. */
static void prompt_backward(void *owner, pc_site *site) {
    pc_method *m = owner;
    const prompt_state *s = site->state;
    float *dP = pc_params_grad(&m->params, s->table);
    size_t n = (size_t)s->n_virtual * (size_t)s->C;
    for (int b = 0; b < site->B; b++) {
        const float *src = site->d_out + ((size_t)b * (size_t)site->T + (size_t)site->virtual_offset) * (size_t)s->C;
        for (size_t i = 0; i < n; i++) dP[i] += src[i];
    }
}

static pc_status prompt_config_json(const pc_method *m, cJSON *cfg, pc_error *err) {
    const prompt_state *s = m->impl;
    const pc_model_config *c = &m->model->cfg;
    int failed = 0;
    pc_json_put(cfg, "auto_mapping", cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "modules_to_save", cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "num_attention_heads", cJSON_CreateNumber(c->n_heads), &failed);
    pc_json_put(cfg, "num_layers", cJSON_CreateNumber(c->n_layers), &failed);
    pc_json_put(cfg, "num_transformer_submodules", cJSON_CreateNumber(1), &failed);
    pc_json_put(cfg, "num_virtual_tokens", cJSON_CreateNumber(s->n_virtual), &failed);
    pc_json_put(cfg, "prompt_tuning_init", cJSON_CreateString(init_name(s->init)), &failed);
    pc_json_put(cfg, "prompt_tuning_init_text", s->init_text ? cJSON_CreateString(s->init_text) : cJSON_CreateNull(),
                &failed);
    pc_json_put(cfg, "token_dim", cJSON_CreateNumber(s->C), &failed);
    pc_json_put(cfg, "tokenizer_kwargs", cJSON_CreateNull(), &failed);
    pc_json_put(cfg, "tokenizer_name_or_path",
                s->tokenizer_path ? cJSON_CreateString(s->tokenizer_path) : cJSON_CreateNull(), &failed);
    return pc_json_built(failed, "adapter_config.json", err);
}

static void prompt_destroy(pc_method *m) {
    prompt_state *s = m->impl;
    if (!s) return;
    pc_free(s->init_text);
    pc_free(s->tokenizer_path);
    pc_free(s);
    m->impl = NULL;
}

/* Prompt tuning has no per-step buffers; a plan entry still tells the model that its sequence length
 * changed, so an activation plan made before the virtual tokens existed is not reused. */
static pc_status prompt_plan(pc_method *m, int B, int T, pc_error *err) {
    (void)m, (void)B, (void)T, (void)err;
    return PC_OK;
}

const pc_method_ops pc_prompt_tuning_ops = {
    .name = "prompt-tuning",
    .peft_type = "PROMPT_TUNING",
    .attach = prompt_attach,
    .init = prompt_init_and_hook,
    .plan = prompt_plan,
    .after_load = prompt_register,
    .config_json = prompt_config_json,
    .destroy = prompt_destroy,
};
