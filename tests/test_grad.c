// Gradients of the training kernels and of the whole training BERT against
// central finite differences of independent double-precision references
// (tests/grad_ref.h), on a tiny random model (2 layers, C = 16, 2 heads,
// FFN 32, vocabulary 50).
//
// Why double references: a finite difference of the f32 forward has
// rounding noise ~1e-7·|loss|/h, which at any usable h is 1e-3 of the
// gradient and hides small bugs. In double with h = 1e-5 the truncation
// error (~h²·f''') and the rounding (~1e-16·|loss|/h) are both below 1e-9,
// so what remains is the f32 backward's own rounding (~1e-6 relative). The
// thresholds, 1e-4 relative in L2 and 1e-3 of the largest element at
// worst, sit 100x above that and far below what a wrong term gives (a
// dropped term, a transposed matrix or a missed scale is O(1) relative).
// Checked by breaking backwards on purpose: dropping LayerNorm's x̂·mean(g·x̂)
// term fails "layernorm dinp" at 0.32 and the full model at 0.73; dropping
// the softmax backward's row sum fails "attention dqkv" at 0.42, the full
// model at 4.2 and test_grad_torch at 2.1. Measured when intact: 1e-8..1e-6.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "encoder/train_bert.h"
#include "encoder/train_kernels.h"
#include "encoder/train_rng.h"
#include "grad_ref.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_H 1e-5
#define TOL_L2 1e-4  // ‖analytic − numeric‖₂ / ‖numeric‖₂
#define TOL_MAX 1e-3 // max |analytic − numeric| / max |numeric|

static phrex_rng rng;

static float *rand_floats(size_t n, float scale) {
    float *x = malloc(n * sizeof *x + 4);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) x[i] = scale * phrex_rng_symmetric(&rng);
    return x;
}

static double *to_double(const float *x, size_t n) {
    double *d = malloc(n * sizeof *d + 8);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

// Compares an analytic gradient with a numeric one and prints both errors,
// so a run shows how far inside the thresholds each check is.
static void check_grad(const char *what, const float *analytic, const double *numeric, size_t n) {
    double diff2 = 0, ref2 = 0, max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(analytic[i] - numeric[i]);
        diff2 += d * d;
        ref2 += numeric[i] * numeric[i];
        max_diff = d > max_diff ? d : max_diff;
        max_ref = fabs(numeric[i]) > max_ref ? fabs(numeric[i]) : max_ref;
    }
    double rel_l2 = ref2 > 0 ? sqrt(diff2 / ref2) : sqrt(diff2);
    double rel_max = max_ref > 0 ? max_diff / max_ref : max_diff;
    printf("  %-48s n=%-5zu rel_l2 %.2e  rel_max %.2e\n", what, n, rel_l2, rel_max);
    if (!(rel_l2 <= TOL_L2 && rel_max <= TOL_MAX))
        fail_msg("%s: gradient off: relative L2 error %.3e (limit %.0e), max %.3e (limit %.0e)", what, rel_l2, TOL_L2,
                 rel_max, TOL_MAX);
}

static void check_forward(const char *what, const float *out, const double *ref, size_t n, double tol) {
    double max = 0;
    for (size_t i = 0; i < n; i++) max = fmax(max, fabs(out[i] - ref[i]));
    if (!(max <= tol)) fail_msg("%s: forward differs from the double reference by %.3e (limit %.0e)", what, max, tol);
}

typedef double (*loss_fn)(void *ctx);

// Central differences of f with respect to x[idx[i]] (or x[i] when idx is
// NULL), into out (n).
static void fd_grad(double *out, double *x, const size_t *idx, size_t n, loss_fn f, void *ctx) {
    for (size_t i = 0; i < n; i++) {
        double *v = &x[idx ? idx[i] : i], save = *v;
        *v = save + FD_H;
        double lp = f(ctx);
        *v = save - FD_H;
        double lm = f(ctx);
        *v = save;
        out[i] = (lp - lm) / (2 * FD_H);
    }
}

// --- linear --------------------------------------------------------------------

typedef struct {
    double *inp, *w, *b, *proj;
    int n, ic, oc;
} lin_ctx;

