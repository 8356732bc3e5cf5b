// Query-side fine-tuning: the marginal-likelihood loss and its gradients
// (finite differences), and `phrex train-query` end to end on a small real
// dump (two SQuAD articles' paragraphs): outputs, the dump left unchanged,
// bit-identical resume after a kill, and bad input.
#include "common/error.h"
#include "data/squad_windows.h"
#include "encoder/wordpiece.h"
#include "search/query_train.h"
#include "tests/support/test_support.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#define SQUAD PHREX_SHARED_DIR "/data/squad-v1.1/dev-v1.1.40-articles.json"
#define TRAIN_TITLE "Sky_(United_Kingdom)" // small articles of each split
#define VALID_TITLE "Amazon_rainforest"

static struct {
    char tmp[256], dump[512], train_titles[512], valid_titles[512];
} g;

// --- the loss ------------------------------------------------------------------------

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float uniform(void) { // [-1, 1)
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void test_mml_gradient(void **state) {
    (void)state;
    enum { K = 7 };
    float x[K], dx[K], tmp[K];
    uint8_t gold[K] = {0, 1, 0, 0, 1, 0, 0};
    for (int i = 0; i < K; i++) x[i] = 3 * uniform();
    float loss = phrex_query_train_mml(x, gold, K, dx);
    // The definition: -log of the gold candidates' softmax mass.
    double z = 0, zg = 0;
    for (int i = 0; i < K; i++) z += exp(x[i]), zg += gold[i] ? exp(x[i]) : 0;
    assert_true(fabs(loss - -log(zg / z)) < 1e-5);
    for (int i = 0; i < K; i++) {
        const float h = 1e-2f;
        float xp[K], xm[K];
        memcpy(xp, x, sizeof x), memcpy(xm, x, sizeof x);
        xp[i] += h, xm[i] -= h;
        double fd = (phrex_query_train_mml(xp, gold, K, tmp) - phrex_query_train_mml(xm, gold, K, tmp)) / (2 * h);
        assert_true(fabs(fd - dx[i]) < 2e-3);
    }
    // Every candidate gold: nothing to learn.
    memset(gold, 1, sizeof gold);
    assert_true(fabs(phrex_query_train_mml(x, gold, K, dx)) < 1e-6);
    for (int i = 0; i < K; i++) assert_true(fabs(dx[i]) < 1e-6);
    // Below the 1e-7 clamp: constant, no gradient (as torch's clamp).
    memset(gold, 0, sizeof gold);
    gold[0] = 1;
    x[0] = -40;
    assert_true(fabs(phrex_query_train_mml(x, gold, K, dx) - -logf(PHREX_QUERY_TRAIN_MIN_PROB)) < 1e-4);
    for (int i = 0; i < K; i++) assert_true(dx[i] == 0);
}

static float total_loss(const float *qs, const float *qe, const float *a, const float *b, const uint8_t *gold, int k,
                        int C) {
    float dqs[16] = {0}, dqe[16] = {0}, scratch[64];
    phrex_query_train_loss_parts p;
    assert_int_equal(phrex_query_train_loss(qs, qe, a, b, gold, k, C, 1, dqs, dqe, scratch, &p), 0);
    return p.loss;
}

static void test_loss_gradient_q(void **state) {
    (void)state;
    enum { K = 5, C = 8 };
    float qs[C], qe[C], a[K * C], b[K * C], scratch[4 * K];
    uint8_t gold[K] = {0, 0, 1, 0, 1};
    for (int c = 0; c < C; c++) qs[c] = uniform(), qe[c] = uniform();
    for (int i = 0; i < K * C; i++) a[i] = uniform(), b[i] = uniform();
    float dqs[C], dqe[C];
    for (int c = 0; c < C; c++) dqs[c] = 0.5f, dqe[c] = -0.25f; // the gradient is added, scaled
    phrex_query_train_loss_parts p;
    const float scale = 0.5f;
    assert_int_equal(phrex_query_train_loss(qs, qe, a, b, gold, K, C, scale, dqs, dqe, scratch, &p), 0);
    assert_true(fabs(p.loss - (p.phrase + p.start + p.end)) < 1e-5);
    assert_true(p.phrase > 0 && p.start > 0 && p.end > 0);
    for (int half = 0; half < 2; half++)
        for (int c = 0; c < C; c++) {
            float *q = half ? qe : qs, keep = q[c], h = 1e-2f;
            q[c] = keep + h;
            float lp = total_loss(qs, qe, a, b, gold, K, C);
            q[c] = keep - h;
            float lm = total_loss(qs, qe, a, b, gold, K, C);
            q[c] = keep;
            double fd = (lp - lm) / (2 * h) * scale, got = half ? dqe[c] + 0.25 : dqs[c] - 0.5;
            assert_true(fabs(fd - got) < 3e-3);
        }
    // No gold candidate: skipped, nothing added.
    memset(gold, 0, sizeof gold);
    float before = dqs[0];
    assert_int_equal(phrex_query_train_loss(qs, qe, a, b, gold, K, C, 1, dqs, dqe, scratch, &p), -1);
    assert_true(dqs[0] == before);
}

// --- the command ----------------------------------------------------------------------

// A TSV field in DPR quoting: in double quotes, inner quotes doubled.
static void put_quoted(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') fputc('"', f);
        fputc(s[i] == '\t' || s[i] == '\n' ? ' ' : s[i], f);
    }
    fputc('"', f);
}

