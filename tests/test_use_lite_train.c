// USE-lite training (encoder/use_lite_train.h):
// (1) gradients of a tiny random USE-lite-shaped model (E 8, C 12, F 16,
//     2 heads, vocabulary 30) against central finite differences of an
//     independent double-precision forward (tests/grad_ref.h, as
//     tests/test_grad.c does for BERT), with and without dropout; the
//     thresholds and their reasoning are test_grad.c's;
// (2) on the real weights, the training forward equals the inference
//     forward (encoder/use_lite.h), and a saved model reloads in both;
// (3) freezing the word embeddings changes no other gradient;
// (4) bad input fails cleanly.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "encoder/safetensors.h"
#include "encoder/train_kernels.h"
#include "encoder/train_rng.h"
#include "encoder/use_lite.h"
#include "encoder/use_lite_train.h"
#include "grad_ref.h"
#include "support/test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USE_LITE_FILE PHREX_SHARED_DIR "/models/use-lite/use_lite.safetensors"
#define FD_H 1e-5
#define TOL_L2 1e-4
#define TOL_MAX 1e-3

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
    printf("  %-36s n=%-4zu rel_l2 %.2e  rel_max %.2e  (max |grad| %.2e)\n", what, n, rel_l2, rel_max, max_ref);
    if (!(rel_l2 <= TOL_L2 && rel_max <= TOL_MAX))
        fail_msg("%s: gradient off: relative L2 error %.3e (limit %.0e), max %.3e (limit %.0e)", what, rel_l2, TOL_L2,
                 rel_max, TOL_MAX);
}

// --- the double reference ------------------------------------------------------------

static const phrex_use_lite_shape tiny = {.vocab = 30, .embed = 8, .dim = 12, .ffn = 16, .heads = 2, .eps = 1e-5f};

enum { N_TOK = 16, N_SEQS = 4, SAMPLES = 40 };
static const int32_t lens[N_SEQS] = {5, 1, 7, 3};

typedef struct {
    const phrex_use_lite_train *m;
    double *params; // the variables: a double copy of the parameter buffer
    double *proj;
    const int32_t *ids;
    float hidden_p, attn_p;
    uint64_t key, site;
} ref_ctx;

static const double *T_(const ref_ctx *b, const char *fmt, int l) {
    char name[PHREX_PARAM_NAME_MAX];
    snprintf(name, sizeof name, fmt, l);
    const phrex_param_tensor *t = phrex_use_lite_train_find(b->m, name);
    if (!t) fail_msg("no tensor %s", name);
    return b->params + t->offset;
}

static void ref_dropout(const ref_ctx *b, double *x, size_t n, int layer, int site) {
    if (!(b->hidden_p > 0)) return;
    uint64_t k = phrex_train_dropout_site(b->key, layer, site);
    for (size_t i = 0; i < n; i++) x[i] *= phrex_train_dropout_scale(k, i, b->hidden_p);
}

static double ref_probs_drop(const void *ctx, uint64_t k) {
    const ref_ctx *b = ctx;
    return phrex_train_dropout_scale(b->site, k, b->attn_p);
}

