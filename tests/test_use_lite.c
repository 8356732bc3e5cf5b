// USE-lite inference (encoder/use_lite.h) on the real model in
// ../shared/models/use-lite:
// (1) the 5 golden sentences of golden_tfjs.json, tokenized by our
//     SentencePiece path (ids compared with the golden ones) and embedded,
//     match the TF.js embeddings (the pure-Python reference gets 3.8e-7);
// (2) packing: a sequence's token states do not depend on its neighbours;
// (3) the cross-encoder layout: specials, span markers around exactly the
//     span's tokens, truncation keeping the span, bad spans rejected;
// (4) bad input: ids, lengths, files.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "encoder/spm.h"
#include "encoder/use_lite.h"
#include "support/test_support.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USE_LITE_DIR PHREX_SHARED_DIR "/models/use-lite"
#define GOLDEN_TOL 2e-6 // f32 against TF.js f32; the double Python reference is off by 3.8e-7

enum { C = PHREX_USE_LITE_DIM, MAX_TOKENS = 512, MAX_SEQ = 128, N_GOLDEN = 5 };

static struct {
    phrex_use_lite *model;
    phrex_use_lite_encoder *enc;
    phrex_spm *spm;
} g;

static int setup(void **state) {
    (void)state;
    int rc = phrex_use_lite_init(&g.model, USE_LITE_DIR "/use_lite.safetensors");
    if (!rc) rc = phrex_use_lite_encoder_init(&g.enc, g.model, MAX_TOKENS, MAX_SEQ);
    if (!rc) rc = phrex_use_lite_tokenizer_init(&g.spm, USE_LITE_DIR "/vocab_spm_unigram.json");
    if (rc) fprintf(stderr, "setup: %s\n", phrex_last_error());
    return rc ? -1 : 0;
}

static int teardown(void **state) {
    (void)state;
    phrex_use_lite_encoder_free(g.enc);
    phrex_use_lite_free(g.model);
    phrex_spm_free(g.spm);
    return 0;
}

// --- golden embeddings ----------------------------------------------------------

static void test_golden(void **state) {
    (void)state;
    char *json = test_load_file(USE_LITE_DIR "/golden_tfjs.json", NULL);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(root, "items");
    assert_int_equal(cJSON_GetArraySize(items), N_GOLDEN);
    int32_t ids[MAX_TOKENS], lens[N_GOLDEN];
    float golden[N_GOLDEN][C];
    int n = 0, s = 0;
    phrex_tokens tok;
    assert_int_equal(phrex_tokens_init(&tok, 16), PHREX_OK);
    const cJSON *item;
    cJSON_ArrayForEach(item, items) {
        const char *text = cJSON_GetObjectItemCaseSensitive(item, "text")->valuestring;
        const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(item, "tokens");
        const cJSON *emb = cJSON_GetObjectItemCaseSensitive(item, "embedding");
        assert_int_equal(cJSON_GetArraySize(emb), C);
        assert_int_equal(phrex_spm_encode(g.spm, text, strlen(text), &tok), PHREX_OK);
        assert_int_equal(tok.n, cJSON_GetArraySize(tokens));
        for (int i = 0; i < tok.n; i++) {
            int want = cJSON_GetArrayItem(tokens, i)->valueint;
            if (tok.ids[i] != want) fail_msg("\"%s\": token %d is %d, golden %d", text, i, tok.ids[i], want);
            ids[n + i] = tok.ids[i];
        }
        for (int j = 0; j < C; j++) golden[s][j] = (float)cJSON_GetArrayItem(emb, j)->valuedouble;
        lens[s++] = tok.n;
        n += tok.n;
    }
    phrex_tokens_free(&tok);
    cJSON_Delete(root);
    free(json);
    float *tokens = malloc((size_t)n * C * sizeof *tokens), sent[N_GOLDEN][C];
    assert_int_equal(phrex_use_lite_forward(g.enc, ids, lens, N_GOLDEN, tokens, &sent[0][0]), PHREX_OK);
    double max_diff = 0;
    for (s = 0; s < N_GOLDEN; s++) {
        double d = 0, norm = 0;
        for (int j = 0; j < C; j++) {
            d = fmax(d, fabs(sent[s][j] - golden[s][j]));
            norm += (double)sent[s][j] * sent[s][j];
        }
        printf("  golden sentence %d (%d tokens): max |ours - tfjs| = %.2e, norm %.6f\n", s, lens[s], d, sqrt(norm));
        max_diff = fmax(max_diff, d);
    }
    printf("  max abs diff over the 5 golden embeddings: %.2e (limit %.0e)\n", max_diff, GOLDEN_TOL);
    assert_true(max_diff <= GOLDEN_TOL);
    // The sentences differ from each other far more than from their goldens.
    double cross = 0;
    for (int j = 0; j < C; j++) cross = fmax(cross, fabs(sent[0][j] - golden[1][j]));
    assert_true(cross > 100 * GOLDEN_TOL);
    free(tokens);
}

