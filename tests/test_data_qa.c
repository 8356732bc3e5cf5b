// QA readers and the Python list-literal parser: the real QA files under
// PHREX_SHARED_DIR (counts from the data READMEs; line numbers, lengths
// and FNV-1a hashes derived once with Python's csv, json and ast modules),
// plus hand-written files, well-formed and broken, written at test time.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "tests/support/test_support.h"
#include "common/utf8.h"
#include "data/buf.h"
#include "data/pylit.h"
#include "data/qa.h"

#define DATA PHREX_SHARED_DIR "/data/"
#define QA_LISTS DATA "odqa-qa-lists/"

// --- helpers -----------------------------------------------------------------

#define FNV_OFFSET 1469598103934665603ull

static uint64_t fnv_mix(uint64_t h, const char *s, size_t n) { return test_hash_bytes(h, s, n); }

static uint64_t fnv(const char *s) { return fnv_mix(FNV_OFFSET, s, strlen(s)); }

// The digest the Python side computed: the question, then per answer 0x1f,
// its text and, when it has one, "@start_char/start_byte"; then 0x1e.
static uint64_t mix_record(uint64_t h, const phrex_qa *q) {
    h = fnv_mix(h, q->question, q->question_len);
    for (size_t i = 0; i < q->n_answers; i++) {
        h = fnv_mix(h, "\x1f", 1);
        h = fnv_mix(h, q->answers[i].text, q->answers[i].len);
        if (q->answers[i].start_char >= 0) {
            char at[64];
            int n = snprintf(at, sizeof at, "@%ld/%ld", q->answers[i].start_char, q->answers[i].start_byte);
            h = fnv_mix(h, at, (size_t)n);
        }
    }
    return fnv_mix(h, "\x1e", 1);
}

typedef struct {
    size_t n, n_answers, bad;
    uint64_t digest;
    int rc;
    char error[512];
    size_t lines[16];
} drained;

static drained drain(const char *path, phrex_qa_format format, int skip_bad) {
    drained d = {.digest = FNV_OFFSET};
    phrex_qa_options opts = {.format = format, .skip_bad = skip_bad};
    phrex_qa_reader *r;
    d.rc = phrex_qa_init(&r, path, &opts);
    if (d.rc) {
        snprintf(d.error, sizeof d.error, "%s", phrex_last_error());
        return d;
    }
    phrex_qa q;
    int has;
    while ((d.rc = phrex_qa_next(r, &q, &has)) == PHREX_OK && has) {
        if (d.n < 16) d.lines[d.n] = q.line;
        d.digest = mix_record(d.digest, &q);
        d.n_answers += q.n_answers;
        d.n++;
    }
    if (d.rc) snprintf(d.error, sizeof d.error, "%s", phrex_last_error());
    d.bad = phrex_qa_count_bad(r);
    phrex_qa_free(r);
    return d;
}

static char tmp_dir[64];

static int make_tmp(void **state) {
    (void)state;
    strcpy(tmp_dir, "/tmp/phrex_test_qa_XXXXXX");
    return test_make_tmpdir(tmp_dir);
}

static int remove_tmp(void **state) {
    (void)state;
    return test_remove_tree(tmp_dir);
}

// Writes `content` to tmp_dir/name and returns the path (static storage, one per call slot).
static const char *write_tmp(const char *name, const char *content) { return test_write_text(tmp_dir, name, content); }

// --- real files -------------------------------------------------------------------