// The paragraphs of both articles as a corpus, exactly as SQuAD has them.
static int write_corpus(const char *path) {
    char vocab[512];
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", PHREX_BASE_MODEL_DIR);
    phrex_wordpiece *wp;
    if (phrex_wordpiece_init(&wp, vocab, 1)) return -1;
    const char *titles[2] = {TRAIN_TITLE, VALID_TITLE};
    phrex_squad_windows *s;
    int rc = phrex_squad_windows_init(&s, SQUAD, wp, titles, 2, NULL);
    phrex_wordpiece_free(wp);
    if (rc) return fprintf(stderr, "%s\n", phrex_last_error()), -1;
    FILE *f = fopen(path, "w");
    if (!f) return phrex_squad_windows_free(s), -1;
    fputs("id\ttext\ttitle\n", f);
    size_t n = phrex_squad_windows_stats(s)->paragraphs;
    for (size_t i = 0; i < n; i++) {
        const phrex_squad_paragraph *p = phrex_squad_windows_paragraph(s, (int)i);
        fprintf(f, "p%zu\t", i);
        put_quoted(f, p->context, p->context_len);
        fputc('\t', f);
        put_quoted(f, titles[p->article], strlen(titles[p->article]));
        fputc('\n', f);
    }
    phrex_squad_windows_free(s);
    return fclose(f) ? -1 : 0;
}

static int setup(void **state) {
    (void)state;
    snprintf(g.tmp, sizeof g.tmp, "/tmp/phrex-test-train-query-XXXXXX");
    if (test_make_tmpdir(g.tmp)) return -1;
    char corpus[512], cmd[2048];
    snprintf(corpus, sizeof corpus, "%s/corpus.tsv", g.tmp);
    snprintf(g.dump, sizeof g.dump, "%s/dump", g.tmp);
    snprintf(g.train_titles, sizeof g.train_titles, "%s", test_write_text(g.tmp, "train.txt", TRAIN_TITLE "\n"));
    snprintf(g.valid_titles, sizeof g.valid_titles, "%s", test_write_text(g.tmp, "valid.txt", VALID_TITLE "\n"));
    if (write_corpus(corpus)) return -1;
    snprintf(cmd, sizeof cmd, "'%s' build --corpus '%s' --out '%s' --index-factory Flat --threads 1 --quiet >/dev/null",
             PHREX_CLI, corpus, g.dump);
    return test_run_shell(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    test_remove_tree(g.tmp);
    return 0;
}

// Runs train-query into tmp/<out> with the given extra options.
static test_run_result train_query(const char *out, const char *extra) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=passive '%s' train-query --dump '%s' --model '%s' --out '%s/%s' --squad '%s' "
             "--train-titles '%s' --valid-titles '%s' --steps 3 --batch 4 --top-k 10 --threads 1 --limit-valid 8 "
             "--checkpoint-every 1 --add-gold %s",
             PHREX_CLI, g.dump, PHREX_BASE_MODEL_DIR, g.tmp, out, SQUAD, g.train_titles, g.valid_titles, extra);
    return test_run_command(cmd, NULL, g.tmp);
}

static uint64_t file_hash(const char *dir, const char *name) {
    char path[1024];
    test_join_path(path, sizeof path, dir, name);
    size_t n;
    char *data = test_load_file(path, &n);
    uint64_t h = test_hash_bytes(0xcbf29ce484222325ull, data, n);
    free(data);
    return h;
}

