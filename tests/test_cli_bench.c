// `phrex bench` on a few real SQuAD paragraphs: one JSON line whose counts
// match the passages it read and whose rates are positive; misuse exits 2,
// a missing corpus exits 1 naming the file.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "tests/support/test_support.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#define PARAGRAPHS PHREX_SHARED_DIR "/data/wikipedia/squad-dev-paragraphs/squad-dev-v1.1-paragraphs.tsv"

static char tmp[256];

static test_run_result bench(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' bench --model '%s' %s", PHREX_CLI, PHREX_BASE_MODEL_DIR, args);
    return test_run_command(cmd, NULL, tmp);
}

static void test_bench_reports(void **state) {
    (void)state;
    test_run_result r = bench("--passages '" PARAGRAPHS "' --limit 6 --repeats 2 --threads 1");
    if (r.status != 0) fail_msg("bench: %s", r.err);
    cJSON *j = cJSON_Parse(r.out);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(j, "passages")->valueint, 6);
    assert_int_equal(cJSON_GetObjectItem(j, "threads")->valueint, 1);
    // six SQuAD paragraphs are hundreds of pieces each, [CLS]/[SEP] included
    assert_true(cJSON_GetObjectItem(j, "tokens")->valueint > 6 * 50);
    assert_true(cJSON_GetObjectItem(j, "tokens_per_s")->valuedouble > 0);
    assert_true(cJSON_GetObjectItem(j, "query_ms")->valuedouble > 0);
    cJSON_Delete(j);
    test_free_run(&r);
}

static void test_bench_misuse(void **state) {
    (void)state;
    test_run_result r = bench("--repeats 0");
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--repeats"));
    test_free_run(&r);
    r = bench("--passages /nonexistent/corpus.tsv");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "/nonexistent/corpus.tsv"));
    test_free_run(&r);
}

static int setup(void **state) {
    (void)state;
    snprintf(tmp, sizeof tmp, "/tmp/phrex-test-bench-XXXXXX");
    return test_make_tmpdir(tmp);
}

static int teardown(void **state) {
    (void)state;
    test_remove_tree(tmp);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_bench_reports), cmocka_unit_test(test_bench_misuse)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
