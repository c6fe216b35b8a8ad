/* Record shapes (CLI.md, "Data records"), tried in this order: input_ids(+labels), messages,
 * prompt+completion, text+label, text. */
#include "data/record.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"

static pc_status record_reserve(pc_record *rec, size_t extra, pc_error *err) {
    if (rec->n + extra <= rec->cap) return PC_OK;
    size_t cap = rec->cap ? rec->cap : 256;
    while (cap < rec->n + extra) cap *= 2;
    int32_t *ids = pc_realloc(rec->ids, rec->cap * sizeof *ids, cap * sizeof *ids);
    if (!ids) return pc_fail(err, PC_ERR_NOMEM, "out of memory for %zu tokens", cap);
    rec->ids = ids;
    int32_t *labels = pc_realloc(rec->labels, rec->cap * sizeof *labels, cap * sizeof *labels);
    if (!labels) return pc_fail(err, PC_ERR_NOMEM, "out of memory for %zu tokens", cap);
    rec->labels = labels;
    rec->cap = cap;
    return PC_OK;
}

/* Append tokens; they are targets (label = id) when `targets`, else -100. */
static pc_status record_append(pc_record *rec, const int32_t *ids, size_t n, int targets, pc_error *err) {
    PC_TRY(record_reserve(rec, n, err));
    for (size_t i = 0; i < n; i++) {
        rec->ids[rec->n + i] = ids[i];
        rec->labels[rec->n + i] = targets ? ids[i] : PC_IGNORE_INDEX;
    }
    rec->n += n;
    return PC_OK;
}

static const cJSON *field(const cJSON *obj, const char *name) { return cJSON_GetObjectItemCaseSensitive(obj, name); }

static pc_status string_field(const cJSON *obj, const char *name, const char **out, pc_error *err) {
    const cJSON *it = field(obj, name);
    if (!it) return pc_fail(err, PC_ERR_FORMAT, "missing field '%s'", name);
    if (!cJSON_IsString(it) || !it->valuestring) return pc_fail(err, PC_ERR_FORMAT, "field '%s' must be a string", name);
    *out = it->valuestring;
    return PC_OK;
}

static int json_int32(const cJSON *it, int32_t *out) {
    if (!cJSON_IsNumber(it)) return 0;
    double d = it->valuedouble;
    if (!(d == floor(d)) || d < -2147483648.0 || d > 2147483647.0) return 0;
    *out = (int32_t)d;
    return 1;
}

static pc_status need_codec(const pc_record_context *cx, const char *shape, pc_error *err) {
    if (cx->codec) return PC_OK;
    return pc_fail(err, PC_ERR_USAGE, "a %s record needs a tokenizer (none was given)", shape);
}

/* ---- {"input_ids": [...]} and {"input_ids": [...], "labels": [...]} ---- */
static pc_status record_from_input_ids(pc_record *rec, const cJSON *obj, pc_error *err) {
    const cJSON *ids = field(obj, "input_ids"), *labels = field(obj, "labels");
    if (!cJSON_IsArray(ids)) return pc_fail(err, PC_ERR_FORMAT, "field 'input_ids' must be an array of integers");
    if (labels && !cJSON_IsNull(labels) && !cJSON_IsArray(labels))
        return pc_fail(err, PC_ERR_FORMAT, "field 'labels' must be an array of integers");
    if (labels && cJSON_IsNull(labels)) labels = NULL;
    int n = cJSON_GetArraySize(ids);
    if (labels && cJSON_GetArraySize(labels) != n)
        return pc_fail(err, PC_ERR_FORMAT, "'labels' has %d entries but 'input_ids' has %d", cJSON_GetArraySize(labels),
                       n);
    PC_TRY(record_reserve(rec, (size_t)n, err));
    int i = 0;
    for (const cJSON *it = ids->child; it; it = it->next, i++)
        if (!json_int32(it, &rec->ids[i])) return pc_fail(err, PC_ERR_FORMAT, "input_ids[%d] is not an integer", i);
    if (labels) {
        i = 0;
        for (const cJSON *it = labels->child; it; it = it->next, i++)
            if (!json_int32(it, &rec->labels[i])) return pc_fail(err, PC_ERR_FORMAT, "labels[%d] is not an integer", i);
    } else {
        /* every token is its own target; the model's shift makes every token after the first a prediction */
        if (n) memcpy(rec->labels, rec->ids, (size_t)n * sizeof *rec->ids); /* n = 0: no buffer yet (NULL) */
    }
    rec->n = (size_t)n;
    return PC_OK;
}

