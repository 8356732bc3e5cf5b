// The latency budget (rerank/budget.h) and the combine rule
// (rerank/combine.h), with a synthetic reranker cost so that every answer is
// known in advance:
// - measuring: the paper's grid up to max_k, the ceiling that stops it;
// - choosing k: the largest k that fits, never decreasing as the budget
//   grows even when measured costs are noisy; a budget <= 0 is an error;
// - the calibration file: saved, reused while the key matches, measured
//   again for another reranker hash, thread count, CPU or workload, another
//   format version, a wrong checksum, or a larger max_k;
// - combining: retrieval + w * cross-encoder, stable ranks, weight tuning
//   and the weight read from a reranker folder.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "rerank/budget.h"
#include "rerank/combine.h"
#include "tests/support/test_support.h"

static char tmp_dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/phrex-test-budget-XXXXXX");
    return test_make_tmpdir(tmp_dir);
}

static int teardown(void **state) {
    (void)state;
    return test_remove_tree(tmp_dir);
}

// A reranker whose call on k pairs takes fixed + per_pair * k ms, with
// `noise` added on every third call; counts its calls.
typedef struct {
    double fixed, per_pair, noise;
    int calls;
} fake_cost;

static int fake_measure(void *ctx, int k, double *ms) {
    fake_cost *c = ctx;
    c->calls++;
    *ms = c->fixed + c->per_pair * k + (c->calls % 3 == 0 ? c->noise : 0);
    return PHREX_OK;
}

static int failing_measure(void *ctx, int k, double *ms) {
    (void)ctx, (void)k, (void)ms;
    return phrex_fail(PHREX_ERR_INTERNAL, "forward failed");
}

static void make_key(phrex_budget_key *key, uint64_t hash, int threads) {
    phrex_budget_key_fill(key, hash, threads, 256, "test");
}

static void test_measure_and_choose(void **state) {
    (void)state;
    fake_cost cost = {0.5, 0.2, 0, 0};
    phrex_budget_key key;
    make_key(&key, 0x1234, 2);
    assert_true(key.cpu[0] != '\0');
    phrex_budget_calibration cal;
    assert_int_equal(phrex_budget_measure(&cal, &key, fake_measure, &cost, 100, 0), PHREX_OK);
    assert_int_equal(cal.n, 11); // 1 .. 100 on the grid
    assert_int_equal(cal.k[10], 100);
    assert_true(fabs(cal.mean_ms[5] - (0.5 + 0.2 * 10)) < 1e-9);
    assert_true(cost.calls >= 11 * 6); // warm-up + at least 5 timed calls per point

    // 2 ms of encode + search leave 8 ms: 0.5 + 0.2 k <= 8 -> k = 37 (between
    // grid points 25 and 40: the interpolation is exact for a linear cost).
    int k;
    assert_int_equal(phrex_budget_choose_k(&cal, 10, 2, 100, &k), PHREX_OK);
    assert_int_equal(k, 37);
    assert_int_equal(phrex_budget_choose_k(&cal, 10, 2, 20, &k), PHREX_OK); // capped by max_k
    assert_int_equal(k, 20);
    assert_int_equal(phrex_budget_choose_k(&cal, 1000, 2, 100, &k), PHREX_OK);
    assert_int_equal(k, 100);
    assert_int_equal(phrex_budget_choose_k(&cal, 2.6, 2, 100, &k), PHREX_OK); // not even one pair
    assert_int_equal(k, 0);
    // Budgets <= 0 (or not a number) are errors.
    assert_int_equal(phrex_budget_choose_k(&cal, 0, 2, 100, &k), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "budget"));
    assert_int_equal(phrex_budget_choose_k(&cal, -5, 2, 100, &k), PHREX_ERR_INPUT);
    assert_int_equal(phrex_budget_choose_k(&cal, NAN, 2, 100, &k), PHREX_ERR_INPUT);
    assert_int_equal(phrex_budget_choose_k(&cal, 10, -1, 100, &k), PHREX_ERR_INPUT);

    // The ceiling stops measuring once a point's mean passes it.
    cost.calls = 0;
    assert_int_equal(phrex_budget_measure(&cal, &key, fake_measure, &cost, 1000, 5.0), PHREX_OK);
    assert_int_equal(cal.k[cal.n - 1], 25); // 0.5 + 0.2 * 25 = 5.5 > 5: the last one measured
    assert_int_equal(phrex_budget_measure(&cal, &key, failing_measure, NULL, 10, 0), PHREX_ERR_INTERNAL);
    assert_non_null(strstr(phrex_last_error(), "forward failed"));
}

