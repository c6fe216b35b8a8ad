/* kernels/attention: the tiled forward (out and lse) against a naive double implementation that builds the
 * full T×T softmax, with grouped-query heads, prefix keys/values and document masks, at sizes that span
 * several query and key tiles; the backward (dq, dk, dv, dprefix_k, dprefix_v) against central finite
 * differences of that naive forward; results identical for every thread count (the backward splits
 * groups when they do not divide among the threads); the KV-cache decode path against the naive rule. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/alloc.h"
#include "kernels/attention.h"
#include "test_support.h"

static pc_rng rng;

typedef struct att_case {
    int B, T, P, H, KVH, hd, with_doc; /* with_doc: 0 none, 1 documents up to T/2 long, n > 1 up to n long */
    float *q, *k, *v, *pk, *pv, *G; /* G: upstream gradient defining the scalar f = Σ G ⊙ out */
    int *doc;
} att_case;

/* out [B,T,H,hd] and lse [B,H,T] by the definition: scores over prefix + visible positions, softmax, Σ p·v. */
static void naive_attention(double *out, double *lse, const att_case *c) {
    int T = c->T, P = c->P, H = c->H, KVH = c->KVH, hd = c->hd, group = H / KVH;
    double scale = 1.0 / sqrt((double)hd), s[P + T];
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const float *qv = c->q + ((b * T + t) * H + h) * hd;
                int kvh = h / group;
                double m = -INFINITY;
                for (int u = 0; u < P + T; u++) {
                    int s_pos = u - P;
                    int visible = u < P || (s_pos <= t && (!c->doc || c->doc[b * T + s_pos] == c->doc[b * T + t]));
                    if (!visible) {
                        s[u] = -INFINITY;
                        continue;
                    }
                    const float *kv = u < P ? c->pk + (u * KVH + kvh) * hd : c->k + ((b * T + s_pos) * KVH + kvh) * hd;
                    double dot = 0.0;
                    for (int j = 0; j < hd; j++) dot += (double)qv[j] * kv[j];
                    s[u] = dot * scale;
                    m = s[u] > m ? s[u] : m;
                }
                double l = 0.0;
                for (int u = 0; u < P + T; u++) l += s[u] == -INFINITY ? 0.0 : exp(s[u] - m);
                double *o = out + ((b * T + t) * H + h) * hd;
                for (int j = 0; j < hd; j++) o[j] = 0.0;
                for (int u = 0; u < P + T; u++) {
                    if (s[u] == -INFINITY) continue;
                    double p = exp(s[u] - m) / l;
                    const float *vv = u < P ? c->pv + (u * KVH + kvh) * hd : c->v + ((b * T + u - P) * KVH + kvh) * hd;
                    for (int j = 0; j < hd; j++) o[j] += p * vv[j];
                }
                if (lse) lse[(b * H + h) * T + t] = m + log(l);
            }
}

static float *randf(long n) {
    float *x = pc_malloc(sizeof(float) * (size_t)(n ? n : 1));
    test_fill_uniform(&rng, x, n, -1.5f, 1.5f);
    return x;
}

