/* GGUF LoRA export against llama.cpp's rules (formats.md §4), read back two ways: with src/io's validating
 * reader, and with the small reader below written from the container description alone. For every
 * non-DoRA LoRA golden: exactly the four metadata keys with their types and values; one lora_a/lora_b pair
 * per target named "<base GGUF tensor>.lora_{a,b}" (names from a table here, HF path → GGUF), F32, ne
 * [in, r] and [r, out]; A unchanged; B scaled so that llama.cpp's alpha/r gives PEFT's scale (rsLoRA,
 * alpha_pattern) and, for llama q/k only, rows permuted as convert_hf_to_gguf.py permutes the base; and the
 * delta llama.cpp computes, (alpha/r)·B·A with the permutation undone, equals PEFT's s·B·A. DoRA is refused
 * without a file; the CLI's usage and failure exits. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "peft/lora_export.h"
#include "peft/method.h"
#include "test_support.h"

static char golden_dir[4096];

/* ---- an independent GGUF reader (just enough for LoRA files) ------------------------------------------ */

typedef struct rd {
    const uint8_t *p;
    size_t n, at;
    int bad;
} rd;

static uint64_t rd_le(rd *r, int bytes) {
    uint64_t v = 0;
    if (r->at + (size_t)bytes > r->n) {
        r->bad = 1;
        return 0;
    }
    for (int i = 0; i < bytes; i++) v |= (uint64_t)r->p[r->at + i] << (8 * i);
    r->at += (size_t)bytes;
    return v;
}

static void rd_str(rd *r, char *out, size_t cap) {
    uint64_t len = rd_le(r, 8);
    if (r->bad || len >= cap || r->at + len > r->n) {
        r->bad = 1;
        out[0] = 0;
        return;
    }
    memcpy(out, r->p + r->at, len);
    out[len] = 0;
    r->at += len;
}

typedef struct tinfo {
    char name[128];
    uint32_t n_dims;
    int64_t ne[4];
    uint32_t type;
    uint64_t offset;
} tinfo;

typedef struct gfile {
    char *bytes;
    size_t size;
    char arch[64], gtype[64], atype[64];
    float alpha;
    int n_kv, n_known_kv, n_tensors;
    tinfo t[256];
    size_t data_start;
} gfile;