// --- packing ---------------------------------------------------------------------

static void test_packing(void **state) {
    (void)state;
    // Three sequences of random ids (130 = a length past the batch's others):
    // each alone and all packed together give the same states and sentences.
    int32_t lens[3] = {17, 1, 100}, ids[118];
    uint32_t x = 12345;
    for (int i = 0; i < 118; i++) {
        x = x * 1664525u + 1013904223u;
        ids[i] = 6 + (int32_t)((x >> 8) % (PHREX_USE_LITE_VOCAB - 6));
    }
    float *packed = malloc(118 * C * sizeof(float)), *alone = malloc(118 * C * sizeof(float));
    float sp[3][C], sa[3][C];
    assert_int_equal(phrex_use_lite_forward(g.enc, ids, lens, 3, packed, &sp[0][0]), PHREX_OK);
    for (int s = 0, at = 0; s < 3; at += lens[s++])
        assert_int_equal(phrex_use_lite_forward(g.enc, ids + at, &lens[s], 1, alone + (size_t)at * C, sa[s]),
                         PHREX_OK);
    double d = 0, dsent = 0, scale = 0;
    for (size_t i = 0; i < 118 * (size_t)C; i++) d = fmax(d, fabs(packed[i] - alone[i])), scale = fmax(scale, fabs(alone[i]));
    for (int s = 0; s < 3; s++)
        for (int j = 0; j < C; j++) dsent = fmax(dsent, fabs(sp[s][j] - sa[s][j]));
    printf("  packed vs alone: token states %.2e (of max %.2f), sentences %.2e\n", d, scale, dsent);
    assert_true(d <= 1e-5 * fmax(1.0, scale));
    assert_true(dsent <= 1e-6);
    free(packed);
    free(alone);
}

// --- cross-encoder input ---------------------------------------------------------------

// Decoded text of ids[i0, i1).
static void decode(const int32_t *ids, int i0, int i1, char *buf, size_t cap) {
    size_t len = 0;
    assert_int_equal(phrex_spm_decode(g.spm, ids + i0, i1 - i0, buf, cap, &len), PHREX_OK);
}

static int find_id(const int32_t *ids, int n, int32_t id, int from) {
    for (int i = from; i < n; i++)
        if (ids[i] == id) return i;
    return -1;
}