static att_case make_case(int B, int T, int P, int H, int KVH, int hd, int with_doc) {
    att_case c = {B, T, P, H, KVH, hd, with_doc, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    c.q = randf((long)B * T * H * hd);
    c.k = randf((long)B * T * KVH * hd);
    c.v = randf((long)B * T * KVH * hd);
    c.pk = P ? randf((long)P * KVH * hd) : NULL;
    c.pv = P ? randf((long)P * KVH * hd) : NULL;
    c.G = randf((long)B * T * H * hd);
    c.doc = NULL;
    if (with_doc) { /* packed rows: documents of assorted lengths, ids not in order */
        c.doc = pc_malloc(sizeof(int) * B * T);
        for (int b = 0; b < B; b++) {
            int max_len = with_doc > 1 ? with_doc : T / 2;
            int id = 5 * b + 1, left = 1 + (int)pc_rng_below(&rng, max_len + 1);
            for (int t = 0; t < T; t++) {
                if (left-- == 0) id = id * 7 % 13, left = (int)pc_rng_below(&rng, max_len + 1);
                c.doc[b * T + t] = id;
            }
        }
    }
    return c;
}

static void free_case(att_case *c) {
    pc_free(c->q), pc_free(c->k), pc_free(c->v), pc_free(c->pk), pc_free(c->pv), pc_free(c->G), pc_free(c->doc);
}

static void describe(char *buf, size_t cap, const att_case *c) {
    snprintf(buf, cap, "B=%d T=%d P=%d H=%d KVH=%d hd=%d doc=%d", c->B, c->T, c->P, c->H, c->KVH, c->hd, c->with_doc);
}

static void test_forward(att_case *c) {
    long n_out = (long)c->B * c->T * c->H * c->hd, n_lse = (long)c->B * c->H * c->T;
    float *out = pc_malloc(sizeof(float) * n_out), *lse = pc_malloc(sizeof(float) * n_lse);
    float *want = pc_malloc(sizeof(float) * n_out), *want_lse = pc_malloc(sizeof(float) * n_lse);
    double *od = pc_malloc(sizeof(double) * n_out), *ld = pc_malloc(sizeof(double) * n_lse);
    attention_forward(out, lse, c->q, c->k, c->v, c->pk, c->pv, c->doc, c->B, c->T, c->P, c->H, c->KVH, c->hd);
    naive_attention(od, ld, c);
    for (long i = 0; i < n_out; i++) want[i] = (float)od[i];
    for (long i = 0; i < n_lse; i++) want_lse[i] = (float)ld[i];
    char what[128];
    describe(what, sizeof what, c);
    CHECK(expect_close("attention out vs naive", out, want, n_out, 1e-5, 1e-5), "%s", what);
    CHECK(expect_close("attention lse vs naive", lse, want_lse, n_lse, 1e-5, 1e-5), "%s", what);
    pc_free(out), pc_free(lse), pc_free(want), pc_free(want_lse), pc_free(od), pc_free(ld);
}

static double objective(const att_case *c) {
    long n_out = (long)c->B * c->T * c->H * c->hd;
    double *od = pc_malloc(sizeof(double) * n_out), f = 0.0;
    naive_attention(od, NULL, c);
    for (long i = 0; i < n_out; i++) f += od[i] * c->G[i];
    pc_free(od);
    return f;
}

/* Central differences at `samples` random entries of x (all of them when x is small). */
static void check_grad(const char *name, const att_case *c, float *x, const float *analytic, long n, int samples) {
    float got[256], fd[256];
    int m = n < samples ? (int)n : samples;
    for (int s = 0; s < m; s++) {
        long i = n <= samples ? s : (long)pc_rng_below(&rng, (uint32_t)n);
        float saved = x[i];
        const double h = 1e-3;
        x[i] = (float)(saved + h);
        double fp = objective(c);
        x[i] = (float)(saved - h);
        double fm = objective(c);
        x[i] = saved;
        fd[s] = (float)((fp - fm) / (2 * h));
        got[s] = analytic[i];
    }
    char what[160];
    describe(what, sizeof what, c);
    CHECK(expect_close(name, got, fd, m, 2e-3, 2e-4), "%s", what);
}

static void test_backward(att_case *c) {
    long nq = (long)c->B * c->T * c->H * c->hd, nkv = (long)c->B * c->T * c->KVH * c->hd,
         np = (long)c->P * c->KVH * c->hd;
    float *out = pc_malloc(sizeof(float) * nq), *lse = pc_malloc(sizeof(float) * c->B * c->H * c->T);
    attention_forward(out, lse, c->q, c->k, c->v, c->pk, c->pv, c->doc, c->B, c->T, c->P, c->H, c->KVH, c->hd);
    /* Gradients start non-zero: the backward must accumulate. */
    float *dq = randf(nq), *dk = randf(nkv), *dv = randf(nkv), *dpk = randf(np), *dpv = randf(np);
    float *base_q = pc_malloc(sizeof(float) * nq), *base_kv = pc_malloc(sizeof(float) * nkv * 2),
          *base_p = pc_malloc(sizeof(float) * (np ? np : 1) * 2);
    memcpy(base_q, dq, sizeof(float) * nq);
    memcpy(base_kv, dk, sizeof(float) * nkv), memcpy(base_kv + nkv, dv, sizeof(float) * nkv);
    if (np) memcpy(base_p, dpk, sizeof(float) * np), memcpy(base_p + np, dpv, sizeof(float) * np);
    attention_backward(dq, dk, dv, c->P ? dpk : NULL, c->P ? dpv : NULL, c->G, out, lse, c->q, c->k, c->v, c->pk,
                       c->pv, c->doc, c->B, c->T, c->P, c->H, c->KVH, c->hd);
    for (long i = 0; i < nq; i++) dq[i] -= base_q[i];
    for (long i = 0; i < nkv; i++) dk[i] -= base_kv[i], dv[i] -= base_kv[nkv + i];
    for (long i = 0; i < np; i++) dpk[i] -= base_p[i], dpv[i] -= base_p[np + i];
    check_grad("attention dq vs finite differences", c, c->q, dq, nq, 120);
    check_grad("attention dk vs finite differences", c, c->k, dk, nkv, 120);
    check_grad("attention dv vs finite differences", c, c->v, dv, nkv, 120);
    if (c->P) {
        check_grad("attention dprefix_k vs finite differences", c, c->pk, dpk, np, 120);
        check_grad("attention dprefix_v vs finite differences", c, c->pv, dpv, np, 120);
    }
    pc_free(out), pc_free(lse), pc_free(dq), pc_free(dk), pc_free(dv), pc_free(dpk), pc_free(dpv), pc_free(base_q),
        pc_free(base_kv), pc_free(base_p);
}

/* Decoding: query i of the Tn newest attends cache keys 0 … S−Tn+i. The naive rule is exactly the
 * attention of a batch-1 sequence whose first S−Tn keys are a "prefix" that the new queries see entirely,
 * except that later new keys are hidden causally; compute it directly. */
static void test_cached(int Tn, int S, int H, int KVH, int hd) {
    float *q = randf((long)Tn * H * hd), *kc = randf((long)S * KVH * hd), *vc = randf((long)S * KVH * hd);
    float *out = pc_malloc(sizeof(float) * Tn * H * hd), *want = pc_malloc(sizeof(float) * Tn * H * hd);
    attention_cached(out, q, kc, vc, Tn, S, H, KVH, hd);
    /* reference: prefix = first S−Tn cache rows, sequence = last Tn rows with the causal rule */
    att_case c = {1, Tn, S - Tn, H, KVH, hd, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    c.q = q, c.pk = kc, c.pv = vc, c.k = kc + (long)(S - Tn) * KVH * hd, c.v = vc + (long)(S - Tn) * KVH * hd;
    c.doc = NULL;
    double *od = pc_malloc(sizeof(double) * Tn * H * hd);
    naive_attention(od, NULL, &c);
    for (long i = 0; i < (long)Tn * H * hd; i++) want[i] = (float)od[i];
    CHECK(expect_close("attention_cached vs naive", out, want, (long)Tn * H * hd, 1e-5, 1e-5),
          "Tn=%d S=%d H=%d KVH=%d hd=%d", Tn, S, H, KVH, hd);
    pc_free(q), pc_free(kc), pc_free(vc), pc_free(out), pc_free(want), pc_free(od);
}

/* Forward and backward with 1, 2 and 3 threads give bit-identical results: every output element gets its
 * terms in one fixed order, also when the backward splits a group (3 groups on 2 threads, 1 group on 2
 * or 3 threads). */
static void test_thread_invariance(int B, int T, int P, int H, int KVH, int hd, int with_doc) {
    att_case c = make_case(B, T, P, H, KVH, hd, with_doc);
    long nq = (long)B * T * H * hd, nkv = (long)B * T * KVH * hd, np = (long)P * KVH * hd, nl = (long)B * H * T;
    long n_all = 2 * nq + nl + 2 * nkv + 2 * np; /* out, lse, dq, dk, dv, dpk, dpv */
    float *first = NULL, *all = pc_malloc(sizeof(float) * n_all);
    char what[128];
    describe(what, sizeof what, &c);
    for (int threads = 1; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        float *out = all, *lse = out + nq, *dq = lse + nl, *dk = dq + nq, *dv = dk + nkv, *dpk = dv + nkv,
              *dpv = dpk + np;
        memset(all, 0, sizeof(float) * n_all);
        attention_forward(out, lse, c.q, c.k, c.v, c.pk, c.pv, c.doc, B, T, P, H, KVH, hd);
        attention_backward(dq, dk, dv, P ? dpk : NULL, P ? dpv : NULL, c.G, out, lse, c.q, c.k, c.v, c.pk, c.pv, c.doc,
                           B, T, P, H, KVH, hd);
        if (!first) {
            first = all;
            all = pc_malloc(sizeof(float) * n_all);
            continue;
        }
        CHECK(memcmp(first, all, sizeof(float) * n_all) == 0, "attention: %d threads give the 1-thread result (%s)",
              threads, what);
    }
    omp_set_num_threads(2);
    pc_free(first), pc_free(all);
    free_case(&c);
}

int main(void) {
    pc_rng_seed(&rng, 2024);
    /* Two threads whatever the machine: cases with 3 (batch, kv head) groups then take the split backward. */
    omp_set_num_threads(2);
    /* Forward at sizes that cross query tiles (32) and key tiles (64). */
    int fwd[][7] = {
        {1, 9, 0, 2, 2, 4, 0},    {2, 70, 5, 4, 2, 8, 1},    {2, 70, 5, 4, 2, 8, 0}, {1, 200, 10, 4, 2, 64, 0},
        {2, 130, 0, 6, 1, 16, 1}, {1, 33, 70, 2, 1, 32, 1},  {3, 1, 2, 2, 2, 8, 0},
        /* T = 1; a head dimension with a partial vector (20 = 16 + 4) and with three vectors (48); a prefix
         * of exactly one tile (64) and one past it (65); short documents, so whole tiles are masked; head
         * rows longer than one 64-column chunk of the micro-GEMM (128, and 72 padded to 80) */
        {1, 1, 0, 1, 1, 20, 0},   {2, 129, 64, 6, 3, 20, 0}, {1, 192, 65, 2, 2, 48, 1}, {1, 300, 0, 4, 2, 64, 40},
        {1, 70, 3, 2, 1, 128, 1}, {1, 100, 0, 2, 2, 72, 0},
    };
    for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++) {
        int *p = fwd[i];
        att_case c = make_case(p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
        test_forward(&c);
        free_case(&c);
    }
    /* Backward: every gradient, with GQA, prefix, doc masks, several tiles. */
    int bwd[][7] = {
        {1, 9, 0, 2, 2, 4, 0}, {2, 70, 5, 4, 2, 8, 1}, {1, 40, 3, 6, 1, 8, 0}, {2, 37, 66, 2, 2, 4, 1},
        /* T = 1 with a prefix; 3 groups on 2 threads (the split backward) over 3 query blocks, with a prefix,
         * documents and a partial vector; short documents (masked tiles skipped) with hd = 16; hd = 80 (a
         * 64-column chunk and a 16-column one) */
        {1, 1, 2, 2, 1, 8, 0}, {1, 130, 7, 3, 3, 20, 1}, {1, 150, 0, 4, 2, 16, 25}, {1, 66, 2, 2, 1, 80, 0},
    };
    for (size_t i = 0; i < sizeof bwd / sizeof bwd[0]; i++) {
        int *p = bwd[i];
        att_case c = make_case(p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
        test_backward(&c);
        free_case(&c);
    }
    test_thread_invariance(1, 200, 3, 6, 3, 64, 1);
    test_thread_invariance(1, 260, 0, 2, 1, 20, 0);
    test_thread_invariance(2, 100, 70, 4, 2, 32, 30);
    test_cached(1, 10, 4, 2, 8);
    test_cached(3, 10, 4, 2, 8);
    test_cached(5, 600, 6, 2, 16); /* several cache blocks */
    return test_finish();
}