static void test_monotone_with_noise(void **state) {
    (void)state;
    // A noisy calibration where a larger k measured cheaper than a smaller one.
    phrex_budget_calibration cal = {.n = 5, .k = {1, 2, 3, 4, 6}, .p95_ms = {1.0, 3.0, 2.0, 4.0, 3.5}, .max_k = 6};
    for (int k = 2; k <= 10; k++)
        assert_true(phrex_budget_predict_p95(&cal, k) >= phrex_budget_predict_p95(&cal, k - 1));
    int prev = 0;
    for (double b = 0.5; b < 30; b += 0.25) {
        int k;
        assert_int_equal(phrex_budget_choose_k(&cal, b, 0.5, 10, &k), PHREX_OK);
        assert_true(k >= prev);
        assert_true(k == 0 || 0.5 + phrex_budget_predict_p95(&cal, k) <= b);
        assert_true(k == 10 || 0.5 + phrex_budget_predict_p95(&cal, k + 1) > b);
        prev = k;
    }
    assert_int_equal(prev, 10);
    double sorted[] = {1, 2, 3, 4, 5};
    assert_true(fabs(phrex_budget_percentile(sorted, 5, 95) - 4.8) < 1e-12);
    assert_true(phrex_budget_percentile(sorted, 0, 95) == 0);
}

// Replaces the first `from` in the file at path by `to`.
static void edit_file(const char *path, const char *from, const char *to) {
    char *text = test_load_file(path, NULL);
    char *at = strstr(text, from);
    assert_non_null(at);
    size_t n = strlen(text) + strlen(to) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    test_write_string(path, out);
    free(out);
    free(text);
}

static void test_calibration_file(void **state) {
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/cache/sub/cal.json", tmp_dir); // folders created on save
    fake_cost cost = {0.3, 0.1, 0.05, 0};
    phrex_budget_key key;
    make_key(&key, 0xabcdef, 1);
    phrex_budget_calibration cal, again;
    int measured;
    assert_int_equal(phrex_budget_calibrate(path, &key, fake_measure, &cost, 63, &cal, &measured), PHREX_OK);
    assert_int_equal(measured, 1);
    int calls = cost.calls;
    // Same key: read back, nothing measured, same numbers (to 6 decimals).
    assert_int_equal(phrex_budget_calibrate(path, &key, fake_measure, &cost, 63, &again, &measured), PHREX_OK);
    assert_int_equal(measured, 0);
    assert_int_equal(cost.calls, calls);
    assert_int_equal(again.n, cal.n);
    for (int i = 0; i < cal.n; i++) assert_true(fabs(again.p95_ms[i] - cal.p95_ms[i]) < 1e-6);
    // A smaller max_k is covered too.
    assert_int_equal(phrex_budget_calibrate(path, &key, fake_measure, &cost, 10, &again, &measured), PHREX_OK);
    assert_int_equal(measured, 0);

    // Each part of the key forces a new measurement.
    phrex_budget_key other = key;
    other.reranker_hash ^= 1;
    assert_int_equal(phrex_budget_calibrate(path, &other, fake_measure, &cost, 63, &again, &measured), PHREX_OK);
    assert_int_equal(measured, 1);
    assert_true(again.key.reranker_hash == other.reranker_hash);
    other = key;
    other.threads = 2;
    assert_int_equal(phrex_budget_calibrate(path, &other, fake_measure, &cost, 63, &again, &measured), PHREX_OK);
    assert_int_equal(measured, 1);
    snprintf(other.cpu, sizeof other.cpu, "another cpu");
    assert_int_equal(phrex_budget_calibrate(path, &other, fake_measure, &cost, 63, &again, &measured), PHREX_OK);
    assert_int_equal(measured, 1);
    // Back to `key`: measured again (the file now holds `other`), then reused.
    assert_int_equal(phrex_budget_calibrate(path, &key, fake_measure, &cost, 63, &again, &measured), PHREX_OK);
    assert_int_equal(measured, 1);
    // A larger max_k than measured is measured again.
    assert_int_equal(phrex_budget_calibrate(path, &key, fake_measure, &cost, 100, &again, &measured), PHREX_OK);
    assert_int_equal(measured, 1);
    assert_int_equal(again.k[again.n - 1], 100);

    // Another format version: the loader says so; calibrate measures again.
    edit_file(path, "\"version\": 1", "\"version\": 2");
    assert_int_equal(phrex_budget_load(path, &again), PHREX_ERR_MISMATCH);
    assert_non_null(strstr(phrex_last_error(), "version"));
    assert_int_equal(phrex_budget_calibrate(path, &key, fake_measure, &cost, 100, &again, &measured), PHREX_OK);
    assert_int_equal(measured, 1);
    // A value edited by hand breaks the checksum.
    edit_file(path, "\"mean_ms\": ", "\"mean_ms\": 9");
    assert_int_equal(phrex_budget_load(path, &again), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "checksum"));
    assert_int_equal(phrex_budget_calibrate(path, &key, fake_measure, &cost, 100, &again, &measured), PHREX_OK);
    assert_int_equal(measured, 1);
    // Not JSON, missing.
    test_write_string(path, "{\"format\": ");
    assert_int_equal(phrex_budget_load(path, &again), PHREX_ERR_FORMAT);
    assert_int_equal(phrex_budget_load("/nonexistent/cal.json", &again), PHREX_ERR_IO);

    // The default path is keyed by hash, threads and workload.
    char dflt[4096];
    setenv("PHREX_CALIBRATION_DIR", tmp_dir, 1);
    assert_int_equal(phrex_budget_default_path(dflt, sizeof dflt, &key), PHREX_OK);
    assert_non_null(strstr(dflt, tmp_dir));
    assert_non_null(strstr(dflt, "0000000000abcdef-t1-test.json"));
    unsetenv("PHREX_CALIBRATION_DIR");
}

