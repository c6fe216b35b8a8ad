/* Every heap allocation in the library goes through these functions, so that a test can make the Nth one
 * fail (SQLite-style fault injection) and check that every caller turns it into a clean PC_ERR_NOMEM.
 * Blocks are 64-byte aligned (cache lines, AVX-512 loads). */
#ifndef PC_CORE_ALLOC_H
#define PC_CORE_ALLOC_H

#include <stddef.h>

void *pc_malloc(size_t size);              /* 64-byte aligned; NULL (errno ENOMEM) on failure, never aborts */
/* malloc's own alignment, for the many small blocks of a parsed JSON tree (cJSON allocates through this, see
 * io/json.c), where rounding every node up to a cache line would double its size. Freed with pc_free. */
void *pc_malloc_plain(size_t size);
void *pc_calloc(size_t count, size_t size); /* zeroed; NULL on overflow or failure */
void *pc_realloc(void *p, size_t old_size, size_t new_size); /* keeps alignment; NULL on failure, p untouched */
char *pc_strdup(const char *s);
void pc_free(void *p);

/* Test hooks: after `n` more successful allocations every allocation fails (n < 0 disables), or, with
 * pc_alloc_fail_once, only the next one after those n does and the rest succeed again (SQLite's transient
 * mode: a caller that shrugs a failure off and carries on is caught by what it does next, which the
 * persistent mode hides because everything after the failure fails too).
 * This is the only process-wide mutable state in the library, and only tests set it. */
void pc_alloc_fail_after(long n);
void pc_alloc_fail_once(long n);
long pc_alloc_count(void); /* allocations made since the hook was last set */

#endif
