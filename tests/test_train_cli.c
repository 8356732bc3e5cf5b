// `phrex train-phrase` end to end on a lower-layer slice of the base model
// and two SQuAD articles: a run killed with SIGKILL right after a
// checkpoint and resumed ends with the same model files, byte for byte, as
// an uninterrupted run; --eval-only on the result reproduces its metrics;
// bad inputs exit non-zero with a message that names the problem.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/test_support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define PHREX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PHREX_ASAN 1
#endif
#endif

// Sanitized builds run about 10x slower: one layer and fewer steps there.
#ifdef PHREX_ASAN
#define SIZE_ARGS "--layers 1 --batch 2 --steps 4 --checkpoint-every 2 --limit-valid 4"
#define KILL_AT "2"
#else
#define SIZE_ARGS "--layers 2 --batch 2 --steps 6 --checkpoint-every 2 --limit-valid 20"
#define KILL_AT "4"
#endif

#define SQUAD PHREX_SHARED_DIR "/data/squad-v1.1/dev-v1.1.40-articles.json"

static char tmpdir[] = "/tmp/phrex-test-train-cli-XXXXXX";
static char train_titles[600], valid_titles[600], bad_titles[600];

typedef struct {
    int status; // exit status; 128 + signal when killed
    char *err;  // stderr
} run_result;

// Runs `phrex train-phrase ARGS` with stdout and stderr captured.
static run_result train(const char *args) {
    char cmd[4096], out[700], err[700];
    snprintf(out, sizeof out, "%s/stdout", tmpdir);
    snprintf(err, sizeof err, "%s/stderr", tmpdir);
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=passive exec '%s' train-phrase --model '%s' --threads 2 %s > '%s' 2> '%s'", PHREX_CLI,
             PHREX_BASE_MODEL_DIR, args, out, err);
    int status = system(cmd);
    run_result r = {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), test_read_file(err, NULL)};
    if (!r.err) r.err = strdup("");
    return r;
}

static void expect_failure(const char *args, int status, const char *needle) {
    run_result r = train(args);
    if (r.status != status || !strstr(r.err, needle))
        fail_msg("'%s': status %d (want %d), stderr '%s' (want '%s')", args, r.status, status, r.err, needle);
    free(r.err);
}

static void assert_same_file(const char *a_dir, const char *b_dir, const char *name) {
    char a[700], b[700];
    snprintf(a, sizeof a, "%s/%s", a_dir, name);
    snprintf(b, sizeof b, "%s/%s", b_dir, name);
    size_t na, nb;
    char *x = test_read_file(a, &na), *y = test_read_file(b, &nb);
    assert_non_null(x);
    assert_non_null(y);
    assert_int_equal(na, nb);
    if (memcmp(x, y, na)) fail_msg("%s and %s differ", a, b);
    free(x), free(y);
}

static int setup(void **state) {
    (void)state;
    if (test_make_tmpdir(tmpdir)) return -1;
    snprintf(train_titles, sizeof train_titles, "%s/train.txt", tmpdir);
    snprintf(valid_titles, sizeof valid_titles, "%s/valid.txt", tmpdir);
    snprintf(bad_titles, sizeof bad_titles, "%s/bad.txt", tmpdir);
    test_write_string(train_titles, "Warsaw\n");
    test_write_string(valid_titles, "Teacher\n");
    test_write_string(bad_titles, "Warsaw\nAtlantis_(no_such_article)\n");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return test_remove_tree(tmpdir);
}