static void test_pair_layout(void **state) {
    (void)state;
    const char *q = "Which river flows through Paris?";
    const char *title = "Seine";
    const char *text = "The Seine is a 777-kilometre-long river in northern France. It flows through Paris "
                       "and into the English Channel at Le Havre.";
    const char *span = strstr(text, "Le Havre");
    int32_t s0 = (int32_t)(span - text), s1 = s0 + 8;
    phrex_tokens scratch;
    assert_int_equal(phrex_tokens_init(&scratch, 8), PHREX_OK);
    phrex_use_lite_pair_limits lim = phrex_use_lite_pair_defaults();
    int32_t ids[PHREX_USE_LITE_TRAINED_LEN];
    int n = 0;
    assert_int_equal(phrex_use_lite_pair_tokens(g.spm, &lim, q, strlen(q), title, strlen(title), text, strlen(text),
                                                s0, s1, &scratch, ids, &n),
                     PHREX_OK);
    assert_true(n > 20 && n <= lim.max_len);
    assert_int_equal(ids[0], PHREX_USE_LITE_ID_BOS);
    assert_int_equal(ids[n - 1], PHREX_USE_LITE_ID_EOS);
    int sep = find_id(ids, n, PHREX_USE_LITE_ID_EOS, 1), tsep = find_id(ids, n, PHREX_USE_LITE_ID_TITLE_SEP, 0);
    int m0 = find_id(ids, n, PHREX_USE_LITE_ID_SPAN_START, 0), m1 = find_id(ids, n, PHREX_USE_LITE_ID_SPAN_END, 0);
    assert_true(sep > 1 && tsep > sep && m0 > tsep && m1 > m0 + 1 && m1 < n - 1);
    char buf[512];
    decode(ids, 1, sep, buf, sizeof buf);
    assert_string_equal(buf, q);
    decode(ids, sep + 1, tsep, buf, sizeof buf);
    assert_string_equal(buf, title);
    decode(ids, m0 + 1, m1, buf, sizeof buf);
    assert_string_equal(buf, "Le Havre");
    // No span: no markers, the whole passage.
    int n2 = 0;
    assert_int_equal(phrex_use_lite_pair_tokens(g.spm, &lim, q, strlen(q), NULL, 0, text, strlen(text), -1, -1,
                                                &scratch, ids, &n2),
                     PHREX_OK);
    assert_int_equal(find_id(ids, n2, PHREX_USE_LITE_ID_SPAN_START, 0), -1);
    assert_int_equal(find_id(ids, n2, PHREX_USE_LITE_ID_TITLE_SEP, 0), -1);
    assert_int_equal(n2, n - 2 - (tsep - sep)); // minus the markers, the title and its separator
    decode(ids, find_id(ids, n2, PHREX_USE_LITE_ID_EOS, 1) + 1, n2 - 1, buf, sizeof buf);
    assert_string_equal(buf, text);
    phrex_tokens_free(&scratch);
}

static void test_pair_truncation(void **state) {
    (void)state;
    // A long passage (a real Wikipedia-like paragraph repeated) with the span
    // near its end: the window must keep the span whole and stay in max_len.
    char text[4096] = "";
    for (int i = 0; i < 12; i++) strcat(text, "The river basin covers most of northern France and parts of Belgium. ");
    size_t at = strlen(text);
    strcat(text, "Its mouth is at Le Havre on the English Channel. ");
    for (int i = 0; i < 3; i++) strcat(text, "Many bridges cross it in the capital. ");
    int32_t s0 = (int32_t)at + (int32_t)strlen("Its mouth is at "), s1 = s0 + 8;
    phrex_tokens scratch;
    assert_int_equal(phrex_tokens_init(&scratch, 8), PHREX_OK);
    phrex_use_lite_pair_limits lim = {64, 16, 8};
    int32_t ids[64];
    int n = 0;
    const char *q = "Where is the mouth of the Seine?";
    assert_int_equal(phrex_use_lite_pair_tokens(g.spm, &lim, q, strlen(q), "Seine", 5, text, strlen(text), s0, s1,
                                                &scratch, ids, &n),
                     PHREX_OK);
    assert_int_equal(n, 64); // the passage is longer than the budget: the window fills it
    int m0 = find_id(ids, n, PHREX_USE_LITE_ID_SPAN_START, 0), m1 = find_id(ids, n, PHREX_USE_LITE_ID_SPAN_END, 0);
    assert_true(m0 > 0 && m1 > m0);
    char buf[256];
    decode(ids, m0 + 1, m1, buf, sizeof buf);
    assert_string_equal(buf, "Le Havre");
    // Centred: tokens on both sides of the span.
    assert_true(m0 - find_id(ids, n, PHREX_USE_LITE_ID_TITLE_SEP, 0) > 10 && n - 1 - m1 > 10);
    // A long question is cut to max_question tokens.
    char longq[1024] = "";
    for (int i = 0; i < 30; i++) strcat(longq, "why ");
    assert_int_equal(phrex_use_lite_pair_tokens(g.spm, &lim, longq, strlen(longq), NULL, 0, text, strlen(text), s0,
                                                s1, &scratch, ids, &n),
                     PHREX_OK);
    assert_int_equal(find_id(ids, n, PHREX_USE_LITE_ID_EOS, 1), 1 + lim.max_question);
    // Bad spans and limits.
    const char *t = "Le Havre";
    int32_t bad[][2] = {{-1, 3}, {3, 3}, {5, 2}, {0, 9}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(phrex_use_lite_pair_tokens(g.spm, &lim, q, strlen(q), NULL, 0, t, strlen(t), bad[i][0],
                                                    bad[i][1], &scratch, ids, &n),
                         PHREX_ERR_INPUT);
        assert_non_null(strstr(phrex_last_error(), "span"));
    }
    const char *spaced = "Le Havre   "; // trailing whitespace belongs to no piece
    assert_int_equal(phrex_use_lite_pair_tokens(g.spm, &lim, q, strlen(q), NULL, 0, spaced, strlen(spaced), 9, 11,
                                                &scratch, ids, &n),
                     PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "covers no token"));
    phrex_use_lite_pair_limits tight = {16, 8, 8};
    assert_int_equal(phrex_use_lite_pair_tokens(g.spm, &tight, q, strlen(q), NULL, 0, t, strlen(t), -1, -1, &scratch,
                                                ids, &n),
                     PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "max_question"));
    const char invalid[] = "Le \xff Havre";
    assert_int_equal(phrex_use_lite_pair_tokens(g.spm, &lim, q, strlen(q), NULL, 0, invalid, sizeof invalid - 1, -1,
                                                -1, &scratch, ids, &n),
                     PHREX_ERR_INPUT);
    phrex_tokens_free(&scratch);
}