// The USE-lite forward in double, tensor by tensor by name. out: (N, C).
static void ref_use_lite(ref_ctx *b, double *out) {
    const phrex_use_lite_shape *s = phrex_use_lite_train_shape(b->m);
    int E = s->embed, C = s->dim, F = s->ffn, N = N_TOK;
    size_t W = (size_t)N * (C > E ? C : E);
    double *x = malloc(W * 8), *ln = malloc(W * 8), *qkv = malloc(3 * W * 8), *ctx = malloc(W * 8);
    double *r1 = malloc((size_t)N * C * 8), *h = malloc((size_t)N * F * 8), *t = malloc((size_t)N * C * 8);
    const double *word = T_(b, "embeddings.word.weight", 0), *inv = T_(b, "embeddings.timing_inv_timescales", 0);
    for (int q = 0, r = 0; q < N_SEQS; q++)
        for (int p = 0; p < lens[q]; p++, r++)
            for (int j = 0; j < E / 2; j++) {
                x[r * E + j] = 2 * word[b->ids[r] * E + j] + sin(p * inv[j]);
                x[r * E + E / 2 + j] = 2 * word[b->ids[r] * E + E / 2 + j] + cos(p * inv[j]);
            }
    ref_dropout(b, x, (size_t)N * E, -1, 0);
    for (int l = 0; l < 2; l++) {
        int cin = l == 0 ? E : C;
        ref_layernorm(ln, x, T_(b, "layer%d.attn_ln.weight", l), T_(b, "layer%d.attn_ln.bias", l), N, cin, s->eps);
        ref_linear(qkv, ln, T_(b, "layer%d.attn.qkv.weight", l), T_(b, "layer%d.attn.qkv.bias", l), N, cin, 3 * cin);
        b->site = phrex_train_dropout_site(b->key, l, 1);
        ref_attention_drop(ctx, qkv, lens, N_SEQS, cin, s->heads, b->attn_p > 0 ? ref_probs_drop : NULL, b);
        ref_linear(r1, ctx, T_(b, "layer%d.attn.out.weight", l), T_(b, "layer%d.attn.out.bias", l), N, cin, C);
        ref_dropout(b, r1, (size_t)N * C, l, 2);
        if (l == 0) {
            ref_linear(t, x, T_(b, "layer%d.residual_proj.weight", l), T_(b, "layer%d.residual_proj.bias", l), N, E,
                       C);
            for (int i = 0; i < N * C; i++) r1[i] += t[i];
        } else {
            for (int i = 0; i < N * C; i++) r1[i] += x[i];
        }
        ref_layernorm(ln, r1, T_(b, "layer%d.ffn_ln.weight", l), T_(b, "layer%d.ffn_ln.bias", l), N, C, s->eps);
        ref_linear(h, ln, T_(b, "layer%d.ffn.fc1.weight", l), T_(b, "layer%d.ffn.fc1.bias", l), N, C, F);
        for (int i = 0; i < N * F; i++) h[i] = h[i] > 0 ? h[i] : 0;
        ref_linear(t, h, T_(b, "layer%d.ffn.fc2.weight", l), T_(b, "layer%d.ffn.fc2.bias", l), N, F, C);
        ref_dropout(b, t, (size_t)N * C, l, 3);
        for (int i = 0; i < N * C; i++) x[i] = r1[i] + t[i];
    }
    memcpy(out, x, (size_t)N * C * 8);
    free(x), free(ln), free(qkv), free(ctx), free(r1), free(h), free(t);
}

static double ref_loss(void *p) {
    ref_ctx *b = p;
    double *out = malloc((size_t)N_TOK * tiny.dim * 8);
    ref_use_lite(b, out);
    double l = ref_dot(out, b->proj, (size_t)N_TOK * tiny.dim);
    free(out);
    return l;
}

// Forward + backward of the f32 model with dout = proj; returns a copy of the output.
static float *run_model(phrex_use_lite_train *m, const int32_t *ids, const float *proj, float hp, float ap,
                        uint64_t key) {
    phrex_use_lite_train_encoder *e;
    assert_int_equal(phrex_use_lite_train_encoder_init(&e, m, N_TOK, 8), PHREX_OK);
    assert_int_equal(phrex_use_lite_train_encoder_set_dropout(e, hp, ap, key), PHREX_OK);
    const float *out;
    assert_int_equal(phrex_use_lite_train_encoder_forward(e, ids, lens, N_SEQS, &out), PHREX_OK);
    int C = phrex_use_lite_train_shape(m)->dim;
    float *copy = malloc((size_t)N_TOK * C * 4);
    memcpy(copy, out, (size_t)N_TOK * C * 4);
    assert_int_equal(phrex_use_lite_train_encoder_backward(e, proj), PHREX_OK);
    phrex_use_lite_train_encoder_free(e);
    return copy;
}

static void random_ids(int32_t *ids) {
    for (int i = 0; i < N_TOK; i++) ids[i] = (int32_t)phrex_rng_below(&rng, 20); // rows 20..29 get no gradient
    ids[3] = ids[0]; // a repeated token in one sequence
}

