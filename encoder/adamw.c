#include "adamw.h"

#include "common/arena.h"
#include "common/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Floats per partial sum of the gradient norm: fixed, so the summation
// order does not depend on the thread count.
#define NORM_CHUNK 65536

// A run of the gradient buffer with one weight-decay setting.
typedef struct {
    size_t begin, end; // floats into the gradient buffer
    int decay;
} decay_range;

struct phrex_adamw {
    phrex_adamw_config cfg;
    size_t n;            // trainable floats
    float *m, *v;        // (n) first and second moments
    double *partials;    // (n_chunks) gradient-norm partial sums
    size_t n_chunks;
    decay_range *ranges; // (n_ranges) covering [0, n) in order
    int n_ranges;
    int64_t t;           // updates done
};

// Merges the table's trainable tensors into runs of equal `decay`.
static int build_ranges(phrex_adamw *o, const phrex_train_params *p) {
    o->ranges = calloc((size_t)p->n_tensors + 1, sizeof *o->ranges);
    if (!o->ranges) return phrex_fail(PHREX_ERR_MEMORY, "phrex_adamw_init: out of memory");
    for (int i = 0; i < p->n_tensors; i++) {
        const phrex_param_tensor *t = &p->tensors[i];
        if (!t->trainable) continue;
        size_t b = t->offset - p->grad_offset, e = b + t->numel;
        decay_range *last = o->n_ranges ? &o->ranges[o->n_ranges - 1] : NULL;
        if (last && last->decay == t->decay && last->end == b)
            last->end = e;
        else
            o->ranges[o->n_ranges++] = (decay_range){b, e, t->decay};
    }
    return PHREX_OK;
}

int phrex_adamw_init(phrex_adamw **out, const phrex_adamw_config *cfg, const phrex_train_params *params) {
    *out = NULL;
    if (!(cfg->lr >= 0) || !(cfg->beta1 >= 0 && cfg->beta1 < 1) || !(cfg->beta2 >= 0 && cfg->beta2 < 1) ||
        !(cfg->eps > 0) || !(cfg->weight_decay >= 0) || cfg->warmup_steps < 0 || cfg->total_steps < 0 ||
        (cfg->total_steps > 0 && cfg->total_steps <= cfg->warmup_steps) || !(cfg->max_grad_norm >= 0))
        return phrex_fail(PHREX_ERR_INPUT,
                          "phrex_adamw_init: bad config (lr %g, betas %g %g, eps %g, wd %g, warmup %lld, total %lld, "
                          "clip %g)",
                          cfg->lr, cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay, (long long)cfg->warmup_steps,
                          (long long)cfg->total_steps, cfg->max_grad_norm);
    phrex_adamw *o = calloc(1, sizeof *o);
    if (!o) return phrex_fail(PHREX_ERR_MEMORY, "phrex_adamw_init: out of memory");
    o->cfg = *cfg;
    o->n = params->n_grads;
    o->n_chunks = (o->n + NORM_CHUNK - 1) / NORM_CHUNK;
    void *m = NULL, *v = NULL;
    int bad = posix_memalign(&m, PHREX_ARENA_ALIGN, o->n * sizeof(float) + 1) |
              posix_memalign(&v, PHREX_ARENA_ALIGN, o->n * sizeof(float) + 1);
    o->m = m, o->v = v;
    o->partials = calloc(o->n_chunks + 1, sizeof *o->partials);
    int rc = bad || !o->partials ? phrex_fail(PHREX_ERR_MEMORY, "phrex_adamw_init: cannot allocate %zu moments", o->n)
                                 : build_ranges(o, params);
    if (rc) {
        phrex_adamw_free(o);
        return rc;
    }
    memset(o->m, 0, o->n * sizeof(float));
    memset(o->v, 0, o->n * sizeof(float));
    *out = o;
    return PHREX_OK;
}

void phrex_adamw_free(phrex_adamw *opt) {
    if (!opt) return;
    free(opt->m);
    free(opt->v);
    free(opt->partials);
    free(opt->ranges);
    free(opt);
}