/* Parses the file; returns 0 and fills g, or -1 (with a CHECK failure naming the problem). */
static int gguf_parse(const char *path, gfile *g) {
    memset(g, 0, sizeof *g);
    pc_error err = {0};
    if (pc_read_file(path, &g->bytes, &g->size, &err) != PC_OK) {
        CHECK(0, "%s", err.msg);
        return -1;
    }
    rd r = {(const uint8_t *)g->bytes, g->size, 0, 0};
    CHECK(g->size > 24 && !memcmp(g->bytes, "GGUF", 4), "%s: magic", path);
    r.at = 4;
    CHECK(rd_le(&r, 4) == 3, "%s: version 3", path);
    int64_t n_tensors = (int64_t)rd_le(&r, 8), n_kv = (int64_t)rd_le(&r, 8);
    if (n_tensors < 0 || n_tensors > 256 || n_kv < 0 || n_kv > 64) {
        CHECK(0, "%s: counts %lld tensors, %lld kvs", path, (long long)n_tensors, (long long)n_kv);
        return -1;
    }
    g->n_kv = (int)n_kv;
    g->n_tensors = (int)n_tensors;
    uint64_t alignment = 32;
    for (int i = 0; i < n_kv && !r.bad; i++) {
        char key[256], sval[256];
        rd_str(&r, key, sizeof key);
        uint32_t type = (uint32_t)rd_le(&r, 4);
        if (type == 8) { /* STRING */
            rd_str(&r, sval, sizeof sval);
            char *dst = !strcmp(key, "general.architecture") ? g->arch
                        : !strcmp(key, "general.type")       ? g->gtype
                        : !strcmp(key, "adapter.type")       ? g->atype
                                                             : NULL;
            CHECK(dst != NULL, "%s: unexpected string key '%s'", path, key);
            if (dst) snprintf(dst, 64, "%s", sval), g->n_known_kv++;
        } else if (type == 6 && !strcmp(key, "adapter.lora.alpha")) { /* FLOAT32 */
            uint32_t bits = (uint32_t)rd_le(&r, 4);
            memcpy(&g->alpha, &bits, 4);
            g->n_known_kv++;
        } else if (type == 4 && !strcmp(key, "general.alignment")) { /* UINT32 */
            alignment = rd_le(&r, 4);
        } else {
            CHECK(0, "%s: unexpected key '%s' of type %u", path, key, type);
            return -1;
        }
    }
    for (int i = 0; i < n_tensors && !r.bad; i++) {
        tinfo *t = &g->t[i];
        rd_str(&r, t->name, sizeof t->name);
        t->n_dims = (uint32_t)rd_le(&r, 4);
        if (t->n_dims < 1 || t->n_dims > 4) r.bad = 1;
        for (uint32_t d = 0; d < t->n_dims && !r.bad; d++) t->ne[d] = (int64_t)rd_le(&r, 8);
        t->type = (uint32_t)rd_le(&r, 4);
        t->offset = rd_le(&r, 8);
    }
    CHECK(!r.bad, "%s: truncated or malformed header", path);
    if (r.bad) return -1;
    g->data_start = (r.at + alignment - 1) / alignment * alignment;
    for (int i = 0; i < n_tensors; i++) {
        const tinfo *t = &g->t[i];
        size_t bytes = 4 * (size_t)t->ne[0] * (size_t)(t->n_dims > 1 ? t->ne[1] : 1);
        CHECK(t->offset % alignment == 0 && g->data_start + t->offset + bytes <= g->size,
              "%s: tensor %s offset %llu aligned and inside the file", path, t->name, (unsigned long long)t->offset);
    }
    return 0;
}

static const tinfo *gfind(const gfile *g, const char *name) {
    for (int i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->t[i].name, name)) return &g->t[i];
    return NULL;
}

static const float *gdata(const gfile *g, const tinfo *t) { return (const float *)(g->bytes + g->data_start + t->offset); }

/* ---- expectations ------------------------------------------------------------------------------------- */

