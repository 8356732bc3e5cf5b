#include "filter.h"

#include "common/error.h"
#include "index/hash.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HEADER 24

int phrex_filter_init(phrex_filter *f, int dim, uint64_t model_hash) {
    memset(f, 0, sizeof *f);
    if (dim < 1 || dim > (1 << 16)) return phrex_fail(PHREX_ERR_INPUT, "filter dimension %d out of range", dim);
    f->w_start = calloc(2 * (size_t)dim, sizeof(float));
    if (!f->w_start) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate a %d-d filter", dim);
    f->w_end = f->w_start + dim;
    f->dim = dim;
    f->model_hash = model_hash;
    return PHREX_OK;
}

void phrex_filter_free(phrex_filter *f) {
    if (!f) return;
    free(f->w_start);
    memset(f, 0, sizeof *f);
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static void put_f32(unsigned char *p, float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    put_u32(p, u);
}
static float get_f32(const unsigned char *p) {
    uint32_t u = get_u32(p);
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static size_t file_bytes(int dim) { return HEADER + (2 * (size_t)dim + 2) * 4 + 8; }

int phrex_filter_save(phrex_filter *f, const char *path) {
    size_t n = file_bytes(f->dim);
    unsigned char *buf = malloc(n);
    if (!buf) return phrex_fail(PHREX_ERR_MEMORY, "cannot serialize the filter");
    memcpy(buf, PHREX_FILTER_MAGIC, 8);
    put_u32(buf + 8, PHREX_FILTER_VERSION);
    put_u32(buf + 12, (uint32_t)f->dim);
    put_u64(buf + 16, f->model_hash);
    unsigned char *p = buf + HEADER;
    for (int i = 0; i < f->dim; i++, p += 4) put_f32(p, f->w_start[i]);
    put_f32(p, f->b_start), p += 4;
    for (int i = 0; i < f->dim; i++, p += 4) put_f32(p, f->w_end[i]);
    put_f32(p, f->b_end), p += 4;
    f->file_hash = phrex_hash64(buf, n - 8, 0);
    put_u64(p, f->file_hash);
    char tmp[4096];
    int rc = PHREX_OK;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) rc = phrex_fail(PHREX_ERR_INPUT, "%s: path too long", path);
    FILE *out = rc ? NULL : fopen(tmp, "wb");
    if (!rc && !out) rc = phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    if (out) {
        int bad = fwrite(buf, 1, n, out) != n || fflush(out) || fsync(fileno(out));
        bad |= fclose(out) != 0;
        if (bad || rename(tmp, path)) rc = phrex_fail(PHREX_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    free(buf);
    return rc;
}

int phrex_filter_load(phrex_filter *f, const char *path) {
    memset(f, 0, sizeof *f);
    FILE *in = fopen(path, "rb");
    if (!in) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char head[HEADER];
    int rc = PHREX_OK;
    if (fread(head, 1, HEADER, in) != HEADER || memcmp(head, PHREX_FILTER_MAGIC, 8))
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: not a phrex phrase filter (bad magic)", path);
    else if (get_u32(head + 8) != PHREX_FILTER_VERSION)
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: filter version %u, this phrex reads version %d: retrain it", path,
                        get_u32(head + 8), PHREX_FILTER_VERSION);
    int dim = rc ? 0 : (int)get_u32(head + 12);
    if (!rc && (dim < 1 || dim > (1 << 16))) rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field 'dim' is %d", path, dim);
    size_t n = rc ? 0 : file_bytes(dim);
    unsigned char *buf = rc ? NULL : malloc(n + 1);
    if (!rc && !buf) rc = phrex_fail(PHREX_ERR_MEMORY, "cannot read %s", path);
    if (!rc) {
        memcpy(buf, head, HEADER);
        size_t got = fread(buf + HEADER, 1, n + 1 - HEADER, in); // one more byte: a longer file is damaged too
        if (got != n - HEADER)
            rc = phrex_fail(PHREX_ERR_FORMAT, "%s: %zu bytes, a %d-d filter has %zu: truncated or damaged", path,
                            got + HEADER, dim, n);
        else if (get_u64(buf + n - 8) != phrex_hash64(buf, n - 8, 0))
            rc = phrex_fail(PHREX_ERR_FORMAT, "%s: checksum mismatch: the filter is corrupt", path);
    }
    fclose(in);
    if (!rc && !(rc = phrex_filter_init(f, dim, get_u64(buf + 16)))) {
        const unsigned char *p = buf + HEADER;
        for (int i = 0; i < dim; i++, p += 4) f->w_start[i] = get_f32(p);
        f->b_start = get_f32(p), p += 4;
        for (int i = 0; i < dim; i++, p += 4) f->w_end[i] = get_f32(p);
        f->b_end = get_f32(p);
        f->file_hash = get_u64(buf + n - 8);
        for (int i = 0; i < 2 * dim && !rc; i++)
            if (!isfinite(f->w_start[i])) rc = phrex_fail(PHREX_ERR_FORMAT, "%s: weight %d is not finite", path, i);
        if (!rc && (!isfinite(f->b_start) || !isfinite(f->b_end)))
            rc = phrex_fail(PHREX_ERR_FORMAT, "%s: a bias is not finite", path);
        if (rc) phrex_filter_free(f);
    }
    free(buf);
    return rc;
}

void phrex_filter_logits(const phrex_filter *f, const float *x, int n, float *start, float *end) {
    for (int i = 0; i < n; i++) {
        const float *v = x + (size_t)i * (size_t)f->dim;
        float s = f->b_start, e = f->b_end;
        for (int k = 0; k < f->dim; k++) {
            s += f->w_start[k] * v[k];
            e += f->w_end[k] * v[k];
        }
        if (start) start[i] = s;
        if (end) end[i] = e;
    }
}

int phrex_filter_keep(void *ctx, const float *vectors, int n, int dim, uint8_t *keep) {
    const phrex_filter_hook *h = ctx;
    if (dim != h->filter->dim)
        return phrex_fail(PHREX_ERR_MISMATCH, "the filter takes %d-d vectors, the encoder gives %d-d", h->filter->dim,
                          dim);
    for (int i = 0; i < n; i++) {
        float s, e;
        phrex_filter_logits(h->filter, vectors + (size_t)i * (size_t)dim, 1, &s, &e);
        keep[i] = s > h->threshold || e > h->threshold;
    }
    return PHREX_OK;
}

void phrex_filter_name(const phrex_filter *f, float threshold, char *out, size_t cap) {
    char hex[17];
    phrex_hash64_hex(f->file_hash, hex);
    snprintf(out, cap, "logreg-%s@%g", hex, (double)threshold);
}

// --- training ---------------------------------------------------------------

void phrex_filter_train_options_default(phrex_filter_train_options *o) {
    o->epochs = 4;
    o->batch = 256;
    o->lr = 1e-2f;
    o->l2 = 1e-4f;
    o->seed = 2024;
}

static uint64_t next_random(uint64_t *s) { // splitmix64
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// log(1 + exp(z)) without overflow.
static double softplus(double z) { return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)); }

// Adam over the 2 * (dim + 1) parameters: [w_start, b_start, w_end, b_end].
int phrex_filter_train(phrex_filter *f, const float *x, const uint8_t *is_start, const uint8_t *is_end,
                       const float *weight, int64_t n, const phrex_filter_train_options *o, double *loss) {
    if (n < 1) return phrex_fail(PHREX_ERR_INPUT, "no training vectors for the filter");
    int D = f->dim, P = 2 * (D + 1);
    double *grad = calloc((size_t)P, sizeof *grad), *m = calloc((size_t)P, sizeof *m), *v = calloc((size_t)P, sizeof *v);
    int64_t *order = malloc((size_t)n * sizeof *order);
    if (!grad || !m || !v || !order) {
        free(grad), free(m), free(v), free(order);
        return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate the filter trainer for %lld rows", (long long)n);
    }
    // Start from the prior: bias = log-odds of the weighted positive rate.
    double ws = 0, we = 0, wt = 0;
    for (int64_t i = 0; i < n; i++) {
        wt += weight[i];
        ws += weight[i] * is_start[i];
        we += weight[i] * is_end[i];
    }
    memset(f->w_start, 0, 2 * (size_t)D * sizeof(float));
    f->b_start = (float)log((ws + 1) / (wt - ws + 1));
    f->b_end = (float)log((we + 1) / (wt - we + 1));
    for (int64_t i = 0; i < n; i++) order[i] = i;
    uint64_t rng = o->seed;
    double epoch_loss = 0;
    int64_t t = 0;
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    for (int ep = 0; ep < o->epochs; ep++) {
        for (int64_t i = n - 1; i > 0; i--) { // Fisher-Yates
            int64_t j = (int64_t)(next_random(&rng) % (uint64_t)(i + 1)), tmp = order[i];
            order[i] = order[j], order[j] = tmp;
        }
        epoch_loss = 0;
        for (int64_t b0 = 0; b0 < n; b0 += o->batch) {
            int64_t b1n = b0 + o->batch < n ? b0 + o->batch : n;
            memset(grad, 0, (size_t)P * sizeof *grad);
            double bw = 0;
            for (int64_t k = b0; k < b1n; k++) {
                int64_t i = order[k];
                const float *xi = x + (size_t)i * (size_t)D;
                float s, e;
                phrex_filter_logits(f, xi, 1, &s, &e);
                double w = weight[i], ys = is_start[i], ye = is_end[i];
                epoch_loss += w * (softplus(s) - ys * s + softplus(e) - ye * e);
                double gs = w * (1 / (1 + exp(-(double)s)) - ys), ge = w * (1 / (1 + exp(-(double)e)) - ye);
                for (int d = 0; d < D; d++) {
                    grad[d] += gs * xi[d];
                    grad[D + 1 + d] += ge * xi[d];
                }
                grad[D] += gs;
                grad[2 * D + 1] += ge;
                bw += w;
            }
            t++;
            for (int p = 0; p < P; p++) {
                float *param = p < D ? &f->w_start[p] : p == D ? &f->b_start : p < 2 * D + 1 ? &f->w_end[p - D - 1] : &f->b_end;
                int is_bias = p == D || p == 2 * D + 1;
                double g = grad[p] / bw + (is_bias ? 0 : o->l2 * *param);
                m[p] = b1 * m[p] + (1 - b1) * g;
                v[p] = b2 * v[p] + (1 - b2) * g * g;
                double mh = m[p] / (1 - pow(b1, (double)t)), vh = v[p] / (1 - pow(b2, (double)t));
                *param -= (float)(o->lr * mh / (sqrt(vh) + eps));
            }
        }
        epoch_loss /= wt;
    }
    if (loss) *loss = epoch_loss;
    free(grad), free(m), free(v), free(order);
    return PHREX_OK;
}
