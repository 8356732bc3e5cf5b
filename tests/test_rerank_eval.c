// End-to-end tests of reranking through the CLI, with a tiny reranker made
// here (the base model's lower layer and a random score head, saved with
// rerank/rerank_train.h as `phrex train-rerank` saves one):
// - `phrex rerank-eval` on a few TREC DL 2019 queries (rank_llm's BM25 JSON
//   and the TREC run + topics + collection): the written run reorders
//   exactly the top k by the reranker's own scores (recomputed here) and
//   keeps the rest; the summary's nDCG@10 equals the written run's; the
//   budget sweep picks per budget the largest k whose mean fits; a
//   calibration is saved once and then reused;
// - `phrex ask` and `phrex eval` over a small Flat dump with --reranker,
//   --rerank-k, --budget-ms, --no-rerank, --tune-weight;
// - bad input: a missing reranker, a budget <= 0, malformed run, qrels and
//   topics lines, a TREC run without its passages.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "data/ndcg.h"
#include "data/trec.h"
#include "encoder/safetensors.h"
#include "rerank/rerank_train.h"
#include "rerank/reranker.h"
#include "tests/support/test_support.h"

#define DL PHREX_SHARED_DIR "/data/msmarco-trec-dl/"
#define ARTICLES PHREX_SHARED_DIR "/data/wikipedia/densephrases-sample/articles.json"
#define QUESTIONS PHREX_SHARED_DIR "/data/wikipedia/densephrases-sample/questions.json"

// Under the sanitizers every forward is ~10x slower: fewer queries and passages.
#ifdef __SANITIZE_ADDRESS__
#define PASSAGES 4
#define QUERIES "2"
#define N_QUERIES 2
#define EVAL_TOP_K "4"
#define SWEEP_DEPTH 4 // the grid up to it: 1, 2, 3, 4
#define SWEEP_ROWS 5
#else
#define PASSAGES 8
#define QUERIES "3"
#define N_QUERIES 3
#define EVAL_TOP_K "20"
#define SWEEP_DEPTH 10 // the grid up to it: 1, 2, 3, 4, 6, 10
#define SWEEP_ROWS 7
#endif

static struct {
    char tmp[256], rr[300], dump[300], corpus[300];
} g;

// --- helpers ----------------------------------------------------------------------

static test_run_result run_cli(const char *args, const char *stdin_path) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "PHREX_CALIBRATION_DIR='%s/cal' '%s' %s", g.tmp, PHREX_CLI, args);
    return test_run_command(cmd, stdin_path, g.tmp);
}

// Runs and expects exit status `want`, with `needle` (may be NULL) in stderr.
static void expect_status(const char *args, int want, const char *needle) {
    test_run_result r = run_cli(args, NULL);
    if (r.status != want || (needle && !strstr(r.err, needle)))
        fail_msg("phrex %s: status %d (want %d), stderr: %s (want '%s')", args, r.status, want, r.err,
                 needle ? needle : "");
    test_free_run(&r);
}

static cJSON *load_json(const char *dir, const char *name) {
    char path[600];
    test_join_path(path, sizeof path, dir, name);
    char *text = test_load_file(path, NULL);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) fail_msg("'%s' is not a number", key);
    return v->valuedouble;
}

// The base model's lower layer with a random head, as a reranker folder.
static void make_reranker(const char *dir, int max_seq) {
    phrex_rerank_backbone bb;
    assert_int_equal(phrex_rerank_backbone_bert(&bb, PHREX_BASE_MODEL_DIR, 1, 8 * max_seq, max_seq, 1), PHREX_OK);
    phrex_rerank_model *m;
    assert_int_equal(phrex_rerank_model_init(&m, &bb, 11, 0.5f), PHREX_OK);
    phrex_rerank_backbone *b = phrex_rerank_model_backbone(m);
    char enc[600], head[600], cmd[700];
    test_join_path(enc, sizeof enc, dir, "encoder");
    test_join_path(head, sizeof head, dir, "head.safetensors");
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    assert_int_equal(test_run_shell(cmd), 0);
    assert_int_equal(b->save(b->self, enc, PHREX_DTYPE_F32, PHREX_BASE_MODEL_DIR), PHREX_OK);
    const float *hp = phrex_rerank_model_head_params(m).params;
    assert_int_equal(phrex_reranker_write_head(head, hp, hp[b->hidden_size], b->hidden_size, PHREX_DTYPE_F32),
                     PHREX_OK);
    phrex_reranker_meta meta = {.encoder = "encoder", .head = "head.safetensors", .backbone = "bert", .layers = 1,
                                .hidden_size = b->hidden_size, .max_seq_len = max_seq, .max_query_len = 64,
                                .mark_start = 1, .mark_end = 2};
    assert_int_equal(phrex_reranker_write_json(dir, &meta, "\"note\": \"test_rerank_eval\""), PHREX_OK);
    phrex_rerank_model_free(m);
}

