/* A bump allocator over one block: many tensors with one owner and one free. Used for the activation
 * plan of a step (sized once per (model, methods, B, T)) and for scratch that lives as long as a call. */
#ifndef PC_CORE_ARENA_H
#define PC_CORE_ARENA_H

#include <stddef.h>

#include "core/error.h"

typedef struct pc_arena {
    unsigned char *base;
    size_t size, used;
} pc_arena;

pc_status pc_arena_init(pc_arena *a, size_t size, pc_error *err);
void pc_arena_free(pc_arena *a);
/* 64-byte aligned, NOT zeroed; NULL when the arena is full (a planning bug, reported by the caller). */
void *pc_arena_alloc(pc_arena *a, size_t bytes);
float *pc_arena_floats(pc_arena *a, size_t count);
void pc_arena_reset(pc_arena *a);
/* Round bytes up the way pc_arena_alloc does, for size planning. */
static inline size_t pc_arena_round(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

#endif
