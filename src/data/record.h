/* One JSONL record → token ids and aligned labels, for every record shape of CLI.md. Messages returned
 * here name only the problem ("missing field 'completion'"); the loader prefixes "<file>: line <n>: ". */
#ifndef PC_DATA_RECORD_H
#define PC_DATA_RECORD_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/dataset.h"
#include "data/text_codec.h"

/* The tokens of one record while it is being built. Reused from record to record (the buffers grow). */
typedef struct pc_record {
    int32_t *ids, *labels;
    size_t n, cap;
    int class_label; /* -1 unless a text+label record */
    int truncated;   /* 1 if the record was cut to seq_len */
} pc_record;

/* Classification labels seen so far: integers, or strings numbered in order of first appearance. */
typedef struct pc_class_table {
    char **names; /* string labels, index = class id */
    int n_names, cap;
    int max_int;  /* largest integer label seen, -1 if none */
} pc_class_table;

typedef struct pc_record_context {
    const pc_text_codec *codec; /* NULL: only pre-tokenized records are possible */
    const pc_data_options *opt;
    pc_class_table *classes;
} pc_record_context;

pc_status pc_record_parse(pc_record *rec, const cJSON *obj, const pc_record_context *cx, pc_error *err);
void pc_record_free(pc_record *rec);
void pc_class_table_free(pc_class_table *t);

#endif
