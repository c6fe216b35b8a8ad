#include "train/optimizer.h"

#include <math.h>

double pc_lr_at(const pc_optim_config *c, long step) {
    if (c->warmup_steps > 0 && step < c->warmup_steps) return c->lr * (double)step / (double)c->warmup_steps;
    long span = c->total_steps - c->warmup_steps;
    double progress = span > 0 ? (double)(step - c->warmup_steps) / (double)span : 0.0;
    if (progress < 0) progress = 0;
    if (progress > 1) progress = 1;
    switch (c->schedule) {
    case PC_SCHEDULE_LINEAR: return c->lr * (1.0 - progress);
    case PC_SCHEDULE_COSINE: return c->lr * 0.5 * (1.0 + cos(M_PI * progress));
    default: return c->lr;
    }
}

double pc_grad_norm(pc_params *const *blocks, int n) {
    double sum = 0.0;
    for (int b = 0; b < n; b++) {
        const float *g = blocks[b]->grad;
        size_t count = blocks[b]->count;
#pragma omp parallel for reduction(+ : sum) schedule(static)
        for (size_t i = 0; i < count; i++) sum += (double)g[i] * (double)g[i];
    }
    return sqrt(sum);
}

static void adamw_block(const pc_optim_config *c, pc_params *p, double lr, long step, float gs) {
    float b1 = (float)c->beta1, b2 = (float)c->beta2, eps = (float)c->eps;
    float bc1 = (float)(1.0 - pow(c->beta1, (double)step)), bc2 = (float)(1.0 - pow(c->beta2, (double)step));
    float decay = (float)(1.0 - lr * c->weight_decay), step_size = (float)lr / bc1, bc2_sqrt = sqrtf(bc2);
    float *w = p->data, *g = p->grad, *m = p->m, *v = p->v;
    size_t count = p->count;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++) {
        float grad = g[i] * gs;
        w[i] *= decay;
        m[i] = b1 * m[i] + (1.0f - b1) * grad;
        v[i] = b2 * v[i] + (1.0f - b2) * grad * grad;
        w[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

static void sgd_block(pc_params *p, double lr, float gs) {
    float *w = p->data, *g = p->grad, rate = (float)lr * gs;
    size_t count = p->count;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++) w[i] -= rate * g[i];
}

void pc_optim_step(const pc_optim_config *c, pc_params *const *blocks, int n, double lr, long step, float grad_scale) {
    for (int b = 0; b < n; b++) {
        if (c->kind == PC_OPTIM_ADAMW) adamw_block(c, blocks[b], lr, step, grad_scale);
        else sgd_block(blocks[b], lr, grad_scale);
    }
}