static double lin_loss(void *p) {
    lin_ctx *c = p;
    double *out = malloc((size_t)c->n * c->oc * sizeof *out);
    ref_linear(out, c->inp, c->w, c->b, c->n, c->ic, c->oc);
    double l = ref_dot(out, c->proj, (size_t)c->n * c->oc);
    free(out);
    return l;
}

static void test_linear(void **state) {
    (void)state;
    int n = 5, ic = 7, oc = 6;
    float *inp = rand_floats((size_t)n * ic, 1), *w = rand_floats((size_t)oc * ic, 0.5f), *b = rand_floats(oc, 0.5f);
    float *proj = rand_floats((size_t)n * oc, 1), *out = rand_floats((size_t)n * oc, 1);
    phrex_train_linear_forward(out, inp, w, b, n, ic, oc);
    lin_ctx c = {to_double(inp, (size_t)n * ic), to_double(w, (size_t)oc * ic), to_double(b, oc),
                 to_double(proj, (size_t)n * oc), n, ic, oc};
    double *ref = malloc((size_t)n * oc * sizeof *ref);
    ref_linear(ref, c.inp, c.w, c.b, n, ic, oc);
    check_forward("linear", out, ref, (size_t)n * oc, 1e-5);
    // Parameter gradients accumulate onto what is there; the input gradient
    // is written (accumulate = 0) over garbage, or added (accumulate = 1).
    float *dinp = rand_floats((size_t)n * ic, 9), *dw = calloc((size_t)oc * ic, 4), *db = calloc(oc, 4);
    for (int i = 0; i < oc * ic; i++) dw[i] = 0.5f;
    phrex_train_linear_backward(dinp, dw, db, proj, inp, w, n, ic, oc, 0);
    for (int i = 0; i < oc * ic; i++) dw[i] -= 0.5f;
    double *num = malloc((size_t)oc * ic * sizeof *num);
    fd_grad(num, c.inp, NULL, (size_t)n * ic, lin_loss, &c);
    check_grad("linear dinp", dinp, num, (size_t)n * ic);
    float *dinp2 = malloc((size_t)n * ic * 4);
    for (int i = 0; i < n * ic; i++) dinp2[i] = 0.25f;
    phrex_train_linear_backward(dinp2, NULL, NULL, proj, inp, w, n, ic, oc, 1);
    for (int i = 0; i < n * ic; i++) dinp2[i] -= 0.25f;
    check_grad("linear dinp (accumulated)", dinp2, num, (size_t)n * ic);
    fd_grad(num, c.w, NULL, (size_t)oc * ic, lin_loss, &c);
    check_grad("linear dweight", dw, num, (size_t)oc * ic);
    fd_grad(num, c.b, NULL, oc, lin_loss, &c);
    check_grad("linear dbias", db, num, oc);
    free(inp), free(w), free(b), free(proj), free(out), free(dinp), free(dinp2), free(dw), free(db), free(num);
    free(ref), free(c.inp), free(c.w), free(c.b), free(c.proj);
}

// --- LayerNorm -----------------------------------------------------------------

typedef struct {
    double *inp, *g, *b, *proj;
    int n, c;
    double eps;
} ln_ctx;

static double ln_loss(void *p) {
    ln_ctx *c = p;
    double *out = malloc((size_t)c->n * c->c * sizeof *out);
    ref_layernorm(out, c->inp, c->g, c->b, c->n, c->c, c->eps);
    double l = ref_dot(out, c->proj, (size_t)c->n * c->c);
    free(out);
    return l;
}

