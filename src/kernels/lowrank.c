/* Low-rank products for LoRA, forward and backward side by side (see lowrank.h for the maths).
 *
 * Work goes in blocks of LR_ROWS = 4 rows × LR_RANKS = 4 ranks, in two tile shapes:
 *   dot_tile  — per (row, rank) a dot product along the row (xa = x·Aᵀ, d_xa = dy·B with B transposed):
 *               the 16 partial sums stay in vector registers and are summed across lanes once per row block;
 *   axpy_tile — per row a sum of rank-weighted rows (y += s·xa·Bᵀ, d_in += d_xa·A): each vector of the 4
 *               rows is loaded, receives its 4 ranks and is stored, the 16 coefficients held in registers.
 * The weight gradients ride along: backward's dot_tile adds xaᵀ·dy to the partial dB while the dy vectors
 * are in registers, and axpy_tile adds d_xaᵀ·x to the partial dA in the pass that reads x for d_in. r > 4
 * takes the rank blocks in turn over the same 4 rows, which are then in L1.
 *
 * r is padded to a multiple of 4 with zero rows of A and Bᵀ (copied into the scratch), so every tile has 4
 * ranks; the padded ranks contribute exact zeros and are never written out. Each row block's xa and d_xa
 * live in a per-thread block buffer [4, rp] whose padding is zero.
 *
 * Columns go 16 at a time (one AVX-512 register; GCC lowers the vector type to the instruction set of each
 * variant) and the last len % 16 in plain loops.
 *
 * Instruction sets: the row loops are compiled for AVX-512, AVX2+FMA and the base ISA and picked from CPUID
 * per call (as matmul_portable.c does), not with PC_SIMD_CLONES, because these variants must be tuned
 * generically: under the project's -mtune=native (znver3 cost tables on this Zen 5) GCC folded every load
 * into the FMAs and then re-loaded each x and weight vector for every use — 16 loads instead of 8 per 16
 * FMAs in a tile — and the kernels ran 1.5x slower. target_clones cannot carry a tuning.
 *
 * Tried and not kept (no faster, measured per call): column segments of 256-512 so that a segment of the
 * rows, of the weight rows and of the partial gradients all stay in L1; blocks of 8 or 16 rows with the
 * dot-product sums kept in memory between segments. At r = 8 these kernels run at 55-60 % of the FMA peak
 * of one core; the rows themselves cost less than half of that in memory traffic. */
#include <omp.h>
#include <string.h>

#include "kernels/lowrank.h"

/* vload returns a vector but is always inlined, so the ABI warning GCC gives for a 64-byte vector return in
 * the base-ISA variant concerns no real call. */
#pragma GCC diagnostic ignored "-Wpsabi"

enum { LR_ROWS = 4, LR_RANKS = 4, LR_W = 16 };

/* Helpers are always inlined into the per-ISA row loops: compiled on their own they would get the base
 * instruction set only, and the tile arrays only become registers once R is a constant. */
#define LR_INLINE static inline __attribute__((always_inline))

typedef float lr_vec __attribute__((vector_size(64), aligned(4)));
typedef int lr_lanes __attribute__((vector_size(64)));
typedef uint8_t lr_bytes __attribute__((vector_size(16), aligned(1)));

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }
static int pad_rank(int r) { return (r + LR_RANKS - 1) / LR_RANKS * LR_RANKS; }

LR_INLINE lr_vec vload(const float *p) { return *(const lr_vec *)p; }
#define VSTORE(p, v) (*(lr_vec *)(p) = (v))

/* Lane permutation of one vector: GCC spells it __builtin_shuffle with an index vector, clang (the fuzz
 * build) __builtin_shufflevector with the indices as arguments. */
#if defined(__clang__)
#define LR_SHUFFLE(v, ...) __builtin_shufflevector(v, v, __VA_ARGS__)
#else
#define LR_SHUFFLE(v, ...) __builtin_shuffle(v, (lr_lanes){__VA_ARGS__})
#endif

