/* Resumable checkpoints. DIR/checkpoint-<step>/ holds the methods' files (for people and tools) and
 * trainer_state.bin (for --resume): step, RNG, sampler position, and every parameter block with its optimizer
 * moments, as raw little-endian floats so a resumed run continues bit for bit. The directory is written
 * under a temporary name and renamed into place: a checkpoint is complete or absent. */
#include "train/checkpoint.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fileio.h"

#define STATE_MAGIC "PCCKPT01"

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

typedef struct state_writer {
    pc_atomic_file af;
    uint64_t hash;
    pc_error *err;
    pc_status st;
} state_writer;

static void put(state_writer *w, const void *data, size_t n) {
    if (w->st != PC_OK) return;
    w->hash = fnv1a(w->hash, data, n);
    w->st = pc_atomic_write(&w->af, data, n, w->err);
}

static pc_status write_state(const char *path, const pc_checkpoint_state *cs, pc_params *const *blocks, int n_blocks,
                             pc_error *err) {
    state_writer w = {.hash = 0xcbf29ce484222325ull, .err = err, .st = PC_OK};
    PC_TRY(pc_atomic_open(&w.af, path, err));
    put(&w, STATE_MAGIC, 8);
    int64_t header[4] = {cs->step, cs->tokens, (int64_t)cs->sampler_len, n_blocks};
    put(&w, header, sizeof header);
    put(&w, cs->rng.s, sizeof cs->rng.s);
    put(&w, cs->sampler, cs->sampler_len);
    for (int b = 0; b < n_blocks; b++) {
        const pc_params *p = blocks[b];
        int64_t count = (int64_t)p->count, has_moments = p->m != NULL;
        put(&w, &count, sizeof count);
        put(&w, &has_moments, sizeof has_moments);
        put(&w, p->data, p->count * sizeof(float));
        if (has_moments) {
            put(&w, p->m, p->count * sizeof(float));
            put(&w, p->v, p->count * sizeof(float));
        }
    }
    uint64_t hash = w.hash;
    put(&w, &hash, sizeof hash);
    if (w.st != PC_OK) {
        pc_atomic_abort(&w.af);
        return w.st;
    }
    return pc_atomic_commit(&w.af, err);
}

pc_status pc_checkpoint_write(const char *out_dir, const pc_checkpoint_state *cs, pc_method **methods, int n_methods,
                              pc_params *const *blocks, int n_blocks, char *written, size_t written_cap, pc_error *err) {
    char final_dir[4096], tmp_dir[4200], path[4400];
    snprintf(final_dir, sizeof final_dir, "%s/checkpoint-%ld", out_dir, cs->step);
    snprintf(tmp_dir, sizeof tmp_dir, "%s.tmp-%ld", final_dir, (long)getpid());
    pc_remove_tree(tmp_dir);
    PC_TRY(pc_mkdir_p(tmp_dir, err));
    pc_status st = pc_save_methods(methods, n_methods, tmp_dir, err);
    snprintf(path, sizeof path, "%s/trainer_state.bin", tmp_dir);
    if (st == PC_OK) st = write_state(path, cs, blocks, n_blocks, err);
    if (st == PC_OK) st = pc_fsync_dir(tmp_dir, err);
    if (st == PC_OK) {
        pc_remove_tree(final_dir); /* a checkpoint of the same step from an earlier, abandoned run */
        if (rename(tmp_dir, final_dir) != 0) st = pc_fail(err, PC_ERR_IO, "%s: cannot rename checkpoint into place", final_dir);
    }
    if (st == PC_OK) st = pc_fsync_dir(out_dir, err);
    if (st != PC_OK) {
        pc_remove_tree(tmp_dir);
        return st;
    }
    if (written) snprintf(written, written_cap, "%s", final_dir);
    return PC_OK;
}

/* "<anything>.tmp.<digits>" (pc_atomic_open) or "checkpoint-<digits>.tmp-<digits>" (pc_checkpoint_write). */
static int is_partial_name(const char *name) {
    long step, pid;
    int used = 0;
    if (sscanf(name, "checkpoint-%ld.tmp-%ld%n", &step, &pid, &used) == 2 && name[used] == '\0') return 1;
    const char *dot = strstr(name, ".tmp.");
    if (!dot) return 0;
    const char *digits = dot + 5;
    if (!*digits) return 0;
    for (const char *p = digits; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

static void clean_dir(const char *dir, int depth) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (pc_path_join(path, sizeof path, dir, e->d_name)) continue;
        if (is_partial_name(e->d_name)) pc_remove_tree(path);
        else if (depth > 0 && pc_is_dir(path)) clean_dir(path, depth - 1);
    }
    closedir(d);
}

