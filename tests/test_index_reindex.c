// `phrex reindex`: a dump built once with --keep-vectors (Flat), indexed
// again with SQ8 without encoding: the records and id map are the source's
// (same LMDB hash), the new index holds every kept vector (reconstructions
// within SQ8's quantization step of the exact ones) and the manifest names
// the new factory; a dump without its vectors is refused naming the fix.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "index/dump.h"
#include "tests/support/test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARTICLES PHREX_SHARED_DIR "/data/wikipedia/densephrases-sample/articles.json"
#define N_PASSAGES 5

static char tmp[256], corpus[512];

static int setup(void **state) {
    (void)state;
    snprintf(tmp, sizeof tmp, "/tmp/phrex-reindex-XXXXXX");
    if (test_make_tmpdir(tmp)) return -1;
    snprintf(corpus, sizeof corpus, "%s/corpus.tsv", tmp);
    return test_write_corpus(corpus, ARTICLES, N_PASSAGES, NULL, 0);
}

static int teardown(void **state) {
    (void)state;
    return test_remove_tree(tmp);
}

static void build(const char *out, const char *extra) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s build --corpus %s --out %s --model %s --index-factory Flat --threads 2 --quiet %s "
             ">/dev/null", PHREX_CLI, corpus, out, PHREX_BASE_MODEL_DIR, extra);
    assert_int_equal(test_run_shell(cmd), 0);
}

static void test_reindex_keeps_records_and_vectors(void **state) {
    (void)state;
    char src[512], dst[512], cmd[4096];
    test_join_path(src, sizeof src, tmp, "src");
    test_join_path(dst, sizeof dst, tmp, "sq8");
    build(src, "--keep-vectors");
    snprintf(cmd, sizeof cmd, "%s reindex --dump %s --out %s --model %s --index-factory SQ8 --threads 2 --quiet",
             PHREX_CLI, src, dst, PHREX_BASE_MODEL_DIR);
    test_run_result r = test_run_command(cmd, NULL, tmp);
    if (r.status != 0) fail_msg("reindex exited %d: %s", r.status, r.err);
    test_free_run(&r);
    phrex_dump *a, *b;
    assert_int_equal(phrex_dump_open(&a, src, PHREX_BASE_MODEL_DIR), PHREX_OK);
    assert_int_equal(phrex_dump_open(&b, dst, PHREX_BASE_MODEL_DIR), PHREX_OK);
    const phrex_dump_info *ia = phrex_dump_get_info(a), *ib = phrex_dump_get_info(b);
    assert_string_equal(ib->factory, "SQ8");
    assert_true(ia->lmdb_hash == ib->lmdb_hash);
    assert_int_equal(ia->kept, ib->kept);
    assert_int_equal(ia->passages, N_PASSAGES);
    int C = ia->dim;
    float *x = malloc((size_t)C * sizeof *x), *y = malloc((size_t)C * sizeof *y);
    double worst = 0, range = 0;
    for (int64_t id = 0; id < ia->kept; id++) {
        assert_int_equal(phrex_dump_reconstruct(a, id, x), PHREX_OK);
        assert_int_equal(phrex_dump_reconstruct(b, id, y), PHREX_OK);
        for (int k = 0; k < C; k++) {
            double d = fabs((double)x[k] - y[k]);
            worst = d > worst ? d : worst;
            range = fabs(x[k]) > range ? fabs(x[k]) : range;
        }
    }
    // SQ8: 256 levels per dimension over its trained range.
    if (worst > 2 * range / 255 || worst == 0) fail_msg("SQ8 error %g for values up to %g", worst, range);
    free(x), free(y);
    phrex_dump_free(a);
    phrex_dump_free(b);
}

static void test_reindex_needs_the_vectors(void **state) {
    (void)state;
    char src[512], dst[512], cmd[4096];
    test_join_path(src, sizeof src, tmp, "novec");
    test_join_path(dst, sizeof dst, tmp, "novec-sq8");
    build(src, "");
    snprintf(cmd, sizeof cmd, "%s reindex --dump %s --out %s --model %s --index-factory SQ8 --quiet", PHREX_CLI, src,
             dst, PHREX_BASE_MODEL_DIR);
    test_run_result r = test_run_command(cmd, NULL, tmp);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "--keep-vectors"));
    assert_non_null(strstr(r.err, "vectors.f32"));
    test_free_run(&r);
    snprintf(cmd, sizeof cmd, "%s reindex --out %s", PHREX_CLI, dst);
    r = test_run_command(cmd, NULL, tmp);
    assert_int_equal(r.status, 2);
    test_free_run(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reindex_keeps_records_and_vectors),
        cmocka_unit_test(test_reindex_needs_the_vectors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
