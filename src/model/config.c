#include "model/config.h"

#include <string.h>

#include "core/fileio.h"
#include "io/json.h"

static pc_status read_int(const cJSON *root, const char *const *keys, int required, long *out, const char *file,
                          pc_error *err) {
    for (int i = 0; keys[i]; i++)
        if (cJSON_GetObjectItemCaseSensitive(root, keys[i])) return pc_json_int(root, keys[i], 1, out, file, err);
    if (required) return pc_fail(err, PC_ERR_FORMAT, "%s: missing field '%s'", file, keys[0]);
    return PC_OK;
}

static pc_status check_positive(long v, const char *what, const char *file, pc_error *err) {
    if (v <= 0 || v > (1L << 30)) return pc_fail(err, PC_ERR_FORMAT, "%s: '%s' = %ld is not a valid size", file, what, v);
    return PC_OK;
}

/* Options that would change the computation and that peftc does not implement: refuse, never ignore. */
static pc_status refuse_unsupported(const cJSON *root, const char *file, pc_error *err) {
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (scaling && !cJSON_IsNull(scaling))
        return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: 'rope_scaling' is not supported yet", file);
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "use_sliding_window");
    if (sw && cJSON_IsTrue(sw))
        return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: 'use_sliding_window' is not supported", file);
    const cJSON *window = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    const cJSON *qwen_type = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    int is_qwen = cJSON_IsString(qwen_type) && !strcmp(qwen_type->valuestring, "qwen2");
    if (!is_qwen && window && cJSON_IsNumber(window))
        return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: 'sliding_window' attention is not supported", file);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (!act) act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    if (act && cJSON_IsString(act)) {
        const char *a = act->valuestring;
        if (strcmp(a, "silu") && strcmp(a, "gelu_new") && strcmp(a, "gelu_pytorch_tanh"))
            return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: activation '%s' is not supported", file, a);
    }
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(root, "attention_bias");
    if (bias && cJSON_IsTrue(bias))
        return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: 'attention_bias' true is not supported for this architecture", file);
    const cJSON *mlp_bias = cJSON_GetObjectItemCaseSensitive(root, "mlp_bias");
    if (mlp_bias && cJSON_IsTrue(mlp_bias))
        return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: 'mlp_bias' true is not supported", file);
    return PC_OK;
}