/* ---- {"text": ...} ---- */
static pc_status append_encoded(pc_record *rec, const pc_text_codec *codec, const char *text, int add_special,
                                int targets, pc_error *err) {
    int32_t *ids = NULL;
    size_t n = 0;
    PC_TRY(codec->encode(codec->ctx, text, strlen(text), add_special, &ids, &n, err));
    pc_status st = record_append(rec, ids, n, targets, err);
    pc_free(ids);
    return st;
}

static pc_status record_from_text(pc_record *rec, const cJSON *obj, const pc_record_context *cx, pc_error *err) {
    const char *text;
    PC_TRY(string_field(obj, "text", &text, err));
    PC_TRY(need_codec(cx, "text", err));
    return append_encoded(rec, cx->codec, text, cx->opt->add_special, 1, err);
}

/* ---- {"prompt": ..., "completion": ...} ----
 * As TRL: the prompt and the completion are tokenized separately and concatenated, so the boundary of the
 * loss mask is exact. The prompt keeps the post-processor's leading specials (BOS) but not a trailing one
 * (an EOS appended by add_eos_token would end the sequence before the completion): the trailing EOS is
 * dropped when the special-token encoding does not already end with the plain encoding. The completion is
 * encoded without specials and followed by EOS, so the model learns to stop. */
static pc_status encode_prompt(const pc_text_codec *codec, const char *text, int add_special, int32_t **ids,
                               size_t *n, pc_error *err) {
    size_t len = strlen(text);
    PC_TRY(codec->encode(codec->ctx, text, len, add_special, ids, n, err));
    if (!add_special || codec->eos_id < 0 || *n == 0 || (*ids)[*n - 1] != codec->eos_id) return PC_OK;
    int32_t *plain = NULL;
    size_t n_plain = 0;
    pc_status st = codec->encode(codec->ctx, text, len, 0, &plain, &n_plain, err);
    if (st != PC_OK) {
        pc_free(*ids);
        *ids = NULL;
        return st;
    }
    int ends_with_plain = n_plain <= *n &&
                          (n_plain == 0 || memcmp(*ids + (*n - n_plain), plain, n_plain * sizeof *plain) == 0);
    if (!ends_with_plain || n_plain == 0) (*n)--;
    pc_free(plain);
    return PC_OK;
}

static pc_status record_from_prompt(pc_record *rec, const cJSON *obj, const pc_record_context *cx, pc_error *err) {
    const char *prompt, *completion;
    PC_TRY(string_field(obj, "prompt", &prompt, err));
    PC_TRY(string_field(obj, "completion", &completion, err));
    PC_TRY(need_codec(cx, "prompt/completion", err));
    const pc_text_codec *codec = cx->codec;
    int32_t *ids = NULL;
    size_t n = 0;
    PC_TRY(encode_prompt(codec, prompt, cx->opt->add_special, &ids, &n, err));
    pc_status st = record_append(rec, ids, n, 0, err);
    pc_free(ids);
    PC_TRY(st);
    PC_TRY(append_encoded(rec, codec, completion, 0, 1, err));
    if (cx->opt->add_special && codec->eos_id >= 0) PC_TRY(record_append(rec, &codec->eos_id, 1, 1, err));
    return PC_OK;
}

