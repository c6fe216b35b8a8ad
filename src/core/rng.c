#include "core/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void pc_rng_seed(pc_rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pc_rng_u64(pc_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint32_t pc_rng_below(pc_rng *rng, uint32_t n) {
    if (n == 0) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = pc_rng_u64(rng);
    while (x >= limit);
    return (uint32_t)(x % n);
}

float pc_rng_uniform(pc_rng *rng) { return (float)(pc_rng_u64(rng) >> 40) * (1.0f / 16777216.0f); }

float pc_rng_normal(pc_rng *rng) {
    float u1 = pc_rng_uniform(rng), u2 = pc_rng_uniform(rng);
    if (u1 < 1e-12f) u1 = 1e-12f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

void pc_rng_fill_uniform(pc_rng *rng, float *x, long n, float lo, float hi) {
    for (long i = 0; i < n; i++) x[i] = lo + (hi - lo) * pc_rng_uniform(rng);
}

void pc_rng_fill_normal(pc_rng *rng, float *x, long n, float mean, float std) {
    for (long i = 0; i < n; i++) x[i] = mean + std * pc_rng_normal(rng);
}

void pc_rng_kaiming_uniform(pc_rng *rng, float *w, long n, long fan_in) {
    /* gain = sqrt(2/(1+a^2)) with a = sqrt(5) -> sqrt(1/3); bound = gain*sqrt(3/fan_in) = 1/sqrt(fan_in) */
    float bound = 1.0f / sqrtf((float)fan_in);
    pc_rng_fill_uniform(rng, w, n, -bound, bound);
}

void pc_rng_shuffle_u32(pc_rng *rng, uint32_t *a, long n) {
    for (long i = n - 1; i > 0; i--) {
        uint32_t j = pc_rng_below(rng, (uint32_t)(i + 1));
        uint32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}