/* HF module path → llama.cpp base tensor (gguf-py TENSOR_NAMES), written out per architecture. */
static int gguf_base_name(const char *module, char *out, size_t cap) {
    static const char *map[][2] = {
        {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"}, {"self_attn.v_proj", "attn_v"},
        {"self_attn.o_proj", "attn_output"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
        {"mlp.down_proj", "ffn_down"},    {"attn.c_attn", "attn_qkv"},    {"attn.c_proj", "attn_output"},
        {"mlp.c_fc", "ffn_up"},           {"mlp.c_proj", "ffn_down"},
    };
    int layer;
    char rest[128];
    if (sscanf(module, "model.layers.%d.%127s", &layer, rest) != 2 && sscanf(module, "transformer.h.%d.%127s", &layer, rest) != 2)
        return -1;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(rest, map[i][0])) {
            snprintf(out, cap, "blk.%d.%s.weight", layer, map[i][1]);
            return 0;
        }
    return -1;
}

typedef struct export_case {
    const char *name, *base, *arch;
    int heads, kv_heads, permute;
} export_case;

static double hand_scale(const char *name, const char *module, int r) {
    double alpha = 8;
    if (!strcmp(name, "lora_llama_all") && !strcmp(module, "model.layers.1.self_attn.k_proj")) alpha = 24;
    return !strcmp(name, "lora_llama_rslora") ? alpha / sqrt((double)r) : alpha / r;
}

/* One target: names, shapes, A, B (scaled, permuted) and the delta llama.cpp will apply. */
static void check_target(const export_case *c, const gfile *g, const char *module, const pc_st_entry *A,
                         const pc_st_entry *B) {
    char base[160], name[200];
    if (gguf_base_name(module, base, sizeof base)) {
        CHECK(0, "%s: no GGUF name known for %s", c->name, module);
        return;
    }
    int r = (int)A->shape[0], in = (int)A->shape[1], out = (int)B->shape[0];
    snprintf(name, sizeof name, "%s.lora_a", base);
    const tinfo *ta = gfind(g, name);
    snprintf(name, sizeof name, "%s.lora_b", base);
    const tinfo *tb = gfind(g, name);
    CHECK(ta && tb, "%s: %s.lora_a/.lora_b present", c->name, base);
    if (!ta || !tb) return;
    CHECK(ta->type == 0 && ta->n_dims == 2 && ta->ne[0] == in && ta->ne[1] == r, "%s: %s.lora_a F32 ne [%d,%d]", c->name,
          base, in, r);
    CHECK(tb->type == 0 && tb->n_dims == 2 && tb->ne[0] == r && tb->ne[1] == out, "%s: %s.lora_b F32 ne [%d,%d]", c->name,
          base, r, out);
    if (ta->ne[0] != in || ta->ne[1] != r || tb->ne[0] != r || tb->ne[1] != out) return;
    const float *a = gdata(g, ta), *b = gdata(g, tb), *A0 = A->data, *B0 = B->data;
    CHECK(!memcmp(a, A0, sizeof(float) * (size_t)r * in), "%s: %s.lora_a is PEFT's lora_A unchanged", c->name, base);
    double fold = hand_scale(c->name, module, r) / (g->alpha / r);
    int is_q = strstr(module, "q_proj") != NULL, is_k = strstr(module, "k_proj") != NULL;
    int heads = c->permute && is_q ? c->heads : c->permute && is_k ? c->kv_heads : 0;
    /* torch: B.reshape(heads, 2, out/heads/2, r).swapaxes(1, 2).reshape(out, r) */
    float *unpermuted = pc_malloc(sizeof(float) * (size_t)out * r);
    int half = heads ? out / heads / 2 : 0;
    double worst = 0;
    for (int row = 0; row < out; row++) {
        int src = row;
        if (heads) {
            int h = row / (2 * half), i = row % (2 * half) / 2, j = row % 2; /* GGUF row (h, i, j) */
            src = (h * 2 + j) * half + i;                                     /* came from HF row (h, j, i) */
        }
        for (int k = 0; k < r; k++) {
            double want = fold * B0[src * r + k], got = b[row * r + k];
            worst = fmax(worst, fabs(got - want) / (fabs(want) + 1e-30));
            unpermuted[src * r + k] = b[row * r + k];
        }
    }
    CHECK(worst <= 1e-6, "%s: %s.lora_b = %.4g·B%s (worst relative error %.3g)", c->name, base, fold,
          heads ? " with rows permuted" : "", worst);
    /* The delta llama.cpp adds (after undoing the permutation) against PEFT's. */
    double s_gguf = g->alpha / r, s_peft = hand_scale(c->name, module, r), num = 0, den = 0;
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++) {
            double dg = 0, dp = 0;
            for (int k = 0; k < r; k++) {
                dg += (double)unpermuted[o * r + k] * a[k * in + i];
                dp += (double)B0[o * r + k] * A0[k * in + i];
            }
            num = fmax(num, fabs(s_gguf * dg - s_peft * dp));
            den = fmax(den, fabs(s_peft * dp));
        }
    CHECK(num <= 1e-6 * den, "%s: %s delta from the GGUF equals PEFT's (relative %.3g)", c->name, base, num / den);
    pc_free(unpermuted);
}

