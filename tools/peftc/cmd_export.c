/* peftc export --format gguf-lora: a LoRA adapter directory as a GGUF file for llama.cpp's --lora
 * (formats.md §4). The adapter is loaded onto the base it belongs to, so every tensor is checked against
 * the model before anything is written; the file is written atomically. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "model/model.h"
#include "peft/lora_export.h"
#include "peft/method.h"

static const cli_opt export_opts[] = {
    {"--model", OPT_VALUE, "base model directory the adapter was trained on"},
    {"--adapter", OPT_VALUE, "LoRA adapter directory (adapter_config.json + adapter_model.safetensors)"},
    {"--format", OPT_VALUE, "output format: gguf-lora"},
    {"--out", OPT_VALUE, "output file"},
    {"--help", OPT_FLAG, "show this help"},
};
#define N_EXPORT_OPTS (int)(sizeof export_opts / sizeof export_opts[0])

int cmd_export(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&a, export_opts, N_EXPORT_OPTS, argc, argv, "export");
    if (rc) return rc;
    if (cli_flag(&a, "--help")) {
        cli_print_help("export", "--model DIR --adapter DIR --format gguf-lora --out FILE", export_opts, N_EXPORT_OPTS);
        return 0;
    }
    if (a.n_positional) return cli_usage_error("export: unexpected argument '%s'", a.positional[0]);
    const char *model_dir = cli_get(&a, "--model"), *adapter = cli_get(&a, "--adapter"), *format = cli_get(&a, "--format"),
               *out = cli_get(&a, "--out");
    if (!model_dir || !adapter || !format || !out)
        return cli_usage_error("export: --model, --adapter, --format and --out are required (see 'peftc export --help')");
    if (strcmp(format, "gguf-lora") != 0) return cli_usage_error("export: unknown --format '%s' (supported: gguf-lora)", format);

    pc_error err = {0};
    pc_model *m = NULL;
    pc_method *lora = NULL;
    pc_status st = pc_model_load(&m, model_dir, PC_BASE_F32, &err);
    if (st == PC_OK) st = pc_method_load(&lora, m, adapter, &err);
    if (st == PC_OK) {
        st = pc_lora_export_gguf(lora, out, &err);
        if (st != PC_OK) pc_error_prefix(&err, "%s: ", adapter);
    }
    pc_method_free(lora);
    pc_model_free(m);
    if (st != PC_OK) return cli_report(&err);
    fprintf(stderr, "peftc: wrote %s\n", out);
    return 0;
}