LR_INLINE float vsum(const lr_vec *p) { /* by address: no vector passes through a call's ABI */
    lr_vec v = *p;
    v += LR_SHUFFLE(v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    v += LR_SHUFFLE(v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
    v += LR_SHUFFLE(v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    v += LR_SHUFFLE(v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    return v[0];
}

/* dst[i·ldd + j] = scale · Σ_c X[i·len + c]·W[j·len + c] for i < R rows of X, j < 4 rows of W.
 * With update: P[j·len + c] += Σ_i coef[i·ldc + j]·X[i·len + c] in the same pass over X (backward's dB). */
LR_INLINE void dot_tile(float *restrict dst, int ldd, float scale, const float *restrict X, const float *restrict W,
                        int len, const int R, float *restrict P, const float *restrict coef, int ldc,
                        const int update) {
    lr_vec acc[LR_ROWS][LR_RANKS];
    float cf[LR_ROWS][LR_RANKS];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < LR_RANKS; j++) {
            acc[i][j] = (lr_vec){0};
            cf[i][j] = update ? coef[i * ldc + j] : 0.0f;
        }
    int nv = len & ~(LR_W - 1);
    for (int c = 0; c < nv; c += LR_W) {
        lr_vec xv[LR_ROWS], w[LR_RANKS];
        for (int j = 0; j < LR_RANKS; j++) w[j] = vload(W + (size_t)j * len + c);
        for (int i = 0; i < R; i++) {
            xv[i] = vload(X + (size_t)i * len + c);
            for (int j = 0; j < LR_RANKS; j++) acc[i][j] += xv[i] * w[j];
        }
        if (update)
            for (int j = 0; j < LR_RANKS; j++) {
                lr_vec p = vload(P + (size_t)j * len + c);
                for (int i = 0; i < R; i++) p += cf[i][j] * xv[i];
                VSTORE(P + (size_t)j * len + c, p);
            }
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < LR_RANKS; j++) {
            float sum = vsum(&acc[i][j]);
            for (int c = nv; c < len; c++) sum += X[(size_t)i * len + c] * W[(size_t)j * len + c];
            dst[(size_t)i * ldd + j] = scale * sum;
        }
    if (update)
        for (int j = 0; j < LR_RANKS; j++)
            for (int c = nv; c < len; c++) {
                float p = P[(size_t)j * len + c];
                for (int i = 0; i < R; i++) p += cf[i][j] * X[(size_t)i * len + c];
                P[(size_t)j * len + c] = p;
            }
}

/* One step of axpy_tile: columns c … c+16V−1 (V = 1 or 2 vectors per row; ld is the row stride). The sums
 * are chains over the 4 ranks: two vectors per row give 8 independent chains per step. */
LR_INLINE void axpy_step(float *restrict dst, const float c_[LR_ROWS][LR_RANKS], const float *restrict W, int ld,
                         int c, const int R, const int V, const uint8_t *restrict keep, float keep_scale,
                         const int masked, float *restrict P, const float r_[LR_ROWS][LR_RANKS],
                         const float *restrict X, const int update) {
    lr_vec sum[LR_ROWS][2], w[LR_RANKS][2];
    for (int j = 0; j < LR_RANKS; j++)
        for (int v = 0; v < V; v++) w[j][v] = vload(W + (size_t)j * ld + c + v * LR_W);
    for (int i = 0; i < R; i++)
        for (int v = 0; v < V; v++) sum[i][v] = masked ? (lr_vec){0} : vload(dst + (size_t)i * ld + c + v * LR_W);
    for (int j = 0; j < LR_RANKS; j++)
        for (int i = 0; i < R; i++)
            for (int v = 0; v < V; v++) sum[i][v] += c_[i][j] * w[j][v];
    for (int i = 0; i < R; i++)
        for (int v = 0; v < V; v++) {
            float *d = dst + (size_t)i * ld + c + v * LR_W;
            if (masked) {
                lr_bytes kb = *(const lr_bytes *)(keep + (size_t)i * ld + c + v * LR_W);
                sum[i][v] = vload(d) + __builtin_convertvector(kb, lr_vec) * keep_scale * sum[i][v];
            }
            VSTORE(d, sum[i][v]);
        }
    if (update) {
        lr_vec xv[LR_ROWS][2], p[LR_RANKS][2];
        for (int i = 0; i < R; i++)
            for (int v = 0; v < V; v++) xv[i][v] = vload(X + (size_t)i * ld + c + v * LR_W);
        for (int j = 0; j < LR_RANKS; j++)
            for (int v = 0; v < V; v++) p[j][v] = vload(P + (size_t)j * ld + c + v * LR_W);
        for (int i = 0; i < R; i++)
            for (int j = 0; j < LR_RANKS; j++)
                for (int v = 0; v < V; v++) p[j][v] += r_[i][j] * xv[i][v];
        for (int j = 0; j < LR_RANKS; j++)
            for (int v = 0; v < V; v++) VSTORE(P + (size_t)j * ld + c + v * LR_W, p[j][v]);
    }
}

/* dst[i·len + c] += Σ_j cf[i][j]·W[j·len + c] for i < R rows, j < 4; masked multiplies the sum by
 * keep[i·len + c]·keep_scale before adding it. With update: P[j·len + c] += Σ_i raw[i][j]·X[i·len + c] in the
 * same pass (backward's dA). No run-time flag may choose between loading dst and zero inside the loop: GCC
 * then computes the products before the branch and can no longer fuse them into FMAs. */
LR_INLINE void axpy_tile(float *restrict dst, const float cf[LR_ROWS][LR_RANKS], const float *restrict W, int len,
                         const int R, const uint8_t *restrict keep, float keep_scale,
                         const int masked, float *restrict P, const float raw[LR_ROWS][LR_RANKS],
                         const float *restrict X, const int update) {
    float c_[LR_ROWS][LR_RANKS], r_[LR_ROWS][LR_RANKS]; /* locals, so they are not re-read after stores */
    for (int i = 0; i < R; i++)
        for (int j = 0; j < LR_RANKS; j++) {
            c_[i][j] = cf[i][j];
            r_[i][j] = update ? raw[i][j] : 0.0f;
        }
    int c = 0;
    for (; c + 2 * LR_W <= len; c += 2 * LR_W)
        axpy_step(dst, c_, W, len, c, R, 2, keep, keep_scale, masked, P, r_, X, update);
    for (; c + LR_W <= len; c += LR_W) axpy_step(dst, c_, W, len, c, R, 1, keep, keep_scale, masked, P, r_, X, update);
    for (int i = 0; i < R; i++)
        for (int cc = c; cc < len; cc++) {
            float s = 0.0f;
            for (int j = 0; j < LR_RANKS; j++) s += c_[i][j] * W[(size_t)j * len + cc];
            if (masked) s *= keep[(size_t)i * len + cc] ? keep_scale : 0.0f;
            dst[(size_t)i * len + cc] += s;
        }
    if (update)
        for (int j = 0; j < LR_RANKS; j++)
            for (int cc = c; cc < len; cc++) {
                float p = P[(size_t)j * len + cc];
                for (int i = 0; i < R; i++) p += r_[i][j] * X[(size_t)i * len + cc];
                P[(size_t)j * len + cc] = p;
            }
}

/* Coefficients of rank block j0 for R rows of blk [R, rp], times scale. */
LR_INLINE void block_coefs(float cf[LR_ROWS][LR_RANKS], const float *blk, int rp, int j0, float scale, const int R) {
    for (int i = 0; i < R; i++)
        for (int j = 0; j < LR_RANKS; j++) cf[i][j] = scale * blk[(size_t)i * rp + j0 + j];
}

/* ---- forward ---------------------------------------------------------------------------------------- */

/* Rows n … n+R−1: blk = x·Aᵀ (Ap: A padded to rp rows), copied out to xa; then y (+)= s·blk·Bᵀ (Bt: Bᵀ
 * padded to rp rows). */
LR_INLINE void forward_block(float *y, float *xa, const float *x, const float *Ap, const float *Bt,
                             const lowrank_shape *sh, int rp, int accumulate, float *blk, int n, const int R) {
    int in = sh->in, out = sh->out, r = sh->r;
    const float *xn = x + (size_t)n * in;
    float *yn = y + (size_t)n * out;
    for (int j0 = 0; j0 < rp; j0 += LR_RANKS)
        dot_tile(blk + j0, rp, 1.0f, xn, Ap + (size_t)j0 * in, in, R, NULL, NULL, 0, 0);
    for (int i = 0; i < R; i++) {
        memcpy(xa + (size_t)(n + i) * r, blk + (size_t)i * rp, sizeof(float) * r);
        memset(blk + (size_t)i * rp + r, 0, sizeof(float) * (rp - r)); /* an inf in x made 0·inf = NaN there */
    }
    float cf[LR_ROWS][LR_RANKS];
    if (!accumulate)
        for (int i = 0; i < R; i++) memset(yn + (size_t)i * out, 0, sizeof(float) * out);
    for (int j0 = 0; j0 < rp; j0 += LR_RANKS) {
        block_coefs(cf, blk, rp, j0, sh->scale, R);
        axpy_tile(yn, cf, Bt + (size_t)j0 * out, out, R, NULL, 0.0f, 0, NULL, NULL, NULL, 0);
    }
}

/* Rows n0 … n1−1; blk is this thread's [LR_ROWS, rp] buffer. */
LR_INLINE void forward_rows_body(float *y, float *xa, const float *x, const float *Ap, const float *Bt,
                                 const lowrank_shape *sh, int rp, int accumulate, float *blk, int n0, int n1) {
    int n = n0;
    for (; n + LR_ROWS <= n1; n += LR_ROWS) forward_block(y, xa, x, Ap, Bt, sh, rp, accumulate, blk, n, LR_ROWS);
    for (; n < n1; n++) forward_block(y, xa, x, Ap, Bt, sh, rp, accumulate, blk, n, 1);
}

/* ---- backward --------------------------------------------------------------------------------------- */

/* Rows n … n+R−1: dblk = s·dy·B with PB += xblkᵀ·dy in the same pass over dy (PB: dBᵀ, unscaled), copied out
 * to d_xa; then d_in += dblk·Ap (through the mask when masked) with PA += dblkᵀ·x in the same pass over x. */
LR_INLINE void backward_block(float *d_in, float *d_xa, float *PA, float *PB, float *xblk, float *dblk,
                              const float *dy, const float *x, const float *xa, const float *Ap, const float *Bt,
                              const uint8_t *keep, float keep_scale, const int masked, const lowrank_shape *sh,
                              int rp, int n, const int R) {
    int in = sh->in, out = sh->out, r = sh->r;
    const float *dyn = dy + (size_t)n * out, *xn = x + (size_t)n * in;
    float *dinn = d_in + (size_t)n * in;
    const uint8_t *keepn = masked ? keep + (size_t)n * in : NULL;
    for (int i = 0; i < R; i++) memcpy(xblk + (size_t)i * rp, xa + (size_t)(n + i) * r, sizeof(float) * r);
    for (int j0 = 0; j0 < rp; j0 += LR_RANKS)
        dot_tile(dblk + j0, rp, sh->scale, dyn, Bt + (size_t)j0 * out, out, R, PB + (size_t)j0 * out, xblk + j0, rp,
                 1);
    for (int i = 0; i < R; i++) {
        memcpy(d_xa + (size_t)(n + i) * r, dblk + (size_t)i * rp, sizeof(float) * r);
        memset(dblk + (size_t)i * rp + r, 0, sizeof(float) * (rp - r));
    }
    float cf[LR_ROWS][LR_RANKS];
    for (int j0 = 0; j0 < rp; j0 += LR_RANKS) {
        block_coefs(cf, dblk, rp, j0, 1.0f, R);
        axpy_tile(dinn, cf, Ap + (size_t)j0 * in, in, R, keepn, keep_scale, masked, PA + (size_t)j0 * in, cf, xn, 1);
    }
}

/* Rows n0 … n1−1 into this thread's partials PA, PB; xblk, dblk are its [LR_ROWS, rp] buffers (padding zero). */
LR_INLINE void backward_rows_body(float *d_in, float *d_xa, float *PA, float *PB, float *xblk, float *dblk,
                                  const float *dy, const float *x, const float *xa, const float *Ap, const float *Bt,
                                  const uint8_t *keep, float keep_scale, const lowrank_shape *sh, int rp, int n0,
                                  int n1) {
    int n = n0;
#define LR_BACKWARD_ROWS(masked)                                                                                     \
    for (; n + LR_ROWS <= n1; n += LR_ROWS)                                                                          \
        backward_block(d_in, d_xa, PA, PB, xblk, dblk, dy, x, xa, Ap, Bt, keep, keep_scale, masked, sh, rp, n,      \
                       LR_ROWS);                                                                                     \
    for (; n < n1; n++)                                                                                              \
        backward_block(d_in, d_xa, PA, PB, xblk, dblk, dy, x, xa, Ap, Bt, keep, keep_scale, masked, sh, rp, n, 1);
    if (keep) {
        LR_BACKWARD_ROWS(1)
    } else {
        LR_BACKWARD_ROWS(0)
    }
#undef LR_BACKWARD_ROWS
}

/* ---- one variant per instruction set ----------------------------------------------------------------- */

#define LR_FORWARD_PARAMS                                                                                         \
    float *y, float *xa, const float *x, const float *Ap, const float *Bt, const lowrank_shape *sh, int rp,        \
        int accumulate, float *blk, int n0, int n1
#define LR_FORWARD_ARGS y, xa, x, Ap, Bt, sh, rp, accumulate, blk, n0, n1
#define LR_BACKWARD_PARAMS                                                                                        \
    float *d_in, float *d_xa, float *PA, float *PB, float *xblk, float *dblk, const float *dy, const float *x,     \
        const float *xa, const float *Ap, const float *Bt, const uint8_t *keep, float keep_scale,                  \
        const lowrank_shape *sh, int rp, int n0, int n1
#define LR_BACKWARD_ARGS d_in, d_xa, PA, PB, xblk, dblk, dy, x, xa, Ap, Bt, keep, keep_scale, sh, rp, n0, n1

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define LR_ISA_VARIANTS 1
#define LR_TARGET(isa) __attribute__((target(isa ",tune=generic"), optimize("O3")))
LR_TARGET("avx512f") static void forward_rows_avx512(LR_FORWARD_PARAMS) { forward_rows_body(LR_FORWARD_ARGS); }
LR_TARGET("avx2,fma") static void forward_rows_avx2(LR_FORWARD_PARAMS) { forward_rows_body(LR_FORWARD_ARGS); }
LR_TARGET("avx512f") static void backward_rows_avx512(LR_BACKWARD_PARAMS) { backward_rows_body(LR_BACKWARD_ARGS); }
LR_TARGET("avx2,fma") static void backward_rows_avx2(LR_BACKWARD_PARAMS) { backward_rows_body(LR_BACKWARD_ARGS); }
#else
#define LR_ISA_VARIANTS 0
#endif
static void forward_rows_plain(LR_FORWARD_PARAMS) { forward_rows_body(LR_FORWARD_ARGS); }
static void backward_rows_plain(LR_BACKWARD_PARAMS) { backward_rows_body(LR_BACKWARD_ARGS); }

/* The variant to run: the one asked for, or the widest the CPU has. */
static lowrank_isa pick_isa(lowrank_isa asked) {
    if (asked != LOWRANK_ISA_AUTO) return asked;
#if LR_ISA_VARIANTS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return LOWRANK_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return LOWRANK_ISA_AVX2;
#endif
    return LOWRANK_ISA_PLAIN;
}

static void forward_rows(lowrank_isa isa, LR_FORWARD_PARAMS) {
#if LR_ISA_VARIANTS
    if (isa == LOWRANK_ISA_AVX512) {
        forward_rows_avx512(LR_FORWARD_ARGS);
        return;
    }
    if (isa == LOWRANK_ISA_AVX2) {
        forward_rows_avx2(LR_FORWARD_ARGS);
        return;
    }
#endif
    forward_rows_plain(LR_FORWARD_ARGS);
}

static void backward_rows(lowrank_isa isa, LR_BACKWARD_PARAMS) {
#if LR_ISA_VARIANTS
    if (isa == LOWRANK_ISA_AVX512) {
        backward_rows_avx512(LR_BACKWARD_ARGS);
        return;
    }
    if (isa == LOWRANK_ISA_AVX2) {
        backward_rows_avx2(LR_BACKWARD_ARGS);
        return;
    }
#endif
    backward_rows_plain(LR_BACKWARD_ARGS);
}

/* ---- driver ----------------------------------------------------------------------------------------- */

/* dA[k] += Σ_t PA_t[k] for flat indices k in [k0, k1); partial t is at partials + t·stride. */
static void reduce_dA(float *dA, const float *partials, size_t stride, int n_partials, size_t k0,
                                     size_t k1) {
    for (int t = 0; t < n_partials; t++) {
        const float *p = partials + (size_t)t * stride;
        for (size_t k = k0; k < k1; k++) dA[k] += p[k];
    }
}

/* dB[o,j] += s·Σ_t PB_t[j,o] for o in [o0, o1). */
static void reduce_dB(float *dB, const float *partials, size_t stride, int n_partials, const lowrank_shape *sh, int o0,
                      int o1) {
    for (int o = o0; o < o1; o++)
        for (int j = 0; j < sh->r; j++) {
            float sum = 0.0f;
            for (int t = 0; t < n_partials; t++) sum += partials[(size_t)t * stride + (size_t)j * sh->out + o];
            dB[(size_t)o * sh->r + j] += sh->scale * sum;
        }
}

/* ---- driver ----------------------------------------------------------------------------------------- */

/* The scratch, carved: Bt [rp,out] and Ap [rp,in] shared; per thread PB [rp,out], PA [rp,in] and two row
 * blocks [LR_ROWS,rp]. */
typedef struct lr_layout {
    int rp;
    size_t bt, ap, pb, pa, blk, per_thread;
} lr_layout;

static lr_layout layout_of(int in, int out, int r) {
    lr_layout l;
    l.rp = pad_rank(r);
    l.bt = l.pb = pad16((size_t)l.rp * out);
    l.ap = l.pa = pad16((size_t)l.rp * in);
    l.blk = pad16((size_t)LR_ROWS * l.rp);
    l.per_thread = l.pb + l.pa + 2 * l.blk;
    return l;
}

size_t lowrank_scratch_floats(int in, int out, int r, int threads) {
    lr_layout l = layout_of(in, out, r);
    return l.bt + l.ap + (size_t)(threads > 0 ? threads : 1) * l.per_thread;
}

static int team_size(const lowrank_scratch *scratch) {
    int t = omp_get_max_threads(), cap = scratch->threads > 0 ? scratch->threads : 1;
    return t < cap ? t : cap;
}

/* This thread's rows: contiguous, in whole LR_ROWS blocks except at the end. */
static void thread_rows(int N, int *n0, int *n1) {
    int nt = omp_get_num_threads(), t = omp_get_thread_num();
    int per = ((N + nt - 1) / nt + LR_ROWS - 1) / LR_ROWS * LR_ROWS;
    long lo = (long)t * per, hi = lo + per;
    *n0 = (int)(lo < N ? lo : N);
    *n1 = (int)(hi < N ? hi : N);
}

static void thread_range(long n, long *lo, long *hi) {
    int nt = omp_get_num_threads(), t = omp_get_thread_num();
    long per = (n + nt - 1) / nt;
    *lo = (long)t * per < n ? (long)t * per : n;
    *hi = *lo + per < n ? *lo + per : n;
}

/* Bt[j,o] = B[o,j] (zero for j ≥ r) so the products with B run along contiguous memory; Ap = A with zero rows
 * up to rp (A itself when r is already a multiple of 4). */
static const float *pad_weights(float *scratch, const lr_layout *l, const float *A, const float *B, int in, int out,
                                int r) {
    float *Bt = scratch, *Ap = scratch + l->bt;
    for (int o = 0; o < out; o++)
        for (int j = 0; j < r; j++) Bt[(size_t)j * out + o] = B[(size_t)o * r + j];
    memset(Bt + (size_t)r * out, 0, sizeof(float) * (size_t)(l->rp - r) * out);
    if (l->rp == r) return A;
    memcpy(Ap, A, sizeof(float) * (size_t)r * in);
    memset(Ap + (size_t)r * in, 0, sizeof(float) * (size_t)(l->rp - r) * in);
    return Ap;
}

void lowrank_forward(float *y, float *xa, const float *x, const float *A, const float *B, const lowrank_shape *sh,
                     int accumulate, const lowrank_scratch *scratch) {
    if (sh->N <= 0) return;
    lr_layout l = layout_of(sh->in, sh->out, sh->r);
    lowrank_isa isa = pick_isa(scratch->isa);
    const float *Bt = scratch->data, *Ap = pad_weights(scratch->data, &l, A, B, sh->in, sh->out, sh->r);
    float *per_thread = scratch->data + l.bt + l.ap;
#pragma omp parallel num_threads(team_size(scratch))
    {
        int n0, n1;
        float *blk = per_thread + (size_t)omp_get_thread_num() * l.per_thread;
        thread_rows(sh->N, &n0, &n1);
        forward_rows(isa, y, xa, x, Ap, Bt, sh, l.rp, accumulate, blk, n0, n1);
    }
}

void lowrank_backward(float *d_in, float *dA, float *dB, float *d_xa, const float *dy, const float *x, const float *xa,
                      const float *A, const float *B, const uint8_t *keep, float keep_scale, const lowrank_shape *sh,
                      const lowrank_scratch *scratch) {
    if (sh->N <= 0) return;
    lr_layout l = layout_of(sh->in, sh->out, sh->r);
    lowrank_isa isa = pick_isa(scratch->isa);
    const float *Bt = scratch->data, *Ap = pad_weights(scratch->data, &l, A, B, sh->in, sh->out, sh->r);
    float *per_thread = scratch->data + l.bt + l.ap;
#pragma omp parallel num_threads(team_size(scratch))
    {
        int nt = omp_get_num_threads(), n0, n1;
        float *PB = per_thread + (size_t)omp_get_thread_num() * l.per_thread, *PA = PB + l.pb, *xblk = PA + l.pa,
              *dblk = xblk + l.blk;
        memset(PB, 0, sizeof(float) * l.per_thread); /* also the blocks' padding */
        thread_rows(sh->N, &n0, &n1);
        backward_rows(isa, d_in, d_xa, PA, PB, xblk, dblk, dy, x, xa, Ap, Bt, keep, keep_scale, sh, l.rp, n0, n1);
#pragma omp barrier
        long lo, hi;
        thread_range((long)sh->r * sh->in, &lo, &hi);
        reduce_dA(dA, per_thread + l.pb, l.per_thread, nt, (size_t)lo, (size_t)hi);
        thread_range(sh->out, &lo, &hi);
        reduce_dB(dB, per_thread, l.per_thread, nt, sh, (int)lo, (int)hi);
    }
}
