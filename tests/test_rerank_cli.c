// `phrex train-rerank` end to end on one real SQuAD article (Construction,
// 22 paragraphs, 98 questions): mining builds a dump over its paragraphs
// and writes every question's top phrases; a short 1-layer run on 8 of
// those questions must take the gBCE loss below the constant-score optimum, save a reranker that
// rerank/reranker.c loads, and write valid_metrics.json; a run killed
// after a checkpoint and resumed ends byte-identical to one never stopped;
// misuse gets exit status 2 and a message.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "data/metrics.h"
#include "rerank/gbce.h"
#include "rerank/rerank_data.h"
#include "rerank/reranker.h"
#include "tests/support/test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define SQUAD PHREX_SHARED_DIR "/data/squad-v1.1/dev-v1.1.40-articles.json"
#define STEPS 30
#define TRAIN_ARGS                                                                                                    \
    "--layers 1 --negatives 3 --batch 2 --steps 30 --max-seq-len 96 --dropout 0 --lr 3e-4 --log-every 1 "          \
    "--checkpoint-every 10 --limit-valid 20 --valid-k 5 --passage-frac 0.25"

static char tmpdir[] = "/tmp/phrex-test-rerank-cli-XXXXXX";
static char titles[600], mine[600], cands[700], few[800];

typedef struct {
    int status; // exit status; 128 + signal when killed
    char *err, *out;
} run_result;

static run_result rr(const char *args) {
    char cmd[4096], out[700], err[700];
    snprintf(out, sizeof out, "%s/stdout", tmpdir);
    snprintf(err, sizeof err, "%s/stderr", tmpdir);
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive exec '%s' train-rerank --threads 2 %s > '%s' 2> '%s'",
             PHREX_CLI, args, out, err);
    int status = system(cmd);
    run_result r = {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), test_read_file(err, NULL),
                    test_read_file(out, NULL)};
    if (!r.err) r.err = strdup("");
    if (!r.out) r.out = strdup("");
    return r;
}

static void free_run(run_result *r) { free(r->err), free(r->out); }

static void expect_failure(const char *args, int status, const char *needle) {
    run_result r = rr(args);
    if (r.status != status || !strstr(r.err, needle))
        fail_msg("'%s': status %d (want %d), stderr '%s' (want '%s')", args, r.status, status, r.err, needle);
    free_run(&r);
}

static int setup(void **state) {
    (void)state;
    if (test_make_tmpdir(tmpdir)) return -1;
    snprintf(titles, sizeof titles, "%s/titles.txt", tmpdir);
    snprintf(mine, sizeof mine, "%s/mine", tmpdir);
    snprintf(cands, sizeof cands, "%s/candidates.jsonl", mine);
    snprintf(few, sizeof few, "%s/few.jsonl", tmpdir); // written by test_train_lowers_loss
    test_write_string(titles, "Construction\n");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return test_remove_tree(tmpdir);
}

