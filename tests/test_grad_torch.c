// The training BERT's gradients against PyTorch's, on the real MiniLM
// weights and real text (tests/fixtures/grad_parity.bin, written by
// tools/make_grad_fixture.py): the same scalar loss, Σ H ⊙ R over the last
// hidden states H of four packed sequences with R regenerated here from
// the fixture's splitmix64 seed, and its gradients at every stored element
// (all biases and LayerNorm parameters, 256 samples of every matrix, four
// word-embedding rows).
//
// Tolerances. Both sides are f32 with different summation orders (OpenBLAS
// vs MKL/oneDNN blocking, our two-pass LayerNorm vs PyTorch's Welford), so
// every value carries ~1e-7 relative noise per operation, compounded over 6
// layers forward and back. Measured: relative L2 errors of 2e-7..3.4e-6 per
// tensor. Held to 1e-4 relative L2 per tensor and 1e-3 of the tensor's
// largest element at worst, the thresholds of the finite-difference tests;
// a wrong term (e.g. a missed 1/√D, or LayerNorm's x̂ term) is off by O(1).
// The loss is a sum of N·C terms of both signs; it is held to 1e-6 of Σ|H·R|.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "tests/support/test_support.h"

#include "common/error.h"
#include "encoder/train_bert.h"
#include "encoder/train_rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE PHREX_SOURCE_DIR "/tests/fixtures/grad_parity.bin"
#define TOL_L2 1e-4
#define TOL_MAX 1e-3
#define TOL_LOSS 1e-6

typedef struct {
    const char *name; // not NUL-terminated in the file: copied
    char name_buf[PHREX_PARAM_NAME_MAX];
    uint32_t numel, count;
    const unsigned char *index; // u32[count], unaligned (names have any length): read with u32_at
    const unsigned char *grad;  // f32[count], likewise: read with f32_at
} fx_tensor;

static struct {
    unsigned char *bytes;
    int n_seqs, n_tensors, C;
    uint64_t seed;
    double loss;
    int32_t *ids, *types, *lens;
    int n_tokens;
    fx_tensor *tensors;
} fx;

static uint64_t fnv1a64(const unsigned char *p, size_t n) { return test_hash_bytes(0xcbf29ce484222325ull, p, n); }

