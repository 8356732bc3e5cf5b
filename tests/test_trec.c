// TREC readers (data/trec.h) on the real TREC DL files under
// PHREX_SHARED_DIR/data/msmarco-trec-dl (counts from its README), and on
// broken files written at test time: each bad line must fail with the file,
// the line and the field in the message.
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
#include "data/trec.h"
#include "tests/support/test_support.h"

#define DL PHREX_SHARED_DIR "/data/msmarco-trec-dl/"

static char tmp_dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/phrex-test-trec-XXXXXX");
    return test_make_tmpdir(tmp_dir);
}

static int teardown(void **state) {
    (void)state;
    return test_remove_tree(tmp_dir);
}

// Reads every record of a file; returns the count, or -1 with the message in err.
static long drain(const char *path, phrex_trec_kind kind, char *err, size_t cap, long *grades) {
    phrex_trec_reader *r;
    int rc = phrex_trec_reader_init(&r, path, kind), has;
    if (rc) {
        snprintf(err, cap, "%s", phrex_last_error());
        return -1;
    }
    long n = 0;
    phrex_trec_record rec;
    while (!(rc = phrex_trec_reader_next(r, &rec, &has)) && has) {
        n++;
        if (grades && rec.grade >= 0 && rec.grade < 4) grades[rec.grade]++;
    }
    phrex_trec_reader_free(r);
    if (rc) {
        snprintf(err, cap, "%s", phrex_last_error());
        return -1;
    }
    return n;
}

static void test_real_topics_and_qrels(void **state) {
    (void)state;
    char err[512] = "";
    phrex_trec_topics *t;
    assert_int_equal(phrex_trec_topics_load(&t, DL "topics.dl19-passage.txt"), PHREX_OK);
    assert_int_equal(phrex_trec_topics_count(t), 43);
    assert_string_equal(phrex_trec_topics_find(t, "156493"), "do goldfish grow");
    assert_null(phrex_trec_topics_find(t, "1"));
    phrex_trec_topics_free(t);
    assert_int_equal(phrex_trec_topics_load(&t, DL "topics.dl20.txt"), PHREX_OK);
    assert_int_equal(phrex_trec_topics_count(t), 200);
    phrex_trec_topics_free(t);

    long g19[4] = {0}, g20[4] = {0};
    assert_int_equal(drain(DL "qrels.dl19-passage.txt", PHREX_TREC_QRELS, err, sizeof err, g19), 9260);
    assert_int_equal(g19[0], 5158);
    assert_int_equal(g19[1], 1601);
    assert_int_equal(g19[2], 1804);
    assert_int_equal(g19[3], 697);
    assert_int_equal(drain(DL "qrels.dl20-passage.txt", PHREX_TREC_QRELS, err, sizeof err, g20), 11386);
    assert_int_equal(g20[0], 7780);
    assert_int_equal(g20[3], 646);
}

// Hits must come in trec_eval's order: float score descending, then pid
// descending by strcmp.
static void assert_trec_order(const phrex_trec_query *q) {
    for (int i = 1; i < q->n_hits; i++) {
        float a = (float)q->hits[i - 1].score, b = (float)q->hits[i].score;
        assert_true(a > b || (a == b && strcmp(q->hits[i - 1].pid, q->hits[i].pid) > 0));
    }
}