/* ---- {"messages": [{"role": ..., "content": ...}, ...]} ---- */
static pc_status parse_messages(const cJSON *arr, pc_chat_message **out, int *n_out, pc_error *err) {
    if (!cJSON_IsArray(arr)) return pc_fail(err, PC_ERR_FORMAT, "field 'messages' must be an array");
    int n = cJSON_GetArraySize(arr);
    if (n == 0) return pc_fail(err, PC_ERR_FORMAT, "empty record: 'messages' is empty");
    pc_chat_message *msgs = pc_calloc((size_t)n, sizeof *msgs);
    if (!msgs) return pc_fail(err, PC_ERR_NOMEM, "out of memory for %d messages", n);
    int i = 0;
    for (const cJSON *m = arr->child; m; m = m->next, i++) {
        const cJSON *role = cJSON_IsObject(m) ? field(m, "role") : NULL;
        const cJSON *content = cJSON_IsObject(m) ? field(m, "content") : NULL;
        const char *what = !cJSON_IsObject(m)           ? "is not an object"
                           : !role                      ? "has no 'role'"
                           : !cJSON_IsString(role)      ? "has a 'role' that is not a string"
                           : !content                   ? "has no 'content'"
                           : !cJSON_IsString(content)   ? "has a 'content' that is not a string"
                                                        : NULL;
        if (what) {
            pc_free(msgs);
            return pc_fail(err, PC_ERR_FORMAT, "messages[%d] %s", i, what);
        }
        msgs[i].role = role->valuestring;
        msgs[i].content = content->valuestring;
    }
    *out = msgs;
    *n_out = n;
    return PC_OK;
}

static pc_status record_from_messages(pc_record *rec, const cJSON *obj, const pc_record_context *cx, pc_error *err) {
    pc_chat_message *msgs = NULL;
    int n_msgs = 0;
    PC_TRY(parse_messages(field(obj, "messages"), &msgs, &n_msgs, err));
    pc_status st = need_codec(cx, "messages", err);
    char *text = NULL;
    unsigned char *mask = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    if (st == PC_OK)
        st = cx->codec->render_chat(cx->codec->ctx, cx->opt->chat_template, msgs, n_msgs, &text, &mask, &len, err);
    /* the template writes its own BOS, as transformers' apply_chat_template(tokenize=True) assumes */
    if (st == PC_OK) st = cx->codec->encode(cx->codec->ctx, text, len, 0, &ids, &n, err);
    if (st == PC_OK) st = record_reserve(rec, n, err);
    if (st == PC_OK) st = pc_chat_labels(cx->codec, text, mask, len, ids, n, rec->labels, err);
    if (st == PC_OK) {
        memcpy(rec->ids, ids, n * sizeof *ids);
        rec->n = n;
    }
    pc_free(ids);
    pc_free(text);
    pc_free(mask);
    pc_free(msgs);
    return st;
}

/* ---- {"text": ..., "label": int | string} ----
 * Only the class label is a target: the token labels are all -100, so a causal-LM loss on these records
 * is empty and the classification head reads class_label. */
static pc_status class_id_of(pc_class_table *t, const cJSON *label, int *out, pc_error *err) {
    int32_t v;
    if (json_int32(label, &v)) {
        if (v < 0) return pc_fail(err, PC_ERR_FORMAT, "label %d is negative", v);
        if (t->n_names > 0) return pc_fail(err, PC_ERR_FORMAT, "label %d is an integer but earlier labels are strings", v);
        if (v > t->max_int) t->max_int = v;
        *out = v;
        return PC_OK;
    }
    if (!cJSON_IsString(label)) return pc_fail(err, PC_ERR_FORMAT, "field 'label' must be an integer or a string");
    if (t->max_int >= 0)
        return pc_fail(err, PC_ERR_FORMAT, "label \"%s\" is a string but earlier labels are integers", label->valuestring);
    for (int i = 0; i < t->n_names; i++)
        if (strcmp(t->names[i], label->valuestring) == 0) return (*out = i), PC_OK;
    if (t->n_names == t->cap) {
        int cap = t->cap ? t->cap * 2 : 8;
        char **names = pc_realloc(t->names, (size_t)t->cap * sizeof *names, (size_t)cap * sizeof *names);
        if (!names) return pc_fail(err, PC_ERR_NOMEM, "out of memory for the label table");
        t->names = names;
        t->cap = cap;
    }
    char *copy = pc_strdup(label->valuestring);
    if (!copy) return pc_fail(err, PC_ERR_NOMEM, "out of memory for the label table");
    t->names[t->n_names] = copy;
    *out = t->n_names++;
    return PC_OK;
}

