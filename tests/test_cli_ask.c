// End-to-end tests of `phrex ask` (pipe mode) and `phrex eval` over a small
// Flat dump of DensePhrases' sample corpus built with `phrex build`:
// - ask: one JSON object per line with every documented key, the answer
//   span inside its context; bad lines (empty, 10,000 characters, invalid
//   UTF-8, NUL) each answered by a JSON line, the long one truncated, the
//   others errors naming the line, and exit status 1 at the end;
// - eval: summary.json with every key in range, EM recomputed by hand from
//   predictions.jsonl, the same predictions with 1 and 2 threads;
// - refusals: missing, truncated and corrupt dumps, a dump built with
//   another model, missing options.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "data/corpus.h"
#include "data/metrics.h"
#include "tests/support/test_support.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARTICLES PHREX_SHARED_DIR "/data/wikipedia/densephrases-sample/articles.json"
#define QUESTIONS PHREX_SHARED_DIR "/data/wikipedia/densephrases-sample/questions.json"
#ifdef __SANITIZE_ADDRESS__
#define FIRST_PASSAGES 4
#else
#define FIRST_PASSAGES 12
#endif

static struct {
    char tmp[256], corpus[300], dump[300];
} g;

typedef test_run_result run_result;

// --- helpers --------------------------------------------------------------------

// Runs `phrex ARGS < stdin_path` with stdout and stderr captured.
static run_result run_cli(const char *args, const char *stdin_path) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s", PHREX_CLI, args);
    return test_run_command(cmd, stdin_path, g.tmp);
}

static int write_corpus(const char *path) {
    static const int answer_paragraphs[] = {0, 41, 90};
    return test_write_corpus(path, ARTICLES, FIRST_PASSAGES, answer_paragraphs, 3);
}

static int setup(void **state) {
    (void)state;
    snprintf(g.tmp, sizeof g.tmp, "/tmp/phrex-test-ask-XXXXXX");
    if (test_make_tmpdir(g.tmp)) return -1;
    snprintf(g.corpus, sizeof g.corpus, "%s/corpus.tsv", g.tmp);
    snprintf(g.dump, sizeof g.dump, "%s/dump", g.tmp);
    if (write_corpus(g.corpus)) return -1;
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

// Splits r->out into lines, parsing each as JSON. Returns the count.
static int parse_lines(const run_result *r, cJSON **lines, int max) {
    int n = 0;
    for (char *s = r->out; *s && n < max;) {
        char *nl = strchr(s, '\n');
        assert_non_null(nl); // every line ends with a newline
        *nl = '\0';
        lines[n] = cJSON_Parse(s);
        if (!lines[n]) fail_msg("line %d is not JSON: %s", n + 1, s);
        n++;
        s = nl + 1;
    }
    return n;
}

static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v) fail_msg("missing key '%s'", name);
    return v;
}

static void check_answer(const cJSON *a) {
    const char *text = cJSON_GetStringValue(field(a, "text"));
    const char *context = cJSON_GetStringValue(field(a, "context"));
    assert_non_null(text);
    assert_non_null(context);
    assert_true(cJSON_IsNumber(field(a, "score")));
    assert_true(cJSON_IsString(field(a, "title")));
    assert_true(cJSON_IsString(field(a, "passage_id")));
    int start = field(a, "start")->valueint, end = field(a, "end")->valueint;
    assert_true(start >= 0 && start < end && (size_t)end <= strlen(context));
    assert_int_equal(strlen(text), (size_t)(end - start));
    assert_memory_equal(text, context + start, (size_t)(end - start));
}

static void check_answers_line(const cJSON *line, const char *question, int top_k) {
    assert_string_equal(cJSON_GetStringValue(field(line, "question")), question);
    const cJSON *answers = field(line, "answers");
    assert_true(cJSON_IsArray(answers));
    assert_true(cJSON_GetArraySize(answers) >= 1 && cJSON_GetArraySize(answers) <= top_k);
    const cJSON *a;
    cJSON_ArrayForEach(a, answers) check_answer(a);
}

// --- ask ------------------------------------------------------------------------------