static int setup(void **state) {
    (void)state;
    snprintf(g.tmp, sizeof g.tmp, "/tmp/phrex-test-rerank-eval-XXXXXX");
    if (test_make_tmpdir(g.tmp)) return -1;
    snprintf(g.rr, sizeof g.rr, "%s/rr", g.tmp);
    snprintf(g.dump, sizeof g.dump, "%s/dump", g.tmp);
    snprintf(g.corpus, sizeof g.corpus, "%s/corpus.tsv", g.tmp);
    make_reranker(g.rr, 128);
    static const int answers[] = {0, 41, 90};
    if (test_write_corpus(g.corpus, ARTICLES, PASSAGES, answers, 3)) return -1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' build --corpus '%s' --out '%s' --index-factory Flat --threads 1 --quiet >/dev/null",
             PHREX_CLI, g.corpus, g.dump);
    return test_run_shell(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    test_remove_tree(g.tmp);
    return 0;
}

// --- rerank-eval ---------------------------------------------------------------------

// The written run against the first stage and the reranker's own scores.
static void check_reranked_run(const char *trec_path, int k, int depth, size_t n_queries) {
    phrex_trec_run *out, *bm25;
    assert_int_equal(phrex_trec_run_load(&out, trec_path), PHREX_OK);
    assert_int_equal(phrex_trec_run_load(&bm25, DL "runs/bm25.dl19.retrieve_results.json"), PHREX_OK);
    assert_int_equal(phrex_trec_run_count(out), n_queries);
    phrex_reranker *r;
    phrex_rerank_worker *w;
    assert_int_equal(phrex_reranker_init(&r, g.rr), PHREX_OK);
    assert_int_equal(phrex_rerank_worker_init(&w, r, k), PHREX_OK);
    for (size_t i = 0; i < n_queries; i++) {
        const phrex_trec_query *o = phrex_trec_run_query(out, i), *b = phrex_trec_run_query(bm25, i);
        assert_string_equal(o->qid, b->qid);
        assert_int_equal(o->n_hits, depth);
        phrex_rerank_candidate cands[64];
        float scores[64];
        for (int h = 0; h < k; h++) cands[h] = (phrex_rerank_candidate){NULL, 0, b->hits[h].text, b->hits[h].text_len, -1, -1};
        assert_int_equal(phrex_rerank_score(w, b->query, strlen(b->query), cands, k, scores), PHREX_OK);
        // Top k: BM25's top k in the order of these scores (descending).
        for (int h = 0; h < k; h++) {
            int at = -1;
            for (int j = 0; j < k; j++)
                if (!strcmp(b->hits[j].pid, o->hits[h].pid)) at = j;
            if (at < 0) fail_msg("query %s: rank %d is %s, not one of BM25's top %d", o->qid, h + 1, o->hits[h].pid, k);
            if (h > 0) {
                int prev = -1;
                for (int j = 0; j < k; j++)
                    if (!strcmp(b->hits[j].pid, o->hits[h - 1].pid)) prev = j;
                assert_true(scores[prev] >= scores[at] - 1e-4f);
            }
        }
        // Below k: BM25's order.
        for (int h = k; h < depth; h++) assert_string_equal(o->hits[h].pid, b->hits[h].pid);
    }
    phrex_rerank_worker_free(w);
    phrex_reranker_free(r);
    phrex_trec_run_free(out);
    phrex_trec_run_free(bm25);
}

