// Issue 5's bad-input list, the cases test_cli_ask does not cover, through
// the CLI over a small Flat dump of DensePhrases' sample corpus:
// - a truncated LMDB file (it used to die of SIGBUS on the first read past
//   the end), a corrupt one (one byte of passage text changed: content
//   checksum), a missing one, a missing index, a manifest changed by hand;
//   each refused by ask and eval with a message and exit status 1;
// - eval files: a bad JSON line, invalid UTF-8 and a bad DPR qa.csv line
//   stop the run naming the line; an empty (blank) question is an error of
//   that question alone, naming its line, and a 10,000-character question is
//   answered (cut to 64 tokens).
#include "tests/support/test_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define ARTICLES PHREX_SHARED_DIR "/data/wikipedia/densephrases-sample/articles.json"

static struct {
    char tmp[256], dump[300];
} g;

static test_run_result run_cli(const char *args, const char *stdin_path) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive '%s' %s", PHREX_CLI, args);
    return test_run_command(cmd, stdin_path, g.tmp);
}

static int setup(void **state) {
    (void)state;
    snprintf(g.tmp, sizeof g.tmp, "/tmp/phrex-test-search-bad-XXXXXX");
    if (test_make_tmpdir(g.tmp)) return -1;
    char corpus[300], cmd[1024];
    snprintf(corpus, sizeof corpus, "%s/corpus.tsv", g.tmp);
    snprintf(g.dump, sizeof g.dump, "%s/dump", g.tmp);
    static const int answer_paragraphs[] = {0, 41};
    if (test_write_corpus(corpus, ARTICLES, 3, answer_paragraphs, 2)) return -1;
    snprintf(cmd, sizeof cmd, "'%s' build --corpus '%s' --out '%s' --index-factory Flat --threads 1 --quiet >/dev/null",
             PHREX_CLI, corpus, g.dump);
    return test_run_shell(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    test_remove_tree(g.tmp);
    return 0;
}

// --- damaged dumps -----------------------------------------------------------------------

// A copy of the dump under tmp/name without the file `skip` (NULL: all).
static void copy_dump(const char *name, const char *skip, char *out, size_t cap) {
    static const char *const files[] = {"manifest.json", "index.faiss", "meta.mdb"};
    test_join_path(out, cap, g.tmp, name);
    assert_int_equal(mkdir(out, 0755), 0);
    for (int i = 0; i < 3; i++) {
        if (skip && !strcmp(skip, files[i])) continue;
        char a[512], b[512];
        test_join_path(a, sizeof a, g.dump, files[i]);
        test_join_path(b, sizeof b, out, files[i]);
        test_copy_file(a, b);
    }
}

// ask and eval both refuse `dump`: status 1 (not a signal), `expect` in
// the message, no answer printed.
static void expect_refusal(const char *dump, const char *expect) {
    char args[2048], in[512], qa[512];
    test_join_path(in, sizeof in, g.tmp, "one.txt");
    test_write_string(in, "who won\n");
    test_join_path(qa, sizeof qa, g.tmp, "one.jsonl");
    test_write_string(qa, "{\"question\": \"who won\", \"answer\": [\"Kevin Skinner\"]}\n");
    snprintf(args, sizeof args, "ask --dump '%s'", dump);
    test_run_result r = run_cli(args, in);
    assert_int_equal(r.status, 1);
    if (!strstr(r.err, expect)) fail_msg("ask: expected '%s' in: %s", expect, r.err);
    assert_int_equal(r.out_len, 0);
    test_free_run(&r);
    snprintf(args, sizeof args, "eval --dump '%s' --qa '%s' --threads 1", dump, qa);
    r = run_cli(args, NULL);
    assert_int_equal(r.status, 1);
    if (!strstr(r.err, expect)) fail_msg("eval: expected '%s' in: %s", expect, r.err);
    test_free_run(&r);
}

static void test_truncated_lmdb(void **state) {
    (void)state;
    char dir[512], path[600];
    copy_dump("truncated-lmdb", NULL, dir, sizeof dir);
    test_join_path(path, sizeof path, dir, "meta.mdb");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    expect_refusal(dir, "truncated");
}

static void test_corrupt_lmdb(void **state) {
    (void)state;
    char dir[512], path[600];
    copy_dump("corrupt-lmdb", NULL, dir, sizeof dir);
    test_join_path(path, sizeof path, dir, "meta.mdb");
    size_t n;
    char *data = test_load_file(path, &n);
    // One letter of a passage's text (the first paragraph is about the show).
    char *at = memmem(data, n, "Talent", 6);
    assert_non_null(at);
    *at ^= 0x20;
    test_write_file(path, data, n);
    free(data);
    expect_refusal(dir, "corrupt");
}

static void test_missing_parts(void **state) {
    (void)state;
    char dir[512];
    copy_dump("no-lmdb", "meta.mdb", dir, sizeof dir);
    expect_refusal(dir, "meta.mdb");
    copy_dump("no-index", "index.faiss", dir, sizeof dir);
    expect_refusal(dir, "index.faiss");
}

static void test_edited_manifest(void **state) {
    (void)state;
    char dir[512], path[600];
    copy_dump("edited-manifest", NULL, dir, sizeof dir);
    test_join_path(path, sizeof path, dir, "manifest.json");
    char *text = test_load_file(path, NULL);
    char *at = strstr(text, "\"Flat\"");
    assert_non_null(at);
    memcpy(at, "\"FLAT\"", 6); // same size, checksum no longer matches
    test_write_string(path, text);
    free(text);
    expect_refusal(dir, "manifest.json");
}

// --- eval files ------------------------------------------------------------------------

static test_run_result eval_file(const char *name, const char *content, size_t len, const char *extra) {
    char qa[512], args[2048];
    test_join_path(qa, sizeof qa, g.tmp, name);
    test_write_file(qa, content, len);
    snprintf(args, sizeof args, "eval --dump '%s' --qa '%s' --threads 1 %s", g.dump, qa, extra);
    return run_cli(args, NULL);
}

static void expect_line_error(const char *name, const char *content, const char *extra, const char *expect) {
    test_run_result r = eval_file(name, content, strlen(content), extra);
    assert_int_equal(r.status, 1);
    char want[256];
    snprintf(want, sizeof want, "%s:%s", name, expect);
    if (!strstr(r.err, want)) fail_msg("expected '%s' in: %s", want, r.err);
    test_free_run(&r);
}

static void test_eval_bad_lines(void **state) {
    (void)state;
    expect_line_error("broken.jsonl",
                      "{\"question\": \"who won\", \"answer\": [\"a\"]}\n"
                      "{\"question\": \"who lost\", \"answer\": [\"b\"]}\n"
                      "{\"question\": \"bad json\", \"answer\": \n",
                      "", "3:");
    expect_line_error("utf8.jsonl",
                      "{\"question\": \"who won\", \"answer\": [\"a\"]}\n"
                      "{\"question\": \"bad \xff\xfe utf8\", \"answer\": [\"a\"]}\n",
                      "", "2:");
    expect_line_error("no-answer.jsonl",
                      "{\"question\": \"who won\", \"answer\": [\"a\"]}\n"
                      "{\"question\": \"who won\"}\n",
                      "", "2:");
    expect_line_error("bad.csv", "who won\t['a']\nwho lost\tnot a list\n", "--format dpr-csv", "2:");
}

static void test_eval_bad_questions(void **state) {
    (void)state;
    // 1 fine, 2 blank, 3 10,000 characters.
    size_t cap = 12000, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    n += (size_t)snprintf(buf + n, cap - n, "{\"question\": \"who won\", \"answer\": [\"Kevin Skinner\"]}\n");
    n += (size_t)snprintf(buf + n, cap - n, "{\"question\": \"   \", \"answer\": [\"a\"]}\n");
    n += (size_t)snprintf(buf + n, cap - n, "{\"question\": \"");
    for (int i = 0; i < 10000; i++) buf[n++] = "who won the talent show "[i % 24];
    n += (size_t)snprintf(buf + n, cap - n, "\", \"answer\": [\"a\"]}\n");
    char out[512], extra[600], path[700];
    test_join_path(out, sizeof out, g.tmp, "eval-bad-questions");
    snprintf(extra, sizeof extra, "--out '%s'", out);
    test_run_result r = eval_file("questions.jsonl", buf, n, extra);
    free(buf);
    assert_int_equal(r.status, 0); // a bad question is that question's error, not the run's
    test_free_run(&r);
    test_join_path(path, sizeof path, out, "predictions.jsonl");
    char *pred = test_load_file(path, NULL);
    char *l2 = strchr(pred, '\n');
    assert_non_null(l2);
    *l2++ = '\0';
    char *l3 = strchr(l2, '\n');
    assert_non_null(l3);
    *l3++ = '\0';
    assert_null(strstr(pred, "\"error\"")); // line 1 answered
    assert_non_null(strstr(l2, "questions.jsonl:2: empty question"));
    assert_null(strstr(l3, "\"error\"")); // the long one answered
    assert_non_null(strstr(l3, "\"prediction\":\""));
    free(pred);
    test_join_path(path, sizeof path, out, "summary.json");
    char *summary = test_load_file(path, NULL);
    assert_non_null(strstr(summary, "\"errors\": 1,"));
    assert_non_null(strstr(summary, "\"n\": 3,"));
    free(summary);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated_lmdb),  cmocka_unit_test(test_corrupt_lmdb),
        cmocka_unit_test(test_missing_parts),   cmocka_unit_test(test_edited_manifest),
        cmocka_unit_test(test_eval_bad_lines),  cmocka_unit_test(test_eval_bad_questions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
