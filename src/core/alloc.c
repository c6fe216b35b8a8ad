#include "core/alloc.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static _Atomic long fail_countdown = -1; /* test hook, see alloc.h */
static _Atomic int fail_once = 0;
static _Atomic long alloc_count = 0;

static void arm(long n, int once) {
    atomic_store(&fail_countdown, -1); /* disarmed while the mode changes */
    atomic_store(&fail_once, once);
    atomic_store(&alloc_count, 0);
    atomic_store(&fail_countdown, n);
}

void pc_alloc_fail_after(long n) { arm(n, 0); }
void pc_alloc_fail_once(long n) { arm(n, 1); }

long pc_alloc_count(void) { return atomic_load(&alloc_count); }

/* An injected failure looks like malloc's own: NULL with errno ENOMEM, which is how a cJSON parse that ran
 * out of memory is told from a syntax error (io/json.c). */
static int injected_failure(void) {
    atomic_fetch_add(&alloc_count, 1);
    long left = atomic_load(&fail_countdown);
    /* count down by one, atomically, so concurrent allocations never skip past zero */
    while (left > 0 && !atomic_compare_exchange_weak(&fail_countdown, &left, left - 1)) {
    }
    if (left != 0) return 0; /* disabled (< 0), or this allocation was one of the n to succeed */
    /* transient: only the thread that disarms the hook fails */
    if (atomic_load(&fail_once) && !atomic_compare_exchange_strong(&fail_countdown, &left, -1)) return 0;
    errno = ENOMEM;
    return 1;
}

void *pc_malloc(size_t size) {
    if (injected_failure()) return NULL;
    if (size == 0) size = 1;
    size_t rounded = (size + 63) & ~(size_t)63;
    if (rounded < size) {
        errno = ENOMEM;
        return NULL;
    }
    return aligned_alloc(64, rounded);
}

void *pc_malloc_plain(size_t size) {
    if (injected_failure()) return NULL;
    return malloc(size ? size : 1);
}

void *pc_calloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = pc_malloc(count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

void *pc_realloc(void *p, size_t old_size, size_t new_size) {
    void *q = pc_malloc(new_size);
    if (!q) return NULL;
    if (p) memcpy(q, p, old_size < new_size ? old_size : new_size);
    pc_free(p);
    return q;
}

char *pc_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = pc_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void pc_free(void *p) { free(p); }
