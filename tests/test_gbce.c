// gBCE (rerank/gbce.h): the loss against a naive double-precision
// transcription of the paper's formula, its gradient against central finite
// differences of that transcription, β against the closed form and the
// paper's worked value, and stability at scores where a naive
// log(σ(x)) over/underflows.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "encoder/train_rng.h"
#include "rerank/gbce.h"

#include <math.h>
#include <stdio.h>

// The formula as written: −[β·log σ(s⁺) + Σ log(1 − σ(sᵢ))] / (n + 1), no
// rewriting. Fine in double for |s| < 30.
static double naive_loss(const double *s, int n, double beta) {
    double sum = beta * log(1.0 / (1.0 + exp(-s[0])));
    for (int i = 1; i <= n; i++) sum += log(1.0 - 1.0 / (1.0 + exp(-s[i])));
    return -sum / (n + 1);
}

static void test_beta(void **state) {
    (void)state;
    // The paper's example: 128 negatives of 1000 BM25 candidates, t = 0.75.
    double b = phrex_gbce_beta(128, 1000, 0.75);
    printf("beta(128 of 1000, t 0.75) = %.6f\n", b);
    assert_true(fabs(b - 0.346) < 5e-4);
    assert_true(fabs(b - 0.35) < 0.01);
    // t = 0: plain BCE; t = 1: β = α; all negatives of the pool: β = 1.
    assert_true(phrex_gbce_beta(8, 100, 0.0) == 1.0);
    assert_true(fabs(phrex_gbce_beta(8, 100, 1.0) - 0.08) < 1e-12);
    assert_true(fabs(phrex_gbce_beta(100, 100, 0.75) - 1.0) < 1e-12);
    // The closed form α(t(1 − 1/α) + 1/α) over a grid.
    for (int n = 1; n <= 64; n *= 2)
        for (double t = 0; t <= 1.0; t += 0.25) {
            double a = n / 200.0, want = a * (t * (1 - 1 / a) + 1 / a);
            assert_true(fabs(phrex_gbce_beta(n, 200, t) - want) < 1e-12);
        }
    // Out of range: NaN, never a plausible number.
    assert_true(isnan(phrex_gbce_beta(0, 100, 0.75)));
    assert_true(isnan(phrex_gbce_beta(101, 100, 0.75)));
    assert_true(isnan(phrex_gbce_beta(8, 100, 1.5)));
    assert_true(isnan(phrex_gbce_beta(8, 100, -0.1)));
}

// Loss equals the transcription; gradient equals its central differences.
static void test_loss_and_gradient(void **state) {
    (void)state;
    phrex_rng r = phrex_rng_init(6);
    const int sizes[] = {0, 1, 8, 32};
    for (int k = 0; k < 4; k++) {
        int n = sizes[k];
        for (int trial = 0; trial < 5; trial++) {
            float s[33], g[33];
            double sd[33];
            for (int i = 0; i <= n; i++) s[i] = 8.0f * phrex_rng_symmetric(&r), sd[i] = s[i];
            double beta = n ? phrex_gbce_beta(n, 100, 0.75) : 1.0;
            float L = phrex_gbce_loss(s, n, (float)beta, g);
            double want = naive_loss(sd, n, (float)beta);
            assert_true(fabs(L - want) <= 1e-6 * fabs(want) + 1e-7);
            double worst = 0;
            for (int i = 0; i <= n; i++) {
                const double h = 1e-5;
                double keep = sd[i];
                sd[i] = keep + h;
                double up = naive_loss(sd, n, (float)beta);
                sd[i] = keep - h;
                double down = naive_loss(sd, n, (float)beta);
                sd[i] = keep;
                double num = (up - down) / (2 * h), err = fabs(g[i] - num);
                if (err > worst) worst = err;
                assert_true(err <= 1e-6 + 1e-5 * fabs(num));
            }
            if (trial == 0) printf("n %d: loss %.6f, worst |grad - fd| %.2e\n", n, L, worst);
        }
    }
}

// t = 0 is the mean of the per-pair binary cross-entropies.
static void test_bce_special_case(void **state) {
    (void)state;
    float s[4] = {1.5f, -0.5f, 0.25f, 3.0f};
    double want = (log1p(exp(-1.5)) + log1p(exp(-0.5)) + log1p(exp(0.25)) + log1p(exp(3.0))) / 4;
    float L = phrex_gbce_loss(s, 3, (float)phrex_gbce_beta(3, 50, 0.0), NULL);
    assert_true(fabs(L - want) < 1e-6);
}

// Scores of ±1000: a naive log σ gives inf or NaN; the softplus form gives
// the exact limits (loss ≈ the margin, gradients 0 or ±1/(n+1)).
static void test_extreme_scores(void **state) {
    (void)state;
    float s[3] = {-1000.0f, 1000.0f, -1000.0f}, g[3];
    float L = phrex_gbce_loss(s, 2, 0.5f, g);
    assert_true(isfinite(L));
    assert_true(fabs(L - (0.5 * 1000 + 1000) / 3.0) < 1e-3);
    assert_true(fabs(g[0] + 0.5f / 3) < 1e-7 && fabs(g[1] - 1.0f / 3) < 1e-7 && fabs(g[2]) < 1e-7);
    float good[2] = {1000.0f, -1000.0f};
    L = phrex_gbce_loss(good, 1, 1.0f, g);
    assert_true(L >= 0 && L < 1e-30);
    assert_true(fabs(phrex_gbce_softplus(-800.0)) < 1e-300 && phrex_gbce_softplus(800.0) == 800.0);
    float nan_score[2] = {NAN, 0.0f};
    assert_true(isnan(phrex_gbce_loss(nan_score, 1, 1.0f, NULL)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_beta),
        cmocka_unit_test(test_loss_and_gradient),
        cmocka_unit_test(test_bce_special_case),
        cmocka_unit_test(test_extreme_scores),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