static void test_layernorm(void **state) {
    (void)state;
    int n = 4, c = 10;
    size_t nc = (size_t)n * c;
    float *inp = rand_floats(nc, 2), *g = rand_floats(c, 0.5f), *b = rand_floats(c, 0.5f), *proj = rand_floats(nc, 1);
    for (size_t i = 0; i < nc; i++) inp[i] += 3.0f; // a mean far from 0, as embedding sums have
    for (int j = 0; j < c; j++) g[j] += 1.0f;
    float *out = malloc(nc * 4), mean[4], rstd[4];
    phrex_train_layernorm_forward(out, mean, rstd, inp, g, b, n, c, 1e-5f);
    ln_ctx x = {to_double(inp, nc), to_double(g, c), to_double(b, c), to_double(proj, nc), n, c, 1e-5};
    double *ref = malloc(nc * sizeof *ref), *num = malloc(nc * sizeof *num);
    ref_layernorm(ref, x.inp, x.g, x.b, n, c, x.eps);
    check_forward("layernorm", out, ref, nc, 1e-5);
    float *dg = calloc(c, 4), *db = calloc(c, 4), *dinp = malloc(nc * 4);
    phrex_train_layernorm_backward(dinp, dg, db, proj, inp, mean, rstd, g, n, c);
    fd_grad(num, x.inp, NULL, nc, ln_loss, &x);
    check_grad("layernorm dinp", dinp, num, nc);
    // In place (dinp = dout) must give the same.
    float *inplace = malloc(nc * 4), *dg2 = calloc(c, 4);
    memcpy(inplace, proj, nc * 4);
    phrex_train_layernorm_backward(inplace, dg2, NULL, inplace, inp, mean, rstd, g, n, c);
    check_grad("layernorm dinp (in place)", inplace, num, nc);
    fd_grad(num, x.g, NULL, c, ln_loss, &x);
    check_grad("layernorm dgamma", dg, num, c);
    check_grad("layernorm dgamma (in place)", dg2, num, c);
    fd_grad(num, x.b, NULL, c, ln_loss, &x);
    check_grad("layernorm dbeta", db, num, c);
    free(inp), free(g), free(b), free(proj), free(out), free(ref), free(num), free(dg), free(db), free(dinp);
    free(inplace), free(dg2), free(x.inp), free(x.g), free(x.b), free(x.proj);
}

// --- GELU ----------------------------------------------------------------------

typedef struct {
    double *inp, *proj;
    size_t n;
} gelu_ctx;

static double gelu_loss(void *p) {
    gelu_ctx *c = p;
    double *out = malloc(c->n * sizeof *out);
    ref_gelu(out, c->inp, c->n);
    double l = ref_dot(out, c->proj, c->n);
    free(out);
    return l;
}

static void test_gelu(void **state) {
    (void)state;
    size_t n = 97;
    float *inp = rand_floats(n, 5), *proj = rand_floats(n, 1), *out = malloc(n * 4), *dinp = malloc(n * 4);
    inp[0] = 0.0f, inp[1] = -8.0f, inp[2] = 8.0f; // the kink's centre and both tails
    phrex_train_gelu_forward(out, inp, n);
    gelu_ctx c = {to_double(inp, n), to_double(proj, n), n};
    double *ref = malloc(n * sizeof *ref), *num = malloc(n * sizeof *num);
    ref_gelu(ref, c.inp, n);
    check_forward("gelu", out, ref, n, 1e-6);
    phrex_train_gelu_backward(dinp, proj, inp, n);
    fd_grad(num, c.inp, NULL, n, gelu_loss, &c);
    check_grad("gelu dinp", dinp, num, n);
    free(inp), free(proj), free(out), free(dinp), free(ref), free(num), free(c.inp), free(c.proj);
}

// --- attention -----------------------------------------------------------------

typedef struct {
    double *qkv, *proj;
    const int32_t *lens;
    int n_seqs, N, C, H;
    float p;           // attention dropout
    uint64_t site_key;
} att_ctx;

static double att_drop(const void *ctx, uint64_t k) {
    const att_ctx *c = ctx;
    return phrex_train_dropout_scale(c->site_key, k, c->p);
}

static double att_loss(void *p) {
    att_ctx *c = p;
    double *ctx = malloc((size_t)c->N * c->C * sizeof *ctx);
    ref_attention_drop(ctx, c->qkv, c->lens, c->n_seqs, c->C, c->H, c->p > 0 ? att_drop : NULL, c);
    double l = ref_dot(ctx, c->proj, (size_t)c->N * c->C);
    free(ctx);
    return l;
}

