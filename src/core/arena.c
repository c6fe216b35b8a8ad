#include "core/arena.h"

#include "core/alloc.h"

pc_status pc_arena_init(pc_arena *a, size_t size, pc_error *err) {
    a->used = 0;
    a->size = pc_arena_round(size);
    a->base = pc_malloc(a->size ? a->size : 64);
    if (!a->base) {
        a->size = 0;
        return pc_fail(err, PC_ERR_NOMEM, "out of memory: arena of %zu bytes", size);
    }
    return PC_OK;
}

void pc_arena_free(pc_arena *a) {
    pc_free(a->base);
    a->base = NULL;
    a->size = a->used = 0;
}

void *pc_arena_alloc(pc_arena *a, size_t bytes) {
    size_t need = pc_arena_round(bytes);
    if (need > a->size - a->used) return NULL;
    void *p = a->base + a->used;
    a->used += need;
    return p;
}

float *pc_arena_floats(pc_arena *a, size_t count) { return pc_arena_alloc(a, count * sizeof(float)); }

void pc_arena_reset(pc_arena *a) { a->used = 0; }