static void test_rerank_eval_fixed_k(void **state) {
    (void)state;
    char out[600], args[4096], trec[700];
    test_join_path(out, sizeof out, g.tmp, "re-k");
    snprintf(args, sizeof args,
             "rerank-eval --reranker '%s' --qrels " DL "qrels.dl19-passage.txt --run " DL
             "runs/bm25.dl19.retrieve_results.json --k 8 --depth 15 --limit " QUERIES " --threads 1 --out '%s'",
             g.rr, out);
    test_run_result r = run_cli(args, NULL);
    if (r.status) fail_msg("rerank-eval failed: %s", r.err);
    assert_non_null(strstr(r.out, "nDCG@10"));
    test_free_run(&r);
    test_join_path(trec, sizeof trec, out, "reranked.trec");
    check_reranked_run(trec, 8, 15, N_QUERIES);

    // The summary's numbers are those of the written run and of BM25.
    cJSON *sum = load_json(out, "summary.json");
    assert_int_equal((int)num(sum, "queries"), N_QUERIES);
    assert_int_equal((int)num(sum, "reranker_layers"), 1);
    const cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(sum, "rows"), 0);
    assert_int_equal((int)num(row, "k"), 8);
    assert_true(num(row, "latency_ms_mean") > 0 && num(row, "latency_ms_p95") > 0);
    phrex_qrels *q;
    phrex_trec_run *run, *bm25;
    assert_int_equal(phrex_qrels_load(&q, DL "qrels.dl19-passage.txt"), PHREX_OK);
    assert_int_equal(phrex_trec_run_load(&run, trec), PHREX_OK);
    assert_int_equal(phrex_trec_run_load(&bm25, DL "runs/bm25.dl19.trec"), PHREX_OK);
    size_t n;
    assert_true(fabs(num(row, "ndcg_at_10") - phrex_ndcg_run(q, run, 10, &n)) < 1e-4);
    assert_int_equal(n, N_QUERIES);
    double first = 0;
    for (size_t i = 0; i < N_QUERIES; i++) first += phrex_ndcg_query(q, phrex_trec_run_query(bm25, i), 10) / N_QUERIES;
    assert_true(fabs(num(sum, "first_stage_ndcg_at_10") - first) < 1e-4);
    cJSON_Delete(sum);
    phrex_trec_run_free(run);
    phrex_trec_run_free(bm25);
    phrex_qrels_free(q);

    // The TREC run with topics and collection reranks the same way.
    test_join_path(out, sizeof out, g.tmp, "re-trec");
    snprintf(args, sizeof args,
             "rerank-eval --reranker '%s' --qrels " DL "qrels.dl19-passage.txt --run " DL "runs/bm25.dl19.trec --topics " DL
             "topics.dl19-passage.txt --collection " DL "collection.subset.tsv --k 8 --depth 15 --limit " QUERIES " --out '%s'",
             g.rr, out);
    r = run_cli(args, NULL);
    if (r.status) fail_msg("rerank-eval (TREC run) failed: %s", r.err);
    test_free_run(&r);
    test_join_path(trec, sizeof trec, out, "reranked.trec");
    check_reranked_run(trec, 8, 15, N_QUERIES);
}