static void attention_case(float attn_p) {
    // Packed: a sequence of one token (softmax of a single score) between others.
    const int32_t lens[3] = {3, 1, 5};
    int n_seqs = 3, N = 9, C = 8, H = 2;
    int32_t seq_start[4] = {0, 3, 4, 9};
    size_t probs_start[3];
    size_t n_probs = phrex_train_packing_index(probs_start, seq_start, n_seqs, H);
    assert_int_equal(n_probs, (size_t)H * (9 + 1 + 25));
    phrex_train_packing pk = {n_seqs, seq_start, probs_start};
    size_t nq = (size_t)N * 3 * C, nc = (size_t)N * C;
    float *qkv = rand_floats(nq, 1.5f), *proj = rand_floats(nc, 1), *ctx = malloc(nc * 4);
    float *probs = malloc(n_probs * 4), *dqkv = rand_floats(nq, 9);
    int slots = omp_get_max_threads() > omp_get_num_procs() ? omp_get_max_threads() : omp_get_num_procs();
    float *scratch = malloc((size_t)slots * 50 * 4);
    uint64_t site = phrex_train_dropout_site(99, 0, 1);
    phrex_train_attention_forward(ctx, probs, qkv, &pk, C, H, attn_p, site, scratch, 50, slots);
    att_ctx a = {to_double(qkv, nq), to_double(proj, nc), lens, n_seqs, N, C, H, attn_p, site};
    double *ref = malloc(nc * sizeof *ref), *num = malloc(nq * sizeof *num);
    ref_attention_drop(ref, a.qkv, lens, n_seqs, C, H, attn_p > 0 ? att_drop : NULL, &a);
    check_forward("attention", ctx, ref, nc, 1e-5);
    phrex_train_attention_backward(dqkv, proj, probs, qkv, &pk, C, H, attn_p, site, scratch, 50, slots);
    fd_grad(num, a.qkv, NULL, nq, att_loss, &a);
    check_grad(attn_p > 0 ? "attention dqkv (dropout 0.3)" : "attention dqkv", dqkv, num, nq);
    free(qkv), free(proj), free(ctx), free(probs), free(dqkv), free(ref), free(num), free(scratch);
    free(a.qkv), free(a.proj);
}

static void test_attention(void **state) {
    (void)state;
    attention_case(0.0f);
    attention_case(0.3f);
}

static void test_dropout(void **state) {
    (void)state;
    // Keeps about 1 - p of the elements, scaled by 1/(1 - p); the same key
    // gives the same mask, another key another; p = 0 is the identity.
    enum { n = 100000 };
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (int i = 0; i < n; i++) x[i] = y[i] = 1.0f;
    uint64_t site = phrex_train_dropout_site(1, 0, 2);
    phrex_train_dropout(x, n, site, 0, 0.1f);
    int kept = 0;
    for (int i = 0; i < n; i++) {
        assert_true(x[i] == 0.0f || x[i] == 1.0f / 0.9f);
        kept += x[i] != 0.0f;
    }
    printf("  dropout 0.1: kept %d of %d\n", kept, n);
    assert_true(kept > 89400 && kept < 90600); // 0.9·n ± 6.3 sd
    phrex_train_dropout(y, n, site, 0, 0.1f);
    assert_memory_equal(x, y, n * sizeof *x);
    for (int i = 0; i < n; i++) y[i] = 1.0f;
    phrex_train_dropout(y, n, phrex_train_dropout_site(2, 0, 2), 0, 0.1f);
    assert_true(memcmp(x, y, n * sizeof *x) != 0);
    // A slice [first, first + count) gets the slice of the mask.
    for (int i = 0; i < 100; i++) y[i] = 1.0f;
    phrex_train_dropout(y, 100, site, 500, 0.1f);
    assert_memory_equal(x + 500, y, 100 * sizeof *x);
    for (int i = 0; i < n; i++) y[i] = 1.0f;
    phrex_train_dropout(y, n, site, 0, 0.0f);
    for (int i = 0; i < n; i++) assert_true(y[i] == 1.0f);
    free(x), free(y);
}

// --- embeddings ----------------------------------------------------------------

