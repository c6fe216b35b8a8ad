/* JSON config helpers over cJSON: load with line:column syntax errors, typed getters whose errors name
 * the file and the key, atomic pretty-printed writes. A JSON null counts as absent: PEFT writes many
 * optional fields as null (adapter_config.json), and "not given" is what it means. */
#include "io/json.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "core/utf8.h"

/* Route cJSON's allocations through the library's allocator. cJSON keeps its hooks in a process-wide
 * variable; they are set once, before main, to the same two functions, and never changed: configuration of
 * a dependency rather than state. pc_free is free(), so a tree allocated before the hooks (none is) or by a
 * host program that uses cJSON itself is freed correctly either way. */
__attribute__((constructor)) static void route_cjson_allocations(void) {
    cJSON_Hooks hooks = {.malloc_fn = pc_malloc_plain, .free_fn = pc_free};
    cJSON_InitHooks(&hooks);
}

static int is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

cJSON *pc_json_parse(const char *text, size_t len, pc_json_failure *why) {
    /* cJSON says only NULL. A failed allocation sets errno to ENOMEM (malloc does, and so does an injected
     * failure); nothing else in a parse does, and the parse unwinds straight after it. */
    const char *end = NULL;
    errno = 0;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
    *why = (pc_json_failure){errno == ENOMEM ? PC_ERR_NOMEM : PC_ERR_FORMAT, at, 0};
    if (!root) return NULL;
    /* cJSON stops after the first value; anything but whitespace after it is an error too. */
    while (at < len && is_json_space(text[at])) at++;
    if (at == len) return root;
    cJSON_Delete(root);
    *why = (pc_json_failure){PC_ERR_FORMAT, at, 1};
    return NULL;
}

void pc_json_put(cJSON *object, const char *key, cJSON *item, int *failed) {
    if (item && cJSON_AddItemToObject(object, key, item)) return;
    cJSON_Delete(item);
    (*failed)++;
}

void pc_json_append(cJSON *array, cJSON *item, int *failed) {
    if (item && cJSON_AddItemToArray(array, item)) return;
    cJSON_Delete(item);
    (*failed)++;
}

cJSON *pc_json_csv_array(const char *csv) {
    char *copy = pc_strdup(csv);
    cJSON *list = cJSON_CreateArray();
    int failed = !copy || !list;
    if (!failed)
        for (char *save = NULL, *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save))
            pc_json_append(list, cJSON_CreateString(item), &failed);
    pc_free(copy);
    if (failed) {
        cJSON_Delete(list);
        return NULL;
    }
    return list;
}

pc_status pc_json_built(int failed, const char *what, pc_error *err) {
    return failed ? pc_fail(err, PC_ERR_NOMEM, "%s: out of memory building the JSON", what) : PC_OK;
}

/* 1-based line and column (in UTF-8 characters) of byte `offset` in text. */
static void line_column(const char *text, size_t offset, long *line, long *column) {
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < offset; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n') {
            (*line)++;
            *column = 1;
        } else if ((c & 0xc0) != 0x80) {
            (*column)++;
        }
    }
}

/* Where a syntax error is, given cJSON's offset `at`: len when the text simply ended too early. cJSON
 * reports an error at the end of input as the last byte, and other errors at (or one past) the offending byte,
 * which is ambiguous at the last byte; two more spaces settle it: only an end-of-input error moves past them. */
static size_t error_offset(const char *text, size_t len, size_t at) {
    if (len == 0) return 0;
    if (at + 1 < len) return at;
    char *padded = pc_malloc(len + 2);
    if (!padded) return at;
    memcpy(padded, text, len);
    padded[len] = padded[len + 1] = ' ';
    pc_json_failure again;
    cJSON_Delete(pc_json_parse(padded, len + 2, &again));
    pc_free(padded);
    return again.status == PC_ERR_FORMAT && !again.trailing && again.at > len ? len : at;
}