// Every answer_start (code points) lands, as a byte offset, where the
// answer text is in the context: 0 mismatches over the 29,212 answers.
static void test_squad_questions(void **state) {
    (void)state;
    phrex_qa_reader *r;
    assert_int_equal(phrex_qa_init(&r, DATA "squad-v1.1/dev-v1.1.40-articles.json", NULL), PHREX_OK);
    assert_int_equal(phrex_qa_get_format(r), PHREX_QA_SQUAD_JSON);
    phrex_qa q;
    int has;
    size_t n = 0, answers = 0, mismatches = 0, multibyte = 0, last_column = 0;
    uint64_t digest = FNV_OFFSET, last_id = 0;
    while (phrex_qa_next(r, &q, &has) == PHREX_OK && has) {
        // Expected values below: recomputed by tools/make_data_digests.py (--check compares them).
        if (n == 0) {
            assert_true(fnv(q.id) == 0x9a5d05e2f2f10dacull);
            assert_true(fnv(q.question) == 0xc39170d4f585e4bfull);
            assert_true(fnv(q.title) == 0xdfe9ad0e4716e63dull);
            assert_int_equal(q.context_len, 777);
            assert_int_equal(q.n_answers, 3);
            assert_int_equal(q.column, 876);
        }
        assert_int_equal(q.line, 1); // the file is a single line
        assert_true(q.column > last_column);
        last_column = q.column;
        assert_non_null(q.context);
        for (size_t i = 0; i < q.n_answers; i++) {
            const phrex_qa_answer *a = &q.answers[i];
            size_t byte = 0;
            assert_int_equal(phrex_utf8_char_to_byte(q.context, q.context_len, (size_t)a->start_char, &byte), PHREX_OK);
            assert_int_equal(byte, (size_t)a->start_byte);
            mismatches += byte + a->len > q.context_len || memcmp(q.context + byte, a->text, a->len) != 0;
            multibyte += a->start_byte != a->start_char;
            assert_ptr_equal(q.answer_texts[i], a->text);
        }
        answers += q.n_answers;
        digest = mix_record(digest, &q);
        last_id = fnv(q.id);
        n++;
    }
    assert_int_equal(n, 8847);
    assert_int_equal(answers, 29212);
    assert_int_equal(mismatches, 0);
    assert_int_equal(multibyte, 4541); // answers after a non-ASCII character: bytes and code points differ
    assert_true(last_id == 0x955c8c6b4f73d293ull);
    assert_true(digest == 0x0f6a3212ee03e543ull);
    phrex_qa_free(r);
}

// The data README says this file has 8,840 physical lines, with records
// spanning lines inside quotes. Measured: 8,837 CRLF-ended lines, one
// record each; the 3 extra "lines" are U+0085 (NEL) characters inside
// questions, which Python's str.splitlines() counts as line breaks.
static void test_trivia_dev_csv(void **state) {
    (void)state;
    char *raw;
    size_t len;
    assert_int_equal(phrex_data_read_file(QA_LISTS "topics.dpr.trivia.dev.txt", &raw, &len), PHREX_OK);
    size_t lf = 0, crlf = 0, nel = 0;
    for (size_t i = 0; i < len; i++) {
        lf += raw[i] == '\n';
        crlf += raw[i] == '\n' && i > 0 && raw[i - 1] == '\r';
        nel += i + 1 < len && (unsigned char)raw[i] == 0xC2 && (unsigned char)raw[i + 1] == 0x85;
    }
    free(raw);
    // Expected values below: recomputed by tools/make_data_digests.py (--check compares them).
    assert_int_equal(lf, 8837);
    assert_int_equal(crlf, 8837);
    assert_int_equal(nel, 3);

    phrex_qa_reader *r;
    assert_int_equal(phrex_qa_init(&r, QA_LISTS "topics.dpr.trivia.dev.txt", NULL), PHREX_OK);
    assert_int_equal(phrex_qa_get_format(r), PHREX_QA_DPR_CSV);
    phrex_qa q;
    int has;
    size_t n = 0, answers = 0;
    uint64_t digest = FNV_OFFSET;
    while (phrex_qa_next(r, &q, &has) == PHREX_OK && has) {
        n++;
        assert_int_equal(q.line, n);
        assert_null(q.context);
        if (n == 1) {
            assert_true(fnv(q.question) == 0x75833746bfbf2db9ull);
            assert_int_equal(q.n_answers, 14);
        }
        if (n == 27) { // the first quoted question: 6 quotes, doubled in the file
            assert_int_equal(q.question_len, 77);
            assert_true(fnv(q.question) == 0x9d69bf22a08962cfull);
            size_t quotes = 0;
            for (size_t i = 0; i < q.question_len; i++) quotes += q.question[i] == '"';
            assert_int_equal(quotes, 6);
        }
        if (n == 8837) {
            assert_true(fnv(q.question) == 0xc903d7955de7ac7dull);
            assert_int_equal(q.n_answers, 1);
        }
        assert_int_equal(q.question[q.question_len - 1] == '\r', 0);
        answers += q.n_answers;
        digest = mix_record(digest, &q);
    }
    phrex_qa_free(r);
    assert_int_equal(n, 8837);
    assert_int_equal(answers, 121721);
    assert_true(digest == 0x2b548eaa1da60904ull);

    // The uniform JSON-lines copy was made with Python's csv and ast: same records.
    drained d = drain(QA_LISTS "jsonl/trivia-dev.jsonl", PHREX_QA_AUTO, 0);
    assert_int_equal(d.n, 8837);
    assert_true(d.digest == 0x2b548eaa1da60904ull);
}

