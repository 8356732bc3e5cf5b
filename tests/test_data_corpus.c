// Corpus readers: the real corpora under PHREX_SHARED_DIR (counts from the
// data READMEs; ids, line numbers, lengths and FNV-1a hashes derived once
// with Python's csv / json modules), plus hand-written files, well-formed
// and broken, written to a temporary directory at test time.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "tests/support/test_support.h"
#include "data/corpus.h"

#define DATA PHREX_SHARED_DIR "/data/"
#define PSGS DATA "wikipedia/enwiki-2019-good-articles-sample/psgs_w100.tsv"

// --- helpers -----------------------------------------------------------------

#define FNV_OFFSET 1469598103934665603ull

static uint64_t fnv_mix(uint64_t h, const char *s, size_t n) { return test_hash_bytes(h, s, n); }

static uint64_t fnv(const char *s) { return fnv_mix(FNV_OFFSET, s, strlen(s)); }

// The digest the Python side computed: id 0x1f title 0x1f text 0x1e, per passage.
static uint64_t mix_passage(uint64_t h, const phrex_passage *p) {
    h = fnv_mix(h, p->id, p->id_len);
    h = fnv_mix(h, "\x1f", 1);
    h = fnv_mix(h, p->title, p->title_len);
    h = fnv_mix(h, "\x1f", 1);
    h = fnv_mix(h, p->text, p->text_len);
    return fnv_mix(h, "\x1e", 1);
}

static char tmp_dir[64];

static int make_tmp(void **state) {
    (void)state;
    strcpy(tmp_dir, "/tmp/phrex_test_corpus_XXXXXX");
    return test_make_tmpdir(tmp_dir);
}

static int remove_tmp(void **state) {
    (void)state;
    return test_remove_tree(tmp_dir);
}

// Writes `content` to tmp_dir/name and returns the path (static storage, one per call slot).
static const char *write_tmp(const char *name, const char *content) { return test_write_text(tmp_dir, name, content); }

// Reads every passage; returns the count, the digest, and the first error
// code (0 when none) with its message in `error`.
typedef struct {
    size_t n;
    uint64_t digest;
    int rc;
    char error[512];
    char ids[16][64]; // the first 16 ids
    size_t lines[16];
} drained;

static drained drain(const char *path, phrex_corpus_format format, int skip_bad, size_t *bad) {
    drained d = {.digest = FNV_OFFSET};
    phrex_corpus_options opts = {.format = format, .skip_bad = skip_bad};
    phrex_corpus *c;
    d.rc = phrex_corpus_init(&c, path, &opts);
    if (d.rc) {
        snprintf(d.error, sizeof d.error, "%s", phrex_last_error());
        return d;
    }
    phrex_passage p;
    int has;
    while ((d.rc = phrex_corpus_next(c, &p, &has)) == PHREX_OK && has) {
        if (d.n < 16) {
            snprintf(d.ids[d.n], sizeof d.ids[d.n], "%s", p.id);
            d.lines[d.n] = p.line;
        }
        d.digest = mix_passage(d.digest, &p);
        d.n++;
    }
    if (d.rc) snprintf(d.error, sizeof d.error, "%s", phrex_last_error());
    if (bad) *bad = phrex_corpus_count_bad(c);
    phrex_corpus_free(c);
    return d;
}

// --- real corpora ----------------------------------------------------------------

