// The BERT forward pass against Hugging Face (tests/fixtures/encoder_parity.bin,
// written by tools/make_encoder_fixture.py), its kernels against libm, and
// the promise that a sequence's output depends only on that sequence: not on
// what else is in the batch, where, or how many threads ran it.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "tests/support/test_support.h"

#include "common/error.h"
#include "common/threads.h"
#include "encoder/bert.h"
#include "encoder/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE PHREX_SOURCE_DIR "/tests/fixtures/encoder_parity.bin"
#define PARITY_TOL 1e-4f // vs PyTorch: different summation orders
// Against itself the encoder is bit-exact: a row's arithmetic (kernel tile
// order, FFN slices, softmax width) depends only on its own sequence, never
// on the batch around it or the thread count. Relax this only knowingly.
#define CONSISTENT_TOL 0.0f

// --- fixture -------------------------------------------------------------------

typedef struct {
    int len;
    int has_full;
    const int32_t *ids;      // (len)
    const int32_t *type_ids; // (len)
    const float *mean;       // (C)
    const float *mean_l2;    // (C)
    const float *sub;        // (len, n_sub) dims 0, stride, 2*stride, ...
    const float *full;       // (len, C) or NULL
} fixture_seq;

typedef struct {
    unsigned char *bytes;
    int n_seqs, C, stride, n_sub;
    fixture_seq *seqs;
    int total_tokens;
    int32_t *ids, *type_ids, *lens; // every sequence packed, in file order
} fixture;

static fixture fx;
static phrex_bert *model;
static float *packed_out[2]; // see packed_output()

static uint64_t fnv1a64(const unsigned char *p, size_t n) { return test_hash_bytes(0xcbf29ce484222325ull, p, n); }

static uint32_t u32_at(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

// Walks the body, pointing each fixture_seq into `bytes`; every length is
// checked against what is left so a damaged file fails here, not later.
static int parse_body(const unsigned char *p, size_t left) {
    size_t C = (size_t)fx.C, ns = (size_t)fx.n_sub;
    for (int s = 0; s < fx.n_seqs; s++) {
        if (left < 8) return 0;
        fixture_seq *q = &fx.seqs[s];
        q->len = (int)u32_at(p);
        q->has_full = u32_at(p + 4) & 1;
        p += 8, left -= 8;
        size_t L = (size_t)q->len;
        size_t need = 4 * (2 * L + 2 * C + L * ns + (q->has_full ? L * C : 0));
        if (q->len < 1 || q->len > 512 || need > left) return 0;
        q->ids = (const int32_t *)p;
        q->type_ids = q->ids + L;
        q->mean = (const float *)(q->type_ids + L);
        q->mean_l2 = q->mean + C;
        q->sub = q->mean_l2 + C;
        q->full = q->has_full ? q->sub + L * ns : NULL;
        p += need, left -= need;
        fx.total_tokens += q->len;
    }
    return left == 0;
}

static void pack_all(void) {
    fx.ids = malloc((size_t)fx.total_tokens * sizeof *fx.ids);
    fx.type_ids = malloc((size_t)fx.total_tokens * sizeof *fx.type_ids);
    fx.lens = malloc((size_t)fx.n_seqs * sizeof *fx.lens);
    assert_non_null(fx.ids);
    assert_non_null(fx.type_ids);
    assert_non_null(fx.lens);
    for (int s = 0, t = 0; s < fx.n_seqs; s++) {
        memcpy(fx.ids + t, fx.seqs[s].ids, (size_t)fx.seqs[s].len * 4);
        memcpy(fx.type_ids + t, fx.seqs[s].type_ids, (size_t)fx.seqs[s].len * 4);
        fx.lens[s] = fx.seqs[s].len;
        t += fx.seqs[s].len;
    }
}

static void load_fixture(void) {
    size_t n;
    fx.bytes = test_read_fixture(FIXTURE, "tools/make_encoder_fixture.py", &n);
    long size = (long)n;
    const unsigned char *h = fx.bytes;
    if (size < 40 || memcmp(h, "PHXENCPF", 8) != 0 || u32_at(h + 8) != 1)
        fail_msg("%s: not a version 1 encoder fixture", FIXTURE);
    uint64_t sum = (uint64_t)u32_at(h + 32) | (uint64_t)u32_at(h + 36) << 32;
    if (fnv1a64(h + 40, (size_t)size - 40) != sum) fail_msg("%s: checksum mismatch", FIXTURE);
    fx.n_seqs = (int)u32_at(h + 12);
    fx.C = (int)u32_at(h + 16);
    fx.stride = (int)u32_at(h + 20);
    fx.n_sub = (int)u32_at(h + 24);
    assert_true(fx.n_seqs >= 50 && fx.n_seqs < 10000 && fx.stride >= 1 && fx.C == 384);
    assert_int_equal(fx.n_sub, (fx.C + fx.stride - 1) / fx.stride);
    fx.seqs = calloc((size_t)fx.n_seqs, sizeof *fx.seqs);
    assert_non_null(fx.seqs);
    if (!parse_body(h + 40, (size_t)size - 40)) fail_msg("%s: body does not match its header", FIXTURE);
    pack_all();
}

static int setup(void **state) {
    (void)state;
    load_fixture();
    if (phrex_bert_init(&model, PHREX_BASE_MODEL_DIR) != PHREX_OK) {
        fprintf(stderr, "phrex_bert_init: %s\n", phrex_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    phrex_bert_free(model);
    free(fx.bytes);
    free(fx.seqs);
    free(fx.ids);
    free(fx.type_ids);
    free(fx.lens);
    free(packed_out[0]);
    free(packed_out[1]);
    return 0;
}

// --- comparisons ---------------------------------------------------------------

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) m = d; // NaN sticks
    }
    return m;
}