static void test_nq_csv(void **state) {
    (void)state;
    phrex_qa_reader *r;
    assert_int_equal(phrex_qa_init(&r, QA_LISTS "topics.nq.test.txt", NULL), PHREX_OK);
    phrex_qa q;
    int has;
    size_t n = 0;
    uint64_t digest = FNV_OFFSET;
    while (phrex_qa_next(r, &q, &has) == PHREX_OK && has) {
        n++;
        // Expected values below: recomputed by tools/make_data_digests.py (--check compares them).
        if (n == 1) {
            assert_true(fnv(q.question) == 0xa40b7048c16102b6ull);
            assert_int_equal(q.n_answers, 1);
            assert_true(fnv(q.answer_texts[0]) == 0x2b0da47a15f35581ull);
        }
        if (q.line == 579) { // a literal with a Python escape in it
            assert_int_equal(q.n_answers, 2);
            assert_true(fnv(q.answer_texts[0]) == 0xd2e4d38434f47a90ull);
            assert_true(fnv(q.answer_texts[1]) == 0x13bbe87467608844ull);
        }
        digest = mix_record(digest, &q);
    }
    phrex_qa_free(r);
    assert_int_equal(n, 3610);
    assert_true(digest == 0x505a7c2c1bf563efull);

    drained d = drain(QA_LISTS "topics.dpr.nq.test.txt", PHREX_QA_AUTO, 0); // tokenised text, CRLF
    assert_int_equal(d.rc, PHREX_OK);
    assert_int_equal(d.n, 3610);
    assert_true(d.digest == 0xf205f82c2b6c3524ull);
}

static void test_jsonl_files(void **state) {
    (void)state;
    // Expected values below: recomputed by tools/make_data_digests.py (--check compares them).
    drained d = drain(QA_LISTS "jsonl/curatedtrec-test.jsonl", PHREX_QA_AUTO, 0);
    assert_int_equal(d.rc, PHREX_OK);
    assert_int_equal(d.n, 694);
    assert_int_equal(d.n_answers, 694);
    assert_true(d.digest == 0xcc2c57eb30be7eddull);
    d = drain(QA_LISTS "topics.dpr.curated.test.txt", PHREX_QA_AUTO, 0); // the original: JSON lines, other escaping
    assert_int_equal(d.n, 694);
    assert_true(d.digest == 0xcc2c57eb30be7eddull);

    d = drain(DATA "nq-open/NQ-open.dev.jsonl", PHREX_QA_AUTO, 0);
    assert_int_equal(d.n, 3610);
    assert_true(d.digest == 0x3251ba9435efc559ull);
    d = drain(DATA "nq-open/NQ-open.efficientqa.test.1.1.jsonl", PHREX_QA_AUTO, 0); // extra keys are ignored
    assert_int_equal(d.rc, PHREX_OK);
    assert_int_equal(d.n, 1769);

    // DensePhrases' flat {"data": [{"id", "question", "answers": [str]}]}.
    phrex_qa_reader *r;
    assert_int_equal(phrex_qa_init(&r, DATA "wikipedia/densephrases-sample/questions.json", NULL), PHREX_OK);
    phrex_qa q;
    int has;
    static const char *const ids[] = {"1", "2", "3"};
    static const size_t lines[] = {3, 8, 13}, n_answers[] = {2, 1, 1};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(phrex_qa_next(r, &q, &has), PHREX_OK);
        assert_true(has);
        assert_string_equal(q.id, ids[i]);
        assert_int_equal(q.line, lines[i]);
        assert_int_equal(q.n_answers, n_answers[i]);
        assert_int_equal(q.answers[0].start_char, -1);
    }
    assert_int_equal(phrex_qa_next(r, &q, &has), PHREX_OK);
    assert_false(has);
    phrex_qa_free(r);
    d = drain(DATA "wikipedia/densephrases-sample/questions.json", PHREX_QA_AUTO, 0);
    assert_true(d.digest == 0x0613e33443e208ceull);
}

