/* What leaves peftc besides adapter directories: a base model with adapters folded in (a model directory in
 * the base's dtype), and a LoRA adapter as a GGUF file for llama.cpp's --lora (formats.md §4). */
#ifndef PC_PEFT_LORA_EXPORT_H
#define PC_PEFT_LORA_EXPORT_H

#include "model/model.h"
#include "peft/method.h"

/* Load the adapter directory onto m, fold it into the base weights with weight (1 = the adapter as trained),
 * and detach it again. m should hold its projections in fp32 (PC_BASE_F32) for an exact merge. Methods
 * without a merge are refused with the method named. */
pc_status pc_adapter_merge_dir(pc_model *m, const char *adapter_dir, float weight, pc_error *err);

/* Write m as a model directory at out_dir (config.json, model.safetensors in m->file_dtype, the tokenizer
 * files of the source): everything goes into a temporary directory beside out_dir that is renamed into place
 * at the end, so out_dir is either complete or absent. An existing non-empty out_dir is refused. */
pc_status pc_merged_model_write(const pc_model *m, const char *out_dir, pc_error *err);

/* llama.cpp's architecture name for a model ("llama", "qwen2", "gpt2"), or NULL when there is none. */
const char *pc_gguf_arch_name(const pc_model *m);

/* Write a loaded LoRA adapter as a GGUF v3 LoRA file: general.type "adapter", general.architecture,
 * adapter.type "lora", adapter.lora.alpha (the config's lora_alpha); per target
 * "<base GGUF tensor>.lora_a" (ne [in, r]) and ".lora_b" (ne [r, out]). Per-module scales that one global
 * alpha cannot express (rsLoRA, alpha_pattern) are folded into B; llama's q/k rows are permuted as
 * convert_hf_to_gguf.py permutes the base weights. DoRA is refused (llama.cpp cannot apply it). Atomic. */
pc_status pc_lora_export_gguf(const pc_method *lora, const char *path, pc_error *err);

#endif