static void test_ask_pipe_json(void **state) {
    (void)state;
    static const char *const qs[] = {"who won season 4 of america's got talent",
                                     "how many goals scored ronaldo in 2014-2015 season",
                                     "who plays william boldwood in far from the madding crowd"};
    char in[512], args[1024];
    test_join_path(in, sizeof in, g.tmp, "questions.txt");
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    for (int i = 0; i < 3; i++) fprintf(f, "%s\n", qs[i]);
    fclose(f);
    snprintf(args, sizeof args, "ask --dump '%s' --top-k 3", g.dump);
    run_result r = run_cli(args, in);
    assert_int_equal(r.status, 0);
    cJSON *lines[8];
    assert_int_equal(parse_lines(&r, lines, 8), 3);
    for (int i = 0; i < 3; i++) {
        check_answers_line(lines[i], qs[i], 3);
        assert_int_equal(field(lines[i], "line")->valueint, i + 1);
        cJSON_Delete(lines[i]);
    }
    test_free_run(&r);
}

static void test_ask_bad_lines(void **state) {
    (void)state;
    // 1 good, 2 empty, 3 10,000 characters, 4 invalid UTF-8, 5 NUL byte,
    // 6 spaces only, 7 good (after the bad ones: one bad line stops nothing).
    size_t cap = 20000, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    n += (size_t)sprintf(buf + n, "who won season 4\n\n");
    for (int i = 0; i < 10000; i++) buf[n++] = "who won the talent show "[i % 24];
    buf[n++] = '\n';
    static const char tail[] = "bad \xff\xfe utf8\nnul\0byte\n   \nwho plays boldwood\n";
    memcpy(buf + n, tail, sizeof tail - 1);
    n += sizeof tail - 1;
    char in[512], args[1024];
    test_join_path(in, sizeof in, g.tmp, "bad.txt");
    test_write_file(in, buf, n);
    free(buf);
    snprintf(args, sizeof args, "ask --dump '%s' --top-k 2", g.dump);
    run_result r = run_cli(args, in);
    assert_int_equal(r.status, 1); // bad lines: non-zero, but only at the end
    cJSON *lines[16];
    assert_int_equal(parse_lines(&r, lines, 16), 7);
    static const int is_error[7] = {0, 1, 0, 1, 1, 1, 0};
    for (int i = 0; i < 7; i++) {
        assert_int_equal(field(lines[i], "line")->valueint, i + 1);
        assert_int_equal(cJSON_HasObjectItem(lines[i], "error"), is_error[i]);
        assert_int_equal(cJSON_HasObjectItem(lines[i], "answers"), !is_error[i]);
    }
    assert_true(cJSON_IsTrue(field(lines[2], "truncated")));
    assert_true(cJSON_IsNull(field(lines[3], "question"))); // not valid text: not echoed
    assert_true(cJSON_IsNull(field(lines[4], "question")));
    assert_non_null(strstr(cJSON_GetStringValue(field(lines[3], "error")), "invalid UTF-8 at byte 4"));
    assert_non_null(strstr(cJSON_GetStringValue(field(lines[4], "error")), "NUL byte at byte 3"));
    assert_non_null(strstr(cJSON_GetStringValue(field(lines[1], "error")), "empty"));
    assert_non_null(strstr(r.err, "stdin:2: empty"));
    assert_non_null(strstr(r.err, "stdin:3: warning: question truncated"));
    assert_non_null(strstr(r.err, "stdin:4: invalid UTF-8"));
    assert_non_null(strstr(r.err, "stdin:5: NUL byte"));
    assert_non_null(strstr(r.err, "4 of 7 lines had errors"));
    for (int i = 0; i < 7; i++) cJSON_Delete(lines[i]);
    test_free_run(&r);
}

static void test_ask_units(void **state) {
    (void)state;
    char in[512], args[1024];
    test_join_path(in, sizeof in, g.tmp, "one.txt");
    test_write_file(in, "who won season 4 of america's got talent\n", 41);
    snprintf(args, sizeof args, "ask --dump '%s' --unit passage --top-k 5", g.dump);
    run_result r = run_cli(args, in);
    assert_int_equal(r.status, 0);
    cJSON *line = NULL;
    assert_int_equal(parse_lines(&r, &line, 1), 1);
    const cJSON *answers = field(line, "answers"), *a, *b;
    assert_int_equal(cJSON_GetArraySize(answers), 5);
    cJSON_ArrayForEach(a, answers) {
        check_answer(a);
        assert_string_equal(cJSON_GetStringValue(field(a, "text")), cJSON_GetStringValue(field(a, "context")));
        const char *ans = cJSON_GetStringValue(field(a, "answer"));
        assert_non_null(strstr(cJSON_GetStringValue(field(a, "context")), ans));
        for (b = answers->child; b != a; b = b->next)
            assert_string_not_equal(cJSON_GetStringValue(field(a, "passage_id")),
                                    cJSON_GetStringValue(field(b, "passage_id")));
    }
    cJSON_Delete(line);
    test_free_run(&r);
    snprintf(args, sizeof args, "ask --dump '%s' --unit paragraph", g.dump);
    r = run_cli(args, in);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "unknown unit 'paragraph'"));
    test_free_run(&r);
}