static void gradient_case(float hp, float ap) {
    phrex_use_lite_train *m;
    assert_int_equal(phrex_use_lite_train_init_random(&m, &tiny, 7, 0.5f, NULL), PHREX_OK);
    phrex_train_params p = phrex_use_lite_train_params(m);
    int32_t ids[N_TOK];
    random_ids(ids);
    int C = tiny.dim;
    float *proj = rand_floats((size_t)N_TOK * C, 1);
    float *out = run_model(m, ids, proj, hp, ap, 99);
    ref_ctx b = {m, to_double(p.params, p.n_params), to_double(proj, (size_t)N_TOK * C), ids, hp, ap, 99, 0};
    if (hp > 0 || ap > 0) printf("  with dropout %.2f (hidden), %.2f (attention):\n", hp, ap);
    double *ref = malloc((size_t)N_TOK * C * 8), max = 0;
    ref_use_lite(&b, ref);
    for (int i = 0; i < N_TOK * C; i++) max = fmax(max, fabs(out[i] - ref[i]));
    if (!(max <= 2e-5)) fail_msg("forward differs from the double reference by %.3e", max);
    float a[SAMPLES];
    double num[SAMPLES];
    size_t idx[SAMPLES];
    int checked = 0;
    for (int i = 0; i < p.n_tensors; i++) {
        const phrex_param_tensor *t = &p.tensors[i];
        const float *g = phrex_use_lite_train_grad_of(m, t);
        if (!t->trainable) {
            assert_null(g);
            continue;
        }
        size_t n = t->numel < SAMPLES ? t->numel : SAMPLES;
        for (size_t k = 0; k < n; k++) {
            size_t j = t->numel <= SAMPLES ? k : (size_t)phrex_rng_below(&rng, (uint32_t)t->numel);
            idx[k] = t->offset + j;
            a[k] = g[j];
        }
        for (size_t k = 0; k < n; k++) {
            double *v = &b.params[idx[k]], save = *v;
            *v = save + FD_H;
            double lp = ref_loss(&b);
            *v = save - FD_H;
            double lm = ref_loss(&b);
            *v = save;
            num[k] = (lp - lm) / (2 * FD_H);
        }
        check_grad(t->name, a, num, n);
        checked++;
    }
    assert_int_equal(checked, p.n_tensors - 3); // all but the frozen head
    const float *gw = phrex_use_lite_train_grad_of(m, phrex_use_lite_train_find(m, "embeddings.word.weight"));
    for (size_t j = 20 * (size_t)tiny.embed; j < 30 * (size_t)tiny.embed; j++) assert_true(gw[j] == 0.0f);
    free(out), free(ref), free(proj), free(b.params), free(b.proj);
    phrex_use_lite_train_free(m);
}

static void test_gradients(void **state) {
    (void)state;
    gradient_case(0.0f, 0.0f);
}

static void test_gradients_dropout(void **state) {
    (void)state;
    gradient_case(0.2f, 0.3f);
}

static void test_frozen_word_embeddings(void **state) {
    (void)state;
    phrex_use_lite_train *full, *frozen;
    phrex_use_lite_train_options opts = {.freeze_word_embeddings = 1};
    assert_int_equal(phrex_use_lite_train_init_random(&full, &tiny, 7, 0.5f, NULL), PHREX_OK);
    assert_int_equal(phrex_use_lite_train_init_random(&frozen, &tiny, 7, 0.5f, &opts), PHREX_OK);
    phrex_train_params pf = phrex_use_lite_train_params(full), pz = phrex_use_lite_train_params(frozen);
    assert_int_equal(pz.n_grads, pf.n_grads - (size_t)tiny.vocab * tiny.embed);
    assert_int_equal(pz.grad_offset, pf.grad_offset + (size_t)tiny.vocab * tiny.embed);
    int32_t ids[N_TOK];
    random_ids(ids);
    float *proj = rand_floats((size_t)N_TOK * tiny.dim, 1);
    free(run_model(full, ids, proj, 0, 0, 0));
    free(run_model(frozen, ids, proj, 0, 0, 0));
    assert_memory_equal(pf.grads + (pz.grad_offset - pf.grad_offset), pz.grads, pz.n_grads * sizeof(float));
    free(proj);
    phrex_use_lite_train_free(full);
    phrex_use_lite_train_free(frozen);
}

