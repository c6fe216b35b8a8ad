/* Errors as values: a function that can fail returns pc_status and writes its message into a pc_error
 * owned by the caller. Messages follow "<file>: <place>: <what>"; callers add context with
 * pc_error_prefix as the error travels up ("model.safetensors: " + "tensor 'wte': shape ..."). */
#ifndef PC_CORE_ERROR_H
#define PC_CORE_ERROR_H

#include "peftc.h"

#if defined(__GNUC__)
#define PC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PC_PRINTF(a, b)
#endif

/* Set err (may be NULL) to status st with a formatted message; returns st so callers can `return pc_fail(...)`. */
pc_status pc_fail(pc_error *err, pc_status st, const char *fmt, ...) PC_PRINTF(3, 4);
/* Prepend formatted context to an existing message; returns err->status. */
pc_status pc_error_prefix(pc_error *err, const char *fmt, ...) PC_PRINTF(2, 3);
void pc_error_clear(pc_error *err);

/* Propagate a failure: `PC_TRY(f(x, err));` returns f's status from the enclosing function. */
#define PC_TRY(expr)                         \
    do {                                     \
        pc_status pc_try_st_ = (expr);       \
        if (pc_try_st_ != PC_OK) return pc_try_st_; \
    } while (0)

#endif