// --- eval -----------------------------------------------------------------------------

static cJSON *read_json(const char *path) {
    char *text = test_read_file(path, NULL);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

static void check_summary(const char *dir, int n, double *em) {
    char path[512];
    test_join_path(path, sizeof path, dir, "summary.json");
    cJSON *s = read_json(path);
    static const char *const percents[] = {"em", "f1", "recall_at_1", "recall_at_5", "recall_at_20", "recall_at_100"};
    for (size_t i = 0; i < 6; i++) {
        double v = field(s, percents[i])->valuedouble;
        assert_true(v >= 0 && v <= 100);
    }
    assert_true(field(s, "recall_at_1")->valuedouble <= field(s, "recall_at_5")->valuedouble);
    assert_true(field(s, "recall_at_20")->valuedouble <= field(s, "recall_at_100")->valuedouble);
    double p50 = field(s, "latency_ms_p50")->valuedouble, p95 = field(s, "latency_ms_p95")->valuedouble,
           p99 = field(s, "latency_ms_p99")->valuedouble;
    assert_true(p50 > 0 && p50 <= p95 && p95 <= p99);
    assert_true(field(s, "qps")->valuedouble > 0);
    assert_int_equal(field(s, "n")->valueint, n);
    *em = field(s, "em")->valuedouble;
    cJSON_Delete(s);
}

// EM from predictions.jsonl, by hand; fills the predictions' text.
static double em_by_hand(const char *dir, int n, char preds[][256]) {
    char path[512];
    test_join_path(path, sizeof path, dir, "predictions.jsonl");
    run_result r = {0, test_read_file(path, NULL), NULL, 0, 0};
    assert_non_null(r.out);
    cJSON *lines[8];
    assert_int_equal(parse_lines(&r, lines, 8), n);
    int hits = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *golds = field(lines[i], "answers"), *x;
        const char *gold[16];
        size_t n_gold = 0;
        cJSON_ArrayForEach(x, golds) if (n_gold < 16) gold[n_gold++] = cJSON_GetStringValue(x);
        const char *pred = cJSON_GetStringValue(field(lines[i], "prediction"));
        assert_non_null(pred);
        assert_true(cJSON_IsString(field(lines[i], "question")));
        assert_true(cJSON_IsNumber(field(lines[i], "score")));
        assert_true(cJSON_IsString(field(lines[i], "passage_id")));
        assert_true(cJSON_IsString(field(lines[i], "title")));
        hits += phrex_metric_max_exact_match(pred, gold, n_gold);
        snprintf(preds[i], 256, "%s|%s|%g", pred, cJSON_GetStringValue(field(lines[i], "passage_id")),
                 field(lines[i], "score")->valuedouble);
        cJSON_Delete(lines[i]);
    }
    free(r.out);
    return 100.0 * hits / n;
}

static void test_eval_sample_questions(void **state) {
    (void)state;
    char out1[512], out2[512], args[2048];
    test_join_path(out1, sizeof out1, g.tmp, "eval1");
    test_join_path(out2, sizeof out2, g.tmp, "eval2");
    snprintf(args, sizeof args, "eval --dump '%s' --qa '%s' --out '%s' --threads 2", g.dump, QUESTIONS, out2);
    run_result r = run_cli(args, NULL);
    if (r.status) fail_msg("eval failed: %s", r.err);
    assert_non_null(strstr(r.out, "EM (%)"));
    assert_non_null(strstr(r.out, "passage recall@100"));
    assert_string_equal(r.err, ""); // quiet in pipes
    test_free_run(&r);
    snprintf(args, sizeof args, "eval --dump '%s' --qa '%s' --out '%s' --threads 1", g.dump, QUESTIONS, out1);
    r = run_cli(args, NULL);
    assert_int_equal(r.status, 0);
    test_free_run(&r);
    double em1, em2;
    char p1[3][256], p2[3][256];
    check_summary(out1, 3, &em1);
    check_summary(out2, 3, &em2);
    assert_true(em1 == em_by_hand(out1, 3, p1));
    assert_true(em2 == em_by_hand(out2, 3, p2));
    for (int i = 0; i < 3; i++) assert_string_equal(p1[i], p2[i]); // same answers, same order
}

