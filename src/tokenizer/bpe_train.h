/* Training a byte-level BPE tokenizer (GPT-2 style: the GPT-2 split regex, 256 byte tokens, merges learned by
 * pair frequency) and writing it as a standard Hugging Face tokenizer.json that pc_tokenizer_load reads. */
#ifndef PC_TOKENIZER_BPE_TRAIN_H
#define PC_TOKENIZER_BPE_TRAIN_H

#include "core/error.h"

typedef struct pc_bpe_train_options {
    int vocab_size;                   /* total, including the special tokens and the 256 byte tokens */
    int min_frequency;                /* stop when the best pair occurs fewer times (default 2) */
    const char *const *special_tokens; /* ids 0..n_special-1, e.g. "<|endoftext|>" */
    int n_special;
} pc_bpe_train_options;

/* Reads the UTF-8 text files, learns merges, writes out_path atomically. *n_merges (may be NULL) gets how
 * many merges were learned (fewer than asked when the corpus runs out of pairs). */
pc_status pc_bpe_train(const char *const *files, int n_files, const pc_bpe_train_options *opt, const char *out_path,
                       int *n_merges, pc_error *err);

#endif