static void test_mine(void **state) {
    (void)state;
    char args[2048];
    snprintf(args, sizeof args, "--mine --squad '%s' --titles '%s' --out '%s' --mine-k 20 --model '%s'", SQUAD, titles, mine,
             PHREX_BASE_MODEL_DIR);
    run_result r = rr(args);
    if (r.status) fail_msg("mining failed (%d): %s", r.status, r.err);
    printf("%s", r.out);
    assert_non_null(strstr(r.out, "mined "));
    free_run(&r);
    // Every question's gold span is its first answer; a phrase is flagged as
    // a match exactly when it equals a gold answer after normalisation.
    phrex_rerank_set *set;
    if (phrex_rerank_set_load(&set, cands, NULL)) fail_msg("%s", phrex_last_error());
    int n = phrex_rerank_set_questions(set), matches = 0, spans = 0;
    assert_true(n >= 90 && n <= 98); // (nearly) every one of the 98 questions
    assert_int_equal(phrex_rerank_set_paragraphs(set), 22);
    char buf[4096];
    for (int i = 0; i < n; i++) {
        const phrex_rerank_question *q = phrex_rerank_set_question(set, i);
        const phrex_rerank_paragraph *p = phrex_rerank_set_paragraph(set, q->gold_par);
        assert_int_equal((size_t)(q->gold_end - q->gold_start), strlen(q->answers[0]));
        assert_memory_equal(p->text + q->gold_start, q->answers[0], strlen(q->answers[0]));
        assert_true(q->n_spans >= 1 && q->n_spans <= 20);
        for (int j = 0; j < q->n_spans; j++) {
            const phrex_rerank_span *sp = &phrex_rerank_set_spans(set)[q->first_span + j];
            const phrex_rerank_paragraph *sp_p = phrex_rerank_set_paragraph(set, sp->par);
            snprintf(buf, sizeof buf, "%.*s", (int)(sp->end - sp->start), sp_p->text + sp->start);
            assert_int_equal(sp->match, phrex_metric_max_exact_match(buf, q->answers, (size_t)q->n_answers));
            matches += sp->match, spans++;
            if (j) assert_true(sp->score <= phrex_rerank_set_spans(set)[q->first_span + j - 1].score);
        }
    }
    printf("%d questions, %d phrases, %d match a gold answer\n", n, spans, matches);
    assert_true(matches >= 1);
    phrex_rerank_set_free(set);
}

// Mean loss of log lines [from, to) of DIR/train.log.
static double mean_loss(const char *log, int from, int to) {
    double sum = 0;
    int n = 0, line = 0;
    for (const char *p = log; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL, line++) {
        const char *l = strstr(p, " loss ");
        if (line >= from && line < to && l) sum += atof(l + 6), n++;
    }
    assert_int_equal(n, to - from);
    return sum / n;
}

static void test_train_lowers_loss(void **state) {
    (void)state;
    char args[3072], dir[700], path[800];
    snprintf(dir, sizeof dir, "%s/a", tmpdir);
    // 8 questions (the header and its first 8 lines), so 30 updates of 2 see
    // each about 7 times: enough to leave the prior, as an overfitting check.
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "head -9 '%s' > '%s'", cands, few);
    assert_int_equal(test_run_shell(cmd), 0);
    snprintf(args, sizeof args, "--out '%s' --candidates '%s' --valid-candidates '%s' " TRAIN_ARGS, dir, few, cands);
    run_result r = rr(args);
    if (r.status) fail_msg("training failed (%d): %s", r.status, r.err);
    printf("%s", r.out);
    assert_non_null(strstr(r.out, "validation (20 questions"));
    assert_null(strchr(r.err, '\r')); // no progress redraws into a pipe
    free_run(&r);
    snprintf(path, sizeof path, "%s/train.log", dir);
    char *log = test_load_file(path, NULL);
    // The head starts at the constant-score optimum (3 negatives of a pool of
    // 20 mined phrases), so the first updates sit at that loss and learning
    // shows as going below it; a run stuck at the prior stays there.
    double beta = phrex_gbce_beta(3, 20, PHREX_GBCE_DEFAULT_T), s0 = phrex_gbce_prior_score(beta, 3);
    double constant = (beta * phrex_gbce_softplus(-s0) + 3 * phrex_gbce_softplus(s0)) / 4;
    double first = mean_loss(log, 0, 6), last = mean_loss(log, STEPS - 6, STEPS);
    printf("loss: constant-score optimum %.4f, first 6 updates %.4f, last 6 %.4f\n", constant, first, last);
    assert_true(fabs(first - constant) < 0.05 * constant);
    assert_true(last < 0.97 * first);
    free(log);
    phrex_reranker *rk;
    if (phrex_reranker_init(&rk, dir)) fail_msg("saved reranker does not load: %s", phrex_last_error());
    assert_int_equal(phrex_reranker_layers(rk), 1);
    assert_int_equal(phrex_reranker_max_seq_len(rk), 96);
    phrex_reranker_free(rk);
    snprintf(path, sizeof path, "%s/valid_metrics.json", dir);
    char *m = test_load_file(path, NULL);
    assert_non_null(strstr(m, "\"reranked_accuracy_at_1\""));
    assert_non_null(strstr(m, "\"questions\": 20"));
    free(m);
}