static void test_eval_limit_and_errors(void **state) {
    (void)state;
    char out[512], args[2048];
    test_join_path(out, sizeof out, g.tmp, "eval-limit");
    snprintf(args, sizeof args, "eval --dump '%s' --qa '%s' --out '%s' --limit 2", g.dump, QUESTIONS, out);
    run_result r = run_cli(args, NULL);
    assert_int_equal(r.status, 0);
    test_free_run(&r);
    double em;
    check_summary(out, 2, &em);
    snprintf(args, sizeof args, "eval --dump '%s'", g.dump);
    r = run_cli(args, NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--qa are required"));
    test_free_run(&r);
    snprintf(args, sizeof args, "eval --dump '%s' --qa '%s/missing.jsonl'", g.dump, g.tmp);
    r = run_cli(args, NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "missing.jsonl"));
    test_free_run(&r);
}

// --- refusals ---------------------------------------------------------------------------

static void copy_dump(const char *dst) {
    static const char *const files[] = {"manifest.json", "index.faiss", "meta.mdb"};
    assert_int_equal(mkdir(dst, 0755), 0);
    for (int i = 0; i < 3; i++) {
        char a[512], b[512];
        test_join_path(a, sizeof a, g.dump, files[i]);
        test_join_path(b, sizeof b, dst, files[i]);
        test_copy_file(a, b);
    }
}

// Both commands refuse the dump with a message holding `expect`.
static void expect_refusal(const char *dump, const char *extra, const char *expect) {
    char args[2048], in[512];
    test_join_path(in, sizeof in, g.tmp, "one.txt");
    test_write_file(in, "who won\n", 8);
    snprintf(args, sizeof args, "ask --dump '%s' %s", dump, extra);
    run_result r = run_cli(args, in);
    assert_int_equal(r.status, 1);
    if (!strstr(r.err, expect)) fail_msg("ask: expected '%s' in: %s", expect, r.err);
    assert_int_equal(r.out_len, 0);
    test_free_run(&r);
    snprintf(args, sizeof args, "eval --dump '%s' --qa '%s' %s", dump, QUESTIONS, extra);
    r = run_cli(args, NULL);
    assert_int_equal(r.status, 1);
    if (!strstr(r.err, expect)) fail_msg("eval: expected '%s' in: %s", expect, r.err);
    test_free_run(&r);
}

static void test_refusals(void **state) {
    (void)state;
    char bad[512], path[600];
    test_join_path(bad, sizeof bad, g.tmp, "nowhere");
    expect_refusal(bad, "", "manifest.json");
    // Truncated index.
    test_join_path(bad, sizeof bad, g.tmp, "truncated");
    copy_dump(bad);
    test_join_path(path, sizeof path, bad, "index.faiss");
    assert_int_equal(truncate(path, 1000), 0);
    expect_refusal(bad, "", "truncated");
    // Corrupt index: same size, one byte changed.
    test_join_path(bad, sizeof bad, g.tmp, "corrupt");
    copy_dump(bad);
    test_join_path(path, sizeof path, bad, "index.faiss");
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, -100, SEEK_END);
    int c = fgetc(f);
    fseek(f, -100, SEEK_END);
    fputc(c ^ 0x40, f);
    fclose(f);
    expect_refusal(bad, "", "corrupt");
    // Another model: the base model with another tokenizer_config.json.
    char model[512], link[600];
    test_join_path(model, sizeof model, g.tmp, "other-model");
    assert_int_equal(mkdir(model, 0755), 0);
    static const char *const files[] = {"config.json", "model.safetensors", "vocab.txt"};
    for (int i = 0; i < 3; i++) {
        test_join_path(link, sizeof link, model, files[i]);
        test_join_path(path, sizeof path, PHREX_BASE_MODEL_DIR, files[i]);
        assert_int_equal(symlink(path, link), 0);
    }
    test_join_path(path, sizeof path, model, "tokenizer_config.json");
    test_write_file(path, "{\"do_lower_case\": true, \"model_max_length\": 128}", 48);
    char extra[700];
    snprintf(extra, sizeof extra, "--model '%s'", model);
    expect_refusal(g.dump, extra, "another model");
    // --nprobe on a Flat dump.
    expect_refusal(g.dump, "--nprobe 4", "no inverted lists");
}

static void test_ask_usage(void **state) {
    (void)state;
    run_result r = run_cli("ask", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--dump is required"));
    test_free_run(&r);
    r = run_cli("ask --help", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "--unit"));
    test_free_run(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ask_pipe_json),         cmocka_unit_test(test_ask_bad_lines),
        cmocka_unit_test(test_ask_units),             cmocka_unit_test(test_eval_sample_questions),
        cmocka_unit_test(test_eval_limit_and_errors), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_ask_usage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
