/* Loading a JSONL dataset: one record per line, streamed (lines of any length), every example's ids and
 * labels packed into one storage block. Errors are "<file>: line <n>: <what>". */
#include <cjson/cJSON.h>
#include <string.h>

#include "core/alloc.h"
#include "data/dataset.h"
#include "data/line_reader.h"
#include "data/record.h"
#include "data/text_codec.h"
#include "io/json.h"

/* Examples as they are loaded: ids then labels of each example, back to back in `tokens`. */
typedef struct dataset_builder {
    pc_example *examples;
    long count, cap;
    int32_t *tokens;
    size_t n_tokens, cap_tokens;
} dataset_builder;

static pc_status builder_add(dataset_builder *bd, const pc_record *rec, pc_error *err) {
    if (bd->count == bd->cap) {
        long cap = bd->cap ? bd->cap * 2 : 64;
        pc_example *ex = pc_realloc(bd->examples, (size_t)bd->cap * sizeof *ex, (size_t)cap * sizeof *ex);
        if (!ex) return pc_fail(err, PC_ERR_NOMEM, "out of memory for %ld records", cap);
        bd->examples = ex;
        bd->cap = cap;
    }
    size_t need = bd->n_tokens + 2 * rec->n;
    if (need > bd->cap_tokens) {
        size_t cap = bd->cap_tokens ? bd->cap_tokens : 4096;
        while (cap < need) cap *= 2;
        int32_t *t = pc_realloc(bd->tokens, bd->cap_tokens * sizeof *t, cap * sizeof *t);
        if (!t) return pc_fail(err, PC_ERR_NOMEM, "out of memory for %zu tokens", cap);
        bd->tokens = t;
        bd->cap_tokens = cap;
    }
    memcpy(bd->tokens + bd->n_tokens, rec->ids, rec->n * sizeof *rec->ids);
    memcpy(bd->tokens + bd->n_tokens + rec->n, rec->labels, rec->n * sizeof *rec->labels);
    bd->n_tokens = need;
    bd->examples[bd->count++] = (pc_example){.ids = NULL, .labels = NULL, .n = (int)rec->n,
                                             .class_label = rec->class_label};
    return PC_OK;
}

/* Point every example into the storage; called once the storage no longer moves. */
static void dataset_point_examples(pc_dataset *ds) {
    size_t off = 0;
    for (long i = 0; i < ds->count; i++) {
        ds->examples[i].ids = ds->storage + off;
        ds->examples[i].labels = ds->storage + off + ds->examples[i].n;
        off += 2 * (size_t)ds->examples[i].n;
    }
}