static uint32_t u32_at(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static float f32_at(const unsigned char *p) {
    uint32_t u = u32_at(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// Walks the body; every count is checked against what is left.
static int parse_body(const unsigned char *p, size_t left) {
    fx.ids = malloc(left), fx.types = malloc(left), fx.lens = calloc((size_t)fx.n_seqs, 4);
    for (int s = 0; s < fx.n_seqs; s++) {
        if (left < 4) return 0;
        uint32_t L = u32_at(p);
        if (L < 1 || L > 512 || left < 4 + 8 * (size_t)L) return 0;
        memcpy(fx.ids + fx.n_tokens, p + 4, 4 * L);
        memcpy(fx.types + fx.n_tokens, p + 4 + 4 * L, 4 * L);
        fx.lens[s] = (int32_t)L;
        fx.n_tokens += (int)L;
        p += 4 + 8 * L, left -= 4 + 8 * L;
    }
    fx.tensors = calloc((size_t)fx.n_tensors, sizeof *fx.tensors);
    for (int i = 0; i < fx.n_tensors; i++) {
        fx_tensor *t = &fx.tensors[i];
        if (left < 4) return 0;
        uint32_t nl = u32_at(p);
        if (nl == 0 || nl >= sizeof t->name_buf || left < 4 + nl + 8) return 0;
        memcpy(t->name_buf, p + 4, nl);
        t->name = t->name_buf;
        p += 4 + nl, left -= 4 + nl;
        t->numel = u32_at(p), t->count = u32_at(p + 4);
        p += 8, left -= 8;
        if (left < 8 * (size_t)t->count) return 0;
        t->index = p;
        t->grad = p + 4 * (size_t)t->count;
        p += 8 * (size_t)t->count, left -= 8 * (size_t)t->count;
    }
    return left == 0;
}

static void load_fixture(void) {
    size_t n;
    fx.bytes = test_read_fixture(FIXTURE, "tools/make_grad_fixture.py", &n);
    long size = (long)n;
    const unsigned char *h = fx.bytes;
    if (size < 48 || memcmp(h, "PHXGRADF", 8) != 0 || u32_at(h + 8) != 1)
        fail_msg("%s: not a version 1 gradient fixture", FIXTURE);
    fx.n_seqs = (int)u32_at(h + 12), fx.n_tensors = (int)u32_at(h + 16), fx.C = (int)u32_at(h + 20);
    memcpy(&fx.seed, h + 24, 8);
    memcpy(&fx.loss, h + 32, 8);
    uint64_t sum;
    memcpy(&sum, h + 40, 8);
    if (fnv1a64(h + 48, (size_t)size - 48) != sum) fail_msg("%s: checksum mismatch", FIXTURE);
    if (fx.n_seqs < 1 || fx.n_seqs > 64 || fx.n_tensors < 1 || fx.n_tensors > 1000 || fx.C != 384)
        fail_msg("%s: implausible header", FIXTURE);
    if (!parse_body(h + 48, (size_t)size - 48)) fail_msg("%s: body does not match its header", FIXTURE);
}

static void test_parity(void **state) {
    (void)state;
    load_fixture();
    phrex_train_bert *m;
    if (phrex_train_bert_init(&m, PHREX_BASE_MODEL_DIR, NULL) != PHREX_OK) fail_msg("%s", phrex_last_error());
    phrex_train_encoder *e;
    assert_int_equal(phrex_train_encoder_init(&e, m, fx.n_tokens, 128), PHREX_OK);
    const float *out;
    if (phrex_train_encoder_forward(e, fx.ids, fx.types, fx.lens, fx.n_seqs, &out) != PHREX_OK)
        fail_msg("%s", phrex_last_error());
    size_t n = (size_t)fx.n_tokens * fx.C;
    float *proj = malloc(n * sizeof *proj);
    phrex_rng rng = phrex_rng_init(fx.seed);
    double loss = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        proj[i] = phrex_rng_symmetric(&rng);
        loss += (double)out[i] * proj[i];
        scale += fabs((double)out[i] * proj[i]);
    }
    printf("  loss %.6f (PyTorch %.6f), |diff| / sum|terms| = %.2e\n", loss, fx.loss, fabs(loss - fx.loss) / scale);
    if (!(fabs(loss - fx.loss) <= TOL_LOSS * scale)) fail_msg("loss %.6f, PyTorch's %.6f", loss, fx.loss);
    assert_int_equal(phrex_train_encoder_backward(e, proj), PHREX_OK);
    double worst = 0;
    for (int i = 0; i < fx.n_tensors; i++) {
        const fx_tensor *t = &fx.tensors[i];
        const phrex_param_tensor *pt = phrex_train_bert_find(m, t->name);
        if (!pt) fail_msg("fixture tensor %s is not in the model", t->name);
        assert_int_equal(pt->numel, t->numel);
        const float *g = phrex_train_bert_grad_of(m, pt);
        double d2 = 0, r2 = 0, dmax = 0, rmax = 0;
        for (uint32_t k = 0; k < t->count; k++) {
            uint32_t at = u32_at(t->index + 4 * (size_t)k);
            assert_true(at < t->numel);
            double a = g[at], r = f32_at(t->grad + 4 * (size_t)k), d = fabs(a - r);
            d2 += d * d, r2 += r * r;
            dmax = fmax(dmax, d), rmax = fmax(rmax, fabs(r));
        }
        double rel_l2 = sqrt(d2 / (r2 > 0 ? r2 : 1)), rel_max = dmax / (rmax > 0 ? rmax : 1);
        worst = fmax(worst, rel_l2);
        printf("  %-52s n=%-5u rel_l2 %.2e  rel_max %.2e\n", t->name, t->count, rel_l2, rel_max);
        if (!(rel_l2 <= TOL_L2 && rel_max <= TOL_MAX))
            fail_msg("%s: gradient differs from PyTorch's: relative L2 %.3e (limit %.0e), max %.3e (limit %.0e)",
                     t->name, rel_l2, TOL_L2, rel_max, TOL_MAX);
    }
    printf("  worst relative L2 error over %d tensors: %.2e\n", fx.n_tensors, worst);
    free(proj);
    phrex_train_encoder_free(e);
    phrex_train_bert_free(m);
    free(fx.ids), free(fx.types), free(fx.lens), free(fx.tensors), free(fx.bytes);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_parity)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
