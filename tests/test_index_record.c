// Passage records (index/record.h), version 2: real passages of the
// DensePhrases sample corpus tokenized by the base model's WordPiece
// round-trip through encode/decode with every keep pattern; hand-made
// offsets exercise the escapes (long pieces, big gaps, pieces sharing a
// character); truncated, padded, old-version and out-of-text records are
// refused with the field named; and the size per token is what the format
// promises (about one byte of offsets per word piece).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "data/corpus.h"
#include "encoder/embedder.h"
#include "index/record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARTICLES PHREX_SHARED_DIR "/data/wikipedia/densephrases-sample/articles.json"

static unsigned char *encode(const char *text, uint32_t n, const int32_t *s, const int32_t *e, const uint8_t *keep,
                             uint32_t n_kept, uint64_t first_id, size_t *len) {
    uint32_t tl = (uint32_t)strlen(text);
    unsigned char *buf = malloc(phrex_dump_record_bound(3, 5, tl, n));
    assert_non_null(buf);
    *len = phrex_dump_record_encode(buf, "p17", 3, "Title", 5, text, tl, n, s, e, keep, n_kept, first_id);
    assert_true(*len <= phrex_dump_record_bound(3, 5, tl, n));
    return buf;
}

// Decodes and checks every field against what was encoded.
static void check_round_trip(const unsigned char *buf, size_t len, const char *text, uint32_t n, const int32_t *s,
                             const int32_t *e, const uint8_t *keep, uint32_t n_kept, uint64_t first_id) {
    phrex_dump_record r;
    assert_int_equal(phrex_dump_record_decode(buf, len, "rec", &r), PHREX_OK);
    assert_int_equal(r.n_tokens, n);
    assert_int_equal(r.n_kept, n_kept);
    assert_true(r.first_id == first_id);
    assert_string_equal(r.id, "p17");
    assert_string_equal(r.title, "Title");
    assert_string_equal(r.text, text);
    int32_t *ds = malloc((n + 1) * sizeof *ds), *de = malloc((n + 1) * sizeof *de);
    assert_int_equal(phrex_dump_record_offsets(&r, "rec", ds, de), PHREX_OK);
    for (uint32_t t = 0; t < n; t++) {
        assert_int_equal(ds[t], s[t]);
        assert_int_equal(de[t], e[t]);
        assert_int_equal(phrex_dump_record_kept(&r, t), keep ? keep[t] : 1);
    }
    free(ds);
    free(de);
}

static void test_real_passages_round_trip(void **state) {
    (void)state;
    phrex_embedder *emb;
    assert_int_equal(phrex_embedder_init(&emb, PHREX_BASE_MODEL_DIR, 512), PHREX_OK);
    phrex_corpus *c;
    assert_int_equal(phrex_corpus_init(&c, ARTICLES, NULL), PHREX_OK);
    phrex_tokens tok;
    assert_int_equal(phrex_tokens_init(&tok, 512), PHREX_OK);
    size_t total_tokens = 0, total_codes = 0;
    for (int i = 0; i < 40; i++) {
        phrex_passage p;
        int has;
        assert_int_equal(phrex_corpus_next(c, &p, &has), PHREX_OK);
        assert_true(has);
        phrex_tokens_clear(&tok);
        assert_int_equal(phrex_wordpiece_encode(phrex_embedder_tokenizer(emb), p.text, p.text_len, &tok), PHREX_OK);
        uint32_t n = (uint32_t)tok.n;
        uint8_t *keep = malloc(n + 1);
        for (int pattern = 0; pattern < 3; pattern++) {
            uint32_t kept = 0;
            for (uint32_t t = 0; t < n; t++) kept += keep[t] = pattern == 0 ? 1 : pattern == 1 ? (t * 7 + i) % 3 == 0 : 0;
            size_t len;
            unsigned char *buf = encode(p.text, n, tok.start, tok.end, pattern ? keep : NULL, kept,
                                        (uint64_t)i << 33, &len);
            check_round_trip(buf, len, p.text, n, tok.start, tok.end, pattern ? keep : NULL, kept, (uint64_t)i << 33);
            if (pattern == 0) {
                phrex_dump_record r;
                assert_int_equal(phrex_dump_record_decode(buf, len, "rec", &r), PHREX_OK);
                assert_null(r.keep); // no bitmap when every token is kept
                total_tokens += n;
                total_codes += r.codes_len;
            }
            free(buf);
        }
        free(keep);
    }
    // English word pieces: nearly all one byte.
    assert_true(total_tokens > 1000);
    assert_true((double)total_codes / (double)total_tokens < 1.1);
    phrex_tokens_free(&tok);
    phrex_corpus_free(c);
    phrex_embedder_free(emb);
}