static void check_case(const export_case *c, const char *tmp) {
    char model_dir[4096], adapter_dir[4096], out[4200], afile[4300];
    snprintf(model_dir, sizeof model_dir, "%s/%s/model", golden_dir, c->base);
    snprintf(adapter_dir, sizeof adapter_dir, "%s/%s/adapter", golden_dir, c->name);
    snprintf(afile, sizeof afile, "%s/adapter_model.safetensors", adapter_dir);
    snprintf(out, sizeof out, "%s/%s.gguf", tmp, c->name);
    pc_error err = {0};
    pc_model *m = NULL;
    pc_method *lora = NULL;
    pc_safetensors ad;
    if (pc_model_load(&m, model_dir, PC_BASE_F32, &err) != PC_OK || pc_method_load(&lora, m, adapter_dir, &err) != PC_OK ||
        pc_safetensors_open(&ad, afile, &err) != PC_OK) {
        test_fail_setup("%s: %s", c->name, err.msg);
        pc_method_free(lora);
        pc_model_free(m);
        return;
    }
    CHECK(pc_lora_export_gguf(lora, out, &err) == PC_OK, "%s: export: %s", c->name, err.msg);
    pc_gguf lib;
    CHECK(pc_gguf_open(&lib, out, &err) == PC_OK, "%s: src/io reader accepts the file: %s", c->name, err.msg);
    if (err.status == PC_OK) pc_gguf_close(&lib);
    gfile g;
    if (gguf_parse(out, &g) == 0) {
        CHECK(!strcmp(g.gtype, "adapter") && !strcmp(g.atype, "lora") && !strcmp(g.arch, c->arch) && g.alpha == 8.0f &&
                  g.n_known_kv == 4,
              "%s: metadata type '%s' adapter.type '%s' arch '%s' alpha %g (%d of 4 keys)", c->name, g.gtype, g.atype, g.arch,
              g.alpha, g.n_known_kv);
        int n_a = 0;
        for (int i = 0; i < ad.count; i++) {
            const char *key = ad.entries[i].name;
            size_t n = strlen(key);
            if (n < 14 || strcmp(key + n - 14, ".lora_A.weight")) continue;
            char module[200], bkey[300];
            snprintf(module, sizeof module, "%.*s", (int)(n - 14 - 17), key + 17); /* strip base_model.model. */
            snprintf(bkey, sizeof bkey, "base_model.model.%s.lora_B.weight", module);
            check_target(c, &g, module, &ad.entries[i], pc_safetensors_find(&ad, bkey));
            n_a++;
        }
        CHECK(g.n_tensors == 2 * n_a && n_a > 0, "%s: %d tensors for %d targets", c->name, g.n_tensors, n_a);
        pc_free(g.bytes);
    }
    pc_safetensors_close(&ad);
    pc_method_free(lora);
    pc_model_free(m);
}