// --- Python list literals ------------------------------------------------------------

static void test_pylit(void **state) {
    (void)state;
    static const struct {
        const char *literal;
        size_t n;
        const char *items[6];
    } good[] = {
        {"[]", 0, {NULL}},
        {"  [ 'one' ]  ", 1, {"one"}},
        {"['Kettle', \"O'Brien\", 'say \"hi\"']", 3, {"Kettle", "O'Brien", "say \"hi\""}},
        {"['caf\\xe9', '\\u00e9t\\u00e9', '\\U0001F600']", 3, {"caf\xC3\xA9", "\xC3\xA9t\xC3\xA9", "\xF0\x9F\x98\x80"}},
        {"['a\\\\b', 'tab\\there', 'it\\'s', '\\101\\x42']", 4, {"a\\b", "tab\there", "it's", "AB"}},
        {"['keep \\d as is', r'raw\\n', u'uni', 'con' \"cat\",]", 4, {"keep \\d as is", "raw\\n", "uni", "concat"}},
        {"['''tri'ple''', \"line\\\ncontinued\"]", 2, {"tri'ple", "linecontinued"}},
        {"['multi',\n 'line']", 2, {"multi", "line"}},
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        phrex_strlist list = {0};
        size_t at = 0;
        const char *why = NULL;
        int rc = phrex_pylit_parse_list(good[i].literal, strlen(good[i].literal), &list, &at, &why);
        if (rc) fail_msg("literal %zu: %s at byte %zu", i, why, at);
        assert_int_equal(list.n, good[i].n);
        for (size_t k = 0; k < list.n; k++) assert_string_equal(phrex_strlist_get(&list, k, NULL), good[i].items[k]);
        phrex_strlist_free(&list);
    }
    static const struct {
        const char *literal;
        size_t at;
        const char *why;
    } bad[] = {
        {"['open", 1, "unterminated string"},
        {"['a' 'b", 5, "unterminated string"},
        {"['a'", 4, "unterminated list"},
        {"['a' x]", 5, "expected ',' or ']'"},
        {"[1]", 1, "expected a string"},
        {"'a'", 0, "expected '['"},
        {"['a']x", 5, "text after the closing ']'"},
        {"['\\N{BULLET}']", 2, "\\N{name}"},
        {"['\\ud800']", 2, "surrogate"},
        {"['\\x4']", 2, "truncated"},
        {"[b'x']", 1, "bytes literal"},
        {"['a\nb']", 3, "line break inside a string"},
        {"['\\0']", 2, "NUL"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        phrex_strlist list = {0};
        size_t at = 99;
        const char *why = NULL;
        assert_int_equal(phrex_pylit_parse_list(bad[i].literal, strlen(bad[i].literal), &list, &at, &why), PHREX_ERR_FORMAT);
        assert_non_null(why);
        if (!strstr(why, bad[i].why) || at != bad[i].at)
            fail_msg("literal %zu: got '%s' at %zu, want '%s' at %zu", i, why, at, bad[i].why, bad[i].at);
        phrex_strlist_free(&list);
    }
}

// --- hand-written, well-formed and broken -----------------------------------------------

static void expect_error(const char *path, phrex_qa_format format, const char *fragment) {
    drained d = drain(path, format, 0);
    assert_int_equal(d.rc, PHREX_ERR_FORMAT);
    if (!strstr(d.error, fragment)) fail_msg("message '%s' lacks '%s'", d.error, fragment);
}

static void test_jsonl_errors(void **state) {
    (void)state;
    const char *p = write_tmp("bad.jsonl", "{\"question\": \"Who rang the bell?\", \"answer\": [\"the keeper\"]}\n" // 1
                                           "{\"question\": \"Broken\", \"answer\": [\n"                         // 2
                                           "{\"answer\": [\"no question\"]}\n"                                  // 3
                                           "{\"question\": \"A list?\", \"answer\": \"no\"}\n"                  // 4
                                           "{\"question\": \"Bad \xE9 byte\", \"answer\": [\"x\"]}\n"           // 5
                                           "{\"question\": \"Number?\", \"answers\": [\"ok\", 7]}\n"             // 6
                                           "\n"                                                                 // 7
                                           "{\"question\": \"Which bell?\", \"answers\": [\"brass\", \"iron\"], \"id\": 42}\n"); // 8
    expect_error(p, PHREX_QA_AUTO, "bad.jsonl:2: bad JSON near byte");
    drained d = drain(p, PHREX_QA_JSONL, 1);
    assert_int_equal(d.rc, PHREX_OK);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.lines[0], 1);
    assert_int_equal(d.lines[1], 8);
    assert_int_equal(d.n_answers, 3);
    assert_int_equal(d.bad, 5);

    p = write_tmp("noq.jsonl", "{\"answer\": [\"no question\"]}\n");
    expect_error(p, PHREX_QA_JSONL, "noq.jsonl:1: field 'question' missing");
    p = write_tmp("nolist.jsonl", "{\"question\": \"q\", \"answer\": \"no\"}\n");
    expect_error(p, PHREX_QA_JSONL, "nolist.jsonl:1: field 'answer' is not an array");
    p = write_tmp("utf8.jsonl", "{\"question\": \"Bad \xE9 byte\", \"answer\": [\"x\"]}\n");
    expect_error(p, PHREX_QA_JSONL, "utf8.jsonl:1: field 'record': invalid UTF-8 at byte 18 of the field");
    p = write_tmp("num.jsonl", "{\"question\": \"q\", \"answers\": [\"ok\", 7]}\n");
    expect_error(p, PHREX_QA_JSONL, "num.jsonl:1: field 'answers[1]' is not a string");
    // an escaped NUL would cut the question short: refused; an escaped
    // backslash before "u0000" is ordinary text
    p = write_tmp("nul.jsonl", "{\"question\": \"Who\\u0000 rang?\", \"answer\": [\"x\"]}\n");
    expect_error(p, PHREX_QA_JSONL, "nul.jsonl:1: field 'record' holds \\u0000");
    p = write_tmp("slash.jsonl", "{\"question\": \"Who\\\\u0000 rang?\", \"answer\": [\"x\"]}\n");
    d = drain(p, PHREX_QA_JSONL, 0);
    assert_int_equal(d.rc, PHREX_OK);
    assert_int_equal(d.n, 1);
}