static void test_real_runs(void **state) {
    (void)state;
    phrex_trec_run *run, *json;
    phrex_trec_topics *t;
    phrex_trec_collection *c;
    assert_int_equal(phrex_trec_run_load(&run, DL "runs/bm25.dl19.trec"), PHREX_OK);
    assert_int_equal(phrex_trec_run_load(&json, DL "runs/bm25.dl19.retrieve_results.json"), PHREX_OK);
    assert_int_equal(phrex_trec_topics_load(&t, DL "topics.dl19-passage.txt"), PHREX_OK);
    assert_int_equal(phrex_trec_collection_load(&c, DL "collection.subset.tsv"), PHREX_OK);
    assert_int_equal(phrex_trec_collection_count(c), 24884);
    assert_int_equal(phrex_trec_run_count(run), 43);
    assert_int_equal(phrex_trec_run_count(json), 43);
    assert_int_equal(phrex_trec_run_attach_queries(run, t), PHREX_OK);
    assert_int_equal(phrex_trec_run_attach_texts(run, c), PHREX_OK);
    // The TREC file and rank_llm's JSON are the same BM25 run: same queries,
    // hits, order and passage texts; the JSON's query is the topic's.
    for (size_t i = 0; i < 43; i++) {
        const phrex_trec_query *a = phrex_trec_run_query(run, i), *b = phrex_trec_run_query(json, i);
        assert_string_equal(a->qid, b->qid);
        assert_string_equal(a->query, b->query);
        assert_int_equal(a->n_hits, 100);
        assert_int_equal(b->n_hits, 100);
        assert_trec_order(a);
        for (int h = 0; h < 100; h++) {
            assert_string_equal(a->hits[h].pid, b->hits[h].pid);
            assert_true(fabs(a->hits[h].score - b->hits[h].score) < 1e-6);
            assert_int_equal(a->hits[h].text_len, b->hits[h].text_len);
            assert_memory_equal(a->hits[h].text, b->hits[h].text, a->hits[h].text_len);
        }
    }
    assert_null(phrex_trec_run_query(run, 43));
    phrex_trec_run_free(run);
    phrex_trec_run_free(json);
    phrex_trec_topics_free(t);
    phrex_trec_collection_free(c);
}

// One bad file: the reader/loader fails, naming "path:line" and the field.
static void expect_bad(phrex_trec_kind kind, const char *name, const char *text, int line, const char *field) {
    const char *path = test_write_text(tmp_dir, name, text);
    char want[512], err[512] = "";
    int rc;
    if (kind == PHREX_TREC_RUN) {
        phrex_trec_run *run = NULL;
        rc = phrex_trec_run_load(&run, path);
        snprintf(err, sizeof err, "%s", phrex_last_error());
        assert_null(run);
    } else {
        rc = drain(path, kind, err, sizeof err, NULL) < 0 ? PHREX_ERR_FORMAT : PHREX_OK;
        if (rc == PHREX_OK) { // duplicates show only when loading a table
            if (kind == PHREX_TREC_TOPICS) {
                phrex_trec_topics *t = NULL;
                rc = phrex_trec_topics_load(&t, path);
                assert_null(t);
            } else {
                phrex_trec_collection *c = NULL;
                rc = phrex_trec_collection_load(&c, path);
                assert_null(c);
            }
            snprintf(err, sizeof err, "%s", phrex_last_error());
        }
    }
    assert_int_equal(rc, PHREX_ERR_FORMAT);
    snprintf(want, sizeof want, "%s:%d", path, line);
    if (!strstr(err, want) || (field && !strstr(err, field))) fail_msg("'%s' lacks '%s' or '%s'", err, want, field);
}

