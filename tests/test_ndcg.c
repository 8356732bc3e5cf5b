// nDCG@10 with linear gains, trec_eval-compatible (data/ndcg.h):
// - the real first-stage runs of ../shared/data/msmarco-trec-dl against the
//   NIST qrels give the numbers its README lists (trec_eval -m ndcg_cut.10,
//   printed to 4 decimals);
// - hand-made qrels and runs check each rule on its own: linear gains, the
//   log2(rank + 1) discount, the ideal list from all judgments (not only
//   retrieved ones), unjudged = 0, trec_eval's tie order, the cutoff, a
//   query without relevant documents, queries missing from the qrels.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "data/ndcg.h"
#include "tests/support/test_support.h"

#define DL PHREX_SHARED_DIR "/data/msmarco-trec-dl/"

static char tmp_dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/phrex-test-ndcg-XXXXXX");
    return test_make_tmpdir(tmp_dir);
}

static int teardown(void **state) {
    (void)state;
    return test_remove_tree(tmp_dir);
}

static double run_ndcg(const char *qrels_path, const char *run_path, size_t *n) {
    phrex_qrels *q;
    phrex_trec_run *run;
    assert_int_equal(phrex_qrels_load(&q, qrels_path), PHREX_OK);
    assert_int_equal(phrex_trec_run_load(&run, run_path), PHREX_OK);
    double v = phrex_ndcg_run(q, run, 10, n);
    phrex_trec_run_free(run);
    phrex_qrels_free(q);
    return v;
}

// trec_eval prints 4 decimals: the value must round to the README's.
static void expect_4dp(const char *qrels, const char *run, double want, size_t want_n) {
    size_t n;
    double got = run_ndcg(qrels, run, &n);
    if (fabs(got - want) > 0.00005 || n != want_n)
        fail_msg("%s: nDCG@10 %.6f over %zu queries, want %.4f over %zu", run, got, n, want, want_n);
}

static void test_real_runs(void **state) {
    (void)state;
    const char *q19 = DL "qrels.dl19-passage.txt", *q20 = DL "qrels.dl20-passage.txt";
    expect_4dp(q19, DL "runs/bm25.dl19.trec", 0.5058, 43);
    expect_4dp(q20, DL "runs/bm25.dl20.trec", 0.4796, 54);
    expect_4dp(q19, DL "runs/d-bert-kd-tasb.dl19.trec", 0.7210, 43);
    expect_4dp(q20, DL "runs/d-bert-kd-tasb.dl20.trec", 0.6854, 54);
    expect_4dp(q19, DL "runs/bm25-rm3.dl19.trec", 0.5216, 43);
    expect_4dp(q20, DL "runs/splade-p-p-ensemble-distil.dl20.trec", 0.7197, 54);
    // rank_llm's JSON holds the same BM25 run.
    expect_4dp(q19, DL "runs/bm25.dl19.retrieve_results.json", 0.5058, 43);

    phrex_qrels *q;
    assert_int_equal(phrex_qrels_load(&q, q19), PHREX_OK);
    assert_int_equal(phrex_qrels_count_queries(q), 43);
    assert_int_equal(phrex_qrels_count_judgments(q), 9260);
    int judged;
    assert_int_equal(phrex_qrels_grade(q, "19335", "1017759", &judged), 0);
    assert_int_equal(judged, 1);
    assert_int_equal(phrex_qrels_grade(q, "19335", "no-such-pid", &judged), 0);
    assert_int_equal(judged, 0);
    phrex_qrels_free(q);
}

