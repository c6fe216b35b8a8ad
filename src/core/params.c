#include "core/params.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

void pc_params_init(pc_params *p) { memset(p, 0, sizeof *p); }

pc_status pc_params_declare(pc_params *p, const char *name, int ndim, const int64_t *shape, int *index, pc_error *err) {
    if (p->data) return pc_fail(err, PC_ERR_INTERNAL, "parameter '%s' declared after allocation", name);
    if (strlen(name) >= sizeof p->views[0].name) return pc_fail(err, PC_ERR_USAGE, "parameter name too long: %s", name);
    if (ndim < 1 || ndim > 4) return pc_fail(err, PC_ERR_INTERNAL, "parameter '%s': bad rank %d", name, ndim);
    if (p->n_views == p->cap_views) {
        int cap = p->cap_views ? 2 * p->cap_views : 16;
        pc_param_view *v = pc_realloc(p->views, sizeof *v * (size_t)p->cap_views, sizeof *v * (size_t)cap);
        if (!v) return pc_fail(err, PC_ERR_NOMEM, "out of memory declaring parameter '%s'", name);
        p->views = v;
        p->cap_views = cap;
    }
    pc_param_view *v = &p->views[p->n_views];
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", name);
    v->ndim = ndim;
    v->count = 1;
    for (int i = 0; i < ndim; i++) {
        v->shape[i] = shape[i];
        v->count *= (size_t)shape[i];
    }
    /* Keep every view 16-float aligned (64 bytes) so vector loads on a view never straddle. */
    v->offset = (p->count + 15) & ~(size_t)15;
    p->count = v->offset + v->count;
    if (index) *index = p->n_views;
    p->n_views++;
    return PC_OK;
}

pc_status pc_params_alloc(pc_params *p, pc_error *err) {
    p->data = pc_calloc(p->count ? p->count : 1, sizeof(float));
    p->grad = pc_calloc(p->count ? p->count : 1, sizeof(float));
    if (!p->data || !p->grad) {
        pc_free(p->data);
        pc_free(p->grad);
        p->data = p->grad = NULL;
        return pc_fail(err, PC_ERR_NOMEM, "out of memory: %zu trainable parameters", p->count);
    }
    return PC_OK;
}

pc_status pc_params_alloc_moments(pc_params *p, pc_error *err) {
    if (p->m) return PC_OK;
    p->m = pc_calloc(p->count ? p->count : 1, sizeof(float));
    p->v = pc_calloc(p->count ? p->count : 1, sizeof(float));
    if (!p->m || !p->v) {
        pc_free(p->m);
        pc_free(p->v);
        p->m = p->v = NULL;
        return pc_fail(err, PC_ERR_NOMEM, "out of memory: optimizer state for %zu parameters", p->count);
    }
    return PC_OK;
}

void pc_params_free(pc_params *p) {
    pc_free(p->views);
    pc_free(p->data);
    pc_free(p->grad);
    pc_free(p->m);
    pc_free(p->v);
    memset(p, 0, sizeof *p);
}

int pc_params_find(const pc_params *p, const char *name) {
    for (int i = 0; i < p->n_views; i++)
        if (strcmp(p->views[i].name, name) == 0) return i;
    return -1;
}

void pc_params_zero_grad(pc_params *p) {
    if (p->grad) memset(p->grad, 0, p->count * sizeof(float));
}
