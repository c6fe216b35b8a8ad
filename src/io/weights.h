/* The tensors of a Hugging Face model directory: model.safetensors, or shards listed by
 * model.safetensors.index.json ("weight_map": name -> shard file). Lookups go across shards. */
#ifndef PC_IO_WEIGHTS_H
#define PC_IO_WEIGHTS_H

#include "io/safetensors.h"

typedef struct pc_weight_files {
    int n_files;
    pc_safetensors *files;
} pc_weight_files;

pc_status pc_weight_files_open(pc_weight_files *wf, const char *model_dir, pc_error *err);
void pc_weight_files_close(pc_weight_files *wf);
/* The entry and the file it came from (for messages); NULL if absent. */
const pc_st_entry *pc_weight_files_find(const pc_weight_files *wf, const char *name, const char **file_path);

/* Copy the tokenizer files a model directory carries (tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json, vocab.json, merges.txt, generation_config.json) that exist in from_dir into
 * to_dir, atomically each. */
pc_status pc_copy_tokenizer_files(const char *from_dir, const char *to_dir, pc_error *err);

#endif