// Token vectors of sequence s (starting at out) against the fixture: the
// strided dims of every token, and every dim where the fixture has them.
static float token_diff(const float *out, int s) {
    const fixture_seq *q = &fx.seqs[s];
    float m = 0.0f;
    for (int t = 0; t < q->len; t++) {
        for (int k = 0; k < fx.n_sub; k++) {
            float d = fabsf(out[(size_t)t * fx.C + (size_t)k * fx.stride] - q->sub[(size_t)t * fx.n_sub + k]);
            if (!(d <= m)) m = d;
        }
    }
    if (q->full) {
        float d = max_abs_diff(out, q->full, (size_t)q->len * fx.C);
        if (!(d <= m)) m = d;
    }
    return m;
}

// Checks the packed output of the sequences `which` (n of them, in that
// order) against the fixture: tokens, mean pool, normalised mean pool.
static void check_parity(const float *out, const int *which, int n, const char *what) {
    float *pooled = malloc((size_t)fx.C * sizeof *pooled);
    assert_non_null(pooled);
    float worst_tok = 0.0f, worst_mean = 0.0f, worst_l2 = 0.0f;
    const float *o = out;
    for (int i = 0; i < n; i++) {
        const fixture_seq *q = &fx.seqs[which[i]];
        float d = token_diff(o, which[i]);
        if (!(d <= worst_tok)) worst_tok = d;
        phrex_bert_mean_pool(o, &q->len, 1, fx.C, pooled);
        d = max_abs_diff(pooled, q->mean, (size_t)fx.C);
        if (!(d <= worst_mean)) worst_mean = d;
        phrex_l2_normalize(pooled, 1, fx.C);
        d = max_abs_diff(pooled, q->mean_l2, (size_t)fx.C);
        if (!(d <= worst_l2)) worst_l2 = d;
        o += (size_t)q->len * fx.C;
    }
    free(pooled);
    if (what[0]) printf("  %-34s tokens %.2e  mean %.2e  mean_l2 %.2e\n", what, worst_tok, worst_mean, worst_l2);
    assert_true(worst_tok <= PARITY_TOL);
    assert_true(worst_mean <= PARITY_TOL);
    assert_true(worst_l2 <= PARITY_TOL);
}