static void test_psgs_w100(void **state) {
    (void)state;
    phrex_corpus *c;
    assert_int_equal(phrex_corpus_init(&c, PSGS, NULL), PHREX_OK);
    assert_int_equal(phrex_corpus_get_format(c), PHREX_CORPUS_DPR_TSV);
    phrex_passage p;
    int has;
    size_t n = 0;
    uint64_t digest = FNV_OFFSET;
    while (phrex_corpus_next(c, &p, &has) == PHREX_OK && has) {
        n++;
        digest = mix_passage(digest, &p);
        assert_int_equal(p.line, n + 1); // one header line, no multi-line records
        // Expected values below: recomputed by tools/make_data_digests.py (--check compares them).
        if (n == 1) {                    // quoted in the file, with 8 doubled quotes inside
            assert_string_equal(p.id, "1");
            assert_int_equal(p.text_len, 644);
            assert_true(fnv(p.text) == 0xc2ffdd423ebaf57eull);
            assert_true(fnv(p.title) == 0xb9e98d117cca599cull);
            size_t quotes = 0;
            for (size_t i = 0; i < p.text_len; i++) quotes += p.text[i] == '"';
            assert_int_equal(quotes, 8);
            assert_non_null(strstr(p.file, "psgs_w100.tsv"));
        }
        if (p.line == 20866) { // the first quoted title
            assert_string_equal(p.id, "20865");
            assert_int_equal(p.title_len, 16);
            assert_true(fnv(p.title) == 0xdb0b0d1e317006faull);
        }
        if (n == 55597) {
            assert_string_equal(p.id, "55597");
            assert_int_equal(p.text_len, 335);
            assert_true(fnv(p.text) == 0x2a05e66f92ff6d17ull);
            assert_true(fnv(p.title) == 0xd0d5b103a348c484ull);
        }
    }
    assert_int_equal(n, 55597);
    assert_int_equal(phrex_corpus_count_docs(c), 55597);
    assert_int_equal(phrex_corpus_count_bad(c), 0);
    assert_true(digest == 0x23434e859911749dull);
    phrex_corpus_free(c);
}

static void test_squad_paragraphs_tsv(void **state) {
    (void)state;
    drained d = drain(DATA "wikipedia/squad-dev-paragraphs/squad-dev-v1.1-paragraphs.tsv", PHREX_CORPUS_AUTO, 0, NULL);
    assert_int_equal(d.rc, PHREX_OK);
    // Expected values below: recomputed by tools/make_data_digests.py (--check compares them).
    assert_int_equal(d.n, 1682);
    assert_string_equal(d.ids[0], "1");
    assert_int_equal(d.lines[0], 2);
    assert_true(d.digest == 0x5debbfeb34ef5db0ull);
}

static void test_wikiextractor_directory(void **state) {
    (void)state;
    phrex_corpus *c;
    assert_int_equal(phrex_corpus_init(&c, DATA "wikipedia/enwiki-2019-good-articles-sample/AA", NULL), PHREX_OK);
    assert_int_equal(phrex_corpus_get_format(c), PHREX_CORPUS_WIKIEXTRACTOR);
    phrex_passage p;
    int has;
    size_t n = 0, escaped_titles = 0, ampersand_titles = 0;
    uint64_t digest = FNV_OFFSET;
    char last_id[64] = "";
    while (phrex_corpus_next(c, &p, &has) == PHREX_OK && has) {
        n++;
        digest = mix_passage(digest, &p);
        // Expected values below: recomputed by tools/make_data_digests.py (--check compares them).
        if (n == 1) {
            assert_string_equal(p.id, "339:0");
            assert_int_equal(p.line, 4); // <doc>, title line, blank line, then the first paragraph
            assert_non_null(strstr(p.file, "AA/wiki_00"));
        }
        escaped_titles += strstr(p.title, "&amp;") || strstr(p.title, "&quot;");
        ampersand_titles += strchr(p.title, '&') != NULL;
        assert_non_null(strchr(p.id, ':'));
        snprintf(last_id, sizeof last_id, "%s", p.id);
    }
    assert_string_equal(last_id, "56640763:6");
    assert_int_equal(n, 52456);
    assert_int_equal(phrex_corpus_count_docs(c), 1990);
    assert_int_equal(escaped_titles, 0); // "&amp;" in the header became "&"
    assert_true(ampersand_titles > 0);
    assert_true(digest == 0x3c937f1976f50946ull);
    phrex_corpus_free(c);
}