static void test_bad_lines(void **state) {
    (void)state;
    // qrels
    expect_bad(PHREX_TREC_QRELS, "q1.txt", "1 0 7 1\n1 0 8\n", 2, "'grade'");
    expect_bad(PHREX_TREC_QRELS, "q2.txt", "1 0 7 1\n\n1 0 8 x\n", 3, "'grade'");
    expect_bad(PHREX_TREC_QRELS, "q3.txt", "1 Q1 7 1\n", 1, "'iteration'");
    expect_bad(PHREX_TREC_QRELS, "q4.txt", "1 0 7 1 extra\n", 1, "expected 4 fields");
    expect_bad(PHREX_TREC_QRELS, "q5.txt", "1 0 \xff\xfe 1\n", 1, "'pid'");
    // runs
    expect_bad(PHREX_TREC_RUN, "r1.trec", "1 Q0 7 1 2.5 t\n1 Q0 8 2 2.0\n", 2, "'tag'");
    expect_bad(PHREX_TREC_RUN, "r2.trec", "1 Q0 7 1 nan t\n", 1, "'score'");
    expect_bad(PHREX_TREC_RUN, "r3.trec", "1 Q0 7 one 2.5 t\n", 1, "'rank'");
    expect_bad(PHREX_TREC_RUN, "r4.trec", "1 Q0 7 1 2.5 t\n2 Q0 7 1 2.5 t\n1 Q0 7 2 2.0 t\n", 3, "listed twice");
    expect_bad(PHREX_TREC_RUN, "r5.trec", "1 Q0 7 1 2.5e t\n", 1, "'score'");
    // rank_llm JSON: the hit's own line
    expect_bad(PHREX_TREC_RUN, "r6.json",
               "[{\"query\": \"q\", \"hits\": [\n"
               "  {\"content\": \"a\", \"qid\": 1, \"docid\": \"7\", \"rank\": 1, \"score\": 2.0},\n"
               "  {\"content\": \"b\", \"qid\": 1, \"rank\": 2, \"score\": 1.0}]}]\n",
               3, "'docid'");
    expect_bad(PHREX_TREC_RUN, "r7.json", "[{\"query\": \"q\", \"hits\": [\n{\"content\": \"a\",,}]}]\n", 2,
               "not valid JSON");
    // topics and collection
    expect_bad(PHREX_TREC_TOPICS, "t1.txt", "1\tfirst\n2 no tab here\n", 2, "'query'");
    expect_bad(PHREX_TREC_TOPICS, "t2.txt", "1\tfirst\n2\t\n", 2, "'query'");
    expect_bad(PHREX_TREC_TOPICS, "t3.txt", "1\tfirst\n1\tagain\n", 2, "already given on line 1");
    expect_bad(PHREX_TREC_TOPICS, "t4.txt", "1\tone\ttwo\n", 1, "more than 2");
    expect_bad(PHREX_TREC_COLLECTION, "c1.tsv", "7\tok\n8\tbad \xc3\x28 utf8\n", 2, "'passage'");
    expect_bad(PHREX_TREC_COLLECTION, "c2.tsv", "7 x\tok\n", 1, "'pid'");

    // A missing file is an I/O error naming it.
    phrex_trec_run *run = NULL;
    assert_int_equal(phrex_trec_run_load(&run, "/nonexistent/run.trec"), PHREX_ERR_IO);
    assert_non_null(strstr(phrex_last_error(), "/nonexistent/run.trec"));
    // An empty run has nothing to evaluate.
    assert_int_equal(phrex_trec_run_load(&run, test_write_text(tmp_dir, "empty.trec", "\n")), PHREX_ERR_FORMAT);
}

// Runs regroup interleaved queries and re-sort by trec_eval's rule, whatever
// the rank column says.
static void test_run_order(void **state) {
    (void)state;
    const char *path = test_write_text(tmp_dir, "order.trec",
                                       "5 Q0 a 1 1.0 t\n3 Q0 x 1 9.0 t\n5 Q0 c 2 3.0 t\n5 Q0 b 3 3.0 t\n"
                                       "3 Q0 y 2 9.5 t\n");
    phrex_trec_run *run;
    assert_int_equal(phrex_trec_run_load(&run, path), PHREX_OK);
    assert_int_equal(phrex_trec_run_count(run), 2);
    const phrex_trec_query *q = phrex_trec_run_query(run, 0);
    assert_string_equal(q->qid, "5");
    assert_int_equal(q->n_hits, 3);
    assert_string_equal(q->hits[0].pid, "c"); // tie at 3.0: "c" > "b"
    assert_string_equal(q->hits[1].pid, "b");
    assert_string_equal(q->hits[2].pid, "a");
    q = phrex_trec_run_query(run, 1);
    assert_string_equal(q->hits[0].pid, "y");
    assert_null(q->query);
    assert_null(q->hits[0].text);
    phrex_trec_topics *t;
    assert_int_equal(phrex_trec_topics_load(&t, test_write_text(tmp_dir, "topics.txt", "5\tfive\n")), PHREX_OK);
    assert_int_equal(phrex_trec_run_attach_queries(run, t), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "query 3"));
    phrex_trec_topics_free(t);
    phrex_trec_run_free(run);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_topics_and_qrels),
        cmocka_unit_test(test_real_runs),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_run_order),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