static int run(const char *fmt, const char *a, const char *b, const char *c) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, fmt, test_peftc_bin(), a, b, c);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void check_refusals(const char *tmp) {
    char model_dir[4096], adapter_dir[4096], out[4200];
    snprintf(model_dir, sizeof model_dir, "%s/llama_gqa/model", golden_dir);
    snprintf(adapter_dir, sizeof adapter_dir, "%s/lora_llama_dora/adapter", golden_dir);
    snprintf(out, sizeof out, "%s/dora.gguf", tmp);
    pc_error err = {0};
    pc_model *m = NULL;
    pc_method *lora = NULL;
    if (pc_model_load(&m, model_dir, PC_BASE_F32, &err) == PC_OK && pc_method_load(&lora, m, adapter_dir, &err) == PC_OK) {
        pc_status st = pc_lora_export_gguf(lora, out, &err);
        CHECK(st != PC_OK && strstr(err.msg, "DoRA") && !pc_path_exists(out), "DoRA refused with a clear message: %s",
              err.msg);
    } else {
        test_fail_setup("dora: %s", err.msg);
    }
    pc_method_free(lora);
    pc_model_free(m);
    CHECK(run("%s export --model %s --adapter %s --format gguf-lora --out %s 2>/dev/null", model_dir, adapter_dir, out) == 1 &&
              !pc_path_exists(out),
          "CLI: DoRA exits 1, no file");
    snprintf(adapter_dir, sizeof adapter_dir, "%s/lora_llama/adapter", golden_dir);
    CHECK(run("%s export --model %s --adapter %s --format safetensors --out %s 2>/dev/null", model_dir, adapter_dir, out) == 2,
          "CLI: unknown format exits 2");
    CHECK(run("%s export --model %s --adapter %s --out %s 2>/dev/null", model_dir, adapter_dir, out) == 2,
          "CLI: missing --format exits 2");
    CHECK(!pc_path_exists(out), "no file after refusals");
    CHECK(run("%s export --model %s --adapter %s --format gguf-lora --out %s 2>/dev/null", model_dir, adapter_dir, out) == 0,
          "CLI: export exits 0");
    gfile g;
    if (gguf_parse(out, &g) == 0) {
        CHECK(g.n_tensors == 8 && !strcmp(g.arch, "llama"), "CLI output: %d tensors, arch %s", g.n_tensors, g.arch);
        pc_free(g.bytes);
    }
}

/* Every allocation of the export failing in turn: a clean error each time, and never a file. */
static void check_allocation_failures(const char *tmp) {
    char model_dir[4096], adapter_dir[4096], out[4200];
    snprintf(model_dir, sizeof model_dir, "%s/llama_gqa/model", golden_dir);
    snprintf(adapter_dir, sizeof adapter_dir, "%s/lora_llama_all/adapter", golden_dir);
    snprintf(out, sizeof out, "%s/nomem.gguf", tmp);
    pc_error err = {0};
    pc_model *m = NULL;
    pc_method *lora = NULL;
    if (pc_model_load(&m, model_dir, PC_BASE_F32, &err) != PC_OK || pc_method_load(&lora, m, adapter_dir, &err) != PC_OK) {
        test_fail_setup("nomem: %s", err.msg);
        pc_model_free(m);
        return;
    }
    int failures = 0, clean = 1;
    for (long n = 0; n < 10000; n++) {
        pc_error e = {0};
        pc_alloc_fail_after(n);
        pc_status st = pc_lora_export_gguf(lora, out, &e);
        pc_alloc_fail_after(-1);
        if (st == PC_OK) break;
        failures++;
        clean &= e.msg[0] != 0 && !pc_path_exists(out);
    }
    CHECK(failures > 0 && clean, "export under %d allocation failures: clean errors, no file", failures);
    CHECK(pc_path_exists(out), "export succeeds once allocations do");
    pc_method_free(lora);
    pc_model_free(m);
}

int main(void) {
    snprintf(golden_dir, sizeof golden_dir, "%s/tests/golden/data", test_source_dir());
    static const export_case cases[] = {
        {"lora_llama", "llama_gqa", "llama", 4, 2, 1},
        {"lora_llama_all", "llama_gqa", "llama", 4, 2, 1},        /* alpha_pattern folded; rank_pattern by shape */
        {"lora_llama_rslora", "llama_tied", "llama", 4, 4, 1},    /* alpha/√r folded into B */
        {"lora_qwen2", "qwen2", "qwen2", 4, 2, 0},                /* NEOX rope in llama.cpp: no permutation */
        {"lora_gpt2", "gpt2", "gpt2", 4, 4, 0},                   /* Linear-orientation factors, as-is */
    };
    char tmp[] = "/tmp/peftc_lora_export_XXXXXX";
    if (!mkdtemp(tmp)) {
        test_fail_setup("mkdtemp failed");
        return test_finish();
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i], tmp);
    check_refusals(tmp);
    check_allocation_failures(tmp);
    pc_remove_tree(tmp);
    return test_finish();
}
