// `phrex embed` end to end: real sentences in, JSON vectors out that equal
// the library's own forward pass; batching that does not change results;
// and every kind of bad input stopping with its line number and a non-zero
// exit, never a crash.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "encoder/embedder.h"
#include "tests/support/test_support.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/phrex-test-embed-XXXXXX";

// Sentences written for this test: plain, accented, punctuated, and long
// enough to straddle batch boundaries when repeated.
static const char *const sentences[] = {
    "What is the capital of France?",
    "The Eiffel Tower was completed in 1889 for the World's Fair.",
    "Crème brûlée is a dessert of custard under a layer of hard caramel.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
};
enum { N_SENTENCES = sizeof sentences / sizeof sentences[0] };

typedef test_run_result run_result;

// Runs `phrex embed ARGS` with `input` (len bytes) on stdin.
static run_result run_embed(const char *args, const char *input, size_t len) {
    char in[512], cmd[2048];
    test_join_path(in, sizeof in, tmpdir, "in");
    test_write_file(in, input, len);
    snprintf(cmd, sizeof cmd, "'%s' embed --model '%s' %s", PHREX_CLI, PHREX_BASE_MODEL_DIR, args);
    return test_run_command(cmd, in, tmpdir);
}

static char *join_lines(const char *const *lines, int n, int repeat) {
    size_t cap = 1;
    for (int k = 0; k < repeat; k++)
        for (int i = 0; i < n; i++) cap += strlen(lines[i]) + 1;
    char *s = malloc(cap), *p = s;
    for (int k = 0; k < repeat; k++)
        for (int i = 0; i < n; i++) p += sprintf(p, "%s\n", lines[i]);
    return s;
}

// The library's sentence vector for `text`: tokenize, forward, mean, L2.
static void library_vector(phrex_embedder *e, const char *text, float *out) {
    phrex_tokens t;
    int n, C = phrex_embedder_config(e)->hidden_size;
    assert_int_equal(phrex_tokens_init(&t, 64), PHREX_OK);
    assert_int_equal(phrex_embedder_tokenize(e, text, strlen(text), 0, &t, &n), PHREX_OK);
    float *hidden = malloc((size_t)n * (size_t)C * sizeof(float));
    int32_t len = n;
    assert_int_equal(phrex_encoder_forward(phrex_embedder_encoder(e), t.ids, NULL, &len, 1, hidden), PHREX_OK);
    phrex_bert_mean_pool(hidden, &len, 1, C, out);
    phrex_l2_normalize(out, 1, C);
    free(hidden);
    phrex_tokens_free(&t);
}

static float max_abs_diff_json(const cJSON *array, const float *v, int C) {
    assert_int_equal(cJSON_GetArraySize(array), C);
    float worst = 0;
    for (int i = 0; i < C; i++) {
        float d = fabsf((float)cJSON_GetArrayItem(array, i)->valuedouble - v[i]);
        if (d > worst) worst = d;
    }
    return worst;
}

static void test_vectors_equal_library(void **state) {
    (void)state;
    char *input = join_lines(sentences, N_SENTENCES, 1);
    run_result r = run_embed("", input, strlen(input));
    assert_int_equal(r.status, 0);
    phrex_embedder *e;
    assert_int_equal(phrex_embedder_init(&e, PHREX_BASE_MODEL_DIR, 512), PHREX_OK);
    int C = phrex_embedder_config(e)->hidden_size;
    float *v = malloc((size_t)C * sizeof(float));
    char *line = r.out;
    for (int i = 0; i < N_SENTENCES; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        cJSON *obj = cJSON_Parse(line);
        assert_non_null(obj);
        assert_int_equal(cJSON_GetObjectItem(obj, "line")->valueint, i + 1);
        assert_int_equal(cJSON_GetObjectItem(obj, "dim")->valueint, C);
        library_vector(e, sentences[i], v);
        assert_true(max_abs_diff_json(cJSON_GetObjectItem(obj, "vector"), v, C) < 1e-6f);
        cJSON_Delete(obj);
        line = nl + 1;
    }
    assert_int_equal(*line, '\0'); // exactly one output line per input line
    free(v);
    phrex_embedder_free(e);
    test_free_run(&r);
    free(input);
}

// Token mode: every piece's byte span slices the input line to that piece
// (modulo case and the ## continuation mark, for these ASCII sentences).
static void test_token_offsets_slice_input(void **state) {
    (void)state;
    const char *text = "The Eiffel Tower was completed in 1889.";
    char input[128];
    snprintf(input, sizeof input, "%s\n", text);
    run_result r = run_embed("--tokens", input, strlen(input));
    assert_int_equal(r.status, 0);
    cJSON *obj = cJSON_Parse(r.out);
    assert_non_null(obj);
    const cJSON *tokens = cJSON_GetObjectItem(obj, "tokens"), *tok;
    int n = 0;
    cJSON_ArrayForEach(tok, tokens) {
        const char *piece = cJSON_GetObjectItem(tok, "piece")->valuestring;
        int start = cJSON_GetObjectItem(tok, "start")->valueint, end = cJSON_GetObjectItem(tok, "end")->valueint;
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(tok, "vector")), 384);
        if (start < 0) { // [CLS] or [SEP]
            assert_true(!strcmp(piece, "[CLS]") || !strcmp(piece, "[SEP]"));
            n++;
            continue;
        }
        if (!strncmp(piece, "##", 2)) piece += 2;
        assert_int_equal((int)strlen(piece), end - start);
        assert_int_equal(strncasecmp(piece, text + start, (size_t)(end - start)), 0);
        n++;
    }
    assert_true(n >= 10);
    cJSON_Delete(obj);
    test_free_run(&r);
}