// --- bad input ---------------------------------------------------------------------

static void test_bad_input(void **state) {
    (void)state;
    float out[4 * C];
    int32_t ids[4] = {10, 20, PHREX_USE_LITE_VOCAB, 30}, lens[2] = {2, 2}, long_len[1] = {MAX_SEQ + 1};
    assert_int_equal(phrex_use_lite_forward(g.enc, ids, lens, 2, out, NULL), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "token 2 has id 8002"));
    ids[2] = -1;
    assert_int_equal(phrex_use_lite_forward(g.enc, ids, lens, 2, out, NULL), PHREX_ERR_INPUT);
    assert_int_equal(phrex_use_lite_forward(g.enc, ids, long_len, 1, out, NULL), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "sequence 0 has 129 tokens"));
    int32_t zero[1] = {0};
    assert_int_equal(phrex_use_lite_forward(g.enc, ids, zero, 1, out, NULL), PHREX_ERR_INPUT);
    assert_int_equal(phrex_use_lite_forward(g.enc, ids, lens, 0, out, NULL), PHREX_ERR_INPUT);
    phrex_use_lite_encoder *e;
    assert_int_equal(phrex_use_lite_encoder_init(&e, g.model, 64, 65), PHREX_ERR_INPUT);
    assert_int_equal(phrex_use_lite_encoder_init(&e, g.model, 4096, PHREX_USE_LITE_MAX_SEQ + 1), PHREX_ERR_INPUT);
    phrex_use_lite *m;
    assert_int_equal(phrex_use_lite_init(&m, USE_LITE_DIR "/no-such.safetensors"), PHREX_ERR_IO);
    assert_null(m);
    // A real safetensors file of another model: named tensor missing.
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", PHREX_BASE_MODEL_DIR);
    assert_int_equal(phrex_use_lite_init(&m, path), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "embeddings.word.weight"));
    phrex_spm *spm;
    assert_int_not_equal(phrex_use_lite_tokenizer_init(&spm, USE_LITE_DIR "/no-such.json"), PHREX_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),          cmocka_unit_test(test_packing),
        cmocka_unit_test(test_pair_layout),     cmocka_unit_test(test_pair_truncation),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