static void test_embeddings(void **state) {
    (void)state;
    // The sum is linear, so its gradient is a scatter-add: check it exactly
    // against a plain loop, with repeated ids, positions and types.
    int n = 7, c = 5, V = 6, P = 4, T = 2;
    const int32_t ids[7] = {1, 4, 1, 1, 0, 5, 4}, pos[7] = {0, 1, 2, 0, 1, 2, 3}, types[7] = {0, 0, 1, 1, 0, 1, 0};
    float *wte = rand_floats((size_t)V * c, 1), *wpe = rand_floats((size_t)P * c, 1), *wtt = rand_floats(T * c, 1);
    float *out = malloc((size_t)n * c * 4), *dout = rand_floats((size_t)n * c, 1);
    phrex_train_embed_forward(out, ids, pos, types, wte, wpe, wtt, n, c);
    for (int r = 0; r < n; r++)
        for (int j = 0; j < c; j++)
            assert_true(out[r * c + j] == wte[ids[r] * c + j] + wpe[pos[r] * c + j] + wtt[types[r] * c + j]);
    float *dte = calloc((size_t)V * c, 4), *dpe = calloc((size_t)P * c, 4), *dtt = calloc((size_t)T * c, 4);
    phrex_train_embed_backward(dte, dpe, dtt, dout, ids, pos, types, n, c);
    double *ete = calloc((size_t)V * c, 8), *epe = calloc((size_t)P * c, 8), *ett = calloc((size_t)T * c, 8);
    for (int r = 0; r < n; r++)
        for (int j = 0; j < c; j++) {
            ete[ids[r] * c + j] += dout[r * c + j];
            epe[pos[r] * c + j] += dout[r * c + j];
            ett[types[r] * c + j] += dout[r * c + j];
        }
    check_grad("embeddings dword", dte, ete, (size_t)V * c);
    check_grad("embeddings dposition", dpe, epe, (size_t)P * c);
    check_grad("embeddings dtype", dtt, ett, (size_t)T * c);
    // A frozen (NULL) table is skipped; the others are unchanged by that.
    float *dpe2 = calloc((size_t)P * c, 4);
    phrex_train_embed_backward(NULL, dpe2, NULL, dout, ids, pos, types, n, c);
    assert_memory_equal(dpe, dpe2, (size_t)P * c * 4);
    free(wte), free(wpe), free(wtt), free(out), free(dout), free(dte), free(dpe), free(dtt), free(dpe2);
    free(ete), free(epe), free(ett);
}

// --- the whole model ---------------------------------------------------------------

static const phrex_bert_config tiny = {
    .vocab_size = 50, .hidden_size = 16, .num_hidden_layers = 2, .num_attention_heads = 2, .head_dim = 8,
    .intermediate_size = 32, .max_position_embeddings = 16, .type_vocab_size = 2, .layer_norm_eps = 1e-12f};

typedef struct {
    const phrex_train_bert *m;
    double *params; // the variables: a double copy of the parameter buffer
    double *proj;
    const int32_t *ids, *types, *lens;
    int n_seqs, N;
    float hidden_p, attn_p; // dropout, with masks keyed by `key` as the encoder keys them
    uint64_t key;
    uint64_t site; // of the attention weights being computed
} bert_ctx;

// x (n) *= the dropout scales of site (layer, site).
static void ref_dropout(const bert_ctx *b, double *x, size_t n, int layer, int site) {
    if (!(b->hidden_p > 0)) return;
    uint64_t k = phrex_train_dropout_site(b->key, layer, site);
    for (size_t i = 0; i < n; i++) x[i] *= phrex_train_dropout_scale(k, i, b->hidden_p);
}

static double ref_probs_drop(const void *ctx, uint64_t k) {
    const bert_ctx *b = ctx;
    return phrex_train_dropout_scale(b->site, k, b->attn_p);
}

static const double *T_(const bert_ctx *b, const char *fmt, int l) {
    char name[PHREX_PARAM_NAME_MAX];
    snprintf(name, sizeof name, fmt, l);
    const phrex_param_tensor *t = phrex_train_bert_find(b->m, name);
    assert_non_null(t);
    return b->params + t->offset;
}

