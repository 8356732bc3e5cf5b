// SQuAD windows on the real 40-article file: the split lists partition the
// titles, every kept answer's token span reads back as the answer (after
// SQuAD normalisation) but for a few answers that end inside a word,
// windows cover their paragraphs with the configured stride, and unknown
// titles and missing files fail with their names.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "data/metrics.h"
#include "data/squad_windows.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SQUAD PHREX_SHARED_DIR "/data/squad-v1.1/dev-v1.1.40-articles.json"
#define TRAIN_TITLES PHREX_SOURCE_DIR "/data/splits/squad_train_titles.txt"
#define VALID_TITLES PHREX_SOURCE_DIR "/data/splits/squad_valid_titles.txt"

static phrex_wordpiece *wp;

static int setup(void **state) {
    (void)state;
    return phrex_wordpiece_init(&wp, PHREX_BASE_MODEL_DIR "/vocab.txt", 1);
}

static int teardown(void **state) {
    (void)state;
    phrex_wordpiece_free(wp);
    return 0;
}

static void test_split_partitions_titles(void **state) {
    (void)state;
    char **tr, **va;
    int ntr, nva;
    assert_int_equal(phrex_squad_read_titles(TRAIN_TITLES, &tr, &ntr), PHREX_OK);
    assert_int_equal(phrex_squad_read_titles(VALID_TITLES, &va, &nva), PHREX_OK);
    assert_int_equal(ntr, 32);
    assert_int_equal(nva, 8);
    for (int i = 0; i < ntr; i++)
        for (int j = 0; j < nva; j++) assert_string_not_equal(tr[i], va[j]);
    // Together they name all 40 articles: every title is found (init
    // fails on an unknown one) and the article counts add up.
    phrex_squad_windows *a, *b, *all;
    assert_int_equal(phrex_squad_windows_init(&a, SQUAD, wp, (const char *const *)tr, ntr, NULL), PHREX_OK);
    assert_int_equal(phrex_squad_windows_init(&b, SQUAD, wp, (const char *const *)va, nva, NULL), PHREX_OK);
    assert_int_equal(phrex_squad_windows_init(&all, SQUAD, wp, NULL, 0, NULL), PHREX_OK);
    const phrex_squad_window_stats *sa = phrex_squad_windows_stats(a), *sb = phrex_squad_windows_stats(b),
                                   *st = phrex_squad_windows_stats(all);
    assert_int_equal(st->articles, 40);
    assert_int_equal(sa->articles + sb->articles, 40);
    assert_int_equal(st->paragraphs, 1682);
    assert_int_equal(st->questions, 8847);
    assert_int_equal(sa->questions + sb->questions, 8847);
    assert_int_equal(sa->kept + sb->kept, st->kept);
    printf("train: %zu articles, %zu paragraphs, %zu windows, %zu questions, %zu kept\n", sa->articles, sa->paragraphs,
           sa->windows, sa->questions, sa->kept);
    printf("valid: %zu articles, %zu paragraphs, %zu windows, %zu questions, %zu kept\n", sb->articles, sb->paragraphs,
           sb->windows, sb->questions, sb->kept);
    phrex_squad_windows_free(a), phrex_squad_windows_free(b), phrex_squad_windows_free(all);
    free(tr), free(va);
}

// Every window is [CLS] pieces [SEP] within max_seq_len; consecutive
// windows start doc_stride apart and the last reaches the paragraph's end.
static void check_windows(const phrex_squad_windows *s, int max_seq, int stride) {
    const phrex_squad_window_stats *st = phrex_squad_windows_stats(s);
    for (size_t p = 0; p < st->paragraphs; p++) {
        const phrex_squad_paragraph *par = phrex_squad_windows_paragraph(s, (int)p);
        assert_true(par->n_windows >= 1);
        for (int w = 0; w < par->n_windows; w++) {
            const phrex_squad_window *win = phrex_squad_windows_window(s, par->first_window + w);
            assert_int_equal(win->paragraph, (int)p);
            assert_true(win->n_pieces + 2 <= max_seq);
            assert_int_equal(win->piece_start, w * stride);
            if (w + 1 < par->n_windows) assert_true(win->piece_start + win->n_pieces < par->n_pieces);
            else assert_int_equal(win->piece_start + win->n_pieces, par->n_pieces);
        }
    }
}

