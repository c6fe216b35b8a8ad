#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Messages quote names and bytes from untrusted files (a tensor named "a\nb"); the CLI promises a one-line
 * error, so control characters become '?'. */
static void one_line(char *msg) {
    for (unsigned char *p = (unsigned char *)msg; *p; p++)
        if (*p < 0x20 || *p == 0x7f) *p = '?';
}

pc_status pc_fail(pc_error *err, pc_status st, const char *fmt, ...) {
    if (!err) return st;
    err->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    one_line(err->msg);
    return st;
}

pc_status pc_error_prefix(pc_error *err, const char *fmt, ...) {
    if (!err) return PC_ERR_INTERNAL;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s%s", prefix, old);
    one_line(err->msg);
    return err->status;
}

void pc_error_clear(pc_error *err) {
    if (!err) return;
    err->status = PC_OK;
    err->msg[0] = '\0';
}

const char *pc_status_name(pc_status st) {
    switch (st) {
    case PC_OK: return "ok";
    case PC_ERR_IO: return "i/o error";
    case PC_ERR_FORMAT: return "format error";
    case PC_ERR_NOMEM: return "out of memory";
    case PC_ERR_USAGE: return "usage error";
    case PC_ERR_UNSUPPORTED: return "unsupported";
    case PC_ERR_NUMERIC: return "numerical failure";
    case PC_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *pc_version(void) { return "0.1.0"; }