static void test_rerank_eval_budgets(void **state) {
    (void)state;
    char out[600], args[4096];
    test_join_path(out, sizeof out, g.tmp, "re-sweep");
    snprintf(args, sizeof args,
             "rerank-eval --reranker '%s' --qrels " DL "qrels.dl19-passage.txt --run " DL
             "runs/bm25.dl19.retrieve_results.json --budgets 0.001,5,100000 --depth %d --limit 2 --out '%s'",
             g.rr, SWEEP_DEPTH, out);
    test_run_result r = run_cli(args, NULL);
    if (r.status) fail_msg("rerank-eval --budgets failed: %s", r.err);
    test_free_run(&r);
    cJSON *sum = load_json(out, "summary.json");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(sum, "rows"), *budgets = cJSON_GetObjectItemCaseSensitive(sum, "budgets");
    static const int ks[] = {0, 1, 2, 3, 4, 6, 10}; // the grid up to the depth, and the first stage
    assert_int_equal(cJSON_GetArraySize(rows), SWEEP_ROWS);
    for (int i = 0; i < SWEEP_ROWS; i++) assert_int_equal((int)num(cJSON_GetArrayItem(rows, i), "k"), ks[i]);
    assert_int_equal(cJSON_GetArraySize(budgets), 3);
    for (int b = 0; b < 3; b++) {
        const cJSON *pick = cJSON_GetArrayItem(budgets, b);
        double budget = num(pick, "budget_ms");
        int want = 0;
        for (int i = 1; i < SWEEP_ROWS; i++)
            if (num(cJSON_GetArrayItem(rows, i), "latency_ms_mean") <= budget) want = ks[i];
        assert_int_equal((int)num(pick, "k"), want);
    }
    assert_int_equal((int)num(cJSON_GetArrayItem(budgets, 0), "k"), 0); // 1 µs: nothing fits
    assert_int_equal((int)num(cJSON_GetArrayItem(budgets, 2), "k"), SWEEP_DEPTH);
    // k = 0 is the first stage (cut to the depth): its nDCG is the baseline's.
    assert_true(fabs(num(cJSON_GetArrayItem(rows, 0), "ndcg_at_10") - num(sum, "first_stage_ndcg_at_10")) < 1e-9);
    cJSON_Delete(sum);

    // --budget-ms: calibrated once (saved), then reused.
    char cal[700];
    test_join_path(cal, sizeof cal, g.tmp, "cal-trec.json");
    snprintf(args, sizeof args,
             "rerank-eval --reranker '%s' --qrels " DL "qrels.dl19-passage.txt --run " DL
             "runs/bm25.dl19.retrieve_results.json --budget-ms 50 --depth %d --limit 2 --calibration '%s'",
             g.rr, SWEEP_DEPTH, cal);
    r = run_cli(args, NULL);
    if (r.status || !strstr(r.out, "measured now")) fail_msg("first --budget-ms run: %s / %s", r.out, r.err);
    test_free_run(&r);
    char *text = test_read_file(cal, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"workload\": \"trec-dl\""));
    free(text);
    r = run_cli(args, NULL);
    if (r.status || !strstr(r.out, "reused")) fail_msg("second --budget-ms run: %s / %s", r.out, r.err);
    test_free_run(&r);
}

static void test_rerank_eval_bad_input(void **state) {
    (void)state;
    char args[4096];
    const char *common = "--qrels " DL "qrels.dl19-passage.txt --run " DL "runs/bm25.dl19.retrieve_results.json";
    snprintf(args, sizeof args, "rerank-eval --reranker '%s' %s --budget-ms 0", g.rr, common);
    expect_status(args, 2, "--budget-ms");
    snprintf(args, sizeof args, "rerank-eval --reranker '%s' %s --budget-ms -1", g.rr, common);
    expect_status(args, 2, "--budget-ms");
    snprintf(args, sizeof args, "rerank-eval --reranker '%s/missing' %s --k 5", g.tmp, common);
    expect_status(args, 1, "/missing");
    // A reranker folder whose json claims other layers than its encoder.
    char cmd[2048], bad_rr[600];
    test_join_path(bad_rr, sizeof bad_rr, g.tmp, "rr-bad");
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s' && sed -i 's/\"layers\": 1/\"layers\": 2/' '%s/phrex_reranker.json'", g.rr,
             bad_rr, bad_rr);
    assert_int_equal(test_run_shell(cmd), 0);
    snprintf(args, sizeof args, "rerank-eval --reranker '%s' %s --k 5", bad_rr, common);
    expect_status(args, 1, "layers");
    snprintf(args, sizeof args, "rerank-eval %s --k 5", common);
    expect_status(args, 2, "--reranker");

    // Malformed lines: file and line in the message.
    const char *run = test_write_text(g.tmp, "bad.trec", "1037798 Q0 7 1 2.5 t\n1037798 Q0 8 2 x t\n");
    snprintf(args, sizeof args, "rerank-eval --reranker '%s' --qrels " DL "qrels.dl19-passage.txt --run '%s' --k 5",
             g.rr, run);
    char want[700];
    snprintf(want, sizeof want, "%s:2: field 'score'", run);
    expect_status(args, 1, want);
    const char *qrels = test_write_text(g.tmp, "bad.qrels", "1037798 0 7 1\n1037798 0 8\n");
    snprintf(args, sizeof args, "rerank-eval --k 0 --qrels '%s' --run " DL "runs/bm25.dl19.trec", qrels);
    snprintf(want, sizeof want, "%s:2: field 'grade'", qrels);
    expect_status(args, 1, want);
    const char *topics = test_write_text(g.tmp, "bad.topics", "1037798\twho\n264014 no tab\n");
    snprintf(args, sizeof args,
             "rerank-eval --reranker '%s' --qrels " DL "qrels.dl19-passage.txt --run " DL "runs/bm25.dl19.trec --topics '%s'"
             " --collection " DL "collection.subset.tsv --k 5",
             g.rr, topics);
    snprintf(want, sizeof want, "%s:2: field 'query'", topics);
    expect_status(args, 1, want);
    // A TREC run has no passages of its own.
    snprintf(args, sizeof args,
             "rerank-eval --reranker '%s' --qrels " DL "qrels.dl19-passage.txt --run " DL "runs/bm25.dl19.trec --topics " DL
             "topics.dl19-passage.txt --k 5",
             g.rr);
    expect_status(args, 1, "--collection");
}