static void test_kill_and_resume_is_bit_identical(void **state) {
    (void)state;
    char common[2048], args[3072], a[700], b[700], path[2400];
    snprintf(common, sizeof common, "--squad '%s' --train-titles '%s' --valid-titles '%s' " SIZE_ARGS, SQUAD,
             train_titles, valid_titles);
    snprintf(a, sizeof a, "%s/a", tmpdir);
    snprintf(b, sizeof b, "%s/b", tmpdir);

    snprintf(args, sizeof args, "--out '%s' %s", a, common);
    run_result r = train(args);
    if (r.status) fail_msg("uninterrupted run failed (%d): %s", r.status, r.err);
    assert_null(strchr(r.err, '\r')); // no progress redraws into a pipe
    free(r.err);
    snprintf(path, sizeof path, "%s/train.log", a);
    char *log = test_read_file(path, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "loss "));
    assert_non_null(strstr(log, "examples/s"));
    free(log);

    snprintf(args, sizeof args, "--out '%s' %s --kill-after-checkpoint " KILL_AT, b, common);
    r = train(args);
    assert_int_equal(r.status, 128 + SIGKILL);
    free(r.err);
    struct stat st;
    snprintf(path, sizeof path, "%s/train_state.bin", b);
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof path, "%s/phrex_model.json", b);
    assert_int_not_equal(stat(path, &st), 0); // killed before the end

    // Starting over in a directory with a state is refused...
    snprintf(args, sizeof args, "--out '%s' %s", b, common);
    expect_failure(args, 1, "--resume");
    // ...and resuming with other options too.
    snprintf(args, sizeof args, "--out '%s' %s --lr 0.5 --resume", b, common);
    expect_failure(args, 1, "different options");

    snprintf(args, sizeof args, "--out '%s' %s --resume", b, common);
    r = train(args);
    if (r.status) fail_msg("resumed run failed (%d): %s", r.status, r.err);
    assert_non_null(strstr(r.err, "resuming at update " KILL_AT));
    free(r.err);

    assert_same_file(a, b, "phrase/model.safetensors");
    assert_same_file(a, b, "query_start/model.safetensors");
    assert_same_file(a, b, "query_end/model.safetensors");
    assert_same_file(a, b, "valid_metrics.json");
    assert_same_file(a, b, "phrex_model.json");

    // The saved model evaluates to the same metrics on its own.
    char c[700];
    snprintf(c, sizeof c, "%s/c", tmpdir);
    snprintf(path, sizeof path, "cp -r '%s' '%s' && rm '%s/valid_metrics.json'", a, c, c);
    assert_int_equal(system(path), 0);
    snprintf(args, sizeof args, "--out '%s' %s --eval-only", c, common);
    r = train(args);
    if (r.status) fail_msg("eval-only failed (%d): %s", r.status, r.err);
    free(r.err);
    // Equal but for "steps" (0: nothing trained in this run).
    snprintf(path, sizeof path, "%s/valid_metrics.json", a);
    char *ma = test_read_file(path, NULL);
    snprintf(path, sizeof path, "%s/valid_metrics.json", c);
    char *mc = test_read_file(path, NULL);
    assert_non_null(ma);
    assert_non_null(mc);
    *strstr(ma, "\"steps\"") = '\0', *strstr(mc, "\"steps\"") = '\0';
    assert_string_equal(ma, mc);
    free(ma), free(mc);
}

static void test_bad_inputs(void **state) {
    (void)state;
    char args[3072], out[700];
    snprintf(out, sizeof out, "%s/bad", tmpdir);
    snprintf(args, sizeof args, "--out '%s' --squad '%s/missing.json' --train-titles '%s' --valid-titles '%s'", out,
             tmpdir, train_titles, valid_titles);
    expect_failure(args, 1, "missing.json");
    snprintf(args, sizeof args, "--out '%s' --squad '%s' --train-titles '%s' --valid-titles '%s'", out, SQUAD,
             bad_titles, valid_titles);
    expect_failure(args, 1, "Atlantis_(no_such_article)");
    snprintf(args, sizeof args, "--out '%s' --squad '%s' --train-titles '%s/none.txt'", out, SQUAD, tmpdir);
    expect_failure(args, 1, "none.txt");
    snprintf(args, sizeof args, "--out '%s' --batch 0", out);
    expect_failure(args, 2, "--batch");
    snprintf(args, sizeof args, "--out '%s' --lr fast", out);
    expect_failure(args, 2, "--lr");
    snprintf(args, sizeof args, "--out '%s' --warmup-frac 1.5", out);
    expect_failure(args, 2, "--warmup-frac");
    snprintf(args, sizeof args, "--out '%s' --steps 10 --epochs 1", out);
    expect_failure(args, 2, "not both");
    expect_failure("--steps 3", 2, "--out");
    snprintf(args, sizeof args, "--out '%s' --squad '%s' --train-titles '%s' --valid-titles '%s' --resume", out, SQUAD,
             train_titles, valid_titles);
    expect_failure(args, 1, "train_state.bin");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_kill_and_resume_is_bit_identical),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
