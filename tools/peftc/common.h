/* What several subcommands share: loading a model (+ adapters, + tokenizer), datasets, method options. */
#ifndef PEFTC_COMMON_H
#define PEFTC_COMMON_H

#include <cjson/cJSON.h>

#include "cli.h"
#include "data/dataset.h"
#include "io/json.h"
#include "model/model.h"
#include "peft/method.h"
#include "tokenizer/tokenizer.h"

/* The options every model-loading command accepts. */
#define CLI_MODEL_OPTS                                                                                     \
    {"--model", OPT_VALUE, "model directory (config.json + model.safetensors)"},                           \
    {"--base-dtype", OPT_VALUE, "fp32|bf16: precision of the frozen weights (default: the checkpoint's)"}, \
    {"--tokenizer", OPT_VALUE, "tokenizer.json or directory (default: the model directory's)"}

/* The method options; each maps to a PEFT field name ("--lora-alpha" → "lora_alpha"). */
#define CLI_METHOD_OPTS                                                                                  \
    {"--r", OPT_VALUE, "LoRA rank [8]"}, {"--lora-alpha", OPT_VALUE, "LoRA alpha [16]"},                  \
    {"--lora-dropout", OPT_VALUE, "LoRA dropout [0]"},                                                   \
    {"--target-modules", OPT_VALUE, "comma-separated module names, a regex, or all-linear"},            \
    {"--layers-to-transform", OPT_VALUE, "comma-separated layer indices"},                               \
    {"--use-rslora", OPT_FLAG, "scale alpha/sqrt(r)"}, {"--use-dora", OPT_FLAG, "weight-decomposed LoRA"}, \
    {"--num-virtual-tokens", OPT_VALUE, "prompt/prefix length [20]"},                                    \
    {"--prompt-init", OPT_VALUE, "random|vocab|text:\"...\""},                                           \
    {"--prefix-projection", OPT_FLAG, "reparameterise the prefix with an MLP"},                          \
    {"--encoder-hidden-size", OPT_VALUE, "prefix MLP width"},                                            \
    {"--feedforward-modules", OPT_VALUE, "IA3: modules whose input is scaled"},                          \
    {"--adapter-type", OPT_VALUE, "houlsby|pfeiffer|parallel|scaled-parallel"},                          \
    {"--adapter-dim", OPT_VALUE, "adapter bottleneck [16]"}, {"--adapter-scale", OPT_VALUE, "adapter output scale"}, \
    {"--save-dtype", OPT_VALUE, "full: dtype of the saved model (fp32|bf16|f16) [the checkpoint's]"},          \
    {"--method-config", OPT_VALUE, "JSON file of method options (PEFT field names)"}

typedef struct cli_session {
    pc_model *model;
    pc_tokenizer *tokenizer; /* NULL when none was found (pre-tokenized data only) */
    pc_method *methods[8];
    int n_methods;
} cli_session;

/* Load --model (or, with config_only, build from a config.json with random weights) and the tokenizer. */
pc_status cli_load_model(cli_session *s, const cli_args *a, pc_error *err);
pc_status cli_create_model_from_config(cli_session *s, const char *config, const cli_args *a, uint64_t seed, pc_error *err);
/* Load every --adapter (repeatable and comma-separated) onto the model. */
pc_status cli_load_adapters(cli_session *s, const cli_args *a, pc_error *err);
/* The options object for methods from the command line (and --method-config); caller deletes it. */
pc_status cli_method_options(const cli_args *a, cJSON **out, pc_error *err);
pc_status cli_load_dataset(cli_session *s, const char *path, int seq_len, pc_dataset *ds, pc_error *err);
int32_t cli_pad_id(const cli_session *s);
void cli_session_free(cli_session *s);
/* Copy the tokenizer files beside `tokenizer` (a file or a directory) into out_dir, so a model directory
 * written by full training is self-contained. */
pc_status cli_copy_tokenizer_files(const char *tokenizer, const char *out_dir, pc_error *err);
/* Print the one JSON object of --json as the last line of stdout; failed counts members that could not be
 * added (pc_json_put), and then nothing is printed: PC_ERR_NOMEM, as when printing runs out of memory. */
pc_status cli_print_json(const cJSON *obj, int failed, pc_error *err);

#endif
