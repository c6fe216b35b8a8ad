/* Shared by the fuzz targets: hand the input bytes to a reader as a file, without touching the disk. */
#ifndef PC_FUZZ_COMMON_H
#define PC_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* An anonymous in-memory file holding data; its path is "/proc/self/fd/N". Returns the fd, or -1. */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t cap) {
    int fd = memfd_create("peftc-fuzz", 0);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)n;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

/* An invariant the reader promised does not hold: stop so libFuzzer records the input. */
#define FUZZ_ASSERT(cond)                                                  \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                       \
        }                                                                  \
    } while (0)

/* Every byte of [p, p+n) must lie inside [base, base+size). */
static inline int fuzz_inside(const void *p, size_t n, const void *base, size_t size) {
    const char *a = p, *b = base;
    return n == 0 || (a >= b && n <= size && (size_t)(a - b) <= size - n);
}

#endif
