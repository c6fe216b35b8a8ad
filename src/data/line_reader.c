#include "data/line_reader.h"

#include <errno.h>
#include <string.h>

#include "core/alloc.h"
#include "core/utf8.h"

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
    size_t valid = pc_utf8_valid_prefix(s, len);
    const char *nul = memchr(s, 0, valid);
    if (nul) return (long)(nul - s);
    return valid == len ? -1 : (long)valid;
}