static void test_escapes_round_trip(void **state) {
    (void)state;
    // A 40-byte piece (len >= 32: two-byte code), a gap of 300 bytes, two
    // pieces sharing one character (negative gap), an empty piece.
    char text[400];
    memset(text, 'a', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    const int32_t s[] = {0, 40, 340, 342, 342, 345, 399};
    const int32_t e[] = {40, 40, 344, 344, 344, 399, 399};
    const uint8_t keep[] = {1, 0, 1, 1, 0, 1, 0};
    size_t len;
    unsigned char *buf = encode(text, 7, s, e, keep, 4, 123456789012ull, &len);
    check_round_trip(buf, len, text, 7, s, e, keep, 4, 123456789012ull);
    free(buf);
}

static void expect_refused(const unsigned char *buf, size_t len, const char *needle, int offsets) {
    phrex_dump_record r;
    int rc = phrex_dump_record_decode(buf, len, "meta.mdb: passage 5", &r);
    if (offsets) {
        assert_int_equal(rc, PHREX_OK);
        rc = phrex_dump_record_offsets(&r, "meta.mdb: passage 5", NULL, NULL);
    }
    assert_int_equal(rc, PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "passage 5"));
    if (!strstr(phrex_last_error(), needle)) fail_msg("'%s' lacks '%s'", phrex_last_error(), needle);
}

static void test_bad_records_are_refused(void **state) {
    (void)state;
    const char *text = "Paris is the capital";
    const int32_t s[] = {0, 6, 9, 13}, e[] = {5, 8, 12, 20};
    const uint8_t keep[] = {1, 0, 1, 1};
    size_t len;
    unsigned char *buf = encode(text, 4, s, e, keep, 3, 7, &len);
    unsigned char *copy = malloc(len + 1);
    // Every proper prefix is refused (structure or offsets).
    for (size_t cut = 0; cut < len; cut++) {
        memcpy(copy, buf, cut);
        phrex_dump_record r;
        int rc = phrex_dump_record_decode(copy, cut, "rec", &r);
        if (rc == PHREX_OK) rc = phrex_dump_record_offsets(&r, "rec", NULL, NULL);
        assert_int_equal(rc, PHREX_ERR_FORMAT);
    }
    memcpy(copy, buf, len);
    copy[len] = 0;
    expect_refused(copy, len + 1, "header says", 0); // a stray byte
    copy[0] = 1;
    expect_refused(copy, len, "version 1", 0); // the old format
    assert_non_null(strstr(phrex_last_error(), "rebuild"));
    copy[0] = buf[0];
    copy[1] = 0x80;
    expect_refused(copy, len, "flags", 0);
    copy[1] = buf[1];
    copy[len - 1] ^= 0x02; // the keep bitmap: token 1 flips to kept
    expect_refused(copy, len, "bitmap", 0);
    free(buf);
    // The last piece ends past the text: caught when the offsets are read.
    const int32_t s2[] = {0, 6, 9, 13}, e2[] = {5, 8, 12, 21};
    buf = encode(text, 4, s2, e2, NULL, 4, 7, &len);
    expect_refused(buf, len, "outside", 1);
    free(buf);
    free(copy);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_passages_round_trip),
        cmocka_unit_test(test_escapes_round_trip),
        cmocka_unit_test(test_bad_records_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
