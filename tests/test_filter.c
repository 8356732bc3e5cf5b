// The phrase filter (index/filter.h, `phrex train-filter`, `phrex build
// --filter`), on real token vectors of the base model over the first
// paragraphs of DensePhrases' sample corpus:
// - the file round-trips, and a corrupt, truncated, foreign or newer file is
//   refused naming what is wrong;
// - the trainer learns a property the vectors carry (punctuation tokens vs
//   words) well enough to rank held-out passages' tokens (AUC);
// - a build with --filter keeps exactly the tokens whose start or end logit
//   exceeds the threshold (checked against the vectors of an unfiltered
//   build), records the filter in the manifest, and refuses to resume with
//   another threshold; a filter of another encoder and a threshold without
//   a filter are refused;
// - `phrex train-filter` on a few SQuAD paragraphs writes a loadable filter
//   for the model and prints the kept/recall table.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "index/dump.h"
#include "index/filter.h"
#include "tests/support/test_support.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARTICLES PHREX_SHARED_DIR "/data/wikipedia/densephrases-sample/articles.json"
#define SQUAD PHREX_SHARED_DIR "/data/squad-v1.1/dev-v1.1.40-articles.json"
#ifdef __SANITIZE_ADDRESS__
#define N_PASSAGES 4
#else
#define N_PASSAGES 8
#endif

static struct {
    char tmp[256], corpus[512], plain[512], filter[512];
    phrex_dump *dump; // the unfiltered build
    int C;
} g;

static int run_quiet(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return test_run_shell(cmd);
}

static int setup(void **state) {
    (void)state;
    snprintf(g.tmp, sizeof g.tmp, "/tmp/phrex-filter-XXXXXX");
    if (test_make_tmpdir(g.tmp)) return -1;
    snprintf(g.corpus, sizeof g.corpus, "%s/corpus.tsv", g.tmp);
    snprintf(g.plain, sizeof g.plain, "%s/plain", g.tmp);
    snprintf(g.filter, sizeof g.filter, "%s/filter.bin", g.tmp);
    if (test_write_corpus(g.corpus, ARTICLES, N_PASSAGES, NULL, 0)) return -1;
    if (run_quiet("%s build --corpus %s --out %s --model %s --index-factory Flat --threads 2 --quiet >/dev/null",
                  PHREX_CLI, g.corpus, g.plain, PHREX_BASE_MODEL_DIR))
        return -1;
    if (phrex_dump_open(&g.dump, g.plain, PHREX_BASE_MODEL_DIR)) return -1;
    g.C = phrex_dump_get_info(g.dump)->dim;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    phrex_dump_free(g.dump);
    return test_remove_tree(g.tmp);
}

// --- the file -----------------------------------------------------------------

static void test_file_round_trip_and_refusals(void **state) {
    (void)state;
    phrex_filter f, h;
    assert_int_equal(phrex_filter_init(&f, 8, 0x1234), PHREX_OK);
    for (int i = 0; i < 8; i++) f.w_start[i] = (float)i * 0.5f, f.w_end[i] = -(float)i;
    f.b_start = 0.25f, f.b_end = -3.0f;
    char path[512];
    test_join_path(path, sizeof path, g.tmp, "small.bin");
    assert_int_equal(phrex_filter_save(&f, path), PHREX_OK);
    assert_int_equal(phrex_filter_load(&h, path), PHREX_OK);
    assert_int_equal(h.dim, 8);
    assert_true(h.model_hash == 0x1234 && h.file_hash == f.file_hash);
    assert_memory_equal(h.w_start, f.w_start, 8 * sizeof(float));
    assert_memory_equal(h.w_end, f.w_end, 8 * sizeof(float));
    assert_true(h.b_start == f.b_start && h.b_end == f.b_end);
    phrex_filter_free(&h);

    size_t len;
    char *bytes = test_load_file(path, &len);
    struct {
        size_t at;
        unsigned char xor_;
        size_t cut;
        const char *needle;
    } bad[] = {
        {40, 0x01, 0, "checksum"},      // a weight
        {0, 0x20, 0, "magic"},          // "pHRXFILT"
        {8, 0x03, 0, "version 2"},      // version 1 -> 2
        {0, 0, 7, "magic"},             // truncated header
        {0, 0, len - 3, "truncated"},   // truncated weights
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *copy = malloc(len);
        memcpy(copy, bytes, len);
        copy[bad[i].at] ^= (char)bad[i].xor_;
        test_write_file(path, copy, bad[i].cut ? bad[i].cut : len);
        free(copy);
        assert_int_equal(phrex_filter_load(&h, path), PHREX_ERR_FORMAT);
        if (!strstr(phrex_last_error(), bad[i].needle) || !strstr(phrex_last_error(), path))
            fail_msg("case %zu: '%s' lacks '%s'", i, phrex_last_error(), bad[i].needle);
    }
    free(bytes);
    test_join_path(path, sizeof path, g.tmp, "missing.bin");
    assert_int_equal(phrex_filter_load(&h, path), PHREX_ERR_IO);
    phrex_filter_free(&f);
}

