/* Minimal test harness. Each tests/unit/test_*.c is its own executable and ctest test; it calls CHECK /
 * expect_close as often as it likes and returns test_finish(), which prints "N passed, N failed" and
 * exits non-zero on any failure. A test that could not find its data calls test_fail_setup(): a test that
 * cannot run has not passed. */
#ifndef PC_TEST_SUPPORT_H
#define PC_TEST_SUPPORT_H

#include <stdio.h>

#include "core/rng.h"

void test_record(int ok, const char *file, int line, const char *fmt, ...);
#define CHECK(cond, ...) test_record((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)

/* max over i of |got−want| / (atol + rtol·|want|) ≤ 1, reported with the worst index. Returns 1 if close. */
int expect_close(const char *what, const float *got, const float *want, long n, double rtol, double atol);
/* Relative error as used by the parity tests: ‖got − want‖∞ / max(‖want‖∞, tiny). */
double max_rel_err(const float *got, const float *want, long n);

/* Central finite differences: f(x) is a scalar function of the n floats at x (which it may read through
 * captured state). grad_fd[i] = (f(x+h e_i) − f(x−h e_i)) / 2h, evaluated in double by f. */
typedef double (*test_scalar_fn)(void *ctx);
void finite_diff(test_scalar_fn f, void *ctx, float *x, long n, double h, float *grad_fd);

void test_fill_uniform(pc_rng *rng, float *x, long n, float lo, float hi);
/* 1 if both files exist and hold the same bytes. Plain stdio: usable while the allocation-failure hook is set. */
int test_files_equal(const char *a, const char *b);
/* Environment: PEFTC_SOURCE_DIR (the checkout), PEFTC_CACHE_DIR (default $SOURCE/.cache), PEFTC_BIN. */
const char *test_source_dir(void);
const char *test_cache_dir(void);
const char *test_peftc_bin(void);
void test_fail_setup(const char *fmt, ...);
int test_finish(void);

#endif