static void test_densephrases_articles(void **state) {
    (void)state;
    phrex_corpus *c;
    assert_int_equal(phrex_corpus_init(&c, DATA "wikipedia/densephrases-sample/articles.json", NULL), PHREX_OK);
    assert_int_equal(phrex_corpus_get_format(c), PHREX_CORPUS_SQUAD_JSON);
    // Expected values below: recomputed by tools/make_data_digests.py (--check compares them).
    static const uint64_t titles[4] = {0x54ce6f5e7647c5dbull, 0x23a7890fcdec778cull, 0x5b27e1e498558f89ull,
                                       0xa7835b7208c68c13ull};
    static const size_t paragraphs[4] = {11, 79, 11, 11};
    size_t per_article[4] = {0}, n = 0;
    uint64_t digest = FNV_OFFSET, first_id = 0, last_id = 0;
    phrex_passage p;
    int has;
    while (phrex_corpus_next(c, &p, &has) == PHREX_OK && has) {
        if (n == 0) first_id = fnv(p.id);
        last_id = fnv(p.id);
        n++;
        digest = mix_passage(digest, &p);
        for (int k = 0; k < 4; k++) per_article[k] += fnv(p.title) == titles[k];
        assert_true(p.line > 1); // this file is pretty-printed
    }
    assert_int_equal(n, 112);
    assert_int_equal(phrex_corpus_count_docs(c), 4);
    for (int k = 0; k < 4; k++) assert_int_equal(per_article[k], paragraphs[k]);
    assert_true(first_id == 0x6b083b9221b74f39ull); // "TITLE:0"
    assert_true(last_id == 0xb9b11c39f87e1c7aull);  // "TITLE:10"
    assert_true(digest == 0x8cbc9301d0f00a2dull);
    phrex_corpus_free(c);
}

// The SQuAD dev file is one line: positions come as line 1 and a column.
static void test_squad_json_as_corpus(void **state) {
    (void)state;
    phrex_corpus *c;
    assert_int_equal(phrex_corpus_init(&c, DATA "squad-v1.1/dev-v1.1.40-articles.json", NULL), PHREX_OK);
    phrex_passage p;
    int has;
    size_t n = 0, last_column = 0;
    uint64_t digest = FNV_OFFSET;
    while (phrex_corpus_next(c, &p, &has) == PHREX_OK && has) {
        // Expected values below: recomputed by tools/make_data_digests.py (--check compares them).
        if (n == 0) assert_int_equal(p.column, 71);
        assert_int_equal(p.line, 1);
        assert_true(p.column > last_column);
        last_column = p.column;
        digest = mix_passage(digest, &p);
        n++;
    }
    assert_int_equal(n, 1682);
    assert_int_equal(phrex_corpus_count_docs(c), 40);
    assert_true(digest == 0xe23c0364e7c25b1aull);
    phrex_corpus_free(c);
}

// --- hand-written, well-formed -----------------------------------------------------

static void test_tsv_quoting(void **state) {
    (void)state;
    // BOM, CRLF, a header in another column order, a quoted field with a
    // TAB, doubled quotes and a line break, an empty title, a blank line.
    const char *path = write_tmp("quoting.tsv",
                                 "\xEF\xBB\xBFtitle\tid\ttext\r\n"
                                 "Harbour\th1\tThe pier is short.\r\n"
                                 "Harbour\th2\t\"A \"\"long\"\" walk\tby the sea,\r\nthen home.\"\r\n"
                                 "\r\n"
                                 "\th3\t\"\"\r\n"
                                 "Hills\th4\tEnd \"quote\" inside\r\n");
    phrex_corpus *c;
    assert_int_equal(phrex_corpus_init(&c, path, NULL), PHREX_OK);
    assert_int_equal(phrex_corpus_get_format(c), PHREX_CORPUS_DPR_TSV);
    phrex_passage p;
    int has;
    static const struct {
        const char *id, *title, *text;
        size_t line;
    } want[] = {
        {"h1", "Harbour", "The pier is short.", 2},
        {"h2", "Harbour", "A \"long\" walk\tby the sea,\nthen home.", 3},
        {"h3", "", "", 6},
        {"h4", "Hills", "End \"quote\" inside", 7}, // a quote inside an unquoted field is literal
    };
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(phrex_corpus_next(c, &p, &has), PHREX_OK);
        assert_true(has);
        assert_string_equal(p.id, want[i].id);
        assert_string_equal(p.title, want[i].title);
        assert_string_equal(p.text, want[i].text);
        assert_int_equal(p.text_len, strlen(want[i].text));
        assert_int_equal(p.line, want[i].line);
    }
    assert_int_equal(phrex_corpus_next(c, &p, &has), PHREX_OK);
    assert_false(has);
    phrex_corpus_free(c);

    // Without a header the order is id, text, title.
    path = write_tmp("noheader.tsv", "7\tA lone row.\tSolo\n");
    drained d = drain(path, PHREX_CORPUS_DPR_TSV, 0, NULL);
    assert_int_equal(d.rc, PHREX_OK);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.ids[0], "7");
}