static pc_status record_from_classification(pc_record *rec, const cJSON *obj, const pc_record_context *cx,
                                            pc_error *err) {
    const char *text;
    PC_TRY(string_field(obj, "text", &text, err));
    PC_TRY(class_id_of(cx->classes, field(obj, "label"), &rec->class_label, err));
    PC_TRY(need_codec(cx, "text+label", err));
    return append_encoded(rec, cx->codec, text, cx->opt->add_special, 0, err);
}

/* ---- shared checks after any shape ---- */
static pc_status record_check(pc_record *rec, const pc_data_options *opt, pc_error *err) {
    if (rec->n == 0) return pc_fail(err, PC_ERR_FORMAT, "empty record (no tokens)");
    if (rec->n > (size_t)INT32_MAX) return pc_fail(err, PC_ERR_FORMAT, "record of %zu tokens is too long", rec->n);
    long vocab = opt->vocab_size;
    for (size_t i = 0; i < rec->n; i++) {
        int32_t id = rec->ids[i], lab = rec->labels[i];
        if (id < 0 || (vocab > 0 && id >= vocab))
            return pc_fail(err, PC_ERR_FORMAT, "token id %d at position %zu is out of range (vocab size %ld)", id, i,
                           vocab);
        if (lab != PC_IGNORE_INDEX && (lab < 0 || (vocab > 0 && lab >= vocab)))
            return pc_fail(err, PC_ERR_FORMAT, "label %d at position %zu is out of range (vocab size %ld, -100 = ignored)",
                           lab, i, vocab);
    }
    if (opt->seq_len > 0 && rec->n > (size_t)opt->seq_len) {
        rec->n = (size_t)opt->seq_len; /* keep the beginning, as tokenizers' truncation="right" */
        rec->truncated = 1;
    }
    return PC_OK;
}

pc_status pc_record_parse(pc_record *rec, const cJSON *obj, const pc_record_context *cx, pc_error *err) {
    rec->n = 0;
    rec->class_label = -1;
    rec->truncated = 0;
    if (!cJSON_IsObject(obj)) return pc_fail(err, PC_ERR_FORMAT, "a record must be a JSON object");
    pc_status st;
    if (field(obj, "input_ids")) st = record_from_input_ids(rec, obj, err);
    else if (field(obj, "messages")) st = record_from_messages(rec, obj, cx, err);
    else if (field(obj, "prompt") || field(obj, "completion")) st = record_from_prompt(rec, obj, cx, err);
    else if (field(obj, "label")) st = record_from_classification(rec, obj, cx, err);
    else if (field(obj, "text")) st = record_from_text(rec, obj, cx, err);
    else
        st = pc_fail(err, PC_ERR_FORMAT,
                     "missing field: a record needs 'input_ids', 'text', 'prompt'+'completion' or 'messages'");
    PC_TRY(st);
    return record_check(rec, cx->opt, err);
}

void pc_record_free(pc_record *rec) {
    pc_free(rec->ids);
    pc_free(rec->labels);
    memset(rec, 0, sizeof *rec);
}

void pc_class_table_free(pc_class_table *t) {
    for (int i = 0; i < t->n_names; i++) pc_free(t->names[i]);
    pc_free(t->names);
    memset(t, 0, sizeof *t);
    t->max_int = -1;
}
