/* oneDNN matmul primitives, created once per product shape and kept in a small table in the handle.
 * A shape is (M, N, K, strides, dtypes, bias, alpha, beta): a training step uses a fixed set of them, so
 * after the first step no primitive is ever created. Memory objects are created with the primitive and only
 * have their data pointers swapped per call. A shape oneDNN cannot do is remembered as such, and the
 * caller uses the portable path for it. */
#ifdef PEFTC_HAVE_DNNL
#include <dnnl.h>
#include <string.h>

#include "core/alloc.h"
#include "kernels/matmul_internal.h"

enum { DN_MAX_ENTRIES = 256 };

typedef struct dn_key {
    int64_t M, N, K, a_row, a_col, b_row, b_col, ldc;
    int32_t a_dtype, b_dtype, has_bias;
    float alpha, beta;
} dn_key;

typedef struct dn_entry {
    dn_key key;
    int usable; /* 0: oneDNN refused this shape, use the portable path */
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, bias, c;
} dn_entry;

struct dn_cache {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dn_entry *entries; /* DN_MAX_ENTRIES slots, n used; when full the oldest slot is reused */
    int n, next_victim, created;
};

dn_cache *dn_cache_create(void) {
    dn_cache *c = pc_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->entries = pc_calloc(DN_MAX_ENTRIES, sizeof *c->entries);
    if (!c->entries || dnnl_engine_create(&c->engine, dnnl_cpu, 0) != dnnl_success) goto fail;
    if (dnnl_stream_create(&c->stream, c->engine, dnnl_stream_default_flags) != dnnl_success) goto fail;
    return c;
fail:
    dn_cache_destroy(c);
    return NULL;
}

static void entry_release(dn_entry *e) {
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->a) dnnl_memory_destroy(e->a);
    if (e->b) dnnl_memory_destroy(e->b);
    if (e->bias) dnnl_memory_destroy(e->bias);
    if (e->c) dnnl_memory_destroy(e->c);
    memset(e, 0, sizeof *e);
}

void dn_cache_destroy(dn_cache *c) {
    if (!c) return;
    if (c->entries)
        for (int i = 0; i < c->n; i++) entry_release(&c->entries[i]);
    if (c->stream) dnnl_stream_destroy(c->stream);
    if (c->engine) dnnl_engine_destroy(c->engine);
    pc_free(c->entries);
    pc_free(c);
}

int dn_cache_entries(const dn_cache *c) { return c ? c->created : 0; }

static dnnl_data_type_t dn_type(int32_t dt) { return dt == PC_BF16 ? dnnl_bf16 : dnnl_f32; }

/* Build primitive and memory objects for e->key; leaves e->usable = 0 if oneDNN says no. */
static void entry_build(dn_cache *c, dn_entry *e) {
    const dn_key *k = &e->key;
    dnnl_memory_desc_t a_md, b_md, bias_md, c_md;
    dnnl_dims_t a_dims = {k->M, k->K}, a_str = {k->a_row, k->a_col};
    dnnl_dims_t b_dims = {k->K, k->N}, b_str = {k->b_row, k->b_col};
    dnnl_dims_t c_dims = {k->M, k->N}, c_str = {k->ldc, 1};
    dnnl_dims_t bias_dims = {1, k->N}, bias_str = {k->N, 1};
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t desc;
    int ok = dnnl_memory_desc_init_by_strides(&a_md, 2, a_dims, dn_type(k->a_dtype), a_str) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&b_md, 2, b_dims, dn_type(k->b_dtype), b_str) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&c_md, 2, c_dims, dnnl_f32, c_str) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&bias_md, 2, bias_dims, dnnl_f32, bias_str) == dnnl_success &&
             dnnl_matmul_desc_init(&desc, &a_md, &b_md, k->has_bias ? &bias_md : NULL, &c_md) == dnnl_success &&
             dnnl_primitive_attr_create(&attr) == dnnl_success;
    if (ok && k->alpha != 1.0f) ok = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha) == dnnl_success;
    if (ok && k->beta != 0.0f) /* C = alpha·A·B + beta·C: the "sum" post-op reads C before writing it */
        ok = dnnl_post_ops_create(&ops) == dnnl_success && dnnl_post_ops_append_sum(ops, k->beta) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, ops) == dnnl_success;
    ok = ok && dnnl_primitive_desc_create(&pd, &desc, attr, c->engine, NULL) == dnnl_success &&
         dnnl_primitive_create(&e->prim, pd) == dnnl_success &&
         dnnl_memory_create(&e->a, &a_md, c->engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&e->b, &b_md, c->engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&e->c, &c_md, c->engine, DNNL_MEMORY_NONE) == dnnl_success &&
         (!k->has_bias || dnnl_memory_create(&e->bias, &bias_md, c->engine, DNNL_MEMORY_NONE) == dnnl_success);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) {
        dn_key saved = e->key;
        entry_release(e);
        e->key = saved;
    }
    e->usable = ok;
    c->created++;
}

static dn_entry *entry_find_or_build(dn_cache *c, const dn_key *key) {
    for (int i = 0; i < c->n; i++)
        if (memcmp(&c->entries[i].key, key, sizeof *key) == 0) return &c->entries[i];
    dn_entry *e;
    if (c->n < DN_MAX_ENTRIES) {
        e = &c->entries[c->n++];
    } else { /* more live shapes than slots (long generation with many lengths): recycle round-robin */
        e = &c->entries[c->next_victim];
        c->next_victim = (c->next_victim + 1) % DN_MAX_ENTRIES;
        entry_release(e);
    }
    e->key = *key;
    entry_build(c, e);
    return e;
}

int dn_gemm(dn_cache *c, int M, int N, int K, float alpha, const void *A, pc_dtype a_dtype, long a_row, long a_col,
            const void *B, pc_dtype b_dtype, long b_row, long b_col, const float *bias, float beta, float *C,
            long ldc) {
    dn_key key;
    memset(&key, 0, sizeof key); /* padding must compare equal */
    key.M = M, key.N = N, key.K = K, key.a_row = a_row, key.a_col = a_col, key.b_row = b_row, key.b_col = b_col;
    key.ldc = ldc, key.a_dtype = a_dtype, key.b_dtype = b_dtype, key.has_bias = bias != NULL;
    key.alpha = alpha, key.beta = beta;
    dn_entry *e = entry_find_or_build(c, &key);
    if (!e->usable) return -1;
    if (dnnl_memory_set_data_handle(e->a, (void *)A) != dnnl_success ||
        dnnl_memory_set_data_handle(e->b, (void *)B) != dnnl_success ||
        dnnl_memory_set_data_handle(e->c, C) != dnnl_success ||
        (bias && dnnl_memory_set_data_handle(e->bias, (void *)bias) != dnnl_success))
        return -1;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    int nargs = 3;
    if (bias) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, e->bias};
    if (dnnl_primitive_execute(e->prim, c->stream, nargs, args) != dnnl_success) return -1;
    return dnnl_stream_wait(c->stream) == dnnl_success ? 0 : -1;
}
#else
/* Without oneDNN this file is empty; ISO C wants at least one declaration. */
typedef int pc_matmul_onednn_unused;
#endif
