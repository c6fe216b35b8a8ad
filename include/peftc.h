/* peftc — parameter-efficient fine-tuning in C. Public API.
 *
 * Every function that can fail returns a pc_status and, when it fails, fills the caller's pc_error with a
 * one-line message naming the file and the place that was wrong ("model.safetensors: tensor 'x': ...").
 * The library never exits or aborts on bad input; only the CLI turns errors into exit codes. */
#ifndef PEFTC_H
#define PEFTC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pc_status {
    PC_OK = 0,
    PC_ERR_IO,          /* a file could not be opened, read or written */
    PC_ERR_FORMAT,      /* a file or record is malformed */
    PC_ERR_NOMEM,       /* an allocation failed */
    PC_ERR_USAGE,       /* the caller asked for something impossible (bad option, unknown method) */
    PC_ERR_UNSUPPORTED, /* a well-formed input that peftc does not handle (model_type, dtype, option) */
    PC_ERR_NUMERIC,     /* a non-finite loss or gradient */
    PC_ERR_INTERNAL     /* a bug: an invariant did not hold */
} pc_status;

typedef struct pc_error {
    pc_status status;
    char msg[1024];
} pc_error;

const char *pc_status_name(pc_status st);
const char *pc_version(void);

#ifdef __cplusplus
}
#endif
#endif