static void test_wikiextractor_written(void **state) {
    (void)state;
    const char *xml = write_tmp("x/AA/wiki_00", "<doc id=\"12\" url=\"https://example.org/?curid=12\" title=\"Salt &amp; &quot;Pepper&quot; &#233;\">\n"
                                               "Salt &amp; &quot;Pepper&quot; &#233;\n"
                                               "\n"
                                               "Salt is a mineral.\n"
                                               "  \n"
                                               "Uses.\n"
                                               "Pepper is a spice.\n"
                                               "</doc>\n"
                                               "<doc id=\"13\" url=\"u\" title=\"Empty\">\n"
                                               "Empty\n"
                                               "</doc>\n");
    phrex_corpus *c;
    assert_int_equal(phrex_corpus_init(&c, xml, NULL), PHREX_OK);
    assert_int_equal(phrex_corpus_get_format(c), PHREX_CORPUS_WIKIEXTRACTOR);
    phrex_passage p;
    int has;
    static const char *const ids[] = {"12:0", "12:1", "12:2"};
    static const char *const texts[] = {"Salt is a mineral.", "Uses.", "Pepper is a spice."};
    static const size_t lines[] = {4, 6, 7};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(phrex_corpus_next(c, &p, &has), PHREX_OK);
        assert_true(has);
        assert_string_equal(p.id, ids[i]);
        assert_string_equal(p.text, texts[i]);
        assert_string_equal(p.title, "Salt & \"Pepper\" \xC3\xA9");
        assert_int_equal(p.line, lines[i]);
    }
    assert_int_equal(phrex_corpus_next(c, &p, &has), PHREX_OK);
    assert_false(has);
    assert_int_equal(phrex_corpus_count_docs(c), 2); // the empty document counts
    phrex_corpus_free(c);

    // The JSON-lines flavour, with and without the title as first text line,
    // in the same folder: the directory reader detects each file.
    write_tmp("x/AB/wiki_00", "{\"id\": \"20\", \"url\": \"u\", \"title\": \"Tides\", \"text\": \"Tides\\n\\nTides rise.\\nTides fall.\"}\n"
                              "\n"
                              "{\"id\": 21, \"url\": \"u\", \"title\": \"Moon\", \"text\": \"The moon pulls.\\r\\n\"}\n");
    write_tmp("x/AA/wiki_01", "<doc id=\"14\" url=\"u\" title=\"Last\">\nLast\nOnly line.\n</doc>\n");
    write_tmp("x/AA/notes.txt", "not a wiki_* file: ignored\n");
    char dir[128];
    snprintf(dir, sizeof dir, "%s/x", tmp_dir);
    drained d = drain(dir, PHREX_CORPUS_AUTO, 0, NULL);
    assert_int_equal(d.rc, PHREX_OK);
    assert_int_equal(d.n, 7);
    static const char *const order[] = {"12:0", "12:1", "12:2", "14:0", "20:0", "20:1", "21:0"};
    static const size_t order_lines[] = {4, 6, 7, 3, 1, 1, 3};
    for (int i = 0; i < 7; i++) {
        assert_string_equal(d.ids[i], order[i]);
        assert_int_equal(d.lines[i], order_lines[i]);
    }
}

