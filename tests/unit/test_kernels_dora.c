/* kernels/dora: row norms of W + s·B·A (fp32 and bf16 W, widths that are not a multiple of the vector, any
 * thread count giving the same bits) against a double-precision reference; the forward combination and the
 * row scaling against their formulas; the magnitude gradient against finite differences of
 * Σ w⊙DoRA(m) with g = m/norm, through dora_combine_forward itself. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/alloc.h"
#include "kernels/dora.h"
#include "test_support.h"

/* ‖W[o,:] + s·B[o,:]·A‖ in double, W given as fp32 values (bf16 ones widened exactly). */
static double reference_norm(const float *W, const float *A, const float *B, double s, int o, int in, int r) {
    double sum = 0;
    for (int i = 0; i < in; i++) {
        double v = W[(size_t)o * in + i];
        for (int k = 0; k < r; k++) v += s * B[(size_t)o * r + k] * A[(size_t)k * in + i];
        sum += v * v;
    }
    return sqrt(sum);
}

static void check_row_norms(int out, int in, int r, int bf16) {
    pc_rng rng;
    pc_rng_seed(&rng, (uint64_t)(out * 131 + in * 7 + r + bf16));
    float *W = pc_malloc(sizeof(float) * (size_t)out * in), *A = pc_malloc(sizeof(float) * (size_t)r * in);
    float *B = pc_malloc(sizeof(float) * (size_t)out * r), *norm = pc_malloc(sizeof(float) * (size_t)out);
    float *norm1 = pc_malloc(sizeof(float) * (size_t)out), *want = pc_malloc(sizeof(float) * (size_t)out);
    uint16_t *W16 = pc_malloc(sizeof(uint16_t) * (size_t)out * in);
    int threads = omp_get_max_threads() > 1 ? omp_get_max_threads() : 2;
    float *rows = pc_malloc(sizeof(float) * (size_t)threads * in);
    test_fill_uniform(&rng, W, (long)out * in, -0.2f, 0.2f);
    test_fill_uniform(&rng, A, (long)r * in, -0.5f, 0.5f);
    test_fill_uniform(&rng, B, (long)out * r, -0.3f, 0.3f);
    if (bf16) /* the reference sees exactly the bf16 values */
        for (long i = 0; i < (long)out * in; i++) W[i] = pc_bf16_to_f32(W16[i] = pc_f32_to_bf16(W[i]));
    const void *w = bf16 ? (const void *)W16 : (const void *)W;
    float s = 1.7f;
    dora_row_norms(norm, w, bf16 ? PC_BF16 : PC_F32, A, B, s, out, in, r, rows, threads);
    dora_row_norms(norm1, w, bf16 ? PC_BF16 : PC_F32, A, B, s, out, in, r, rows, 1);
    for (int o = 0; o < out; o++) want[o] = (float)reference_norm(W, A, B, s, o, in, r);
    char what[96];
    snprintf(what, sizeof what, "row norms out %d in %d r %d %s", out, in, r, bf16 ? "bf16" : "fp32");
    CHECK(expect_close(what, norm, want, out, 2e-6, 0), "%s: within 2e-6 of the double reference", what);
    CHECK(!memcmp(norm, norm1, sizeof(float) * (size_t)out), "%s: %d threads give the bits of 1", what, threads);
    void *blocks[] = {W, A, B, norm, norm1, want, W16, rows};
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) pc_free(blocks[i]);
}

enum { N = 7, OUT = 45 }; /* OUT not a multiple of any vector width */

typedef struct magnitude_case {
    float base[N * OUT], lora[N * OUT], weight[N * OUT], norm[OUT], mag[OUT];
} magnitude_case;

/* Σ weight⊙y with y = DoRA's output for the magnitudes in c->mag (y starts at base, as the model's W·x). */
static double weighted_output(void *ctx) {
    const magnitude_case *c = ctx;
    float y[N * OUT], base[N * OUT], gain[OUT];
    memcpy(y, c->base, sizeof y);
    memcpy(base, c->base, sizeof base);
    for (int o = 0; o < OUT; o++) gain[o] = c->mag[o] / c->norm[o];
    dora_combine_forward(y, base, c->lora, gain, N, OUT);
    double sum = 0;
    for (int i = 0; i < N * OUT; i++) sum += (double)c->weight[i] * y[i];
    return sum;
}

static void test_elementwise(void) {
    static magnitude_case c;
    pc_rng rng;
    pc_rng_seed(&rng, 11);
    test_fill_uniform(&rng, c.base, N * OUT, -1.0f, 1.0f);
    test_fill_uniform(&rng, c.lora, N * OUT, -0.3f, 0.3f);
    test_fill_uniform(&rng, c.weight, N * OUT, -1.0f, 1.0f);
    test_fill_uniform(&rng, c.norm, OUT, 0.5f, 2.0f);
    test_fill_uniform(&rng, c.mag, OUT, 0.5f, 2.0f);
    float gain[OUT], y[N * OUT], adapted[N * OUT], want_y[N * OUT], want_adapted[N * OUT];
    for (int o = 0; o < OUT; o++) gain[o] = c.mag[o] / c.norm[o];
    /* combine: y += (g − 1)⊙base + g⊙lora, base += lora */
    test_fill_uniform(&rng, y, N * OUT, -1.0f, 1.0f);
    memcpy(adapted, c.base, sizeof adapted);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            int i = n * OUT + o;
            want_y[i] = (float)(y[i] + ((double)gain[o] - 1.0) * c.base[i] + (double)gain[o] * c.lora[i]);
            want_adapted[i] = c.base[i] + c.lora[i];
        }
    dora_combine_forward(y, adapted, c.lora, gain, N, OUT);
    CHECK(expect_close("combine: output", y, want_y, N * OUT, 1e-6, 1e-7), "combine: output");
    CHECK(expect_close("combine: adapted", adapted, want_adapted, N * OUT, 1e-7, 0), "combine: adapted = base + lora");
    /* scale rows, into another buffer and in place */
    float scaled[N * OUT], want_scaled[N * OUT], in_place[N * OUT];
    for (int i = 0; i < N * OUT; i++) want_scaled[i] = (gain[i % OUT] - 1.0f) * c.weight[i];
    dora_scale_rows(scaled, c.weight, gain, 1.0f, N, OUT);
    memcpy(in_place, c.weight, sizeof in_place);
    dora_scale_rows(in_place, in_place, gain, 1.0f, N, OUT);
    CHECK(!memcmp(scaled, want_scaled, sizeof scaled) && !memcmp(in_place, want_scaled, sizeof scaled),
          "scale rows: (g − 1)⊙dy, the same in place");
    /* magnitude gradient of Σ weight⊙y against finite differences through the combine kernel */
    float dmag[OUT], fd[OUT];
    for (int o = 0; o < OUT; o++) dmag[o] = 0.25f; /* accumulates */
    dora_magnitude_backward(dmag, c.weight, adapted, c.norm, N, OUT);
    for (int o = 0; o < OUT; o++) dmag[o] -= 0.25f;
    finite_diff(weighted_output, &c, c.mag, OUT, 1e-2, fd);
    CHECK(expect_close("magnitude gradient vs finite differences", dmag, fd, OUT, 1e-3, 1e-4),
          "magnitude gradient vs finite differences");
}

int main(void) {
    static const int shapes[][3] = {{37, 17, 1}, {37, 576, 8}, {64, 129, 16}, {5, 1536, 4}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int bf16 = 0; bf16 < 2; bf16++) check_row_norms(shapes[i][0], shapes[i][1], shapes[i][2], bf16);
    test_elementwise();
    return test_finish();
}
