/* Thin helpers over cJSON for reading configs with errors that name the file and the field. */
#ifndef PC_IO_JSON_H
#define PC_IO_JSON_H

#include <cjson/cJSON.h>

#include "core/error.h"

/* cJSON allocates through pc_malloc_plain and pc_free (hooks installed when the library is loaded), so the
 * fault-injection sweep reaches every JSON allocation and an out-of-memory parse or build is PC_ERR_NOMEM,
 * not a syntax error or a file missing a field. */

/* Why pc_json_parse returned NULL. */
typedef struct pc_json_failure {
    pc_status status; /* PC_ERR_NOMEM (out of memory) or PC_ERR_FORMAT */
    size_t at;        /* FORMAT: byte offset of the error, as cJSON reports it */
    int trailing;     /* FORMAT: a complete value, followed at `at` by something other than whitespace */
} pc_json_failure;
/* Parse text[0..len) as one JSON value with only JSON whitespace after it (a JSON text, RFC 8259; UTF-8 is
 * the caller's to check, with its own rules and message): the tree, or NULL and *why. */
cJSON *pc_json_parse(const char *text, size_t len, pc_json_failure *why);
/* Parse a JSON file; on a syntax error the message gives the file and line:column. */
pc_status pc_json_load(cJSON **out, const char *path, pc_error *err);
/* Typed getters: PC_OK and *out set; missing + required -> format error naming file and key;
 * missing + optional -> *out keeps its default; wrong type -> format error. */
pc_status pc_json_int(const cJSON *obj, const char *key, int required, long *out, const char *file, pc_error *err);
pc_status pc_json_double(const cJSON *obj, const char *key, int required, double *out, const char *file,
                         pc_error *err);
pc_status pc_json_bool(const cJSON *obj, const char *key, int required, int *out, const char *file, pc_error *err);
/* Returns a borrowed string pointer (or the default). */
pc_status pc_json_string(const cJSON *obj, const char *key, int required, const char **out, const char *file,
                         pc_error *err);
/* Building a tree. cJSON's Add functions return NULL or false when an allocation fails and leave the object
 * short of a member, so a file written from it would be wrong rather than absent. These take ownership of
 * item (a failed create, NULL, is accepted; an item that cannot be added is deleted) and count failures in
 * *failed, so a builder checks once, at the end, with pc_json_built. */
void pc_json_put(cJSON *object, const char *key, cJSON *item, int *failed);
void pc_json_append(cJSON *array, cJSON *item, int *failed);
/* The strings of a comma-separated list ("q_proj,v_proj") as a JSON array; NULL when out of memory, never a
 * shorter list. Empty items are skipped. */
cJSON *pc_json_csv_array(const char *csv);
/* PC_OK, or PC_ERR_NOMEM naming what was being built when failed > 0. */
pc_status pc_json_built(int failed, const char *what, pc_error *err);
/* Write a cJSON tree atomically, pretty-printed with keys as given. */
pc_status pc_json_write_atomic(const cJSON *root, const char *path, pc_error *err);

#endif