// --- hand-written, broken ------------------------------------------------------------

static void expect_error(const char *path, phrex_corpus_format format, const char *fragment) {
    drained d = drain(path, format, 0, NULL);
    assert_int_equal(d.rc, PHREX_ERR_FORMAT);
    if (!strstr(d.error, fragment)) fail_msg("message '%s' lacks '%s'", d.error, fragment);
}

static void test_tsv_errors(void **state) {
    (void)state;
    const char *p = write_tmp("missing.tsv", "id\ttext\ttitle\n1\tfine\tT\n2\tno title here\n");
    expect_error(p, PHREX_CORPUS_AUTO, "missing.tsv:3: field 'title' missing (2 fields, expected 3)");
    p = write_tmp("extra.tsv", "id\ttext\ttitle\n1\ta\tb\tc\n");
    expect_error(p, PHREX_CORPUS_AUTO, "extra.tsv:2: 4 fields, expected 3 (id, text, title)");
    p = write_tmp("unterminated.tsv", "id\ttext\ttitle\n1\t\"never closed\tT\n2\tmore\tT2\n");
    expect_error(p, PHREX_CORPUS_AUTO, "unterminated.tsv:2: field 'text': unterminated quote");
    p = write_tmp("after_quote.tsv", "id\ttext\ttitle\n1\t\"closed\"then\tT\n");
    expect_error(p, PHREX_CORPUS_AUTO, "after_quote.tsv:2: field 'text': unexpected character 't' after closing quote");
    p = write_tmp("utf8.tsv", "id\ttext\ttitle\n1\tgood\tT\n2\tbad \xE2\x82 byte\tT\n");
    expect_error(p, PHREX_CORPUS_AUTO, "utf8.tsv:3: field 'text': invalid UTF-8 at byte 4 of the field");
    p = write_tmp("noid.tsv", "id\ttext\ttitle\n\ttext\tT\n");
    expect_error(p, PHREX_CORPUS_AUTO, "noid.tsv:2: field 'id' empty");
}

// skip_bad steps over each bad record and counts it; a stray quote does not
// swallow the records after it (the reader resumes on the next line).
static void test_tsv_skip_bad(void **state) {
    (void)state;
    const char *p = write_tmp("mixed.tsv",
                              "id\ttext\ttitle\n"
                              "1\tgood text\tT1\n"
                              "2\tonly two fields\n"
                              "3\t\"stray quote opens here\tT3\n"
                              "4\tgood again\tT4\n"
                              "5\tbad \xFF byte\tT5\n"
                              "6\ttoo\tmany\tfields\n"
                              "7\t\"closed\"x\tT7\n"
                              "8\tlast good\tT8\n");
    size_t bad = 0;
    drained d = drain(p, PHREX_CORPUS_AUTO, 1, &bad);
    assert_int_equal(d.rc, PHREX_OK);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.ids[0], "1");
    assert_string_equal(d.ids[1], "4");
    assert_string_equal(d.ids[2], "8");
    assert_int_equal(d.lines[1], 5);
    assert_int_equal(d.lines[2], 9);
    assert_int_equal(bad, 5);

    p = write_tmp("eof_quote.tsv", "1\t\"never closed\tT\n2\tsecond\tT2\n");
    d = drain(p, PHREX_CORPUS_DPR_TSV, 1, &bad);
    assert_int_equal(d.rc, PHREX_OK);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.ids[0], "2");
    assert_int_equal(bad, 1);
}