// Packing lines into small batches must not change any vector.
static void test_batching_does_not_change_output(void **state) {
    (void)state;
    char *input = join_lines(sentences, N_SENTENCES, 40); // 160 lines
    run_result big = run_embed("", input, strlen(input));
    run_result small = run_embed("--batch-tokens 512", input, strlen(input));
    assert_int_equal(big.status, 0);
    assert_int_equal(small.status, 0);
    char *a = big.out, *b = small.out;
    int lines = 0;
    while (*a && *b) {
        char *na = strchr(a, '\n'), *nb = strchr(b, '\n');
        *na = *nb = '\0';
        cJSON *ja = cJSON_Parse(a), *jb = cJSON_Parse(b);
        const cJSON *va = cJSON_GetObjectItem(ja, "vector"), *vb = cJSON_GetObjectItem(jb, "vector");
        for (int i = 0; i < cJSON_GetArraySize(va); i++)
            assert_true(fabs(cJSON_GetArrayItem(va, i)->valuedouble - cJSON_GetArrayItem(vb, i)->valuedouble) < 1e-5);
        cJSON_Delete(ja);
        cJSON_Delete(jb);
        a = na + 1, b = nb + 1, lines++;
    }
    assert_int_equal(lines, 4 * 40);
    test_free_run(&big);
    test_free_run(&small);
    free(input);
}

// Runs embed on input that must fail with `status` and `needle` in stderr,
// after writing exactly `lines_before` results (the lines before the bad one).
static void expect_failure_after(const char *args, const char *input, size_t len, int status, const char *needle,
                                 int lines_before) {
    run_result r = run_embed(args, input, len);
    if (r.status != status || !strstr(r.err, needle))
        fail_msg("phrex embed %s: status %d (want %d), stderr: %s (want '%s')", args, r.status, status, r.err, needle);
    int lines = 0;
    for (const char *p = r.out; (p = strchr(p, '\n')); p++) lines++;
    assert_int_equal(lines, lines_before);
    test_free_run(&r);
}

static void expect_failure(const char *args, const char *input, size_t len, int status, const char *needle) {
    expect_failure_after(args, input, len, status, needle, 0);
}

// A string literal and its length, embedded NUL bytes included.
#define LITERAL(s) s, sizeof(s) - 1

static void test_bad_input_names_the_line(void **state) {
    (void)state;
    expect_failure_after("", LITERAL("fine\n\nnext\n"), 1, "stdin:2: empty", 1);
    expect_failure_after("", LITERAL("fine\n \t \n"), 1, "stdin:2: empty", 1);
    expect_failure_after("", LITERAL("ok\nbad \xff\xfe here\n"), 1, "stdin:2: invalid UTF-8 at byte 4", 1);
    expect_failure_after("", LITERAL("ok\nok\nnul\0inside\n"), 1, "stdin:3: NUL byte at byte 3", 2);
    char *long_line = malloc(6001);
    for (int i = 0; i < 600; i++) memcpy(long_line + 10 * i, "paragraph ", 10);
    long_line[5999] = '\n';
    expect_failure("", long_line, 6000, 1, "stdin:1: too long: 600 word pieces");
    run_result r = run_embed("--truncate", long_line, 6000);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"line\":1"));
    test_free_run(&r);
    free(long_line);
}

static void test_bad_usage(void **state) {
    (void)state;
    expect_failure("--threads 0", LITERAL("x\n"), 2, "--threads expects an integer");
    expect_failure("--batch-tokens 12", LITERAL("x\n"), 2, "--batch-tokens expects an integer");
    expect_failure("extra-argument", LITERAL("x\n"), 2, "unexpected argument");
    char args[600];
    snprintf(args, sizeof args, "--model %s/no-such-model", tmpdir);
    expect_failure(args, LITERAL("x\n"), 1, "no-such-model");
}

static int setup(void **state) {
    (void)state;
    return test_make_tmpdir(tmpdir);
}

static int teardown(void **state) {
    (void)state;
    return test_remove_tree(tmpdir) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_equal_library),
        cmocka_unit_test(test_token_offsets_slice_input),
        cmocka_unit_test(test_batching_does_not_change_output),
        cmocka_unit_test(test_bad_input_names_the_line),
        cmocka_unit_test(test_bad_usage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
