// Double-precision reference implementations of the training layers, for
// the gradient tests: written independently of encoder/train_kernels.c
// (naive loops, no BLAS, no shared code), so that a finite difference of
// these checks the f32 backward kernels, and their forward checks the f32
// forward kernels. Header-only: included by one test file each.
#ifndef PHREX_TESTS_GRAD_REF_H
#define PHREX_TESTS_GRAD_REF_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// out (n, oc) = inp (n, ic) · wᵀ + b; w (oc, ic); b may be NULL.
static void ref_linear(double *out, const double *inp, const double *w, const double *b, int n, int ic, int oc) {
    for (int r = 0; r < n; r++)
        for (int o = 0; o < oc; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < ic; i++) s += inp[(size_t)r * ic + i] * w[(size_t)o * ic + i];
            out[(size_t)r * oc + o] = s;
        }
}

static void ref_layernorm(double *out, const double *inp, const double *g, const double *b, int n, int c,
                          double eps) {
    for (int r = 0; r < n; r++) {
        const double *x = inp + (size_t)r * c;
        double m = 0, v = 0;
        for (int j = 0; j < c; j++) m += x[j];
        m /= c;
        for (int j = 0; j < c; j++) v += (x[j] - m) * (x[j] - m);
        v /= c;
        for (int j = 0; j < c; j++) out[(size_t)r * c + j] = (x[j] - m) / sqrt(v + eps) * g[j] + b[j];
    }
}

static double ref_gelu1(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

static void ref_gelu(double *out, const double *inp, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ref_gelu1(inp[i]);
}

// qkv (N, 3C) -> ctx (N, C), per sequence and head, dropout(softmax(q·kᵀ/√D))·v,
// with the weights' dropout scales given by drop(k) for weight k of the
// packed probs layout (sequence after sequence, head after head, (L, L)
// each); drop NULL: no dropout.
typedef double (*ref_drop_fn)(const void *ctx, uint64_t k);

static void ref_attention_drop(double *ctx, const double *qkv, const int32_t *seq_lens, int n_seqs, int C, int H,
                               ref_drop_fn drop, const void *dctx) {
    int D = C / H, start = 0;
    uint64_t k0 = 0; // probs offset of the sequence
    for (int s = 0; s < n_seqs; s++) {
        int L = seq_lens[s];
        double *p = malloc((size_t)L * sizeof *p);
        for (int h = 0; h < H; h++)
            for (int i = 0; i < L; i++) {
                const double *q = qkv + (size_t)(start + i) * 3 * C + h * D;
                double max = -INFINITY, sum = 0;
                for (int j = 0; j < L; j++) {
                    const double *k = qkv + (size_t)(start + j) * 3 * C + C + h * D;
                    double d = 0;
                    for (int t = 0; t < D; t++) d += q[t] * k[t];
                    p[j] = d / sqrt((double)D);
                    max = p[j] > max ? p[j] : max;
                }
                for (int j = 0; j < L; j++) sum += (p[j] = exp(p[j] - max));
                for (int j = 0; j < L; j++) {
                    p[j] /= sum;
                    if (drop) p[j] *= drop(dctx, k0 + (uint64_t)h * L * L + (uint64_t)i * L + j);
                }
                double *o = ctx + (size_t)(start + i) * C + h * D;
                for (int t = 0; t < D; t++) {
                    double acc = 0;
                    for (int j = 0; j < L; j++) acc += p[j] * qkv[(size_t)(start + j) * 3 * C + 2 * C + h * D + t];
                    o[t] = acc;
                }
            }
        free(p);
        start += L;
        k0 += (uint64_t)H * L * L;
    }
}

// Σ out·proj, the scalar every gradient test differentiates.
static double ref_dot(const double *out, const double *proj, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += out[i] * proj[i];
    return s;
}

#endif
