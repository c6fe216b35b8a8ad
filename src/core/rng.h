/* Deterministic random numbers: xoshiro256** seeded through splitmix64. The state is a plain struct the
 * caller owns, so a checkpoint can save and restore it byte for byte. */
#ifndef PC_CORE_RNG_H
#define PC_CORE_RNG_H

#include <stdint.h>

typedef struct pc_rng {
    uint64_t s[4];
} pc_rng;

void pc_rng_seed(pc_rng *rng, uint64_t seed);
uint64_t pc_rng_u64(pc_rng *rng);
uint32_t pc_rng_below(pc_rng *rng, uint32_t n); /* uniform in [0, n), unbiased */
float pc_rng_uniform(pc_rng *rng);              /* uniform in [0, 1) with 24 random bits */
float pc_rng_normal(pc_rng *rng);               /* standard normal (Box-Muller) */
void pc_rng_fill_uniform(pc_rng *rng, float *x, long n, float lo, float hi);
void pc_rng_fill_normal(pc_rng *rng, float *x, long n, float mean, float std);
/* torch.nn.init.kaiming_uniform_(a=sqrt(5)) on a [fan_out, fan_in] weight: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
void pc_rng_kaiming_uniform(pc_rng *rng, float *w, long n, long fan_in);
void pc_rng_shuffle_u32(pc_rng *rng, uint32_t *a, long n);

#endif