static pc_status parse(pc_model_config *cfg, const cJSON *root, const char *file, pc_error *err) {
    const char *model_type = NULL;
    PC_TRY(pc_json_string(root, "model_type", 1, &model_type, file, err));
    cfg->arch = pc_arch_find(model_type);
    if (!cfg->arch)
        return pc_fail(err, PC_ERR_UNSUPPORTED, "%s: model_type '%s' is not supported (supported: %s)", file,
                       model_type, pc_arch_supported());
    PC_TRY(refuse_unsupported(root, file, err));

    static const char *k_vocab[] = {"vocab_size", NULL}, *k_hidden[] = {"hidden_size", "n_embd", NULL},
                      *k_layers[] = {"num_hidden_layers", "n_layer", NULL},
                      *k_heads[] = {"num_attention_heads", "n_head", NULL}, *k_kv[] = {"num_key_value_heads", NULL},
                      *k_inter[] = {"intermediate_size", "n_inner", NULL},
                      *k_pos[] = {"max_position_embeddings", "n_positions", "n_ctx", NULL},
                      *k_hd[] = {"head_dim", NULL}, *k_bos[] = {"bos_token_id", NULL}, *k_eos[] = {"eos_token_id", NULL};
    long vocab = 0, hidden = 0, layers = 0, heads = 0, kv = 0, inter = 0, maxpos = 2048, hd = 0, bos = -1, eos = -1;
    PC_TRY(read_int(root, k_vocab, 1, &vocab, file, err));
    PC_TRY(read_int(root, k_hidden, 1, &hidden, file, err));
    PC_TRY(read_int(root, k_layers, 1, &layers, file, err));
    PC_TRY(read_int(root, k_heads, 1, &heads, file, err));
    const cJSON *n_inner = cJSON_GetObjectItemCaseSensitive(root, "n_inner");
    if (!(n_inner && cJSON_IsNull(n_inner))) PC_TRY(read_int(root, k_inter, 0, &inter, file, err));
    PC_TRY(read_int(root, k_kv, 0, &kv, file, err));
    PC_TRY(read_int(root, k_pos, 0, &maxpos, file, err));
    PC_TRY(read_int(root, k_hd, 0, &hd, file, err));
    if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "bos_token_id"))) PC_TRY(read_int(root, k_bos, 0, &bos, file, err));
    if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "eos_token_id"))) PC_TRY(read_int(root, k_eos, 0, &eos, file, err));
    if (kv == 0) kv = heads;
    if (inter == 0) {
        if (cfg->arch->mlp != PC_MLP_GELU_TANH) return pc_fail(err, PC_ERR_FORMAT, "%s: missing field 'intermediate_size'", file);
        inter = 4 * hidden; /* gpt2: n_inner null means 4·n_embd */
    }
    PC_TRY(check_positive(vocab, "vocab_size", file, err));
    PC_TRY(check_positive(hidden, "hidden_size", file, err));
    PC_TRY(check_positive(layers, "num_hidden_layers", file, err));
    PC_TRY(check_positive(heads, "num_attention_heads", file, err));
    PC_TRY(check_positive(kv, "num_key_value_heads", file, err));
    PC_TRY(check_positive(inter, "intermediate_size", file, err));
    PC_TRY(check_positive(maxpos, "max_position_embeddings", file, err));
    if (hd == 0) {
        if (hidden % heads) return pc_fail(err, PC_ERR_FORMAT, "%s: hidden_size %ld is not divisible by num_attention_heads %ld", file, hidden, heads);
        hd = hidden / heads;
    }
    if (heads % kv) return pc_fail(err, PC_ERR_FORMAT, "%s: num_attention_heads %ld is not a multiple of num_key_value_heads %ld", file, heads, kv);
    if (cfg->arch->rope && hd % 2) return pc_fail(err, PC_ERR_FORMAT, "%s: head_dim %ld must be even for rotary embeddings", file, hd);
    if (!cfg->arch->rope && hd * heads != hidden) return pc_fail(err, PC_ERR_FORMAT, "%s: head_dim·heads must equal hidden_size", file);
    /* Widths are ints downstream (q + 2·kv projections): keep their products far from overflow. */
    if ((heads + 2 * kv) * hd > (1L << 30) || hidden > (1L << 28) || inter > (1L << 28) || layers > (1L << 20))
        return pc_fail(err, PC_ERR_FORMAT, "%s: sizes out of range (heads·head_dim, hidden_size, intermediate_size or "
                       "num_hidden_layers)", file);

    double eps = cfg->arch->norm == PC_NORM_RMS ? 1e-6 : 1e-5, theta = 10000.0;
    if (cfg->arch->norm == PC_NORM_RMS) PC_TRY(pc_json_double(root, "rms_norm_eps", 0, &eps, file, err));
    else PC_TRY(pc_json_double(root, "layer_norm_epsilon", 0, &eps, file, err));
    PC_TRY(pc_json_double(root, "rope_theta", 0, &theta, file, err));
    if (!(eps > 0 && eps < 1)) return pc_fail(err, PC_ERR_FORMAT, "%s: norm epsilon %g out of range", file, eps);
    if (!(theta > 1)) return pc_fail(err, PC_ERR_FORMAT, "%s: rope_theta %g out of range", file, theta);
    int tied = cfg->arch->default_tied;
    PC_TRY(pc_json_bool(root, "tie_word_embeddings", 0, &tied, file, err));

    cfg->vocab_size = (int)vocab;
    cfg->hidden = (int)hidden;
    cfg->n_layers = (int)layers;
    cfg->n_heads = (int)heads;
    cfg->n_kv_heads = (int)kv;
    cfg->head_dim = (int)hd;
    cfg->intermediate = (int)inter;
    cfg->max_positions = (int)maxpos;
    cfg->norm_eps = (float)eps;
    cfg->rope_theta = (float)theta;
    cfg->tied = tied;
    cfg->bos_id = (int)bos;
    cfg->eos_id = (int)eos;
    return PC_OK;
}

pc_status pc_model_config_load(pc_model_config *cfg, const char *path, pc_error *err) {
    memset(cfg, 0, sizeof *cfg);
    char file[4096];
    if (pc_is_dir(path)) {
        if (pc_path_join(file, sizeof file, path, "config.json")) return pc_fail(err, PC_ERR_USAGE, "%s: path too long", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
    }
    cJSON *root = NULL;
    PC_TRY(pc_json_load(&root, file, err));
    pc_status st = cJSON_IsObject(root) ? parse(cfg, root, file, err)
                                        : pc_fail(err, PC_ERR_FORMAT, "%s: not a JSON object", file);
    cJSON_Delete(root);
    return st;
}