void pc_checkpoint_clean_partial(const char *out_dir) { clean_dir(out_dir, 1); }

long pc_checkpoint_newest(const char *out_dir) {
    DIR *d = opendir(out_dir);
    if (!d) return -1;
    long best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        long step;
        char rest;
        if (sscanf(e->d_name, "checkpoint-%ld%c", &step, &rest) != 1) continue; /* skips .tmp-* */
        char path[4096];
        snprintf(path, sizeof path, "%s/%s/trainer_state.bin", out_dir, e->d_name);
        if (step > best && pc_path_exists(path)) best = step;
    }
    closedir(d);
    return best;
}

typedef struct state_reader {
    const unsigned char *p, *end;
    uint64_t hash;
    int short_read;
} state_reader;

static void take(state_reader *r, void *out, size_t n) {
    if (r->short_read || (size_t)(r->end - r->p) < n) {
        r->short_read = 1;
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p, n);
    r->hash = fnv1a(r->hash, r->p, n);
    r->p += n;
}

pc_status pc_checkpoint_read(const char *out_dir, long step, pc_checkpoint_state *cs, pc_params *const *blocks,
                             int n_blocks, pc_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint-%ld/trainer_state.bin", out_dir, step);
    char *buf;
    size_t len;
    PC_TRY(pc_read_file(path, &buf, &len, err));
    state_reader r = {(const unsigned char *)buf, (const unsigned char *)buf + len, 0xcbf29ce484222325ull, 0};
    char magic[8];
    int64_t header[4];
    take(&r, magic, 8);
    take(&r, header, sizeof header);
    pc_status st = PC_OK;
    if (r.short_read || memcmp(magic, STATE_MAGIC, 8)) st = pc_fail(err, PC_ERR_FORMAT, "%s: not a peftc checkpoint", path);
    if (st == PC_OK && header[3] != n_blocks)
        st = pc_fail(err, PC_ERR_FORMAT, "%s: %lld parameter blocks, this run has %d (other methods?)", path,
                     (long long)header[3], n_blocks);
    if (st == PC_OK && (header[2] < 0 || (size_t)header[2] > len))
        st = pc_fail(err, PC_ERR_FORMAT, "%s: corrupt sampler state", path);
    if (st == PC_OK) {
        cs->step = header[0];
        cs->tokens = header[1];
        take(&r, cs->rng.s, sizeof cs->rng.s);
        cs->sampler_len = (size_t)header[2];
        cs->sampler = pc_malloc(cs->sampler_len ? cs->sampler_len : 1);
        if (!cs->sampler) st = pc_fail(err, PC_ERR_NOMEM, "out of memory");
        else take(&r, cs->sampler, cs->sampler_len);
    }
    for (int b = 0; b < n_blocks && st == PC_OK; b++) {
        pc_params *p = blocks[b];
        int64_t count, has_moments;
        take(&r, &count, sizeof count);
        take(&r, &has_moments, sizeof has_moments);
        if (r.short_read || count != (int64_t)p->count) {
            st = pc_fail(err, PC_ERR_FORMAT, "%s: block %d has %lld parameters, this run has %zu", path, b,
                         (long long)count, p->count);
            break;
        }
        take(&r, p->data, p->count * sizeof(float));
        if (has_moments) {
            if (!p->m && (st = pc_params_alloc_moments(p, err)) != PC_OK) break;
            take(&r, p->m, p->count * sizeof(float));
            take(&r, p->v, p->count * sizeof(float));
        }
    }
    if (st == PC_OK) {
        uint64_t want = r.hash, got;
        take(&r, &got, sizeof got);
        if (r.short_read || got != want || r.p != r.end) st = pc_fail(err, PC_ERR_FORMAT, "%s: checksum mismatch (truncated or corrupt)", path);
    }
    pc_free(buf);
    if (st != PC_OK) {
        pc_free(cs->sampler);
        cs->sampler = NULL;
    }
    return st;
}
