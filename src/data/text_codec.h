/* The few tokenizer operations the dataset loader needs, behind a small table of functions. The loader
 * normally gets them from a pc_tokenizer (codec_tokenizer.c); tests plug in a hand-made codec whose ids
 * they can derive on paper, so loss masks are checked independently of the real tokenizers. */
#ifndef PC_DATA_TEXT_CODEC_H
#define PC_DATA_TEXT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/dataset.h"
#include "tokenizer/tokenizer.h"

typedef struct pc_text_codec {
    const void *ctx;
    /* ids allocated with pc_malloc (may be NULL when *n == 0); caller frees. */
    pc_status (*encode)(const void *ctx, const char *text, size_t len, int add_special, int32_t **ids, size_t *n,
                        pc_error *err);
    /* Decode without skipping special tokens; text allocated with pc_malloc. */
    pc_status (*decode)(const void *ctx, const int32_t *ids, size_t n, char **text, size_t *len, pc_error *err);
    /* Render a conversation (no generation prompt) with a per-byte assistant mask; both pc_malloc'd. */
    pc_status (*render_chat)(const void *ctx, const char *template_name, const pc_chat_message *msgs, int n_msgs,
                             char **text, unsigned char **assistant_mask, size_t *len, pc_error *err);
    int32_t bos_id; /* -1 if none */
    int32_t eos_id; /* -1 if none */
} pc_text_codec;

/* The codec of a real tokenizer (tk borrowed, must outlive the codec). */
void pc_text_codec_from_tokenizer(pc_text_codec *codec, const pc_tokenizer *tk);

/* pc_dataset_load with an explicit codec; codec may be NULL when every record is pre-tokenized. */
pc_status pc_dataset_load_codec(pc_dataset *ds, const char *path, const pc_text_codec *codec,
                                const pc_data_options *opt, pc_error *err);

/* Labels of a rendered conversation: ids are the tokens of the whole text (len bytes) and mask says which
 * bytes are assistant content. Token i is a target (labels[i] = ids[i]) iff at least one of its bytes is
 * assistant content, else labels[i] = -100. This is the rule of transformers' return_assistant_tokens_mask
 * (the tokens holding the first and the last assistant byte, and all between): a token that straddles the
 * boundary, such as SentencePiece's "▁Hello" whose space belongs to the template, is the model's own first
 * output and is trained. Token byte spans are found exactly when encoding each run of equal mask separately
 * gives the same ids as the whole text (true for byte-level BPE templates, whose boundaries fall on special
 * tokens and newlines); otherwise by aligning each token's decoded text with the rendered text. */
pc_status pc_chat_labels(const pc_text_codec *codec, const char *text, const unsigned char *mask, size_t len,
                         const int32_t *ids, size_t n, int32_t *labels, pc_error *err);

#endif