// The post-LN BERT forward in double, tensor by tensor by name.
static void ref_bert(bert_ctx *b, double *x) {
    const phrex_bert_config *c = phrex_train_bert_config(b->m);
    int C = c->hidden_size, F = c->intermediate_size, N = b->N;
    double eps = c->layer_norm_eps;
    const double *wte = T_(b, "embeddings.word_embeddings.weight", 0);
    const double *wpe = T_(b, "embeddings.position_embeddings.weight", 0);
    const double *wtt = T_(b, "embeddings.token_type_embeddings.weight", 0);
    double *e = malloc((size_t)N * C * 8), *q = malloc((size_t)N * C * 8), *qkv = malloc((size_t)N * 3 * C * 8);
    double *ctx = malloc((size_t)N * C * 8), *h = malloc((size_t)N * F * 8);
    for (int s = 0, r = 0; s < b->n_seqs; s++)
        for (int p = 0; p < b->lens[s]; p++, r++)
            for (int j = 0; j < C; j++)
                e[r * C + j] = wte[b->ids[r] * C + j] + wpe[p * C + j] + wtt[b->types[r] * C + j];
    ref_layernorm(x, e, T_(b, "embeddings.LayerNorm.weight", 0), T_(b, "embeddings.LayerNorm.bias", 0), N, C, eps);
    ref_dropout(b, x, (size_t)N * C, -1, 0);
    static const char *part[3] = {"query", "key", "value"};
    for (int l = 0; l < c->num_hidden_layers; l++) {
        for (int i = 0; i < 3; i++) {
            char w[96], bias[96];
            snprintf(w, sizeof w, "encoder.layer.%%d.attention.self.%s.weight", part[i]);
            snprintf(bias, sizeof bias, "encoder.layer.%%d.attention.self.%s.bias", part[i]);
            ref_linear(q, x, T_(b, w, l), T_(b, bias, l), N, C, C);
            for (int r = 0; r < N; r++) memcpy(qkv + (size_t)r * 3 * C + i * C, q + (size_t)r * C, (size_t)C * 8);
        }
        b->site = phrex_train_dropout_site(b->key, l, 1);
        ref_attention_drop(ctx, qkv, b->lens, b->n_seqs, C, c->num_attention_heads,
                           b->attn_p > 0 ? ref_probs_drop : NULL, b);
        ref_linear(e, ctx, T_(b, "encoder.layer.%d.attention.output.dense.weight", l),
                   T_(b, "encoder.layer.%d.attention.output.dense.bias", l), N, C, C);
        ref_dropout(b, e, (size_t)N * C, l, 2);
        for (int i = 0; i < N * C; i++) e[i] += x[i];
        ref_layernorm(x, e, T_(b, "encoder.layer.%d.attention.output.LayerNorm.weight", l),
                      T_(b, "encoder.layer.%d.attention.output.LayerNorm.bias", l), N, C, eps);
        ref_linear(h, x, T_(b, "encoder.layer.%d.intermediate.dense.weight", l),
                   T_(b, "encoder.layer.%d.intermediate.dense.bias", l), N, C, F);
        ref_gelu(h, h, (size_t)N * F);
        ref_linear(e, h, T_(b, "encoder.layer.%d.output.dense.weight", l), T_(b, "encoder.layer.%d.output.dense.bias", l),
                   N, F, C);
        ref_dropout(b, e, (size_t)N * C, l, 3);
        for (int i = 0; i < N * C; i++) e[i] += x[i];
        ref_layernorm(x, e, T_(b, "encoder.layer.%d.output.LayerNorm.weight", l),
                      T_(b, "encoder.layer.%d.output.LayerNorm.bias", l), N, C, eps);
    }
    free(e), free(q), free(qkv), free(ctx), free(h);
}

static double bert_loss(void *p) {
    bert_ctx *b = p;
    int C = phrex_train_bert_config(b->m)->hidden_size;
    double *x = malloc((size_t)b->N * C * sizeof *x);
    ref_bert(b, x);
    double l = ref_dot(x, b->proj, (size_t)b->N * C);
    free(x);
    return l;
}

enum { N_TOK = 16, N_SEQS = 4, SAMPLES = 48 };
static const int32_t bert_lens[N_SEQS] = {5, 1, 7, 3};