float phrex_adamw_lr_at(const phrex_adamw_config *cfg, int64_t t) {
    if (cfg->warmup_steps > 0 && t <= cfg->warmup_steps) return cfg->lr * (float)((double)t / cfg->warmup_steps);
    if (cfg->total_steps <= 0) return cfg->lr;
    double left = (double)(cfg->total_steps - t) / (double)(cfg->total_steps - cfg->warmup_steps);
    return cfg->lr * (float)(left > 0 ? left : 0);
}

double phrex_adamw_grad_norm(phrex_adamw *opt, const float *grads) {
    size_t n = opt->n;
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < opt->n_chunks; c++) {
        size_t b = c * NORM_CHUNK, e = b + NORM_CHUNK < n ? b + NORM_CHUNK : n;
        double s = 0.0;
        for (size_t i = b; i < e; i++) s += (double)grads[i] * grads[i];
        opt->partials[c] = s;
    }
    double total = 0.0;
    for (size_t c = 0; c < opt->n_chunks; c++) total += opt->partials[c];
    return sqrt(total);
}

static void scale_grads(float *g, size_t n, float scale) {
#pragma omp parallel for schedule(static) if (n >= 32768)
    for (size_t i = 0; i < n; i++) g[i] *= scale;
}

// The update of elements [b, e) (see the header for the formula).
static void update_range(phrex_adamw *o, float *p, const float *g, size_t b, size_t e, float decay_factor,
                         float step_size, float bc2_sqrt) {
    float b1 = o->cfg.beta1, b2 = o->cfg.beta2, eps = o->cfg.eps;
    float *m = o->m, *v = o->v;
#pragma omp parallel for schedule(static) if (e - b >= 32768)
    for (size_t i = b; i < e; i++) {
        float gi = g[i];
        float pi = p[i] * decay_factor;
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        p[i] = pi - step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

int phrex_adamw_step(phrex_adamw *opt, phrex_train_params *params, float *grad_norm) {
    float *g = params->grads;
    double norm = phrex_adamw_grad_norm(opt, g);
    if (grad_norm) *grad_norm = (float)norm;
    if (!isfinite(norm))
        return phrex_fail(PHREX_ERR_INPUT, "phrex_adamw_step: gradient norm is %g at update %lld; skipped", norm,
                          (long long)opt->t + 1);
    if (opt->cfg.max_grad_norm > 0 && norm > opt->cfg.max_grad_norm)
        scale_grads(g, opt->n, (float)(opt->cfg.max_grad_norm / (norm + 1e-6)));
    int64_t t = ++opt->t;
    float lr = phrex_adamw_lr_at(&opt->cfg, t);
    // Bias corrections in double: β^t for t in the thousands is fine in
    // float, but the step must not depend on how pow rounds.
    double bc1 = 1.0 - pow(opt->cfg.beta1, (double)t), bc2 = 1.0 - pow(opt->cfg.beta2, (double)t);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float *p = params->params + params->grad_offset;
    for (int r = 0; r < opt->n_ranges; r++) {
        const decay_range *dr = &opt->ranges[r];
        float decay_factor = dr->decay ? 1.0f - lr * opt->cfg.weight_decay : 1.0f;
        update_range(opt, p, g, dr->begin, dr->end, decay_factor, step_size, bc2_sqrt);
    }
    return PHREX_OK;
}

double phrex_adamw_clip_joint(phrex_adamw *const *opts, float *const *grads, int n, float max_norm) {
    double sq = 0;
    for (int i = 0; i < n; i++) {
        double norm = phrex_adamw_grad_norm(opts[i], grads[i]);
        sq += norm * norm;
    }
    double norm = sqrt(sq);
    if (max_norm > 0 && norm > max_norm) {
        float scale = (float)(max_norm / (norm + 1e-6));
        for (int i = 0; i < n; i++) scale_grads(grads[i], opts[i]->n, scale);
    }
    return norm;
}

int64_t phrex_adamw_steps(const phrex_adamw *opt) { return opt->t; }
const phrex_adamw_config *phrex_adamw_get_config(const phrex_adamw *opt) { return &opt->cfg; }
size_t phrex_adamw_size(const phrex_adamw *opt) { return opt->n; }
float *phrex_adamw_m(phrex_adamw *opt) { return opt->m; }
float *phrex_adamw_v(phrex_adamw *opt) { return opt->v; }
void phrex_adamw_set_steps(phrex_adamw *opt, int64_t steps) { opt->t = steps; }