// --- real weights ---------------------------------------------------------------------

enum { R_SEQS = 3 };

static void real_batch(int32_t *ids, int32_t *rlens, int *n) {
    rlens[0] = 40, rlens[1] = 3, rlens[2] = 90;
    *n = 133;
    for (int i = 0; i < *n; i++) ids[i] = 6 + (int32_t)phrex_rng_below(&rng, PHREX_USE_LITE_VOCAB - 6);
    ids[0] = PHREX_USE_LITE_ID_BOS, ids[39] = PHREX_USE_LITE_ID_EOS, ids[20] = PHREX_USE_LITE_ID_SPAN_START;
}

// Max |a - b| over n, against the largest |b|.
static double max_diff(const float *a, const float *b, size_t n, double *scale) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs(a[i] - b[i])), s = fmax(s, fabs(b[i]));
    *scale = s;
    return d;
}

static void test_matches_inference(void **state) {
    (void)state;
    int32_t ids[133], rlens[R_SEQS];
    int n;
    real_batch(ids, rlens, &n);
    enum { C = PHREX_USE_LITE_DIM };
    phrex_use_lite_train *m;
    assert_int_equal(phrex_use_lite_train_init(&m, USE_LITE_FILE, NULL), PHREX_OK);
    phrex_use_lite_train_encoder *te;
    assert_int_equal(phrex_use_lite_train_encoder_init(&te, m, 256, 128), PHREX_OK);
    printf("  training workspace for 256 tokens (max_seq 128): %.1f MB\n",
           phrex_use_lite_train_encoder_bytes(te) / 1048576.0);
    const float *train_out;
    assert_int_equal(phrex_use_lite_train_encoder_forward(te, ids, rlens, R_SEQS, &train_out), PHREX_OK);
    phrex_use_lite *inf;
    phrex_use_lite_encoder *ie;
    assert_int_equal(phrex_use_lite_init(&inf, USE_LITE_FILE), PHREX_OK);
    assert_int_equal(phrex_use_lite_encoder_init(&ie, inf, 256, 128), PHREX_OK);
    float *inf_out = malloc((size_t)n * C * 4);
    assert_int_equal(phrex_use_lite_forward(ie, ids, rlens, R_SEQS, inf_out, NULL), PHREX_OK);
    double scale, d = max_diff(train_out, inf_out, (size_t)n * C, &scale);
    printf("  training vs inference forward, real weights: max diff %.2e (max |state| %.1f)\n", d, scale);
    assert_true(d <= 1e-5 * scale);
    // Saved and reloaded (in the file's [in, out] layout) by both loaders.
    char dir[] = "/tmp/phrex-use-lite-XXXXXX", path[256];
    assert_int_equal(test_make_tmpdir(dir), 0);
    test_join_path(path, sizeof path, dir, "saved.safetensors");
    phrex_train_params p = phrex_use_lite_train_params(m);
    for (size_t i = p.grad_offset; i < p.n_params; i += 97) p.params[i] += 1e-3f; // a "trained" model
    assert_int_equal(phrex_use_lite_train_save(m, path, PHREX_DTYPE_F32), PHREX_OK);
    assert_int_equal(phrex_use_lite_train_encoder_forward(te, ids, rlens, R_SEQS, &train_out), PHREX_OK);
    phrex_use_lite *inf2;
    phrex_use_lite_encoder *ie2;
    assert_int_equal(phrex_use_lite_init(&inf2, path), PHREX_OK);
    assert_int_equal(phrex_use_lite_encoder_init(&ie2, inf2, 256, 128), PHREX_OK);
    float *inf2_out = malloc((size_t)n * C * 4);
    assert_int_equal(phrex_use_lite_forward(ie2, ids, rlens, R_SEQS, inf2_out, NULL), PHREX_OK);
    d = max_diff(train_out, inf2_out, (size_t)n * C, &scale);
    double moved = max_diff(inf_out, inf2_out, (size_t)n * C, &scale);
    printf("  after save + reload: max diff %.2e; the perturbation moved states by %.2e\n", d, moved);
    assert_true(d <= 1e-5 * scale && moved > 100 * d);
    // F16 halves the file and stays close.
    char path16[256];
    test_join_path(path16, sizeof path16, dir, "saved16.safetensors");
    assert_int_equal(phrex_use_lite_train_save(m, path16, PHREX_DTYPE_F16), PHREX_OK);
    phrex_use_lite *inf16;
    assert_int_equal(phrex_use_lite_init(&inf16, path16), PHREX_OK);
    phrex_use_lite_encoder *ie16;
    assert_int_equal(phrex_use_lite_encoder_init(&ie16, inf16, 256, 128), PHREX_OK);
    float *inf16_out = malloc((size_t)n * C * 4);
    assert_int_equal(phrex_use_lite_forward(ie16, ids, rlens, R_SEQS, inf16_out, NULL), PHREX_OK);
    double d16 = max_diff(inf16_out, inf2_out, (size_t)n * C, &scale);
    printf("  saved as f16: max diff %.2e against f32 (max |state| %.1f)\n", d16, scale);
    assert_true(d16 <= 1e-2 * scale && d16 > d);
    phrex_use_lite_encoder_free(ie16);
    phrex_use_lite_free(inf16);
    free(inf16_out);
    phrex_use_lite_train *m2;
    assert_int_equal(phrex_use_lite_train_init(&m2, path, NULL), PHREX_OK);
    phrex_train_params p2 = phrex_use_lite_train_params(m2);
    assert_int_equal(p2.n_params, p.n_params);
    assert_memory_equal(p2.params, p.params, p.n_params * sizeof(float));
    assert_int_equal(test_remove_tree(dir), 0);
    phrex_use_lite_train_free(m2);
    phrex_use_lite_encoder_free(ie2);
    phrex_use_lite_free(inf2);
    free(inf2_out);
    free(inf_out);
    phrex_use_lite_encoder_free(ie);
    phrex_use_lite_free(inf);
    phrex_use_lite_train_encoder_free(te);
    phrex_use_lite_train_free(m);
}

