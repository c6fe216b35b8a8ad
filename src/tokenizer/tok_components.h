/* Parsing tokenizer.json pipeline components into a pc_tokenizer (tok_components.c). Internal. */
#ifndef PC_TOKENIZER_TOK_COMPONENTS_H
#define PC_TOKENIZER_TOK_COMPONENTS_H

#include <cjson/cJSON.h>

#include "tokenizer/tok_internal.h"

/* Each accepts NULL / JSON null as "none". Sequences are flattened into the stage lists. */
pc_status tk_parse_normalizer(pc_tokenizer *tk, const cJSON *o, const char *file, pc_error *err);
pc_status tk_parse_pretokenizer(pc_tokenizer *tk, const cJSON *o, const char *file, pc_error *err);
pc_status tk_parse_decoder(pc_tokenizer *tk, const cJSON *o, const char *file, pc_error *err);
/* Needs tk->vocab_size set (ids are range-checked). */
pc_status tk_parse_postprocessor(pc_tokenizer *tk, const cJSON *o, const char *file, pc_error *err);
void tk_components_free(pc_tokenizer *tk);

#endif