// --- training ---------------------------------------------------------------------

// Every token of passages [p0, p1) of the unfiltered dump: its vector and
// whether its text is punctuation.
static int64_t token_rows(int64_t p0, int64_t p1, float **x, uint8_t **y) {
    int64_t n = 0, cap = 0;
    *x = NULL, *y = NULL;
    for (int64_t p = p0; p < p1; p++) {
        phrex_dump_passage ps;
        assert_int_equal(phrex_dump_get_passage(g.dump, p, &ps), PHREX_OK);
        assert_int_equal(ps.n_kept, ps.n_tokens);
        for (int32_t t = 0; t < ps.n_tokens; t++) {
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                *x = realloc(*x, (size_t)cap * (size_t)g.C * sizeof(float));
                *y = realloc(*y, (size_t)cap);
                assert_true(*x && *y);
            }
            assert_int_equal(phrex_dump_reconstruct(g.dump, ps.first_id + t, *x + (size_t)n * (size_t)g.C), PHREX_OK);
            (*y)[n++] = (uint8_t)ispunct((unsigned char)ps.text[ps.start[t]]) != 0;
        }
    }
    return n;
}

static void test_trainer_learns_from_real_vectors(void **state) {
    (void)state;
    float *x, *vx;
    uint8_t *y, *vy;
    int64_t n = token_rows(0, N_PASSAGES - 2, &x, &y), vn = token_rows(N_PASSAGES - 2, N_PASSAGES, &vx, &vy);
    float *w = malloc((size_t)n * sizeof *w);
    int64_t pos = 0;
    for (int64_t i = 0; i < n; i++) w[i] = 1.0f, pos += y[i];
    assert_true(pos > 10 && pos < n - 10);
    phrex_filter f;
    assert_int_equal(phrex_filter_init(&f, g.C, 7), PHREX_OK);
    phrex_filter_train_options o;
    phrex_filter_train_options_default(&o);
    o.epochs = 8;
    o.batch = 64;
    double loss;
    // Both heads learn the same labels here.
    assert_int_equal(phrex_filter_train(&f, x, y, y, w, n, &o, &loss), PHREX_OK);
    // Better than the base rate alone (the loss sums both heads).
    double q = (double)pos / (double)n, prior = -2 * (q * log(q) + (1 - q) * log(1 - q));
    if (!isfinite(loss) || loss > 0.7 * prior) fail_msg("loss %g, base rate alone %g", loss, prior);
    // Held-out AUC of the start head.
    float *s = malloc((size_t)vn * sizeof *s);
    phrex_filter_logits(&f, vx, (int)vn, s, NULL);
    double pairs = 0, right = 0;
    for (int64_t i = 0; i < vn; i++)
        for (int64_t j = 0; j < vn; j++)
            if (vy[i] && !vy[j]) pairs++, right += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
    assert_true(pairs > 0);
    if (right / pairs < 0.9) fail_msg("held-out AUC %.3f", right / pairs);
    assert_int_equal(phrex_filter_save(&f, g.filter), PHREX_OK);
    free(s);
    free(w);
    free(x), free(y), free(vx), free(vy);
    phrex_filter_free(&f);
}

// --- the build hook ---------------------------------------------------------------

static void test_build_keeps_what_the_filter_says(void **state) {
    (void)state;
    phrex_filter f;
    assert_int_equal(phrex_filter_load(&f, g.filter), PHREX_OK);
    uint64_t model_hash;
    assert_int_equal(phrex_dump_model_hash(PHREX_BASE_MODEL_DIR, &model_hash), PHREX_OK);
    f.model_hash = model_hash; // trained above on this encoder's vectors
    assert_int_equal(phrex_filter_save(&f, g.filter), PHREX_OK);
    // The threshold: the median of max(start, end) over the corpus.
    float *x;
    uint8_t *y;
    int64_t n = token_rows(0, N_PASSAGES, &x, &y);
    float *score = malloc((size_t)n * sizeof *score), *sorted = malloc((size_t)n * sizeof *sorted);
    for (int64_t i = 0; i < n; i++) {
        float s, e;
        phrex_filter_logits(&f, x + (size_t)i * (size_t)g.C, 1, &s, &e);
        score[i] = sorted[i] = s > e ? s : e;
    }
    for (int64_t i = 1; i < n; i++) // insertion sort: a few thousand scores
        for (int64_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            float t = sorted[j];
            sorted[j] = sorted[j - 1], sorted[j - 1] = t;
        }
    char th_text[32];
    snprintf(th_text, sizeof th_text, "%.4f", (double)sorted[n / 2]);
    float th = strtof(th_text, NULL);

    char out[512];
    test_join_path(out, sizeof out, g.tmp, "filtered");
    assert_int_equal(run_quiet("%s build --corpus %s --out %s --model %s --index-factory Flat --threads 2 --quiet "
                               "--filter %s --filter-threshold %s >/dev/null",
                               PHREX_CLI, g.corpus, out, PHREX_BASE_MODEL_DIR, g.filter, th_text),
                     0);
    phrex_dump *d;
    assert_int_equal(phrex_dump_open(&d, out, PHREX_BASE_MODEL_DIR), PHREX_OK);
    const phrex_dump_info *info = phrex_dump_get_info(d);
    char name[64];
    phrex_filter_name(&f, th, name, sizeof name);
    assert_string_equal(info->filter, name);
    int64_t i = 0, kept = 0;
    for (int64_t p = 0; p < N_PASSAGES; p++) {
        phrex_dump_passage ps;
        assert_int_equal(phrex_dump_get_passage(d, p, &ps), PHREX_OK);
        for (int32_t t = 0; t < ps.n_tokens; t++, i++) {
            if (ps.kept[t] != (score[i] > th)) fail_msg("passage %lld token %d: kept %d, score %g, threshold %g",
                                                        (long long)p, t, ps.kept[t], (double)score[i], (double)th);
            kept += ps.kept[t];
        }
    }
    assert_int_equal(i, n);
    assert_int_equal(kept, info->kept);
    assert_true(kept > n / 4 && kept < 3 * n / 4);
    phrex_dump_free(d);
    // Another threshold is another dump: a resume with it is refused.
    test_run_result r;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s build --corpus %s --out %s --model %s --index-factory Flat --quiet --filter %s "
             "--filter-threshold 9", PHREX_CLI, g.corpus, out, PHREX_BASE_MODEL_DIR, g.filter);
    r = test_run_command(cmd, NULL, g.tmp);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "filter=logreg-"));
    test_free_run(&r);
    free(score), free(sorted), free(x), free(y);
    phrex_filter_free(&f);
}

