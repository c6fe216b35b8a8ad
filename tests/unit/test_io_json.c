/* JSON helpers: syntax errors at hand-counted line:column positions, typed getters (required, optional,
 * null, wrong type, out of range), atomic write and read back, and running out of memory: cJSON allocates
 * through the library's allocator, so a parse that runs out is PC_ERR_NOMEM, never a syntax error, and a
 * builder that loses a member knows it. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "io/json.h"
#include "test_support.h"

static char tmp_dir[] = "/tmp/peftc_io_json_XXXXXX";

static const char *write_text(const char *name, const char *text) {
    static char path[512]; /* test-only scratch */
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    pc_error err;
    if (pc_write_file_atomic(path, text, strlen(text), &err) != PC_OK) return NULL;
    return path;
}

/* Load text that must fail; the message must name the file and either contain `want` or give line
 * `line` and a column in [col, col + 1] (cJSON reports some errors one byte past the offending one). */
static void expect_syntax_error(const char *text, int line, int col, const char *want, const char *what) {
    const char *path = write_text("bad.json", text);
    cJSON *root = (cJSON *)1;
    pc_error err = {0};
    pc_status s = pc_json_load(&root, path, &err);
    CHECK(s == PC_ERR_FORMAT && root == NULL, "%s: rejected", what);
    int ok = strstr(err.msg, path) != NULL;
    if (want) {
        ok &= strstr(err.msg, want) != NULL;
    } else {
        char a[32], b[32];
        snprintf(a, sizeof a, ": %d:%d:", line, col);
        snprintf(b, sizeof b, ": %d:%d:", line, col + 1);
        ok &= strstr(err.msg, a) || strstr(err.msg, b);
    }
    CHECK(ok, "%s: message '%s' (want %d:%d %s)", what, err.msg, line, col, want ? want : "");
}

static void test_syntax_errors(void) {
    /* Positions counted by hand: the first character that cannot be accepted. */
    expect_syntax_error("{\n  \"a\": 1,\n  \"b\": tru\n}\n", 3, 8, NULL, "bad literal on line 3");
    expect_syntax_error("{\"a\": 1,}", 1, 9, NULL, "trailing comma at the end");
    expect_syntax_error("{\"a\": 1,}\n\n", 1, 9, NULL, "trailing comma");
    expect_syntax_error("{\"a\": [1, 2", 0, 0, "end of file", "unterminated array");
    expect_syntax_error("{\"a\": \"abc", 1, 7, NULL, "unterminated string: at its opening quote");
    expect_syntax_error("{} x", 1, 4, NULL, "text after the value");
    expect_syntax_error("{\n\"\xc3\xa9\xc3\xa9\": @}", 2, 7, NULL, "columns count UTF-8 characters, not bytes");
    expect_syntax_error("", 0, 0, "end of file", "empty file");
    cJSON *root;
    pc_error err = {0};
    CHECK(pc_json_load(&root, "/nonexistent/x.json", &err) == PC_ERR_IO && root == NULL, "missing file is IO");
}

static void test_getters(void) {
    const char *path = write_text("cfg.json",
                                  "{\"r\": 8, \"alpha\": 16.5, \"on\": true, \"name\": \"lora\", \"nothing\": null,\n"
                                  " \"frac\": 1.5, \"huge\": 1e30, \"neg\": -3, \"list\": [1]}\n");
    cJSON *root;
    pc_error err = {0};
    CHECK(pc_json_load(&root, path, &err) == PC_OK, "load: %s", err.msg);
    if (!root) return;
    long r = 0, missing = 42, neg = 0;
    double alpha = 0, dflt = 0.25;
    int on = 0;
    const char *name = NULL, *dname = "default";
    CHECK(pc_json_int(root, "r", 1, &r, path, &err) == PC_OK && r == 8, "int");
    CHECK(pc_json_int(root, "neg", 1, &neg, path, &err) == PC_OK && neg == -3, "negative int");
    CHECK(pc_json_double(root, "alpha", 1, &alpha, path, &err) == PC_OK && alpha == 16.5, "double");
    CHECK(pc_json_double(root, "r", 1, &alpha, path, &err) == PC_OK && alpha == 8.0, "int is a valid double");
    CHECK(pc_json_bool(root, "on", 1, &on, path, &err) == PC_OK && on == 1, "bool");
    CHECK(pc_json_string(root, "name", 1, &name, path, &err) == PC_OK && !strcmp(name, "lora"), "string");
    CHECK(pc_json_int(root, "absent", 0, &missing, path, &err) == PC_OK && missing == 42, "optional keeps default");
    CHECK(pc_json_double(root, "nothing", 0, &dflt, path, &err) == PC_OK && dflt == 0.25, "null counts as absent");
    CHECK(pc_json_string(root, "nothing", 0, &dname, path, &err) == PC_OK && !strcmp(dname, "default"),
          "null string keeps default");

    CHECK(pc_json_int(root, "absent", 1, &r, path, &err) == PC_ERR_FORMAT && strstr(err.msg, path) &&
              strstr(err.msg, "'absent'") && strstr(err.msg, "missing"),
          "required missing: %s", err.msg);
    CHECK(pc_json_int(root, "nothing", 1, &r, path, &err) == PC_ERR_FORMAT, "required null is missing");
    CHECK(pc_json_int(root, "name", 1, &r, path, &err) == PC_ERR_FORMAT && strstr(err.msg, "'name'") &&
              strstr(err.msg, "string"),
          "wrong type names key and type: %s", err.msg);
    CHECK(pc_json_int(root, "frac", 1, &r, path, &err) == PC_ERR_FORMAT, "1.5 is not an integer");
    CHECK(pc_json_int(root, "huge", 1, &r, path, &err) == PC_ERR_FORMAT, "1e30 is out of range");
    CHECK(pc_json_bool(root, "r", 1, &on, path, &err) == PC_ERR_FORMAT, "number is not a bool");
    CHECK(pc_json_string(root, "list", 1, &name, path, &err) == PC_ERR_FORMAT && strstr(err.msg, "array"),
          "array is not a string");
    CHECK(pc_json_double(root, "on", 0, &alpha, path, &err) == PC_ERR_FORMAT, "present optional of wrong type");
    cJSON_Delete(root);
}