static void random_batch(int32_t *ids, int32_t *types) {
    for (int i = 0; i < N_TOK; i++) {
        ids[i] = (int32_t)phrex_rng_below(&rng, 20); // ids 0..19: rows 20..49 must get zero gradient
        types[i] = i >= 9 ? 1 : 0;
    }
    ids[3] = ids[0]; // a repeated token in one sequence
}

// Forward + backward of the f32 model with dout = proj; returns the output.
static float *run_model(phrex_train_bert *m, const int32_t *ids, const int32_t *types, const float *proj, float hp,
                        float ap, uint64_t key) {
    phrex_train_encoder *e;
    assert_int_equal(phrex_train_encoder_init(&e, m, N_TOK, 8), PHREX_OK);
    assert_int_equal(phrex_train_encoder_set_dropout(e, hp, ap, key), PHREX_OK);
    const float *out;
    assert_int_equal(phrex_train_encoder_forward(e, ids, types, bert_lens, N_SEQS, &out), PHREX_OK);
    int C = phrex_train_bert_config(m)->hidden_size;
    float *copy = malloc((size_t)N_TOK * C * 4);
    memcpy(copy, out, (size_t)N_TOK * C * 4);
    assert_int_equal(phrex_train_encoder_backward(e, proj), PHREX_OK);
    phrex_train_encoder_free(e);
    return copy;
}

static void full_model_case(float hp, float ap) {
    phrex_train_bert *m;
    assert_int_equal(phrex_train_bert_init_random(&m, &tiny, 7, 0.5f, NULL), PHREX_OK);
    phrex_train_params p = phrex_train_bert_params(m);
    int32_t ids[N_TOK], types[N_TOK];
    random_batch(ids, types);
    int C = tiny.hidden_size;
    float *proj = rand_floats((size_t)N_TOK * C, 1);
    float *out = run_model(m, ids, types, proj, hp, ap, 1234);
    bert_ctx b = {m, to_double(p.params, p.n_params), to_double(proj, (size_t)N_TOK * C), ids, types, bert_lens,
                  N_SEQS, N_TOK, hp, ap, 1234, 0};
    if (hp > 0 || ap > 0) printf("  with dropout %.2f (hidden), %.2f (attention):\n", hp, ap);
    double *ref = malloc((size_t)N_TOK * C * 8);
    ref_bert(&b, ref);
    check_forward("bert", out, ref, (size_t)N_TOK * C, 2e-5);
    // Every tensor, at up to SAMPLES random elements (all of the small ones).
    float a[SAMPLES];
    double num[SAMPLES];
    size_t idx[SAMPLES];
    for (int i = 0; i < p.n_tensors; i++) {
        const phrex_param_tensor *t = &p.tensors[i];
        const float *g = phrex_train_bert_grad_of(m, t);
        size_t n = t->numel < SAMPLES ? t->numel : SAMPLES;
        for (size_t k = 0; k < n; k++) {
            size_t j = t->numel <= SAMPLES ? k : (size_t)phrex_rng_below(&rng, (uint32_t)t->numel);
            idx[k] = t->offset + j;
            a[k] = g[j];
        }
        fd_grad(num, b.params, idx, n, bert_loss, &b);
        if (strstr(t->name, "key.bias")) {
            // softmax(q·(k + b)ᵀ) = softmax(q·kᵀ + q·b): the shift is the same
            // for every key, so the key bias has no gradient at all; the
            // analytic one is rounding (~1e-8) and a relative error means
            // nothing. Held to zero against the query bias's scale instead.
            double max_a = 0, max_num = 0;
            for (size_t k = 0; k < n; k++) max_a = fmax(max_a, fabs(a[k])), max_num = fmax(max_num, fabs(num[k]));
            printf("  %-48s n=%-5zu max|analytic| %.2e  max|numeric| %.2e (both should be ~0)\n", t->name, n, max_a,
                   max_num);
            char qname[PHREX_PARAM_NAME_MAX];
            snprintf(qname, sizeof qname, "%.*squery.bias", (int)(strstr(t->name, "key.bias") - t->name), t->name);
            const phrex_param_tensor *tq = phrex_train_bert_find(m, qname);
            assert_non_null(tq);
            const float *g_q = phrex_train_bert_grad_of(m, tq);
            double scale = 0;
            for (size_t k = 0; k < tq->numel; k++) scale = fmax(scale, fabs(g_q[k]));
            if (!(max_a <= 1e-4 * scale && max_num <= 1e-4 * scale))
                fail_msg("%s: should be zero, is %.3e (query bias scale %.3e)", t->name, max_a, scale);
            continue;
        }
        check_grad(t->name, a, num, n);
    }
    // Unused vocabulary rows and positions get exactly zero.
    const float *gw = phrex_train_bert_grad_of(m, &p.tensors[0]);
    for (size_t j = 20 * (size_t)C; j < 50 * (size_t)C; j++) assert_true(gw[j] == 0.0f);
    free(out), free(ref), free(proj), free(b.params), free(b.proj);
    phrex_train_bert_free(m);
}

