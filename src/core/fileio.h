/* Files: whole-file reads, read-only memory maps, and atomic writes (temp file, fsync, rename, fsync of
 * the directory) so that a file peftc writes is either complete or absent, whatever kills the process. */
#ifndef PC_CORE_FILEIO_H
#define PC_CORE_FILEIO_H

#include <stddef.h>
#include <stdio.h>

#include "core/error.h"

/* Read a whole file into a NUL-terminated buffer the caller frees with pc_free. */
pc_status pc_read_file(const char *path, char **out, size_t *out_len, pc_error *err);

typedef struct pc_mmap {
    void *data;
    size_t size;
} pc_mmap;
pc_status pc_mmap_open(pc_mmap *m, const char *path, pc_error *err);
void pc_mmap_close(pc_mmap *m);

/* Atomic writer: bytes go to "<path>.tmp.<pid>"; commit fsyncs, renames over <path> and fsyncs the
 * directory; abort (or a failed commit) removes the temp file. */
typedef struct pc_atomic_file {
    FILE *f;
    char path[4096];
    char tmp_path[4200];
    int failed;
} pc_atomic_file;
pc_status pc_atomic_open(pc_atomic_file *af, const char *path, pc_error *err);
pc_status pc_atomic_write(pc_atomic_file *af, const void *data, size_t len, pc_error *err);
pc_status pc_atomic_commit(pc_atomic_file *af, pc_error *err);
void pc_atomic_abort(pc_atomic_file *af);
pc_status pc_write_file_atomic(const char *path, const void *data, size_t len, pc_error *err);

pc_status pc_mkdir_p(const char *path, pc_error *err);
pc_status pc_fsync_dir(const char *dir, pc_error *err);
int pc_path_exists(const char *path);
int pc_is_dir(const char *path);
/* Join dir and name into out (size cap); returns 0, or -1 if it would not fit. */
int pc_path_join(char *out, size_t cap, const char *dir, const char *name);
pc_status pc_copy_file_atomic(const char *src, const char *dst, pc_error *err);
/* Remove a directory tree (used to clear incomplete temp directories). */
void pc_remove_tree(const char *path);

#endif
