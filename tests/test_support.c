#include "test_support.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int n_passed, n_failed;

void test_record(int ok, const char *file, int line, const char *fmt, ...) {
    if (ok) {
        n_passed++;
        return;
    }
    n_failed++;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int expect_close(const char *what, const float *got, const float *want, long n, double rtol, double atol) {
    double worst = 0.0;
    long worst_i = -1;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double tol = atol + rtol * fabs((double)want[i]);
        double r = isfinite(d) ? d / tol : INFINITY;
        if (r > worst || worst_i < 0) {
            worst = r;
            worst_i = i;
        }
    }
    int ok = n == 0 || worst <= 1.0;
    if (n > 0)
        test_record(ok, __FILE__, __LINE__, "%s: element %ld got %.9g want %.9g (%.3g x tolerance)", what, worst_i,
                    got[worst_i], want[worst_i], worst);
    else
        test_record(1, __FILE__, __LINE__, "%s", what);
    return ok;
}

double max_rel_err(const float *got, const float *want, long n) {
    double num = 0.0, den = 0.0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!isfinite(d)) return INFINITY;
        if (d > num) num = d;
        if (fabs(want[i]) > den) den = fabs(want[i]);
    }
    return num / (den > 1e-30 ? den : 1e-30);
}

void finite_diff(test_scalar_fn f, void *ctx, float *x, long n, double h, float *grad_fd) {
    for (long i = 0; i < n; i++) {
        float saved = x[i];
        x[i] = (float)(saved + h);
        double fp = f(ctx);
        x[i] = (float)(saved - h);
        double fm = f(ctx);
        x[i] = saved;
        grad_fd[i] = (float)((fp - fm) / (2.0 * h));
    }
}

void test_fill_uniform(pc_rng *rng, float *x, long n, float lo, float hi) { pc_rng_fill_uniform(rng, x, n, lo, hi); }

int test_files_equal(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

const char *test_source_dir(void) {
    const char *s = getenv("PEFTC_SOURCE_DIR");
    return s ? s : ".";
}

const char *test_cache_dir(void) {
    static char buf[4096]; /* test-only convenience */
    const char *c = getenv("PEFTC_CACHE_DIR");
    if (c) return c;
    snprintf(buf, sizeof buf, "%s/.cache", test_source_dir());
    return buf;
}

const char *test_peftc_bin(void) {
    const char *b = getenv("PEFTC_BIN");
    return b ? b : "./peftc";
}

void test_fail_setup(const char *fmt, ...) {
    n_failed++;
    fprintf(stderr, "FAIL setup: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int test_finish(void) {
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed == 0 && n_passed > 0 ? 0 : 1;
}