static void test_rules_by_hand(void **state) {
    (void)state;
    // Query 1: grades 3, 2, 0 and a judged 1 that the run never retrieves.
    const char *qrels = test_write_text(tmp_dir, "qrels.txt",
                                        "1 0 a 3\n1 0 b 2\n1 0 c 0\n1 0 z 1\n"
                                        "2 0 a 0\n"
                                        "3 0 p 1\n");
    phrex_qrels *q;
    assert_int_equal(phrex_qrels_load(&q, qrels), PHREX_OK);
    double idcg = 3 / log2(2) + 2 / log2(3) + 1 / log2(4); // all judgments, linear gains

    const char *order1[] = {"b", "u", "a", "c"}; // u: unjudged, counts 0
    double want = (2 / log2(2) + 3 / log2(4)) / idcg;
    assert_true(fabs(phrex_ndcg_ranked(q, "1", order1, 4, 10) - want) < 1e-12);
    // The cutoff: only rank 1 counts at k = 1.
    assert_true(fabs(phrex_ndcg_ranked(q, "1", order1, 4, 1) - 2.0 / 3.0) < 1e-12);
    // Perfect order.
    const char *order2[] = {"a", "b", "z"};
    assert_true(fabs(phrex_ndcg_ranked(q, "1", order2, 3, 10) - 1.0) < 1e-12);
    // No relevant judgment: 0, not a division by zero; unknown query: 0.
    assert_true(phrex_ndcg_ranked(q, "2", order2, 3, 10) == 0.0);
    assert_true(phrex_ndcg_ranked(q, "9", order2, 3, 10) == 0.0);

    // A run with a tie: a and b both 5.0, so trec_eval ranks b before a
    // (docno descending), whatever the rank column says. Query 4 is not in
    // the qrels and is left out of the mean; query 2 has no relevant
    // document and counts 0.
    const char *run_path = test_write_text(tmp_dir, "tie.trec",
                                           "1 Q0 a 1 5.0 t\n1 Q0 b 2 5.0 t\n1 Q0 u 3 4.0 t\n"
                                           "2 Q0 a 1 1.0 t\n4 Q0 a 1 1.0 t\n3 Q0 p 1 0.5 t\n");
    phrex_trec_run *run;
    assert_int_equal(phrex_trec_run_load(&run, run_path), PHREX_OK);
    double q1 = (2 / log2(2) + 3 / log2(3)) / idcg;
    assert_true(fabs(phrex_ndcg_query(q, phrex_trec_run_query(run, 0), 10) - q1) < 1e-12);
    size_t n;
    double mean = phrex_ndcg_run(q, run, 10, &n);
    assert_int_equal(n, 3);
    assert_true(fabs(mean - (q1 + 0.0 + 1.0) / 3) < 1e-12);
    phrex_trec_run_free(run);
    phrex_qrels_free(q);

    // Scores tie as floats even when the text differs in the 10th digit.
    run_path = test_write_text(tmp_dir, "ftie.trec", "1 Q0 a 1 5.0000000001 t\n1 Q0 b 2 5.0 t\n");
    assert_int_equal(phrex_trec_run_load(&run, run_path), PHREX_OK);
    assert_string_equal(phrex_trec_run_query(run, 0)->hits[0].pid, "b");
    phrex_trec_run_free(run);
}

static void test_bad_qrels(void **state) {
    (void)state;
    phrex_qrels *q = NULL;
    const char *path = test_write_text(tmp_dir, "dup.txt", "1 0 a 3\n1 0 b 2\n1 0 a 1\n");
    assert_int_equal(phrex_qrels_load(&q, path), PHREX_ERR_FORMAT);
    assert_null(q);
    char want[256];
    snprintf(want, sizeof want, "%s:3", path);
    assert_non_null(strstr(phrex_last_error(), want));
    path = test_write_text(tmp_dir, "short.txt", "1 0 a 3\n1 0 b\n");
    assert_int_equal(phrex_qrels_load(&q, path), PHREX_ERR_FORMAT);
    snprintf(want, sizeof want, "%s:2: field 'grade'", path);
    assert_non_null(strstr(phrex_last_error(), want));
    assert_int_equal(phrex_qrels_load(&q, test_write_text(tmp_dir, "blank.txt", "\n\n")), PHREX_ERR_FORMAT);
    assert_int_equal(phrex_qrels_load(&q, "/nonexistent/qrels"), PHREX_ERR_IO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_runs),
        cmocka_unit_test(test_rules_by_hand),
        cmocka_unit_test(test_bad_qrels),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
