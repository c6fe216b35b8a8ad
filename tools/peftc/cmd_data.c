/* peftc data from-text: turn a folder of plain-text files into {"text": ...} JSONL records, split the way
 * every peftc experiment splits (files sorted by name, every 10th file held out), in paragraph-aligned
 * chunks of about --chunk-chars characters. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/alloc.h"
#include "core/fileio.h"

static const cli_opt data_opts[] = {
    {"--dir", OPT_MULTI, "folder of .txt files (repeatable)"},
    {"--out", OPT_VALUE, "training JSONL to write"},
    {"--heldout", OPT_VALUE, "held-out JSONL to write (every --every-th file)"},
    {"--every", OPT_VALUE, "hold out every Nth file [10]"},
    {"--chunk-chars", OPT_VALUE, "approximate characters per record [1500]"},
    {"--max-records", OPT_VALUE, "stop after this many training records [all]"},
    {"--help", OPT_FLAG, "this help"},
};
#define N_DATA_OPTS (int)(sizeof data_opts / sizeof data_opts[0])

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* JSON string escaping of UTF-8 text (control characters as \u00XX). */
static void write_json_string(pc_atomic_file *af, const char *s, size_t n, pc_error *err) {
    char buf[8];
    pc_atomic_write(af, "\"", 1, err);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\t') esc = "\\t";
        else if (c == '\r') esc = "\\r";
        else if (c < 0x20) {
            snprintf(buf, sizeof buf, "\\u%04x", c);
            esc = buf;
        }
        if (!esc) continue;
        pc_atomic_write(af, s + start, i - start, err);
        pc_atomic_write(af, esc, strlen(esc), err);
        start = i + 1;
    }
    pc_atomic_write(af, s + start, n - start, err);
    pc_atomic_write(af, "\"", 1, err);
}

/* The first line break or sentence end (". ") at or after `from`; len if none. */
static size_t next_break(const char *text, size_t len, size_t from) {
    for (size_t i = from; i < len; i++) {
        if (text[i] == '\n') return i;
        if (text[i] == '.' && i + 1 < len && text[i + 1] == ' ') return i + 1;
    }
    return len;
}

/* Records end at a line break or a sentence end once they are at least `chunk` bytes long (or at the end of the file). */
static long write_chunks(pc_atomic_file *af, const char *text, size_t len, size_t chunk, long max, pc_error *err) {
    long written = 0;
    size_t start = 0;
    while (start < len && (max <= 0 || written < max)) {
        while (start < len && (text[start] == '\n' || text[start] == '\r' || text[start] == ' ')) start++;
        if (start >= len) break;
        size_t end = start + chunk < len ? start + chunk : len;
        end = next_break(text, len, end);
        size_t n = end - start;
        while (n > 0 && (text[start + n - 1] == '\n' || text[start + n - 1] == '\r' || text[start + n - 1] == ' ')) n--;
        if (n > 0) {
            pc_atomic_write(af, "{\"text\": ", 9, err);
            write_json_string(af, text + start, n, err);
            pc_atomic_write(af, "}\n", 2, err);
            written++;
        }
        start = end;
    }
    return written;
}

static pc_status list_txt(const char *dir, char ***names, int *count, pc_error *err) {
    DIR *d = opendir(dir);
    if (!d) return pc_fail(err, PC_ERR_IO, "%s: cannot open folder", dir);
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".txt")) continue;
        if (*count == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = pc_realloc(*names, sizeof(char *) * (size_t)*count, sizeof(char *) * (size_t)cap);
            if (!grown) {
                closedir(d);
                return pc_fail(err, PC_ERR_NOMEM, "out of memory");
            }
            *names = grown;
        }
        char path[4096];
        pc_path_join(path, sizeof path, dir, e->d_name);
        if (!((*names)[*count] = pc_strdup(path))) {
            closedir(d);
            return pc_fail(err, PC_ERR_NOMEM, "out of memory");
        }
        (*count)++;
    }
    closedir(d);
    return PC_OK;
}

int cmd_data(int argc, char **argv) {
    cli_args a;
    if (argc < 1 || strcmp(argv[0], "from-text")) return cli_usage_error("usage: peftc data from-text --dir DIR --out FILE [--heldout FILE]");
    if (cli_parse(&a, data_opts, N_DATA_OPTS, argc - 1, argv + 1, "data from-text")) return 2;
    if (cli_flag(&a, "--help")) {
        cli_print_help("data from-text", "--dir DIR --out FILE [--heldout FILE]", data_opts, N_DATA_OPTS);
        return 0;
    }
    long every = 10, chunk = 1500, max = 0;
    if (cli_get_long(&a, "--every", &every) || cli_get_long(&a, "--chunk-chars", &chunk) ||
        cli_get_long(&a, "--max-records", &max))
        return 2;
    const char *out = cli_get(&a, "--out"), *heldout = cli_get(&a, "--heldout");
    if (!out || cli_count(&a, "--dir") == 0 || every < 2 || chunk < 1) return cli_usage_error("data from-text: --dir and --out are required");
    pc_error err = {0};
    char **names = NULL;
    int count = 0;
    pc_status st = PC_OK;
    for (int i = 0; i < cli_count(&a, "--dir") && st == PC_OK; i++) st = list_txt(cli_get_nth(&a, "--dir", i), &names, &count, &err);
    if (st == PC_OK && count == 0) st = pc_fail(&err, PC_ERR_USAGE, "data from-text: no .txt files found");
    if (st == PC_OK) qsort(names, (size_t)count, sizeof *names, compare_names);
    pc_atomic_file train_f = {0}, held_f = {0};
    if (st == PC_OK) st = pc_atomic_open(&train_f, out, &err);
    if (st == PC_OK && heldout) st = pc_atomic_open(&held_f, heldout, &err);
    long n_train = 0, n_held = 0;
    for (int i = 0; i < count && st == PC_OK; i++) {
        char *text;
        size_t len;
        st = pc_read_file(names[i], &text, &len, &err);
        if (st != PC_OK) break;
        int held = (i + 1) % every == 0;
        if (held && heldout) n_held += write_chunks(&held_f, text, len, (size_t)chunk, 0, &err);
        else if (!held && (max <= 0 || n_train < max)) n_train += write_chunks(&train_f, text, len, (size_t)chunk, max ? max - n_train : 0, &err);
        pc_free(text);
        if (train_f.failed || held_f.failed) st = PC_ERR_IO;
    }
    if (st == PC_OK) st = pc_atomic_commit(&train_f, &err);
    else pc_atomic_abort(&train_f);
    if (heldout) {
        if (st == PC_OK) st = pc_atomic_commit(&held_f, &err);
        else pc_atomic_abort(&held_f);
    }
    for (int i = 0; i < count; i++) pc_free(names[i]);
    pc_free(names);
    if (st != PC_OK) return cli_report(&err);
    fprintf(stderr, "wrote %ld training records to %s%s%s (%ld held out)\n", n_train, out, heldout ? " and held-out records to " : "",
            heldout ? heldout : "", n_held);
    return 0;
}