static void test_build_refuses_a_foreign_filter(void **state) {
    (void)state;
    phrex_filter f;
    char path[512], cmd[4096];
    assert_int_equal(phrex_filter_load(&f, g.filter), PHREX_OK);
    f.model_hash ^= 1; // another encoder's filter
    test_join_path(path, sizeof path, g.tmp, "foreign.bin");
    assert_int_equal(phrex_filter_save(&f, path), PHREX_OK);
    phrex_filter_free(&f);
    snprintf(cmd, sizeof cmd, "%s build --corpus %s --out %s/x --model %s --quiet --filter %s", PHREX_CLI, g.corpus,
             g.tmp, PHREX_BASE_MODEL_DIR, path);
    test_run_result r = test_run_command(cmd, NULL, g.tmp);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "another phrase encoder"));
    test_free_run(&r);
    snprintf(cmd, sizeof cmd, "%s build --corpus %s --out %s/x --model %s --quiet --filter-threshold 1", PHREX_CLI,
             g.corpus, g.tmp, PHREX_BASE_MODEL_DIR);
    r = test_run_command(cmd, NULL, g.tmp);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "needs a filter"));
    test_free_run(&r);
}

// --- phrex train-filter ---------------------------------------------------------------

static void test_train_filter_cli(void **state) {
    (void)state;
    char out[512], cmd[4096];
    test_join_path(out, sizeof out, g.tmp, "trained.bin");
    snprintf(cmd, sizeof cmd,
             "%s train-filter --model %s --out %s --squad %s --train-titles %s/data/splits/squad_train_titles.txt "
             "--valid-titles %s/data/splits/squad_valid_titles.txt --max-paragraphs 3 --epochs 2 --threads 2",
             PHREX_CLI, PHREX_BASE_MODEL_DIR, out, SQUAD, PHREX_SOURCE_DIR, PHREX_SOURCE_DIR);
    test_run_result r = test_run_command(cmd, NULL, g.tmp);
    if (r.status != 0) fail_msg("train-filter exited %d: %s", r.status, r.err);
    for (const char *row = "| -4 |"; row; row = strcmp(row, "| -4 |") ? NULL : "| 2 |")
        assert_non_null(strstr(r.out, row));
    test_free_run(&r);
    phrex_filter f;
    uint64_t model_hash;
    assert_int_equal(phrex_filter_load(&f, out), PHREX_OK);
    assert_int_equal(phrex_dump_model_hash(PHREX_BASE_MODEL_DIR, &model_hash), PHREX_OK);
    assert_true(f.model_hash == model_hash);
    assert_int_equal(f.dim, g.C);
    phrex_filter_free(&f);
    // A missing split file is named.
    snprintf(cmd, sizeof cmd, "%s train-filter --model %s --out %s --squad %s --train-titles %s/nope.txt",
             PHREX_CLI, PHREX_BASE_MODEL_DIR, out, SQUAD, g.tmp);
    r = test_run_command(cmd, NULL, g.tmp);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "nope.txt"));
    test_free_run(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_round_trip_and_refusals),
        cmocka_unit_test(test_trainer_learns_from_real_vectors),
        cmocka_unit_test(test_build_keeps_what_the_filter_says),
        cmocka_unit_test(test_build_refuses_a_foreign_filter),
        cmocka_unit_test(test_train_filter_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