static phrex_encoder *new_encoder(int max_tokens) {
    phrex_encoder *enc = NULL;
    if (phrex_encoder_init(&enc, model, max_tokens) != PHREX_OK) fail_msg("%s", phrex_last_error());
    return enc;
}

static void forward_ok(phrex_encoder *enc, const int32_t *ids, const int32_t *types, const int32_t *lens, int n,
                       float *out) {
    if (phrex_encoder_forward(enc, ids, types, lens, n, out) != PHREX_OK) fail_msg("%s", phrex_last_error());
}

// All fixture sequences in one packed batch; returns (total, C) malloc'd.
static float *forward_all_packed(phrex_encoder *enc) {
    float *out = malloc((size_t)fx.total_tokens * fx.C * sizeof *out);
    assert_non_null(out);
    forward_ok(enc, fx.ids, fx.type_ids, fx.lens, fx.n_seqs, out);
    return out;
}

// --- parity --------------------------------------------------------------------

static int *identity_order(void) {
    int *which = malloc((size_t)fx.n_seqs * sizeof *which);
    assert_non_null(which);
    for (int i = 0; i < fx.n_seqs; i++) which[i] = i;
    return which;
}

// All sequences packed in one batch, at 1 and 2 threads: computed once (the
// other tests compare against these), checked against the fixture, and
// against each other: the thread count must not change a single bit.

static const float *packed_output(int threads) {
    if (!packed_out[threads - 1]) {
        phrex_set_threads(threads);
        phrex_encoder *enc = new_encoder(fx.total_tokens);
        packed_out[threads - 1] = forward_all_packed(enc);
        phrex_encoder_free(enc);
    }
    return packed_out[threads - 1];
}

static void test_parity_packed(void **state) {
    (void)state;
    int *which = identity_order();
    for (int threads = 1; threads <= 2; threads++) {
        char what[64];
        snprintf(what, sizeof what, "%d seqs packed, %d thread(s)", fx.n_seqs, threads);
        check_parity(packed_output(threads), which, fx.n_seqs, what);
    }
    float d = max_abs_diff(packed_output(1), packed_output(2), (size_t)fx.total_tokens * fx.C);
    printf("  1 vs 2 threads: %.2e\n", d);
    assert_true(d <= CONSISTENT_TOL);
    free(which);
}

// Each sequence alone, in an encoder sized for exactly that sequence (so
// the workspace never has room to spare), against the packed batch.
static void test_parity_one_by_one(void **state) {
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        const float *p = packed_output(threads);
        phrex_set_threads(threads);
        float worst = 0.0f;
        for (int s = 0; s < fx.n_seqs; s++) {
            const fixture_seq *q = &fx.seqs[s];
            phrex_encoder *enc = new_encoder(q->len);
            float *out = malloc((size_t)q->len * fx.C * sizeof *out);
            assert_non_null(out);
            forward_ok(enc, q->ids, q->type_ids, &q->len, 1, out);
            check_parity(out, &s, 1, "");
            float d = max_abs_diff(out, p, (size_t)q->len * fx.C);
            if (!(d <= worst)) worst = d;
            p += (size_t)q->len * fx.C;
            free(out);
            phrex_encoder_free(enc);
        }
        printf("  one by one vs packed, %d thread(s): %.2e\n", threads, worst);
        assert_true(worst <= CONSISTENT_TOL);
    }
}