static void test_wikiextractor_errors(void **state) {
    (void)state;
    const char *p = write_tmp("w/wiki_00", "<doc id=\"1\" url=\"u\" title=\"One\">\n"   // 1
                                           "One\n"                                     // 2
                                           "Para one.\n"                               // 3
                                           "<doc id=\"2\" url=\"u\" title=\"Two\">\n"  // 4: doc 1 lost its </doc>
                                           "Two\n"                                     // 5
                                           "Para two.\n"                               // 6
                                           "</doc>\n"                                  // 7
                                           "stray text\n"                              // 8: outside a doc
                                           "<doc url=\"u\" title=\"Three\">\n"         // 9: no id
                                           "Three\n"                                   // 10
                                           "Para three.\n"                             // 11
                                           "</doc>\n"                                  // 12
                                           "<doc id=\"4\" url=\"u\" title=\"Four\">\n" // 13
                                           "Four\n"                                    // 14
                                           "Bad \xC3 para.\n"                          // 15: invalid UTF-8
                                           "Good para.\n"                              // 16
                                           "</doc>\n"                                  // 17
                                           "<doc id=\"5\" url=\"u\" title=\"Five\">\n" // 18
                                           "Five\n"                                    // 19
                                           "Unclosed.\n");                             // 20: end of file
    expect_error(p, PHREX_CORPUS_WIKIEXTRACTOR, "wiki_00:4: '<doc>' inside document '1' opened at line 1 (missing '</doc>')");
    size_t bad = 0;
    phrex_corpus_options opts = {.format = PHREX_CORPUS_WIKIEXTRACTOR, .skip_bad = 1};
    phrex_corpus *c;
    assert_int_equal(phrex_corpus_init(&c, p, &opts), PHREX_OK);
    phrex_passage ps;
    int has;
    static const char *const ids[] = {"1:0", "2:0", "4:1", "5:0"}; // a bad paragraph keeps its number
    for (int i = 0; i < 4; i++) {
        assert_int_equal(phrex_corpus_next(c, &ps, &has), PHREX_OK);
        assert_true(has);
        assert_string_equal(ps.id, ids[i]);
    }
    assert_int_equal(phrex_corpus_next(c, &ps, &has), PHREX_OK);
    assert_false(has);
    bad = phrex_corpus_count_bad(c);
    assert_int_equal(bad, 5);
    assert_int_equal(phrex_corpus_count_docs(c), 2); // 2 and 4 are whole
    phrex_corpus_free(c);

    // Each message names file and line.
    p = write_tmp("w2/wiki_00", "loose text\n");
    expect_error(p, PHREX_CORPUS_WIKIEXTRACTOR, "wiki_00:1: text outside a <doc> block");
    p = write_tmp("w3/wiki_00", "<doc id=\"9\" url=\"u\">\nNine\n</doc>\n");
    expect_error(p, PHREX_CORPUS_WIKIEXTRACTOR, "wiki_00:1: field 'title' missing in <doc> header");
    p = write_tmp("w4/wiki_00", "<doc id=\"9\" url=\"u\" title=\"Nine\">\nNine\nText.\n");
    expect_error(p, PHREX_CORPUS_WIKIEXTRACTOR, "wiki_00:1: document '9' never closed");
    p = write_tmp("w5/wiki_00", "<doc id=\"9\" url=\"u\" title=\"Nine\">\nNine\nBad \xF5 byte.\n</doc>\n");
    expect_error(p, PHREX_CORPUS_WIKIEXTRACTOR, "wiki_00:3: field 'text': invalid UTF-8 at byte 4 of the field");
    p = write_tmp("j/wiki_00", "{\"id\": \"1\", \"title\": \"A\", \"text\": \"ok\"}\n{\"id\": \"2\", \"title\": \"B\", \"text\": \n{\"id\": \"3\", \"text\": \"no title\"}\n");
    expect_error(p, PHREX_CORPUS_WIKIEXTRACTOR_JSON, "wiki_00:2: bad JSON near byte");
    drained d = drain(p, PHREX_CORPUS_WIKIEXTRACTOR_JSON, 1, &bad);
    assert_int_equal(d.rc, PHREX_OK);
    assert_int_equal(d.n, 1);
    assert_int_equal(bad, 2); // the broken line and the one without a title
}