static void test_cli_trains(void **state) {
    (void)state;
    uint64_t before[3] = {file_hash(g.dump, "manifest.json"), file_hash(g.dump, "index.faiss"),
                          file_hash(g.dump, "meta.mdb")};
    test_run_result r = train_query("full", "");
    if (r.status != 0) fprintf(stderr, "%s", r.err);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "validation before (8 questions)"));
    assert_non_null(strstr(r.out, "validation after (8 questions)"));
    test_free_run(&r);
    char dir[512], path[1024];
    snprintf(dir, sizeof dir, "%s/full", g.tmp);
    char *json = test_load_file((snprintf(path, sizeof path, "%s/phrex_model.json", dir), path), NULL);
    assert_non_null(strstr(json, "\"format\": \"phrex-densephrases\""));
    assert_non_null(strstr(json, "\"phrase\": \"/")); // the original phrase encoder, absolute
    assert_non_null(strstr(json, "\"query_start\": \"query_start\""));
    assert_non_null(strstr(json, "\"add_gold\": true"));
    assert_null(strstr(json, "\"updates\": 0,")); // the added gold spans give every batch a target
    free(json);
    struct stat st;
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s/model.safetensors", dir, i ? "query_end" : "query_start");
        assert_int_equal(stat(path, &st), 0);
        snprintf(path, sizeof path, "%s/%s/vocab.txt", dir, i ? "query_end" : "query_start");
        assert_int_equal(stat(path, &st), 0);
    }
    char *metrics = test_load_file((snprintf(path, sizeof path, "%s/valid_metrics.json", dir), path), NULL);
    assert_non_null(strstr(metrics, "\"before\": {\"exact_match\""));
    assert_non_null(strstr(metrics, "\"after\": {\"exact_match\""));
    free(metrics);
    char *log = test_load_file((snprintf(path, sizeof path, "%s/train.log", dir), path), NULL);
    assert_non_null(strstr(log, "batch 3/3"));
    free(log);
    // The dump is read, never written.
    assert_true(before[0] == file_hash(g.dump, "manifest.json"));
    assert_true(before[1] == file_hash(g.dump, "index.faiss"));
    assert_true(before[2] == file_hash(g.dump, "meta.mdb"));
    // The trained encoders differ from where they started.
    snprintf(path, sizeof path, "%s/query_start", dir);
    char base[1024];
    snprintf(base, sizeof base, "%s/model.safetensors", PHREX_BASE_MODEL_DIR);
    size_t n1, n2;
    char *a = test_load_file((snprintf(path, sizeof path, "%s/query_start/model.safetensors", dir), path), &n1);
    char *b = test_load_file(base, &n2);
    assert_true(n1 != n2 || memcmp(a, b, n1) != 0);
    free(a), free(b);
}

// Killed after its first checkpoint and resumed: the same encoders as the
// uninterrupted run of test_cli_trains, bit for bit.
static void test_cli_resume(void **state) {
    (void)state;
    test_run_result r = train_query("killed", "--no-eval-before --kill-after-checkpoint 1");
    assert_int_not_equal(r.status, 0);
    test_free_run(&r);
    r = train_query("killed", "--no-eval-before"); // a checkpoint exists: refused without --resume
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "--resume"));
    test_free_run(&r);
    r = train_query("killed", "--no-eval-before --resume");
    if (r.status != 0) fprintf(stderr, "%s", r.err);
    assert_int_equal(r.status, 0);
    test_free_run(&r);
    char full[512], killed[512];
    snprintf(full, sizeof full, "%s/full/query_start", g.tmp);
    snprintf(killed, sizeof killed, "%s/killed/query_start", g.tmp);
    assert_true(file_hash(full, "model.safetensors") == file_hash(killed, "model.safetensors"));
    snprintf(full, sizeof full, "%s/full/query_end", g.tmp);
    snprintf(killed, sizeof killed, "%s/killed/query_end", g.tmp);
    assert_true(file_hash(full, "model.safetensors") == file_hash(killed, "model.safetensors"));
}

static void test_cli_bad_input(void **state) {
    (void)state;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' train-query --out '%s/x'", PHREX_CLI, g.tmp);
    test_run_result r = test_run_command(cmd, NULL, g.tmp);
    assert_int_equal(r.status, 2); // no --dump
    assert_non_null(strstr(r.err, "--dump"));
    test_free_run(&r);
    snprintf(cmd, sizeof cmd,
             "'%s' train-query --dump '%s/nowhere' --out '%s/y' --model '%s' --squad '%s' --train-titles '%s' "
             "--valid-titles '%s'",
             PHREX_CLI, g.tmp, g.tmp, PHREX_BASE_MODEL_DIR, SQUAD, g.train_titles, g.valid_titles);
    r = test_run_command(cmd, NULL, g.tmp);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "nowhere"));
    test_free_run(&r);
    r = train_query("z", "--resume"); // nothing to resume
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "train_state.bin does not exist"));
    test_free_run(&r);
    r = train_query("w", "--top-k 0");
    assert_int_equal(r.status, 2);
    test_free_run(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mml_gradient),
        cmocka_unit_test(test_loss_gradient_q),
        cmocka_unit_test(test_cli_trains),
        cmocka_unit_test(test_cli_resume),
        cmocka_unit_test(test_cli_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