// The fixture's sequences in reverse order, in batches of 7, against the
// packed run in file order; through an encoder with short row blocks (100
// rows, so blocks split sequences and end ragged), which must not change a
// bit either.
static void test_parity_regrouped(void **state) {
    (void)state;
    const float *packed = packed_output(2);
    phrex_encoder *enc = new_encoder(fx.total_tokens);
    if (phrex_encoder_set_blocking(enc, 100, 0) != PHREX_OK) fail_msg("%s", phrex_last_error());
    size_t *offset = malloc((size_t)fx.n_seqs * sizeof *offset);
    assert_non_null(offset);
    for (int s = 0, t = 0; s < fx.n_seqs; t += fx.seqs[s].len, s++) offset[s] = (size_t)t * fx.C;
    int32_t *ids = malloc((size_t)fx.total_tokens * 4), *types = malloc((size_t)fx.total_tokens * 4);
    float *out = malloc((size_t)fx.total_tokens * fx.C * sizeof *out);
    assert_true(ids && types && out);
    float worst = 0.0f;
    for (int threads = 1; threads <= 2; threads++) {
        phrex_set_threads(threads);
        for (int hi = fx.n_seqs; hi > 0; hi -= 7) {
            int lo = hi - 7 < 0 ? 0 : hi - 7, n = 0, t = 0, which[7];
            int32_t lens[7];
            for (int s = hi - 1; s >= lo; s--, n++) {
                which[n] = s;
                lens[n] = fx.seqs[s].len;
                memcpy(ids + t, fx.seqs[s].ids, (size_t)lens[n] * 4);
                memcpy(types + t, fx.seqs[s].type_ids, (size_t)lens[n] * 4);
                t += lens[n];
            }
            forward_ok(enc, ids, types, lens, n, out);
            check_parity(out, which, n, "");
            const float *o = out;
            for (int i = 0; i < n; i++) {
                size_t sz = (size_t)lens[i] * fx.C;
                float d = max_abs_diff(o, packed + offset[which[i]], sz);
                if (!(d <= worst)) worst = d;
                o += sz;
            }
        }
    }
    printf("  regrouped vs packed: %.2e\n", worst);
    assert_true(worst <= CONSISTENT_TOL);
    free(ids);
    free(types);
    free(out);
    free(offset);
    phrex_encoder_free(enc);
}