// The kept spans read back as their answers; returns how many do not
// (the answer ends or starts inside a word piece, e.g. "Denver" of
// "Denver's" is fine but "ton" of "Washington" is not).
static size_t check_spans(const phrex_squad_windows *s, int max_seq) {
    int32_t *ids = malloc((size_t)max_seq * 4), *os = malloc((size_t)max_seq * 4), *oe = malloc((size_t)max_seq * 4);
    size_t bad = 0;
    for (int i = 0; i < phrex_squad_windows_count(s); i++) {
        const phrex_squad_example *e = phrex_squad_windows_example(s, i);
        const phrex_squad_paragraph *p = phrex_squad_windows_paragraph(s, e->paragraph);
        int n = phrex_squad_windows_fill(s, e->window, ids, os, oe);
        assert_true(e->gold_start >= 1 && e->gold_start <= e->gold_end && e->gold_end <= n - 2);
        assert_true(e->query_len >= 3 && e->query_len <= 64);
        int len = oe[e->gold_end] - os[e->gold_start];
        char *span = malloc((size_t)len + 1);
        memcpy(span, p->context + os[e->gold_start], (size_t)len);
        span[len] = '\0';
        if (!phrex_metric_exact_match(span, e->answers[0])) {
            if (bad < 5) printf("  span '%s' vs answer '%s'\n", span, e->answers[0]);
            bad++;
        }
        free(span);
    }
    free(ids), free(os), free(oe);
    return bad;
}

static void test_spans_and_windows(void **state) {
    (void)state;
    phrex_squad_windows *s;
    assert_int_equal(phrex_squad_windows_init(&s, SQUAD, wp, NULL, 0, NULL), PHREX_OK);
    const phrex_squad_window_stats *st = phrex_squad_windows_stats(s);
    printf("all: %zu windows; %zu questions: %zu kept, %zu mismatch, %zu empty, %zu outside, %zu no answer\n",
           st->windows, st->questions, st->kept, st->mismatch, st->empty, st->outside, st->no_answer);
    assert_int_equal(st->kept + st->mismatch + st->empty + st->outside + st->no_answer, st->questions);
    assert_true(st->kept * 1000 >= st->questions * 995); // the file is clean: skips are rare
    check_windows(s, 384, 128);
    size_t bad = check_spans(s, 384);
    printf("%zu of %zu spans differ from their answer after normalisation (answer inside a word)\n", bad, st->kept);
    assert_true(bad * 100 <= st->kept); // under 1%
    phrex_squad_windows_free(s);

    // Short windows: many per paragraph, and spans still read back.
    phrex_squad_window_options o = {64, 16, 16};
    assert_int_equal(phrex_squad_windows_init(&s, SQUAD, wp, NULL, 0, &o), PHREX_OK);
    st = phrex_squad_windows_stats(s);
    printf("64/16: %zu windows, %zu kept, %zu outside\n", st->windows, st->kept, st->outside);
    assert_true(st->windows > 5 * st->paragraphs);
    check_windows(s, 64, 16);
    assert_true(check_spans(s, 64) * 100 <= st->kept);
    phrex_squad_windows_free(s);
}

static void test_bad_inputs(void **state) {
    (void)state;
    phrex_squad_windows *s;
    const char *unknown[] = {"Super_Bowl_50", "No_Such_Article"};
    assert_int_equal(phrex_squad_windows_init(&s, SQUAD, wp, unknown, 2, NULL), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "No_Such_Article"));
    assert_int_not_equal(phrex_squad_windows_init(&s, "/nonexistent/squad.json", wp, NULL, 0, NULL), PHREX_OK);
    assert_non_null(strstr(phrex_last_error(), "/nonexistent/squad.json"));

    char path[] = "/tmp/phrex-test-titles-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("Warsaw\n\nRhine\n", f);
    fclose(f);
    char **t;
    int n;
    assert_int_equal(phrex_squad_read_titles(path, &t, &n), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), ":2:"));
    f = fopen(path, "w");
    fputs("Warsaw\nRhine\nWarsaw\n", f);
    fclose(f);
    assert_int_equal(phrex_squad_read_titles(path, &t, &n), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), ":3:"));
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_partitions_titles),
        cmocka_unit_test(test_spans_and_windows),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
