/* peftc: the command-line tool. Dispatches to one function per subcommand (tools/peftc/cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"train", cmd_train, "train a method (lora, prompt-tuning, ..., full) on a JSONL dataset"},
    {"eval", cmd_eval, "loss and perplexity of a model (+ adapter) on a JSONL dataset"},
    {"generate", cmd_generate, "continue a prompt (greedy or sampled) with a KV cache"},
    {"merge", cmd_merge, "fold adapters into the base and write a model directory"},
    {"export", cmd_export, "export an adapter (gguf-lora for llama.cpp)"},
    {"inspect", cmd_inspect, "describe a model dir, adapter dir, safetensors, GGUF or tokenizer"},
    {"tokenize", cmd_tokenize, "token ids of stdin's text"},
    {"tokenizer", cmd_tokenizer, "tokenizer tools: 'tokenizer train' builds a BPE tokenizer.json"},
    {"bench", cmd_bench, "throughput and memory of training steps"},
    {"data", cmd_data, "dataset tools: 'data from-text' turns text files into JSONL records"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: peftc <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'peftc <command> --help' lists a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("peftc %s\n", pc_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "peftc: error: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