/* Up to 16 bytes of text from `at` for a message: the rest of that line, non-printable bytes as '?'. */
static void snippet(const char *text, size_t len, size_t at, char out[17]) {
    size_t n = 0;
    for (size_t i = at; i < len && n < 16 && text[i] != '\n'; i++) {
        unsigned char c = (unsigned char)text[i];
        out[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[n] = '\0';
}

pc_status pc_json_load(cJSON **out, const char *path, pc_error *err) {
    *out = NULL;
    char *text;
    size_t len;
    PC_TRY(pc_read_file(path, &text, &len, err));
    /* A JSON text is UTF-8 (RFC 8259) and cJSON passes any bytes through into strings; strings that were not
     * UTF-8 reached PCRE2, which is told not to check, from tokenizer.json (fuzz_tokenizer findings 19, 20:
     * out-of-bounds reads). Checked here, every string read from a JSON file is valid UTF-8. */
    size_t valid = pc_utf8_valid_prefix(text, len);
    if (valid != len) {
        long line, column;
        line_column(text, valid, &line, &column);
        pc_free(text);
        return pc_fail(err, PC_ERR_FORMAT, "%s: %ld:%ld: not valid UTF-8 (a JSON text must be)", path, line, column);
    }
    pc_json_failure why;
    cJSON *root = pc_json_parse(text, len, &why);
    pc_status status = PC_OK;
    if (!root && why.status == PC_ERR_NOMEM) {
        status = pc_fail(err, PC_ERR_NOMEM, "%s: out of memory parsing the JSON", path);
    } else if (!root && why.trailing) {
        long line, column;
        line_column(text, why.at, &line, &column);
        status = pc_fail(err, PC_ERR_FORMAT, "%s: %ld:%ld: unexpected text after the JSON value", path, line, column);
    } else if (!root) {
        size_t at = error_offset(text, len, why.at);
        long line, column;
        char near[17];
        line_column(text, at, &line, &column);
        snippet(text, len, at, near);
        status = at >= len ? pc_fail(err, PC_ERR_FORMAT, "%s: %ld:%ld: invalid JSON (unexpected end of file)", path,
                                     line, column)
                           : pc_fail(err, PC_ERR_FORMAT, "%s: %ld:%ld: invalid JSON near '%s'", path, line,
                                     column, near);
    }
    pc_free(text);
    *out = root;
    return status;
}

static const char *type_name(const cJSON *item) {
    if (cJSON_IsBool(item)) return "a boolean";
    if (cJSON_IsNumber(item)) return "a number";
    if (cJSON_IsString(item)) return "a string";
    if (cJSON_IsArray(item)) return "an array";
    if (cJSON_IsObject(item)) return "an object";
    if (cJSON_IsNull(item)) return "null";
    return "invalid";
}

/* The item for key, NULL when it is absent (or null) and optional; an error when absent and required. */
static pc_status lookup(const cJSON *obj, const char *key, int required, const cJSON **item, const char *file,
                        pc_error *err) {
    *item = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (*item && cJSON_IsNull(*item)) *item = NULL;
    if (!*item && required) return pc_fail(err, PC_ERR_FORMAT, "%s: key '%s': required but missing", file, key);
    return PC_OK;
}

static pc_status wrong_type(const cJSON *item, const char *key, const char *want, const char *file, pc_error *err) {
    return pc_fail(err, PC_ERR_FORMAT, "%s: key '%s': expected %s, got %s", file, key, want, type_name(item));
}

pc_status pc_json_int(const cJSON *obj, const char *key, int required, long *out, const char *file, pc_error *err) {
    const cJSON *item;
    PC_TRY(lookup(obj, key, required, &item, file, err));
    if (!item) return PC_OK;
    if (!cJSON_IsNumber(item)) return wrong_type(item, key, "an integer", file, err);
    double d = item->valuedouble;
    /* LONG_MAX is not exact as a double; 2^63 is, and is the first value out of range. */
    if (d != floor(d) || d < (double)LONG_MIN || d >= -(double)LONG_MIN)
        return pc_fail(err, PC_ERR_FORMAT, "%s: key '%s': expected an integer, got %g", file, key, d);
    *out = (long)d;
    return PC_OK;
}

pc_status pc_json_double(const cJSON *obj, const char *key, int required, double *out, const char *file,
                         pc_error *err) {
    const cJSON *item;
    PC_TRY(lookup(obj, key, required, &item, file, err));
    if (!item) return PC_OK;
    if (!cJSON_IsNumber(item)) return wrong_type(item, key, "a number", file, err);
    *out = item->valuedouble;
    return PC_OK;
}

pc_status pc_json_bool(const cJSON *obj, const char *key, int required, int *out, const char *file, pc_error *err) {
    const cJSON *item;
    PC_TRY(lookup(obj, key, required, &item, file, err));
    if (!item) return PC_OK;
    if (!cJSON_IsBool(item)) return wrong_type(item, key, "true or false", file, err);
    *out = cJSON_IsTrue(item) ? 1 : 0;
    return PC_OK;
}

pc_status pc_json_string(const cJSON *obj, const char *key, int required, const char **out, const char *file,
                         pc_error *err) {
    const cJSON *item;
    PC_TRY(lookup(obj, key, required, &item, file, err));
    if (!item) return PC_OK;
    if (!cJSON_IsString(item)) return wrong_type(item, key, "a string", file, err);
    *out = item->valuestring;
    return PC_OK;
}

pc_status pc_json_write_atomic(const cJSON *root, const char *path, pc_error *err) {
    char *text = cJSON_Print(root);
    if (!text) return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory printing JSON", path);
    pc_atomic_file af;
    pc_status status = pc_atomic_open(&af, path, err);
    if (status == PC_OK) {
        status = pc_atomic_write(&af, text, strlen(text), err);
        if (status == PC_OK) status = pc_atomic_write(&af, "\n", 1, err);
        if (status == PC_OK) status = pc_atomic_commit(&af, err);
        else pc_atomic_abort(&af);
    }
    cJSON_free(text);
    return status;
}