static void test_csv_records_and_errors(void **state) {
    (void)state;
    const char *p = write_tmp("qa.csv", "Who rang the bell?\t['the keeper']\r\n"                       // 1
                                        "Bad literal\t['unclosed\r\n"                                 // 2
                                        "\"Say \"\"when\"\"\"\t[\"it's\", 'now']\r\n"                 // 3
                                        "Missing answers\r\n"                                         // 4
                                        "Spans lines\t\"['one',\r\n'two']\"\r\n"                      // 5-6
                                        "Escapes\t['caf\\xe9', '\\u00e9t\\u00e9', \"a\\\\b\"]\r\n"    // 7
                                        "Named\t['\\N{BULLET}']\r\n"                                  // 8
                                        "\"never closed\t['x']\r\n"                                   // 9
                                        "Last one\t['z']\t77\r\n");                                   // 10
    phrex_qa_options opts = {.skip_bad = 1};
    phrex_qa_reader *r;
    assert_int_equal(phrex_qa_init(&r, p, &opts), PHREX_OK);
    assert_int_equal(phrex_qa_get_format(r), PHREX_QA_DPR_CSV);
    static const struct {
        const char *question;
        size_t line, n;
        const char *answers[3];
        const char *id;
    } want[] = {
        {"Who rang the bell?", 1, 1, {"the keeper"}, ""},
        {"Say \"when\"", 3, 2, {"it's", "now"}, ""},
        {"Spans lines", 5, 2, {"one", "two"}, ""},
        {"Escapes", 7, 3, {"caf\xC3\xA9", "\xC3\xA9t\xC3\xA9", "a\\b"}, ""},
        {"Last one", 10, 1, {"z"}, "77"},
    };
    phrex_qa q;
    int has;
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        assert_int_equal(phrex_qa_next(r, &q, &has), PHREX_OK);
        assert_true(has);
        assert_string_equal(q.question, want[i].question);
        assert_int_equal(q.line, want[i].line);
        assert_int_equal(q.n_answers, want[i].n);
        for (size_t k = 0; k < q.n_answers; k++) assert_string_equal(q.answer_texts[k], want[i].answers[k]);
        assert_string_equal(q.id, want[i].id);
    }
    assert_int_equal(phrex_qa_next(r, &q, &has), PHREX_OK);
    assert_false(has);
    assert_int_equal(phrex_qa_count_bad(r), 4);
    phrex_qa_free(r);

    p = write_tmp("lit.csv", "Q\t['unclosed\n");
    expect_error(p, PHREX_QA_DPR_CSV, "lit.csv:1: field 'answers': bad Python list literal: unterminated string at byte 1");
    p = write_tmp("named.csv", "Q\t['\\N{BULLET}']\n");
    expect_error(p, PHREX_QA_DPR_CSV, "named.csv:1: field 'answers': bad Python list literal: \\N{name}");
    p = write_tmp("one.csv", "Only a question\n");
    expect_error(p, PHREX_QA_DPR_CSV, "one.csv:1: field 'answers' missing (1 field, expected 2)");
    p = write_tmp("quote.csv", "ok\t['a']\n\"never closed\t['x']\n");
    expect_error(p, PHREX_QA_DPR_CSV, "quote.csv:2: field 'question': unterminated quote");
    p = write_tmp("utf8.csv", "ok\t['a']\nq\t['\xC3']\n");
    expect_error(p, PHREX_QA_DPR_CSV, "utf8.csv:2: field 'answers': invalid UTF-8 at byte 2 of the field");
}