static void test_write_read(void) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "peft_type", "LORA");
    cJSON_AddNumberToObject(root, "r", 16);
    cJSON_AddNumberToObject(root, "lora_dropout", 0.05);
    cJSON_AddBoolToObject(root, "inference_mode", 1);
    char path[512];
    snprintf(path, sizeof path, "%s/out.json", tmp_dir);
    pc_error err = {0};
    CHECK(pc_json_write_atomic(root, path, &err) == PC_OK, "write: %s", err.msg);
    cJSON_Delete(root);
    char *text;
    size_t len;
    CHECK(pc_read_file(path, &text, &len, &err) == PC_OK, "read");
    /* Keys in the order given, file ends with a newline. */
    const char *p = strstr(text, "peft_type"), *q = strstr(text, "inference_mode");
    CHECK(p && q && p < q && len > 0 && text[len - 1] == '\n', "key order and final newline");
    pc_free(text);
    CHECK(pc_json_load(&root, path, &err) == PC_OK, "reload");
    long r = 0;
    double d = 0;
    const char *s = NULL;
    CHECK(pc_json_int(root, "r", 1, &r, path, &err) == PC_OK && r == 16, "r");
    CHECK(pc_json_double(root, "lora_dropout", 1, &d, path, &err) == PC_OK && d == 0.05, "dropout exact");
    CHECK(pc_json_string(root, "peft_type", 1, &s, path, &err) == PC_OK && !strcmp(s, "LORA"), "peft_type");
    cJSON_Delete(root);
    CHECK(pc_json_write_atomic(root = cJSON_CreateObject(), "/nonexistent/x.json", &err) == PC_ERR_IO,
          "unwritable path");
    cJSON_Delete(root);
}

/* Every allocation of a load, failing in turn: out of memory each time (with the file's name), never a syntax
 * error; more failure points than the file has values, so cJSON's own allocations are among them. */
static void test_out_of_memory_load(void) {
    const char *path = write_text("oom.json", "{\"a\": [1, 2, {\"b\": \"text\"}], \"c\": null, \"d\": true}");
    long n;
    int clean = 1;
    cJSON *root = NULL;
    for (n = 0; n < 1000; n++) {
        pc_error err = {0};
        pc_alloc_fail_after(n);
        pc_status s = pc_json_load(&root, path, &err);
        pc_alloc_fail_after(-1);
        if (s == PC_OK) break;
        if (s != PC_ERR_NOMEM || root || !strstr(err.msg, path) || !strstr(err.msg, "out of memory"))
            clean = 0, CHECK(0, "allocation %ld failing: status %d, message '%s'", n, s, err.msg);
    }
    CHECK(clean && root && n >= 9, "load: %ld failure points (9 values and 5 keys), each out of memory", n);
    cJSON_Delete(root);
}

/* pc_json_put / pc_json_append count every member they could not add and free what they were given. */
static void test_out_of_memory_build(void) {
    cJSON *obj = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    int failed = 0;
    pc_json_put(obj, "a", cJSON_CreateNumber(1), &failed);
    pc_json_put(obj, "missing", NULL, &failed); /* a create that failed */
    pc_json_append(arr, NULL, &failed);
    CHECK(failed == 2 && cJSON_GetArraySize(obj) == 1 && cJSON_GetArraySize(arr) == 0, "NULL items counted (%d)", failed);
    cJSON *item = cJSON_CreateString("x");
    pc_alloc_fail_after(0); /* the key's copy fails: the item must be freed (LeakSanitizer) */
    pc_json_put(obj, "key", item, &failed);
    pc_alloc_fail_after(-1);
    CHECK(failed == 3 && !cJSON_GetObjectItemCaseSensitive(obj, "key"), "failed key copy counted");
    pc_error err = {0};
    CHECK(pc_json_built(failed, "cfg.json", &err) == PC_ERR_NOMEM && strstr(err.msg, "cfg.json"), "built: %s", err.msg);
    CHECK(pc_json_built(0, "cfg.json", &err) == PC_OK, "built: no failure");
    cJSON_Delete(obj);
    cJSON_Delete(arr);
}

int main(void) {
    if (!mkdtemp(tmp_dir)) {
        test_fail_setup("mkdtemp");
        return test_finish();
    }
    test_syntax_errors();
    test_getters();
    test_write_read();
    test_out_of_memory_load();
    test_out_of_memory_build();
    pc_remove_tree(tmp_dir);
    return test_finish();
}
