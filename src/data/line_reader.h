/* A streaming line reader for JSONL: lines of any length (the buffer grows), "\n" or "\r\n" endings, NUL
 * bytes kept (so the caller can reject them rather than silently cut the line), line numbers from 1. */
#ifndef PC_DATA_LINE_READER_H
#define PC_DATA_LINE_READER_H

#include <stddef.h>
#include <stdio.h>

#include "core/error.h"

typedef struct pc_line_reader {
    FILE *f;
    char *buf; /* the current line, NUL-terminated, without its line ending */
    size_t len, cap;
    long line_no; /* number of the current line */
} pc_line_reader;

pc_status pc_line_reader_open(pc_line_reader *r, const char *path, pc_error *err);
/* *got = 1 with the next line in r->buf / r->len, or *got = 0 at the end of the file. */
pc_status pc_line_reader_next(pc_line_reader *r, int *got, const char *path, pc_error *err);
void pc_line_reader_close(pc_line_reader *r);

/* Offset of the first byte that is not part of well-formed UTF-8 (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), or -1 when all len bytes are valid. NUL bytes count as invalid here because a
 * JSONL line cannot contain them. */
long pc_utf8_first_invalid(const char *s, size_t len);

#endif