// --- batch independence ----------------------------------------------------------

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng(void) { // xorshift64*
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

// One probe sequence of random ids, placed among random neighbours of random
// lengths (before and after it, enough to cross row blocks and thread
// splits), must come out as it does alone; type_ids NULL must equal zeros.
static void test_batch_independence(void **state) {
    (void)state;
    const int probe_len = 37, max_tokens = 1400;
    phrex_encoder *enc = new_encoder(max_tokens);
    int32_t *ids = malloc(max_tokens * 4), *zeros = calloc(max_tokens, 4), lens[64];
    float *alone = malloc((size_t)probe_len * fx.C * 4), *out = malloc((size_t)max_tokens * fx.C * 4);
    assert_true(ids && zeros && alone && out);
    int32_t probe[37];
    for (int i = 0; i < probe_len; i++) probe[i] = 1000 + (int32_t)(rng() % 29000);
    probe[0] = 101, probe[probe_len - 1] = 102;
    int32_t plen = probe_len;
    phrex_set_threads(1);
    forward_ok(enc, probe, zeros, &plen, 1, alone);
    float worst = 0.0f;
    for (int trial = 0; trial < 6; trial++) {
        phrex_set_threads(1 + trial % 2);
        int n = 0, t = 0, at = -1, probe_at = (int)(rng() % (trial < 3 ? 20 : 4));
        while (t + probe_len + 512 < max_tokens && n < 60) {
            if (n == probe_at) {
                at = t;
                lens[n] = probe_len;
                memcpy(ids + t, probe, sizeof probe);
            } else {
                lens[n] = 1 + (int32_t)(rng() % (trial < 3 ? 40 : 300));
                for (int i = 0; i < lens[n]; i++) ids[t + i] = (int32_t)(rng() % 30522);
            }
            t += lens[n++];
        }
        if (at < 0) { // drew a slot past the last neighbour: append the probe
            at = t;
            lens[n++] = probe_len;
            memcpy(ids + t, probe, sizeof probe);
        }
        forward_ok(enc, ids, trial % 2 ? NULL : zeros, lens, n, out);
        float d = max_abs_diff(out + (size_t)at * fx.C, alone, (size_t)probe_len * fx.C);
        if (!(d <= worst)) worst = d;
    }
    printf("  probe among neighbours vs alone: %.2e\n", worst);
    assert_true(worst <= CONSISTENT_TOL);
    free(ids);
    free(zeros);
    free(alone);
    free(out);
    phrex_encoder_free(enc);
}

// --- input checks ----------------------------------------------------------------

static void expect_input_error(phrex_encoder *enc, const int32_t *ids, const int32_t *types, const int32_t *lens,
                               int n, float *out, const char *needle) {
    phrex_clear_error();
    assert_int_equal(phrex_encoder_forward(enc, ids, types, lens, n, out), PHREX_ERR_INPUT);
    if (!strstr(phrex_last_error(), needle)) fail_msg("message '%s' lacks '%s'", phrex_last_error(), needle);
}

static void test_forward_rejects_bad_input(void **state) {
    (void)state;
    phrex_encoder *enc = new_encoder(600);
    int32_t ids[600] = {101, 7592, 102}, types[3] = {0, 2, 0};
    float *out = malloc(600 * 384 * sizeof *out);
    assert_non_null(out);
    int32_t len3 = 3, len0 = 0, len513 = 513, two[2] = {300, 300}, three[3] = {300, 299, 2};
    expect_input_error(enc, ids, NULL, &len0, 1, out, "sequence 0 has 0 tokens");
    expect_input_error(enc, ids, NULL, &len513, 1, out, "max_position_embeddings");
    expect_input_error(enc, ids, NULL, three, 3, out, "601 tokens");
    expect_input_error(enc, ids, types, &len3, 1, out, "type id 2");
    ids[1] = 30522;
    expect_input_error(enc, ids, NULL, &len3, 1, out, "token 1 has id 30522");
    ids[1] = -1;
    expect_input_error(enc, ids, NULL, &len3, 1, out, "token 1 has id -1");
    expect_input_error(enc, ids, NULL, &len3, -1, out, "n_seqs is -1");
    expect_input_error(enc, NULL, NULL, &len3, 1, out, "NULL");
    ids[1] = 7592;
    assert_int_equal(phrex_encoder_forward(enc, ids, NULL, two, 2, out), PHREX_OK); // exactly full
    assert_int_equal(phrex_encoder_forward(enc, ids, NULL, two, 0, out), PHREX_OK); // nothing to do
    free(out);
    phrex_encoder_free(enc);
}

static void test_init_errors_name_the_file(void **state) {
    (void)state;
    phrex_bert *m = NULL;
    assert_int_equal(phrex_bert_init(&m, "/nonexistent-phrex-model"), PHREX_ERR_IO);
    assert_null(m);
    assert_non_null(strstr(phrex_last_error(), "/nonexistent-phrex-model/config.json"));
    phrex_encoder *enc = NULL;
    assert_int_equal(phrex_encoder_init(&enc, model, 0), PHREX_ERR_INPUT);
    assert_null(enc);
    const phrex_bert_config *c = phrex_bert_get_config(model);
    assert_int_equal(c->hidden_size, 384);
    assert_int_equal(c->num_hidden_layers, 6);
    assert_int_equal(c->head_dim, 32);
}

// --- kernels ---------------------------------------------------------------------

static double gelu_ref(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

// 200,001 points on [-10, 10] (odd count: the vector loops' tails run too).
static void test_kernel_gelu_exp_accuracy(void **state) {
    (void)state;
    const size_t n = 200001;
    float *x = malloc(n * 4), *y = malloc(n * 4);
    assert_true(x && y);
    for (size_t i = 0; i < n; i++) x[i] = -10.0f + 20.0f * (float)i / (float)(n - 1);
    phrex_gelu_forward(y, x, n);
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double ref = gelu_ref(x[i]), err = fabs(y[i] - ref);
        // 1e-7 absolute, plus the float spacing of the result itself.
        double excess = err - (1e-7 + fabs(ref) * 0x1p-24);
        if (excess > worst) worst = excess;
        if (excess > 0) fail_msg("gelu(%.9g) = %.9g, reference %.9g", x[i], y[i], ref);
    }
    for (size_t i = 0; i < n; i++) x[i] = -100.0f + 188.0f * (float)i / (float)(n - 1);
    phrex_exp_forward(y, x, n);
    double worst_rel = 0.0;
    for (size_t i = 0; i < n; i++) {
        double ref = exp((double)x[i]);
        if (x[i] < -86.9f) {
            assert_true(y[i] == 0.0f);
            continue;
        }
        double rel = fabs(y[i] - ref) / ref;
        if (rel > worst_rel) worst_rel = rel;
    }
    printf("  gelu within bound; exp worst relative error %.2e\n", worst_rel);
    assert_true(worst_rel < 3e-7);
    free(x);
    free(y);
}

static void test_kernel_softmax_layernorm(void **state) {
    (void)state;
    enum { N = 5, D = 77, LD = 80 };
    float x[N * LD], ln[N * D], r[N * D], g[D], b[D], mean[N], rstd[N];
    for (int i = 0; i < N * LD; i++) x[i] = (float)(rng() % 20000) / 1000.0f - 10.0f;
    for (int i = 0; i < N * D; i++) ln[i] = x[i], r[i] = (float)(rng() % 1000) / 500.0f;
    for (int j = 0; j < D; j++) g[j] = 0.5f + (float)j / D, b[j] = (float)j / 100.0f;
    float orig[N * LD];
    memcpy(orig, x, sizeof x);
    phrex_softmax_forward(x, N, D, LD, 0.5f);
    for (int i = 0; i < N; i++) {
        double m = -1e30, s = 0;
        for (int j = 0; j < D; j++) m = fmax(m, 0.5 * orig[i * LD + j]);
        for (int j = 0; j < D; j++) s += exp(0.5 * orig[i * LD + j] - m);
        for (int j = 0; j < D; j++) assert_true(fabs(x[i * LD + j] - exp(0.5 * orig[i * LD + j] - m) / s) < 1e-7);
        for (int j = D; j < LD; j++) assert_true(x[i * LD + j] == orig[i * LD + j]); // padding untouched
    }
    float out[N * D];
    phrex_add_layernorm_forward(out, ln, r, g, b, N, D, 1e-12f, mean, rstd);
    for (int i = 0; i < N; i++) {
        double mu = 0, var = 0;
        for (int j = 0; j < D; j++) mu += (double)ln[i * D + j] + r[i * D + j];
        mu /= D;
        for (int j = 0; j < D; j++) var += pow(ln[i * D + j] + r[i * D + j] - mu, 2);
        double rs = 1.0 / sqrt(var / D + 1e-12);
        assert_true(fabs(mean[i] - mu) < 1e-5 && fabs(rstd[i] - rs) < 1e-5 * rs);
        for (int j = 0; j < D; j++)
            assert_true(fabs(out[i * D + j] - ((ln[i * D + j] + r[i * D + j] - mu) * rs * g[j] + b[j])) < 1e-5);
    }
    // In place over x, as the forward pass calls it.
    phrex_add_layernorm_forward(ln, ln, r, g, b, N, D, 1e-12f, NULL, NULL);
    assert_true(max_abs_diff(ln, out, N * D) == 0.0f);
}

// The packed-panel kernel (every tile height 1..12, a last panel of 1..31
// valid rows, all three epilogues) and the OpenBLAS path, against double
// sums; and a slice of a packed matrix against the same slice unpacked.
static void test_kernel_linear(void **state) {
    (void)state;
    enum { ROWS = 75, COLS = 67, N = 29, LDX = 70, LDY = 80 };
    float *w = malloc(ROWS * COLS * 4), *x = malloc(N * LDX * 4), *bias = malloc(ROWS * 4);
    float *packed = aligned_alloc(64, phrex_matrix_panels_floats(ROWS, COLS) * 4);
    float *y = malloc(N * LDY * 4), *y0 = malloc(N * LDY * 4);
    double *ref = malloc(N * ROWS * sizeof *ref);
    assert_true(w && x && bias && packed && y && y0 && ref);
    for (int i = 0; i < ROWS * COLS; i++) w[i] = (float)((int)(rng() % 2001) - 1000) / 1000.0f;
    for (int i = 0; i < N * LDX; i++) x[i] = (float)((int)(rng() % 2001) - 1000) / 500.0f;
    for (int i = 0; i < ROWS; i++) bias[i] = (float)i / 50.0f - 0.7f;
    for (int i = 0; i < N * LDY; i++) y0[i] = (float)(i % 7) - 3.0f;
    for (int r = 0; r < N; r++)
        for (int o = 0; o < ROWS; o++) {
            double acc = 0;
            for (int k = 0; k < COLS; k++) acc += (double)x[r * LDX + k] * w[o * COLS + k];
            ref[r * ROWS + o] = acc;
        }
    phrex_matrix mats[2] = {phrex_matrix_f32(w, ROWS, COLS), phrex_matrix_pack_panels(packed, w, ROWS, COLS, COLS)};
    for (int threads = 1; threads <= 2; threads++) {
        phrex_set_threads(threads);
        for (int m = 0; m < 2; m++)
            for (int epi = 0; epi < 3; epi++)
                for (int n = 1; n <= N; n += (n < 14 ? 1 : 7)) {
                    memcpy(y, y0, N * LDY * 4);
                    if (epi == 0) phrex_linear_forward(y, LDY, x, LDX, n, &mats[m], bias);
                    if (epi == 1) phrex_linear_forward_acc(y, LDY, x, LDX, n, &mats[m]);
                    if (epi == 2) phrex_linear_gelu_forward(y, LDY, x, LDX, n, &mats[m], bias);
                    for (int r = 0; r < N; r++)
                        for (int o = 0; o < LDY; o++) {
                            float got = y[r * LDY + o];
                            if (r >= n || o >= ROWS) { // outside the output: untouched
                                assert_true(got == y0[r * LDY + o]);
                                continue;
                            }
                            double want = ref[r * ROWS + o];
                            if (epi == 0) want += bias[o];
                            if (epi == 1) want += y0[r * LDY + o];
                            if (epi == 2) want = gelu_ref(want + bias[o]);
                            if (fabs(got - want) > 1e-4)
                                fail_msg("matrix %d epilogue %d n %d: y[%d][%d] = %g, want %g", m, epi, n, r, o, got,
                                         want);
                        }
                }
    }
    // Rows 32..63 and columns 5..40 of the packed matrix.
    phrex_matrix sub = phrex_matrix_slice(&mats[1], 32, 32, 5, 36);
    phrex_linear_forward(y, LDY, x, LDX, N, &sub, NULL);
    for (int r = 0; r < N; r++)
        for (int o = 0; o < 32; o++) {
            double want = 0;
            for (int k = 5; k < 41; k++) want += (double)x[r * LDX + k - 5] * w[(32 + o) * COLS + k];
            assert_true(fabs(y[r * LDY + o] - want) < 1e-4);
        }
    free(w), free(x), free(bias), free(packed), free(y), free(y0), free(ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_gelu_exp_accuracy),
        cmocka_unit_test(test_kernel_softmax_layernorm),
        cmocka_unit_test(test_kernel_linear),
        cmocka_unit_test(test_init_errors_name_the_file),
        cmocka_unit_test(test_forward_rejects_bad_input),
        cmocka_unit_test(test_parity_packed),
        cmocka_unit_test(test_parity_one_by_one),
        cmocka_unit_test(test_parity_regrouped),
        cmocka_unit_test(test_batch_independence),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
