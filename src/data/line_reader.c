#include "data/line_reader.h"

#include <errno.h>
#include <string.h>

#include "core/alloc.h"

pc_status pc_line_reader_open(pc_line_reader *r, const char *path, pc_error *err) {
    memset(r, 0, sizeof *r);
    r->f = fopen(path, "rb");
    if (!r->f) return pc_fail(err, PC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    r->cap = 4096;
    r->buf = pc_malloc(r->cap);
    if (!r->buf) {
        fclose(r->f);
        r->f = NULL;
        return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory for the line buffer", path);
    }
    return PC_OK;
}

static pc_status line_reader_grow(pc_line_reader *r, const char *path, pc_error *err) {
    size_t new_cap = r->cap * 2;
    char *p = pc_realloc(r->buf, r->cap, new_cap);
    if (!p) return pc_fail(err, PC_ERR_NOMEM, "%s: line %ld: out of memory (line longer than %zu bytes)", path,
                           r->line_no, r->cap);
    r->buf = p;
    r->cap = new_cap;
    return PC_OK;
}

pc_status pc_line_reader_next(pc_line_reader *r, int *got, const char *path, pc_error *err) {
    *got = 0;
    r->len = 0;
    int c = getc_unlocked(r->f);
    if (c == EOF) {
        if (ferror(r->f)) return pc_fail(err, PC_ERR_IO, "%s: read error after line %ld", path, r->line_no);
        return PC_OK;
    }
    r->line_no++;
    while (c != EOF && c != '\n') {
        if (r->len + 1 >= r->cap) PC_TRY(line_reader_grow(r, path, err));
        r->buf[r->len++] = (char)c;
        c = getc_unlocked(r->f);
    }
    if (c == EOF && ferror(r->f)) return pc_fail(err, PC_ERR_IO, "%s: line %ld: read error", path, r->line_no);
    if (r->len > 0 && r->buf[r->len - 1] == '\r') r->len--;
    r->buf[r->len] = '\0';
    *got = 1;
    return PC_OK;
}

void pc_line_reader_close(pc_line_reader *r) {
    if (r->f) fclose(r->f);
    pc_free(r->buf);
    memset(r, 0, sizeof *r);
}

long pc_utf8_first_invalid(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = u[i];
        if (c == 0) return (long)i;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) need = 2, lo = 0xA0;          /* no overlong 3-byte forms */
        else if (c == 0xED) need = 2, hi = 0x9F;          /* no UTF-16 surrogates */
        else if (c >= 0xE1 && c <= 0xEF) need = 2;
        else if (c == 0xF0) need = 3, lo = 0x90;          /* no overlong 4-byte forms */
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) need = 3, hi = 0x8F;          /* nothing above U+10FFFF */
        else return (long)i;                              /* 0x80..0xC1, 0xF5..0xFF */
        if (i + need >= len) return (long)i; /* truncated sequence */
        if (u[i + 1] < lo || u[i + 1] > hi) return (long)i;
        for (size_t k = 2; k <= need; k++)
            if (u[i + k] < 0x80 || u[i + k] > 0xBF) return (long)i;
        i += need + 1;
    }
    return -1;
}