static void test_squad_errors(void **state) {
    (void)state;
    const char *p = write_tmp("squad.json",
                              "{\"version\": \"1.1\", \"data\": [\n"                                                            // 1
                              " {\"title\": \"Alpha\", \"paragraphs\": [\n"                                                      // 2
                              "  {\"context\": \"Alpha is a made-up word.\", \"qas\": [\n"                                       // 3
                              "   {\"id\": \"q1\", \"question\": \"What is Alpha?\", \"answers\": [{\"text\": \"a made-up word\", \"answer_start\": 9}]},\n" // 4
                              "   {\"id\": \"q2\", \"answers\": [{\"text\": \"Alpha\", \"answer_start\": 0}]},\n"                // 5
                              "   {\"id\": \"q3\", \"question\": \"Too far?\", \"answers\": [{\"text\": \"x\", \"answer_start\": 99}]},\n" // 6
                              "   {\"id\": \"q4\", \"question\": \"Which word?\", \"answers\": [{\"text\": \"word\", \"answer_start\": 19}]}\n" // 7
                              "  ]}\n"                                                                                          // 8
                              " ]},\n"                                                                                          // 9
                              " {\"paragraphs\": [{\"context\": \"No title.\", \"qas\": [{\"id\": \"q5\", \"question\": \"Lost?\", \"answers\": []}]}]},\n" // 10
                              " {\"title\": \"\xC3\x9Cn\xC3\xAF\", \"paragraphs\": [{\"context\": \"\xC3\x9Cn\xC3\xAF" "c\xC3\xB6" "d\xC3\xA9 text: na\xC3\xAFve caf\xC3\xA9.\", \"qas\": [\n" // 11
                              "   {\"id\": \"q6\", \"question\": \"Which cafe?\", \"answers\": [{\"text\": \"caf\xC3\xA9\", \"answer_start\": 20}]}]}]}\n" // 12
                              "]}\n");
    expect_error(p, PHREX_QA_AUTO, "squad.json:5:4: field 'question' missing");
    phrex_qa_options opts = {.skip_bad = 1};
    phrex_qa_reader *r;
    assert_int_equal(phrex_qa_init(&r, p, &opts), PHREX_OK);
    phrex_qa q;
    int has;
    static const struct {
        const char *id;
        size_t line, column;
        long start_char, start_byte;
    } want[] = {{"q1", 4, 4, 9, 9}, {"q4", 7, 4, 19, 19}, {"q6", 12, 4, 20, 25}}; // 5 two-byte characters before "café"
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(phrex_qa_next(r, &q, &has), PHREX_OK);
        assert_true(has);
        assert_string_equal(q.id, want[i].id);
        assert_int_equal(q.line, want[i].line);
        assert_int_equal(q.column, want[i].column);
        assert_int_equal(q.answers[0].start_char, want[i].start_char);
        assert_int_equal(q.answers[0].start_byte, want[i].start_byte);
        assert_memory_equal(q.context + q.answers[0].start_byte, q.answers[0].text, q.answers[0].len);
    }
    assert_int_equal(phrex_qa_next(r, &q, &has), PHREX_OK);
    assert_false(has);
    assert_int_equal(phrex_qa_count_bad(r), 3); // q2, q3 and the untitled article
    phrex_qa_free(r);

    p = write_tmp("far.json", "{\"data\": [{\"title\": \"T\", \"paragraphs\": [{\"context\": \"short\", \"qas\": [\n"
                              "{\"id\": \"f\", \"question\": \"q\", \"answers\": [{\"text\": \"t\", \"answer_start\": 9}]}]}]}]}\n");
    expect_error(p, PHREX_QA_SQUAD_JSON,
                 "far.json:2:1: field 'answers[0].answer_start' = 9 is past the end of the context (5 code points)");
}