static int line_is_blank(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

static pc_status load_line(const pc_line_reader *r, pc_record *rec, const pc_record_context *cx, pc_error *err) {
    long bad = pc_utf8_first_invalid(r->buf, r->len);
    if (bad >= 0)
        return pc_fail(err, PC_ERR_FORMAT, "%s at byte %ld (byte 0x%02x)",
                       r->buf[bad] == 0 ? "NUL byte" : "invalid UTF-8", bad + 1, (unsigned char)r->buf[bad]);
    pc_json_failure why;
    cJSON *obj = pc_json_parse(r->buf, r->len, &why);
    if (!obj && why.status == PC_ERR_NOMEM) return pc_fail(err, PC_ERR_NOMEM, "out of memory parsing the JSON");
    /* text after the object is a second value on the line */
    if (!obj && why.trailing)
        return pc_fail(err, PC_ERR_FORMAT, "bad JSON: unexpected text after the record at column %zu", why.at + 1);
    if (!obj) return pc_fail(err, PC_ERR_FORMAT, "bad JSON at column %zu", why.at + 1);
    pc_status st = pc_record_parse(rec, obj, cx, err);
    cJSON_Delete(obj);
    return st;
}

static pc_status take_class_table(pc_dataset *ds, pc_class_table *t) {
    if (t->n_names > 0) {
        ds->class_names = t->names;
        ds->n_classes = t->n_names;
        t->names = NULL;
        t->n_names = t->cap = 0;
    } else {
        ds->n_classes = t->max_int + 1;
    }
    return PC_OK;
}

pc_status pc_dataset_load_codec(pc_dataset *ds, const char *path, const pc_text_codec *codec,
                                const pc_data_options *opt, pc_error *err) {
    memset(ds, 0, sizeof *ds);
    pc_data_options defaults = {.seq_len = 0, .add_special = 1, .vocab_size = 0, .chat_template = NULL};
    if (!opt) opt = &defaults;
    if (opt->seq_len < 0 || opt->vocab_size < 0)
        return pc_fail(err, PC_ERR_USAGE, "%s: seq_len and vocab_size must not be negative", path);
    pc_line_reader reader;
    PC_TRY(pc_line_reader_open(&reader, path, err));
    pc_class_table classes = {.max_int = -1};
    pc_record_context cx = {.codec = codec, .opt = opt, .classes = &classes};
    pc_record rec = {0};
    dataset_builder bd = {0};
    pc_status st = PC_OK;
    for (;;) {
        int got = 0;
        st = pc_line_reader_next(&reader, &got, path, err);
        if (st != PC_OK || !got) break;
        if (line_is_blank(reader.buf, reader.len)) continue;
        st = load_line(&reader, &rec, &cx, err);
        if (st == PC_OK) st = builder_add(&bd, &rec, err);
        if (st != PC_OK) {
            pc_error_prefix(err, "%s: line %ld: ", path, reader.line_no);
            break;
        }
        ds->n_truncated += rec.truncated;
    }
    if (st == PC_OK && bd.count == 0) st = pc_fail(err, PC_ERR_FORMAT, "%s: no records", path);
    if (st == PC_OK && !(ds->path = pc_strdup(path))) st = pc_fail(err, PC_ERR_NOMEM, "%s: out of memory", path);
    pc_line_reader_close(&reader);
    pc_record_free(&rec);
    if (st != PC_OK) {
        pc_free(bd.examples);
        pc_free(bd.tokens);
        pc_class_table_free(&classes);
        pc_free(ds->path);
        memset(ds, 0, sizeof *ds);
        return st;
    }
    ds->examples = bd.examples;
    ds->count = bd.count;
    ds->storage = bd.tokens;
    dataset_point_examples(ds);
    take_class_table(ds, &classes);
    pc_class_table_free(&classes);
    return PC_OK;
}

void pc_dataset_free(pc_dataset *ds) {
    if (!ds) return;
    pc_free(ds->path);
    pc_free(ds->examples);
    pc_free(ds->storage);
    if (ds->class_names)
        for (int i = 0; i < ds->n_classes; i++) pc_free(ds->class_names[i]);
    pc_free(ds->class_names);
    memset(ds, 0, sizeof *ds);
}

/* ---- held-out split ---- */

static int split_is_heldout(long i, int every_nth) { return (i + 1) % every_nth == 0; }

static pc_status dataset_copy_subset(pc_dataset *dst, const pc_dataset *src, int every_nth, int heldout,
                                     pc_error *err) {
    memset(dst, 0, sizeof *dst);
    long count = 0;
    size_t tokens = 0;
    for (long i = 0; i < src->count; i++)
        if (split_is_heldout(i, every_nth) == heldout) count++, tokens += 2 * (size_t)src->examples[i].n;
    dst->path = pc_strdup(src->path ? src->path : "");
    dst->examples = pc_calloc((size_t)count, sizeof *dst->examples);
    dst->storage = pc_malloc(tokens * sizeof *dst->storage);
    int n_names = src->class_names ? src->n_classes : 0;
    if (n_names) dst->class_names = pc_calloc((size_t)n_names, sizeof *dst->class_names);
    int ok = dst->path && dst->examples && dst->storage && (!n_names || dst->class_names);
    for (int c = 0; ok && c < n_names; c++) ok = (dst->class_names[c] = pc_strdup(src->class_names[c])) != NULL;
    if (!ok) {
        dst->n_classes = n_names; /* so free releases the names copied so far */
        pc_dataset_free(dst);
        return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory splitting %ld records", src->path, src->count);
    }
    dst->n_classes = src->n_classes;
    long k = 0;
    size_t off = 0;
    for (long i = 0; i < src->count; i++) {
        if (split_is_heldout(i, every_nth) != heldout) continue;
        const pc_example *e = &src->examples[i];
        memcpy(dst->storage + off, e->ids, (size_t)e->n * sizeof *e->ids);
        memcpy(dst->storage + off + e->n, e->labels, (size_t)e->n * sizeof *e->labels);
        off += 2 * (size_t)e->n;
        dst->examples[k++] = (pc_example){.n = e->n, .class_label = e->class_label};
    }
    dst->count = count;
    dataset_point_examples(dst);
    return PC_OK;
}

pc_status pc_dataset_split(const pc_dataset *all, int every_nth, pc_dataset *train, pc_dataset *heldout,
                           pc_error *err) {
    memset(train, 0, sizeof *train);
    memset(heldout, 0, sizeof *heldout);
    const char *path = all->path ? all->path : "dataset";
    if (every_nth < 2) return pc_fail(err, PC_ERR_USAGE, "%s: every_nth must be at least 2 (got %d)", path, every_nth);
    if (all->count < every_nth)
        return pc_fail(err, PC_ERR_USAGE, "%s: %ld records are too few to hold out every %dth", path, all->count,
                       every_nth);
    PC_TRY(dataset_copy_subset(train, all, every_nth, 0, err));
    pc_status st = dataset_copy_subset(heldout, all, every_nth, 1, err);
    if (st != PC_OK) pc_dataset_free(train);
    return st;
}