static void test_full_model(void **state) {
    (void)state;
    full_model_case(0.0f, 0.0f);
}

static void test_full_model_dropout(void **state) {
    (void)state;
    full_model_case(0.2f, 0.3f);
}

static void test_frozen_word_embeddings(void **state) {
    (void)state;
    // Freezing only drops the word-embedding gradient: every other gradient
    // is bit-identical, and the buffer shrinks by V·C floats.
    phrex_train_bert *full, *frozen;
    phrex_train_bert_options opts = {.freeze_word_embeddings = 1};
    assert_int_equal(phrex_train_bert_init_random(&full, &tiny, 7, 0.5f, NULL), PHREX_OK);
    assert_int_equal(phrex_train_bert_init_random(&frozen, &tiny, 7, 0.5f, &opts), PHREX_OK);
    phrex_train_params pf = phrex_train_bert_params(full), pz = phrex_train_bert_params(frozen);
    assert_int_equal(pz.n_grads, pf.n_grads - (size_t)tiny.vocab_size * tiny.hidden_size);
    assert_int_equal(pz.grad_offset, (size_t)tiny.vocab_size * tiny.hidden_size);
    assert_null(phrex_train_bert_grad_of(frozen, &pz.tensors[0]));
    int32_t ids[N_TOK], types[N_TOK];
    random_batch(ids, types);
    float *proj = rand_floats((size_t)N_TOK * tiny.hidden_size, 1);
    free(run_model(full, ids, types, proj, 0, 0, 0));
    free(run_model(frozen, ids, types, proj, 0, 0, 0));
    assert_memory_equal(pf.grads + pz.grad_offset, pz.grads, pz.n_grads * sizeof(float));
    free(proj);
    phrex_train_bert_free(full);
    phrex_train_bert_free(frozen);
}

static void test_bad_input(void **state) {
    (void)state;
    phrex_train_bert *m;
    phrex_train_encoder *e;
    assert_int_equal(phrex_train_bert_init_random(&m, &tiny, 1, 0.5f, NULL), PHREX_OK);
    assert_int_equal(phrex_train_encoder_init(&e, m, 8, 4), PHREX_OK);
    const float *out;
    int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 50}, lens[2] = {4, 4}, long_lens[1] = {5};
    float dout[8 * 16] = {0};
    assert_int_equal(phrex_train_encoder_backward(e, dout), PHREX_ERR_INPUT); // no forward yet
    assert_int_equal(phrex_train_encoder_forward(e, ids, NULL, lens, 2, &out), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "id 50"));
    assert_int_equal(phrex_train_encoder_forward(e, ids, NULL, long_lens, 1, &out), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "5 tokens"));
    phrex_train_encoder_free(e);
    assert_int_equal(phrex_train_encoder_init(&e, m, 8, 9), PHREX_ERR_INPUT);
    phrex_train_bert_options too_deep = {.num_layers = 3};
    phrex_train_bert *m3;
    assert_int_equal(phrex_train_bert_init_random(&m3, &tiny, 1, 0.5f, &too_deep), PHREX_ERR_INPUT);
    phrex_train_bert_free(m);
}

int main(void) {
    rng = phrex_rng_init(20240601);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),     cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_gelu),       cmocka_unit_test(test_attention),
        cmocka_unit_test(test_embeddings), cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_full_model), cmocka_unit_test(test_full_model_dropout),
        cmocka_unit_test(test_frozen_word_embeddings), cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