static void test_squad_json_errors(void **state) {
    (void)state;
    const char *p = write_tmp("articles.json", "{\"data\": [\n"
                                               "  {\"title\": \"Kites\", \"paragraphs\": [\n"
                                               "    {\"context\": \"Kites fly in wind.\"},\n"
                                               "    {\"text\": \"no context key\"},\n"
                                               "    {\"context\": \"Kites need string.\"}]},\n"
                                               "  {\"paragraphs\": [{\"context\": \"An article without a title.\"}]},\n"
                                               "  {\"title\": \"Boats\", \"paragraphs\": [{\"context\": \"Boats float.\"}]}\n"
                                               "]}\n");
    expect_error(p, PHREX_CORPUS_SQUAD_JSON, "articles.json:4:5: field 'context' missing");
    size_t bad = 0;
    drained d = drain(p, PHREX_CORPUS_SQUAD_JSON, 1, &bad);
    assert_int_equal(d.rc, PHREX_OK);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.ids[0], "Kites:0");
    assert_string_equal(d.ids[1], "Kites:2");
    assert_string_equal(d.ids[2], "Boats:0");
    assert_int_equal(d.lines[1], 5);
    assert_int_equal(d.lines[2], 7); // the cursor kept in step past the skipped article
    assert_int_equal(bad, 2);

    p = write_tmp("truncated.json", "{\"data\": [\n  {\"title\": \"Kites\",\n");
    expect_error(p, PHREX_CORPUS_SQUAD_JSON, "truncated.json:2: bad JSON near byte");
    d = drain(p, PHREX_CORPUS_SQUAD_JSON, 1, &bad); // a document that does not parse cannot be skipped
    assert_int_equal(d.rc, PHREX_ERR_FORMAT);
}

static void test_limits_and_names(void **state) {
    (void)state;
    char line[2048];
    memset(line, 'x', sizeof line - 2);
    line[sizeof line - 2] = '\n';
    line[sizeof line - 1] = '\0';
    const char *p = write_tmp("long.tsv", line);
    phrex_corpus_options opts = {.format = PHREX_CORPUS_DPR_TSV, .skip_bad = 1, .max_record_bytes = 256};
    phrex_corpus *c;
    assert_int_equal(phrex_corpus_init(&c, p, &opts), PHREX_OK);
    phrex_passage ps;
    int has;
    assert_int_equal(phrex_corpus_next(c, &ps, &has), PHREX_ERR_FORMAT); // over the cap: not skippable
    assert_non_null(strstr(phrex_last_error(), "long.tsv:1: line longer than 256 bytes"));
    phrex_corpus_free(c);

    assert_int_equal(phrex_corpus_init(&c, "/nonexistent/corpus.tsv", NULL), PHREX_ERR_IO);
    assert_non_null(strstr(phrex_last_error(), "/nonexistent/corpus.tsv"));

    for (int f = PHREX_CORPUS_AUTO; f <= PHREX_CORPUS_SQUAD_JSON; f++) {
        phrex_corpus_format parsed;
        assert_int_equal(phrex_corpus_parse_format(phrex_corpus_format_name((phrex_corpus_format)f), &parsed), PHREX_OK);
        assert_int_equal(parsed, f);
    }
    phrex_corpus_format parsed;
    assert_int_equal(phrex_corpus_parse_format("csv", &parsed), PHREX_ERR_INPUT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_psgs_w100),
        cmocka_unit_test(test_squad_paragraphs_tsv),
        cmocka_unit_test(test_wikiextractor_directory),
        cmocka_unit_test(test_densephrases_articles),
        cmocka_unit_test(test_squad_json_as_corpus),
        cmocka_unit_test(test_tsv_quoting),
        cmocka_unit_test(test_wikiextractor_written),
        cmocka_unit_test(test_tsv_errors),
        cmocka_unit_test(test_tsv_skip_bad),
        cmocka_unit_test(test_wikiextractor_errors),
        cmocka_unit_test(test_squad_json_errors),
        cmocka_unit_test(test_limits_and_names),
    };
    return cmocka_run_group_tests(tests, make_tmp, remove_tmp);
}