static void test_combine(void **state) {
    (void)state;
    // Retrieval order 0,1,2,3; the cross-encoder prefers 2, then 3.
    const float ret[] = {10, 9, 8, 8}, ce[] = {0, 0, 3, 1};
    int order[4];
    phrex_combine_rank(ret, ce, 4, 0.0f, order); // w = 0: retrieval order, ties stable
    for (int i = 0; i < 4; i++) assert_int_equal(order[i], i);
    phrex_combine_rank(ret, ce, 4, 1.0f, order); // 10, 9, 11, 9
    assert_int_equal(order[0], 2);
    assert_int_equal(order[1], 0);
    assert_int_equal(order[2], 1); // 9 vs 9: retrieval order
    assert_int_equal(order[3], 3);

    // Two questions: q0 right at candidate 1 (needs w > 0.5 to win: at 0.5
    // the tie goes to retrieval order), q1 right at candidate 0 (lost once
    // w > 2).
    const float r2[] = {5, 4, 6, 5.5f}, c2[] = {0, 2, 0, 0.25f};
    const unsigned char ok[] = {0, 1, 1, 0};
    const size_t off[] = {0, 2, 4};
    phrex_combine_set set = {r2, c2, ok, off, 2};
    assert_true(phrex_combine_accuracy(&set, 0) == 0.5);
    assert_true(phrex_combine_accuracy(&set, 1) == 1.0);
    assert_true(phrex_combine_accuracy(&set, 4) == 0.5);
    float w;
    double acc;
    assert_int_equal(phrex_combine_tune(&set, phrex_combine_grid, PHREX_COMBINE_GRID_LEN, &w, &acc), PHREX_OK);
    assert_true(phrex_combine_accuracy(&set, 0.5f) == 0.5);
    assert_true(w == 1.0f); // the first (smallest) weight reaching 1.0
    assert_true(acc == 1.0);
    assert_int_equal(phrex_combine_tune(&set, phrex_combine_grid, 0, &w, &acc), PHREX_ERR_INPUT);

    // The weight in a reranker folder's json.
    char dir[256];
    snprintf(dir, sizeof dir, "%s/rr", tmp_dir);
    int found;
    w = -1;
    test_write_text(tmp_dir, "rr/phrex_reranker.json", "{\"format\": \"phrex-reranker\", \"rerank_weight\": 2.5}");
    assert_int_equal(phrex_combine_read_weight(dir, &w, &found), PHREX_OK);
    assert_int_equal(found, 1);
    assert_true(w == 2.5f);
    test_write_text(tmp_dir, "rr/phrex_reranker.json", "{\"format\": \"phrex-reranker\"}");
    assert_int_equal(phrex_combine_read_weight(dir, &w, &found), PHREX_OK);
    assert_int_equal(found, 0);
    test_write_text(tmp_dir, "rr/phrex_reranker.json", "{\"rerank_weight\": -1}");
    assert_int_equal(phrex_combine_read_weight(dir, &w, &found), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "rerank_weight"));
    assert_int_equal(phrex_combine_read_weight("/nonexistent", &w, &found), PHREX_ERR_IO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_measure_and_choose),
        cmocka_unit_test(test_monotone_with_noise),
        cmocka_unit_test(test_calibration_file),
        cmocka_unit_test(test_combine),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