static void test_names_and_missing(void **state) {
    (void)state;
    for (int f = PHREX_QA_AUTO; f <= PHREX_QA_SQUAD_JSON; f++) {
        phrex_qa_format parsed;
        assert_int_equal(phrex_qa_parse_format(phrex_qa_format_name((phrex_qa_format)f), &parsed), PHREX_OK);
        assert_int_equal(parsed, f);
    }
    phrex_qa_format parsed;
    assert_int_equal(phrex_qa_parse_format("xml", &parsed), PHREX_ERR_INPUT);
    phrex_qa_reader *r;
    assert_int_equal(phrex_qa_init(&r, "/nonexistent/qa.jsonl", NULL), PHREX_ERR_IO);
    assert_non_null(strstr(phrex_last_error(), "/nonexistent/qa.jsonl"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_squad_questions),
        cmocka_unit_test(test_trivia_dev_csv),
        cmocka_unit_test(test_nq_csv),
        cmocka_unit_test(test_jsonl_files),
        cmocka_unit_test(test_pylit),
        cmocka_unit_test(test_jsonl_errors),
        cmocka_unit_test(test_csv_records_and_errors),
        cmocka_unit_test(test_squad_errors),
        cmocka_unit_test(test_names_and_missing),
    };
    return cmocka_run_group_tests(tests, make_tmp, remove_tmp);
}
