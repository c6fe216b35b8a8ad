#include "core/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"

pc_status pc_read_file(const char *path, char **out, size_t *out_len, pc_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return pc_fail(err, PC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return pc_fail(err, PC_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    }
    long len = ftell(f);
    if (len < 0) {
        fclose(f);
        return pc_fail(err, PC_ERR_IO, "%s: not a regular file", path);
    }
    rewind(f);
    char *buf = pc_malloc((size_t)len + 1);
    if (!buf) {
        fclose(f);
        return pc_fail(err, PC_ERR_NOMEM, "%s: out of memory reading %ld bytes", path, len);
    }
    size_t got = fread(buf, 1, (size_t)len, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != (size_t)len) {
        pc_free(buf);
        return pc_fail(err, PC_ERR_IO, "%s: read error", path);
    }
    buf[len] = '\0';
    *out = buf;
    if (out_len) *out_len = (size_t)len;
    return PC_OK;
}

pc_status pc_mmap_open(pc_mmap *m, const char *path, pc_error *err) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return pc_fail(err, PC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pc_fail(err, PC_ERR_IO, "%s: not a regular file", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size == 0) {
        close(fd);
        return PC_OK; /* empty file: callers report it as truncated */
    }
    void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        m->size = 0;
        return pc_fail(err, PC_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    }
    m->data = p;
    return PC_OK;
}

void pc_mmap_close(pc_mmap *m) {
    if (m->data) munmap(m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

static void dir_of(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, cap, ".");
    } else if (slash == path) {
        snprintf(dir, cap, "/");
    } else {
        snprintf(dir, cap, "%.*s", (int)(slash - path), path);
    }
}

pc_status pc_fsync_dir(const char *dir, pc_error *err) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return pc_fail(err, PC_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0 && errno != EINVAL) return pc_fail(err, PC_ERR_IO, "%s: fsync: %s", dir, strerror(errno));
    return PC_OK;
}

pc_status pc_atomic_open(pc_atomic_file *af, const char *path, pc_error *err) {
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path) return pc_fail(err, PC_ERR_USAGE, "%s: path too long", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    snprintf(af->tmp_path, sizeof af->tmp_path, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) return pc_fail(err, PC_ERR_IO, "%s: cannot create: %s", af->tmp_path, strerror(errno));
    return PC_OK;
}

pc_status pc_atomic_write(pc_atomic_file *af, const void *data, size_t len, pc_error *err) {
    if (af->failed) return pc_fail(err, PC_ERR_IO, "%s: earlier write failed", af->path);
    if (len && fwrite(data, 1, len, af->f) != len) {
        af->failed = 1;
        return pc_fail(err, PC_ERR_IO, "%s: write failed: %s", af->path, strerror(errno));
    }
    return PC_OK;
}

pc_status pc_atomic_commit(pc_atomic_file *af, pc_error *err) {
    pc_status st = PC_OK;
    if (af->failed) st = pc_fail(err, PC_ERR_IO, "%s: write failed", af->path);
    if (st == PC_OK && fflush(af->f) != 0)
        st = pc_fail(err, PC_ERR_IO, "%s: write failed: %s", af->path, strerror(errno));
    if (st == PC_OK && fsync(fileno(af->f)) != 0)
        st = pc_fail(err, PC_ERR_IO, "%s: fsync failed: %s", af->path, strerror(errno));
    if (fclose(af->f) != 0 && st == PC_OK)
        st = pc_fail(err, PC_ERR_IO, "%s: close failed: %s", af->path, strerror(errno));
    af->f = NULL;
    if (st == PC_OK && rename(af->tmp_path, af->path) != 0)
        st = pc_fail(err, PC_ERR_IO, "%s: rename failed: %s", af->path, strerror(errno));
    if (st != PC_OK) {
        unlink(af->tmp_path);
        return st;
    }
    char dir[4096];
    dir_of(af->path, dir, sizeof dir);
    return pc_fsync_dir(dir, err);
}

void pc_atomic_abort(pc_atomic_file *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    if (af->tmp_path[0]) unlink(af->tmp_path);
}

pc_status pc_write_file_atomic(const char *path, const void *data, size_t len, pc_error *err) {
    pc_atomic_file af;
    PC_TRY(pc_atomic_open(&af, path, err));
    pc_status st = pc_atomic_write(&af, data, len, err);
    if (st != PC_OK) {
        pc_atomic_abort(&af);
        return st;
    }
    return pc_atomic_commit(&af, err);
}

pc_status pc_mkdir_p(const char *path, pc_error *err) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return pc_fail(err, PC_ERR_USAGE, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return pc_fail(err, PC_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return pc_fail(err, PC_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
    if (!pc_is_dir(buf)) return pc_fail(err, PC_ERR_IO, "%s: exists and is not a directory", buf);
    return PC_OK;
}

int pc_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int pc_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int pc_path_join(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

pc_status pc_copy_file_atomic(const char *src, const char *dst, pc_error *err) {
    char *buf;
    size_t len;
    PC_TRY(pc_read_file(src, &buf, &len, err));
    pc_status st = pc_write_file_atomic(dst, buf, len, err);
    pc_free(buf);
    return st;
}

void pc_remove_tree(const char *path) {
    /* lstat, not opendir first: a symlink is removed itself, never followed into what it points to. */
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    DIR *d = S_ISDIR(sb.st_mode) ? opendir(path) : NULL;
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    char child[4096];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (pc_path_join(child, sizeof child, path, e->d_name) == 0) pc_remove_tree(child);
    }
    closedir(d);
    rmdir(path);
}