static void test_bad_input(void **state) {
    (void)state;
    phrex_use_lite_train *m;
    phrex_use_lite_train_encoder *e;
    assert_int_equal(phrex_use_lite_train_init_random(&m, &tiny, 1, 0.5f, NULL), PHREX_OK);
    assert_int_equal(phrex_use_lite_train_encoder_init(&e, m, 8, 4), PHREX_OK);
    const float *out;
    int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 30}, two[2] = {4, 4}, long_len[1] = {5};
    float dout[8 * 12] = {0};
    assert_int_equal(phrex_use_lite_train_encoder_backward(e, dout), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "no forward"));
    assert_int_equal(phrex_use_lite_train_encoder_forward(e, ids, two, 2, &out), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "id 30"));
    assert_int_equal(phrex_use_lite_train_encoder_forward(e, ids, long_len, 1, &out), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "5 tokens"));
    assert_int_equal(phrex_use_lite_train_encoder_set_dropout(e, 1.0f, 0, 0), PHREX_ERR_INPUT);
    phrex_use_lite_train_encoder_free(e);
    assert_int_equal(phrex_use_lite_train_encoder_init(&e, m, 8, 9), PHREX_ERR_INPUT);
    phrex_use_lite_shape bad = tiny;
    bad.heads = 3;
    phrex_use_lite_train *m2;
    assert_int_equal(phrex_use_lite_train_init_random(&m2, &bad, 1, 0.5f, NULL), PHREX_ERR_INPUT);
    assert_int_equal(phrex_use_lite_train_init(&m2, "/no/such/use_lite.safetensors", NULL), PHREX_ERR_IO);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", PHREX_BASE_MODEL_DIR);
    assert_int_equal(phrex_use_lite_train_init(&m2, path, NULL), PHREX_ERR_FORMAT);
    phrex_use_lite_train_free(m);
}

int main(void) {
    rng = phrex_rng_init(20261123);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients),         cmocka_unit_test(test_gradients_dropout),
        cmocka_unit_test(test_frozen_word_embeddings), cmocka_unit_test(test_matches_inference),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