// --- ask and eval ----------------------------------------------------------------------

static void test_ask_eval_rerank(void **state) {
    (void)state;
    const char *qs = test_write_text(g.tmp, "questions.txt", "who won season 4 of america's got talent\nwhat is a bronze age\n");
    char args[4096];
    // Fixed k over all 5 results: the same answers as without reranking, reordered.
    snprintf(args, sizeof args, "ask --dump '%s' --top-k 5 --reranker '%s' --rerank-k 5", g.dump, g.rr);
    test_run_result a = run_cli(args, qs);
    snprintf(args, sizeof args, "ask --dump '%s' --top-k 5 --no-rerank", g.dump);
    test_run_result b = run_cli(args, qs);
    if (a.status || b.status) fail_msg("ask failed: %s / %s", a.err, b.err);
    char *la = a.out, *lb = b.out;
    for (int line = 0; line < 2; line++) {
        char *na = strchr(la, '\n'), *nb = strchr(lb, '\n');
        assert_non_null(na);
        assert_non_null(nb);
        *na = *nb = '\0';
        cJSON *ja = cJSON_Parse(la), *jb = cJSON_Parse(lb);
        assert_non_null(ja);
        assert_non_null(jb);
        const cJSON *aa = cJSON_GetObjectItemCaseSensitive(ja, "answers"), *ab = cJSON_GetObjectItemCaseSensitive(jb, "answers");
        assert_int_equal(cJSON_GetArraySize(aa), cJSON_GetArraySize(ab));
        for (int i = 0; i < cJSON_GetArraySize(aa); i++) { // every reranked answer is one of the originals
            const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(aa, i), "text"));
            int found = 0;
            for (int j = 0; j < cJSON_GetArraySize(ab); j++)
                found |= !strcmp(t, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ab, j), "text")));
            assert_true(found);
        }
        cJSON_Delete(ja), cJSON_Delete(jb);
        la = na + 1, lb = nb + 1;
    }
    test_free_run(&a);
    test_free_run(&b);

    // eval with a budget: k chosen and reported; --no-rerank: none.
    char out[600];
    test_join_path(out, sizeof out, g.tmp, "eval-rr");
    snprintf(args, sizeof args,
             "eval --dump '%s' --qa '%s' --limit 6 --top-k " EVAL_TOP_K " --threads 1 --reranker '%s' --budget-ms 100000 "
             "--tune-weight --out '%s'",
             g.dump, QUESTIONS, g.rr, out);
    a = run_cli(args, NULL);
    if (a.status) fail_msg("eval with reranker failed: %s", a.err);
    test_free_run(&a);
    cJSON *sum = load_json(out, "summary.json");
    assert_int_equal((int)num(sum, "rerank_k"), atoi(EVAL_TOP_K)); // a huge budget: everything
    assert_true(num(sum, "budget_ms") == 100000);
    assert_true(num(sum, "rerank_ms_mean") > 0);
    assert_true(num(sum, "rerank_weight_tuned") >= 0);
    // Every result was reranked and the weight used (1) is on the grid: the
    // tuned weight does at least as well on these questions.
    assert_true(num(sum, "rerank_weight") == 1);
    assert_true(num(sum, "em_at_tuned_weight") >= num(sum, "em") - 1e-9);
    cJSON_Delete(sum);
    test_join_path(out, sizeof out, g.tmp, "eval-none");
    snprintf(args, sizeof args, "eval --dump '%s' --qa '%s' --limit 3 --threads 1 --no-rerank --out '%s'", g.dump,
             QUESTIONS, out);
    a = run_cli(args, NULL);
    if (a.status) fail_msg("eval --no-rerank failed: %s", a.err);
    test_free_run(&a);
    sum = load_json(out, "summary.json");
    assert_int_equal((int)num(sum, "rerank_k"), 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(sum, "budget_ms")));
    assert_int_equal((int)num(sum, "question_threads"), 1);
    double em_one_core = num(sum, "em"), f1_one_core = num(sum, "f1");
    cJSON_Delete(sum);
    // One question at a time with 2 threads inside it: the same answers.
    test_join_path(out, sizeof out, g.tmp, "eval-qthreads");
    snprintf(args, sizeof args, "eval --dump '%s' --qa '%s' --limit 3 --question-threads 2 --no-rerank --out '%s'",
             g.dump, QUESTIONS, out);
    a = run_cli(args, NULL);
    if (a.status) fail_msg("eval --question-threads failed: %s", a.err);
    test_free_run(&a);
    sum = load_json(out, "summary.json");
    assert_int_equal((int)num(sum, "question_threads"), 2);
    assert_int_equal((int)num(sum, "threads"), 1);
    assert_true(fabs(num(sum, "em") - em_one_core) < 1e-9);
    assert_true(fabs(num(sum, "f1") - f1_one_core) < 1e-6);
    cJSON_Delete(sum);
    // No --reranker: $PHREX_RERANKER names the default ("none": no reranking,
    // which is how ctest runs every test).
    test_join_path(out, sizeof out, g.tmp, "eval-env");
    snprintf(args, sizeof args, "eval --dump '%s' --qa '%s' --limit 2 --threads 1 --rerank-k 3 --out '%s'", g.dump,
             QUESTIONS, out);
    setenv("PHREX_RERANKER", g.rr, 1);
    a = run_cli(args, NULL);
    if (a.status) fail_msg("eval with $PHREX_RERANKER failed: %s", a.err);
    test_free_run(&a);
    sum = load_json(out, "summary.json");
    assert_int_equal((int)num(sum, "rerank_k"), 3);
    cJSON_Delete(sum);
    setenv("PHREX_RERANKER", "none", 1);
    a = run_cli(args, NULL);
    if (a.status) fail_msg("eval with PHREX_RERANKER=none failed: %s", a.err);
    test_free_run(&a);
    sum = load_json(out, "summary.json");
    assert_int_equal((int)num(sum, "rerank_k"), 0);
    cJSON_Delete(sum);
}

