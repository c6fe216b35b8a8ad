/* Tokenizers of real models, exactly: Hugging Face tokenizer.json (BPE, byte-level and SentencePiece-style
 * with byte fallback; normalizers, pre-tokenizers, post-processor, decoders) and GPT-2's two-file form
 * (vocab.json/encoder.json + merges.txt/vocab.bpe), with tokenizer_config.json beside them. */
#ifndef PC_TOKENIZER_H
#define PC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct pc_tokenizer pc_tokenizer;

/* path: a tokenizer.json file, a vocab.json/encoder.json file (merges beside it), or a directory holding
 * either (plus tokenizer_config.json if present). */
pc_status pc_tokenizer_load(pc_tokenizer **out, const char *path, pc_error *err);
void pc_tokenizer_free(pc_tokenizer *tk);

/* Encode UTF-8 text (len bytes; invalid UTF-8 is a format error). add_special: apply the post-processor
 * (BOS/EOS per the file and tokenizer_config.json). *ids is allocated with pc_malloc; caller frees. */
pc_status pc_tokenizer_encode(const pc_tokenizer *tk, const char *text, size_t len, int add_special, int32_t **ids,
                              size_t *n_ids, pc_error *err);
/* Decode ids to UTF-8 text (allocated, NUL-terminated). skip_special drops special tokens. */
pc_status pc_tokenizer_decode(const pc_tokenizer *tk, const int32_t *ids, size_t n_ids, int skip_special,
                              char **text, size_t *len, pc_error *err);

int32_t pc_tokenizer_vocab_size(const pc_tokenizer *tk); /* including added tokens: max id + 1 */
int32_t pc_tokenizer_bos_id(const pc_tokenizer *tk);     /* -1 if none */
int32_t pc_tokenizer_eos_id(const pc_tokenizer *tk);     /* -1 if none */
int32_t pc_tokenizer_pad_id(const pc_tokenizer *tk);     /* pad, else eos, else 0 */
int32_t pc_tokenizer_token_to_id(const pc_tokenizer *tk, const char *token); /* -1 if absent */

/* Chat templates: render messages with the model's chat_template (recognised families only) or a named
 * family ("chatml", "llama2", "llama3", "zephyr"). Produces the text and, for each byte of it, whether it
 * belongs to an assistant turn's content (for the loss mask). */
typedef struct pc_chat_message {
    const char *role;
    const char *content;
} pc_chat_message;
pc_status pc_tokenizer_render_chat(const pc_tokenizer *tk, const char *template_name, const pc_chat_message *msgs,
                                   int n_msgs, int add_generation_prompt, char **text, unsigned char **assistant_mask,
                                   size_t *len, pc_error *err);

#endif
