/* Every heap allocation in the library goes through these functions, so that a test can make the Nth one
 * fail (SQLite-style fault injection) and check that every caller turns it into a clean PC_ERR_NOMEM.
 * Blocks are 64-byte aligned (cache lines, AVX-512 loads). */
#ifndef PC_CORE_ALLOC_H
#define PC_CORE_ALLOC_H

#include <stddef.h>

void *pc_malloc(size_t size);              /* 64-byte aligned; NULL on failure (never aborts) */
void *pc_calloc(size_t count, size_t size); /* zeroed; NULL on overflow or failure */
void *pc_realloc(void *p, size_t old_size, size_t new_size); /* keeps alignment; NULL on failure, p untouched */
char *pc_strdup(const char *s);
void pc_free(void *p);

/* Test hook: after `n` more successful allocations every allocation fails (n < 0 disables).
 * This is the only process-wide mutable state in the library, and only tests set it. */
void pc_alloc_fail_after(long n);
long pc_alloc_count(void); /* allocations made since the hook was last set */

#endif