static void test_ask_eval_bad_flags(void **state) {
    (void)state;
    char args[2048];
    for (int cmd = 0; cmd < 2; cmd++) {
        const char *head = cmd ? "eval --qa " QUESTIONS : "ask";
        snprintf(args, sizeof args, "%s --dump '%s' --reranker '%s/nope'", head, g.dump, g.tmp);
        expect_status(args, 1, "/nope");
        snprintf(args, sizeof args, "%s --dump '%s' --reranker '%s' --budget-ms 0", head, g.dump, g.rr);
        expect_status(args, 2, "--budget-ms");
        snprintf(args, sizeof args, "%s --dump '%s' --reranker '%s' --budget-ms abc", head, g.dump, g.rr);
        expect_status(args, 2, "--budget-ms");
        snprintf(args, sizeof args, "%s --dump '%s' --reranker '%s' --rerank-k 0", head, g.dump, g.rr);
        expect_status(args, 2, "--rerank-k");
    }
    snprintf(args, sizeof args, "eval --qa " QUESTIONS " --dump '%s' --no-rerank --question-threads 0", g.dump);
    expect_status(args, 2, "--question-threads");
    snprintf(args, sizeof args, "eval --qa " QUESTIONS " --dump '%s' --no-rerank --tune-weight", g.dump);
    expect_status(args, 1, "--tune-weight");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rerank_eval_fixed_k),
        cmocka_unit_test(test_rerank_eval_budgets),
        cmocka_unit_test(test_rerank_eval_bad_input),
        cmocka_unit_test(test_ask_eval_rerank),
        cmocka_unit_test(test_ask_eval_bad_flags),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
