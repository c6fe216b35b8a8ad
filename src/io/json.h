/* Thin helpers over cJSON for reading configs with errors that name the file and the field. */
#ifndef PC_IO_JSON_H
#define PC_IO_JSON_H

#include <cjson/cJSON.h>

#include "core/error.h"

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
/* Write a cJSON tree atomically, pretty-printed with keys as given. */
pc_status pc_json_write_atomic(const cJSON *root, const char *path, pc_error *err);

#endif