static void assert_same_file(const char *a_dir, const char *b_dir, const char *name) {
    char a[800], b[800];
    snprintf(a, sizeof a, "%s/%s", a_dir, name);
    snprintf(b, sizeof b, "%s/%s", b_dir, name);
    size_t na, nb;
    char *x = test_load_file(a, &na), *y = test_load_file(b, &nb);
    assert_int_equal(na, nb);
    if (memcmp(x, y, na)) fail_msg("%s and %s differ", a, b);
    free(x), free(y);
}

static void test_kill_and_resume(void **state) {
    (void)state;
    char args[3072], a[700], b[700];
    snprintf(a, sizeof a, "%s/a", tmpdir);
    snprintf(b, sizeof b, "%s/b", tmpdir);
    snprintf(args, sizeof args,
             "--out '%s' --candidates '%s' --valid-candidates '%s' " TRAIN_ARGS " --kill-after-checkpoint 10", b,
             few, cands);
    run_result r = rr(args);
    if (r.status != 128 + 9) fail_msg("the run was to kill itself (SIGKILL), got status %d: %s", r.status, r.err);
    free_run(&r);
    // Without --resume the state file is refused, then --resume finishes.
    snprintf(args, sizeof args, "--out '%s' --candidates '%s' --valid-candidates '%s' " TRAIN_ARGS, b, few, cands);
    expect_failure(args, 1, "--resume");
    snprintf(args, sizeof args, "--out '%s' --candidates '%s' --valid-candidates '%s' " TRAIN_ARGS " --resume", b,
             few, cands);
    r = rr(args);
    if (r.status) fail_msg("resume failed (%d): %s", r.status, r.err);
    assert_non_null(strstr(r.err, "resuming at update 10"));
    free_run(&r);
    assert_same_file(a, b, "encoder/model.safetensors");
    assert_same_file(a, b, "head.safetensors");
    // Resuming with other options is refused.
    snprintf(args, sizeof args,
             "--out '%s' --candidates '%s' --valid-candidates '%s' " TRAIN_ARGS " --resume --t 0", b, few, cands);
    expect_failure(args, 1, "different options");
}

static void test_misuse(void **state) {
    (void)state;
    char args[2048];
    expect_failure("--candidates x", 2, "--out DIR is required");
    snprintf(args, sizeof args, "--out '%s/c' --candidates '%s'", tmpdir, cands);
    expect_failure(args, 2, "--valid-candidates");
    snprintf(args, sizeof args, "--out '%s/c' --candidates '%s' --valid-candidates '%s' --negatives 0", tmpdir, cands,
             cands);
    expect_failure(args, 2, "--negatives");
    snprintf(args, sizeof args, "--out '%s/c' --candidates '%s' --valid-candidates '%s' --t 1.5", tmpdir, cands, cands);
    expect_failure(args, 2, "--t");
    snprintf(args, sizeof args, "--out '%s/c' --candidates '%s' --valid-candidates '%s' --head-pool mean", tmpdir, cands,
             cands);
    expect_failure(args, 2, "--head-pool");
    snprintf(args, sizeof args, "--out '%s/c' --candidates '%s' --valid-candidates '%s' --easy-frac 2", tmpdir, cands,
             cands);
    expect_failure(args, 2, "--easy-frac");
    snprintf(args, sizeof args, "--out '%s/c' --candidates /nonexistent.jsonl --valid-candidates '%s'", tmpdir, cands);
    expect_failure(args, 1, "nonexistent.jsonl");
    snprintf(args, sizeof args, "--mine --out '%s/m' --titles '%s/none.txt'", tmpdir, tmpdir);
    expect_failure(args, 1, "none.txt");
    snprintf(args, sizeof args, "--eval-only --out '%s/empty' --valid-candidates '%s'", tmpdir, cands);
    expect_failure(args, 1, "phrex_reranker.json");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mine),
        cmocka_unit_test(test_train_lowers_loss),
        cmocka_unit_test(test_kill_and_resume),
        cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
