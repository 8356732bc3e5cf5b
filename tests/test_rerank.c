// The shallow cross-encoder (rerank/): how a pair is tokenized, marked and
// windowed on real SQuAD text; the reranker folder's loud failures; the
// inference score against the training forward's on the same weights; and
// the head + backbone gradient of the gBCE loss against finite differences
// on a tiny random model.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "data/qa.h"
#include "encoder/embedder.h"
#include "encoder/safetensors.h"
#include "encoder/train_rng.h"
#include "rerank/gbce.h"
#include "rerank/rerank_data.h"
#include "rerank/rerank_train.h"
#include "rerank/reranker.h"
#include "tests/support/test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SQUAD PHREX_SHARED_DIR "/data/squad-v1.1/dev-v1.1.40-articles.json"
#define N_QA 120

static char tmp_dir[256];
static char good_dir[512]; // a valid 1-layer reranker built from the base model

typedef struct {
    char *question, *context, *title, *answer;
    int32_t start, end; // answer bytes in context
} qa_item;

static qa_item items[N_QA];
static int n_items;

// The first N_QA SQuAD questions whose first answer sits at its offset.
static void load_items(void) {
    phrex_qa_reader *r;
    phrex_qa_options o = {.format = PHREX_QA_SQUAD_JSON};
    assert_int_equal(phrex_qa_init(&r, SQUAD, &o), PHREX_OK);
    int has = 1;
    while (n_items < N_QA) {
        phrex_qa q;
        assert_int_equal(phrex_qa_next(r, &q, &has), PHREX_OK);
        if (!has) break;
        const phrex_qa_answer *a = &q.answers[0];
        if (!q.n_answers || a->start_byte < 0 || memcmp(q.context + a->start_byte, a->text, a->len)) continue;
        // Every 7th question, to spread over paragraphs.
        static int seen;
        if (seen++ % 7) continue;
        qa_item *it = &items[n_items++];
        it->question = strdup(q.question), it->context = strdup(q.context), it->title = strdup(q.title);
        it->answer = strdup(a->text);
        it->start = (int32_t)a->start_byte, it->end = (int32_t)(a->start_byte + (long)a->len);
    }
    phrex_qa_free(r);
    assert_true(n_items >= 100);
}

static phrex_rerank_candidate cand(const qa_item *it, int32_t s, int32_t e) {
    return (phrex_rerank_candidate){it->title, strlen(it->title), it->context, strlen(it->context), s, e};
}

// --- tokenization, marking, windowing ----------------------------------------------

static void check_pair(phrex_rerank_tokenizer *t, const qa_item *it, int L, int *cut_seen, int *windowed) {
    int32_t ids[512], types[512], os[512], oe[512];
    phrex_rerank_candidate c = cand(it, it->start, it->end);
    phrex_rerank_pair_info info;
    assert_int_equal(phrex_rerank_tokenizer_set_question(t, it->question, strlen(it->question)), PHREX_OK);
    assert_int_equal(phrex_rerank_tokenizer_pair(t, &c, ids, types, os, oe, &info), PHREX_OK);
    assert_true(info.len <= L && info.len == info.question_tokens + (info.passage_at - info.question_tokens) +
                                                 info.n_pieces + 3);
    assert_int_equal(ids[0], t->cls);
    assert_int_equal(ids[info.question_tokens - 1], t->sep);
    assert_int_equal(ids[info.len - 1], t->sep);
    assert_int_equal(types[0], 0);
    assert_int_equal(types[info.question_tokens - 1], 0);
    assert_int_equal(types[info.question_tokens], 1);
    assert_int_equal(types[info.len - 1], 1);
    // Exactly one of each marker, m0 before m1.
    int n0 = 0, n1 = 0;
    for (int i = 0; i < info.len; i++) n0 += ids[i] == t->mark_start, n1 += ids[i] == t->mark_end;
    assert_int_equal(n0, 1);
    assert_int_equal(n1, 1);
    assert_int_equal(ids[info.mark_start_at], t->mark_start);
    assert_int_equal(ids[info.mark_end_at], t->mark_end);
    assert_true(info.mark_start_at < info.mark_end_at);
    *windowed += info.n_pieces < info.passage_pieces;
    if (info.span_cut) {
        (*cut_seen)++;
        return;
    }
    // The pieces between the markers are exactly those overlapping the answer:
    // the first starts at or before it and ends inside, the last ends at or
    // after its end, and the neighbours outside the markers do not overlap it.
    int a = info.mark_start_at + 1, b = info.mark_end_at - 1;
    assert_true(a <= b);
    assert_true(os[a] <= it->start && oe[a] > it->start);
    assert_true(oe[b] >= it->end && os[b] < it->end);
    if (a - 2 >= info.passage_at) assert_true(oe[a - 2] <= it->start);
    if (b + 2 < info.len - 1) assert_true(os[b + 2] >= it->end);
    // The passage tokens run in order through the window, markers aside.
    int32_t last = -1;
    for (int i = info.passage_at; i < info.len - 1; i++) {
        if (os[i] < 0) continue;
        assert_true(os[i] >= last);
        last = oe[i];
    }
    // Centred: when the window is smaller than the passage and not at an
    // edge, the context on the two sides differs by at most one piece.
    int left = info.mark_start_at - info.passage_at, right = info.len - 2 - info.mark_end_at;
    if (info.n_pieces < info.passage_pieces && info.first_piece > 0 &&
        info.first_piece + info.n_pieces < info.passage_pieces)
        assert_true(abs(left - right) <= 1);
}

static void test_pair_marking_and_windows(void **state) {
    (void)state;
    phrex_wordpiece *wp;
    assert_int_equal(phrex_embedder_load_tokenizer(PHREX_BASE_MODEL_DIR, &wp), PHREX_OK);
    int32_t ms, me;
    assert_int_equal(phrex_rerank_marker_ids(wp, &ms, &me), PHREX_OK);
    assert_string_equal(phrex_wordpiece_piece(wp, ms), "[unused0]");
    assert_string_equal(phrex_wordpiece_piece(wp, me), "[unused1]");
    const int lens[] = {256, 96, 48};
    for (int k = 0; k < 3; k++) {
        phrex_rerank_tokenizer t;
        assert_int_equal(phrex_rerank_tokenizer_init(&t, wp, lens[k], 0, ms, me), PHREX_OK);
        int cut = 0, windowed = 0;
        for (int i = 0; i < n_items; i++) check_pair(&t, &items[i], lens[k], &cut, &windowed);
        printf("max_seq_len %d: %d of %d pairs windowed, %d spans cut\n", lens[k], windowed, n_items, cut);
        if (lens[k] <= 96) assert_true(windowed > n_items / 2); // real paragraphs exceed 96 tokens
        assert_true(cut <= n_items / 20);                       // SQuAD answers are short
        phrex_rerank_tokenizer_free(&t);
    }
    phrex_wordpiece_free(wp);
}

// A passage candidate has no markers and starts at the first piece; a
// question over 64 pieces is cut; bad spans are refused.
static void test_passage_pairs_and_bad_spans(void **state) {
    (void)state;
    phrex_wordpiece *wp;
    assert_int_equal(phrex_embedder_load_tokenizer(PHREX_BASE_MODEL_DIR, &wp), PHREX_OK);
    int32_t ms, me, ids[256], types[256], os[256], oe[256];
    assert_int_equal(phrex_rerank_marker_ids(wp, &ms, &me), PHREX_OK);
    phrex_rerank_tokenizer t;
    assert_int_equal(phrex_rerank_tokenizer_init(&t, wp, 128, 0, ms, me), PHREX_OK);
    const qa_item *it = &items[3];
    phrex_rerank_candidate c = cand(it, -1, -1);
    phrex_rerank_pair_info info;
    assert_int_equal(phrex_rerank_tokenizer_set_question(&t, it->question, strlen(it->question)), PHREX_OK);
    assert_int_equal(phrex_rerank_tokenizer_pair(&t, &c, ids, types, os, oe, &info), PHREX_OK);
    assert_int_equal(info.mark_start_at, -1);
    assert_int_equal(info.first_piece, 0);
    for (int i = 0; i < info.len; i++) assert_true(ids[i] != ms && ids[i] != me);
    assert_int_equal(os[info.passage_at], 0); // the passage's first byte
    // A long question keeps 62 pieces between [CLS] and [SEP].
    char longq[2048] = "";
    for (int i = 0; i < 40; i++) strcat(longq, "what river flows ");
    assert_int_equal(phrex_rerank_tokenizer_set_question(&t, longq, strlen(longq)), PHREX_OK);
    assert_int_equal(phrex_rerank_tokenizer_pair(&t, &c, ids, types, NULL, NULL, &info), PHREX_OK);
    assert_int_equal(info.question_tokens, 64);
    assert_true(info.question_truncated);
    assert_true(info.len <= 128);
    // Bad spans and an empty question.
    int32_t L = (int32_t)strlen(it->context);
    const int32_t bad[][2] = {{-1, 5}, {3, -1}, {5, 5}, {6, 2}, {0, L + 1}, {-2, 3}};
    for (int i = 0; i < 6; i++) {
        c = cand(it, bad[i][0], bad[i][1]);
        assert_int_equal(phrex_rerank_tokenizer_pair(&t, &c, ids, types, NULL, NULL, NULL), PHREX_ERR_INPUT);
        assert_non_null(strstr(phrex_last_error(), "span"));
    }
    assert_int_equal(phrex_rerank_tokenizer_set_question(&t, " \t ", 3), PHREX_ERR_INPUT);
    assert_int_equal(phrex_rerank_tokenizer_set_question(&t, "a\xff", 2), PHREX_ERR_INPUT);
    phrex_rerank_tokenizer_free(&t);
    phrex_wordpiece_free(wp);
}

// --- a reranker folder -----------------------------------------------------------------

// Saves the lower layer of the base model with a random head (f32) as a
// reranker folder whose head reads `pool`; *model (may be NULL) keeps the
// training model.
static void make_reranker(const char *dir, int max_seq, phrex_rerank_pool pool, phrex_rerank_model **model) {
    phrex_rerank_backbone bb;
    assert_int_equal(phrex_rerank_backbone_bert(&bb, PHREX_BASE_MODEL_DIR, 1, 8 * max_seq, max_seq, 1), PHREX_OK);
    phrex_rerank_model *m;
    assert_int_equal(phrex_rerank_model_init(&m, &bb, 7, 2.0f), PHREX_OK);
    phrex_rerank_model_set_pool(m, pool, 1, 2);
    phrex_rerank_backbone *b = phrex_rerank_model_backbone(m);
    char enc[600], head[600];
    test_join_path(enc, sizeof enc, dir, "encoder");
    test_join_path(head, sizeof head, dir, "head.safetensors");
    assert_int_equal(test_run_shell("true"), 0);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    assert_int_equal(test_run_shell(cmd), 0);
    assert_int_equal(b->save(b->self, enc, PHREX_DTYPE_F32, PHREX_BASE_MODEL_DIR), PHREX_OK);
    const float *hp = phrex_rerank_model_head_params(m).params;
    assert_int_equal(phrex_reranker_write_head(head, hp, hp[b->hidden_size], b->hidden_size, PHREX_DTYPE_F32),
                     PHREX_OK);
    phrex_reranker_meta meta = {.encoder = "encoder", .head = "head.safetensors", .backbone = "bert", .layers = 1,
                                .hidden_size = b->hidden_size, .max_seq_len = max_seq, .max_query_len = 64,
                                .mark_start = 1, .mark_end = 2, .pool = (int)pool};
    assert_int_equal(phrex_reranker_write_json(dir, &meta, "\"note\": \"test\""), PHREX_OK);
    if (model) *model = m;
    else phrex_rerank_model_free(m);
}

static int setup(void **state) {
    (void)state;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/phrex_test_rerank_XXXXXX");
    if (test_make_tmpdir(tmp_dir)) return -1;
    snprintf(good_dir, sizeof good_dir, "%s/good", tmp_dir);
    load_items();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < n_items; i++)
        free(items[i].question), free(items[i].context), free(items[i].title), free(items[i].answer);
    return test_remove_tree(tmp_dir);
}

// Inference (rerank/reranker.c: packed inference kernels, pairs of one call
// in one forward) against the training forward on the same weights and the
// same tokens: the scores agree to float rounding. For both heads: [CLS],
// and [CLS] + markers (candidate 7 is a passage, which has no markers).
static void inference_equals_training(const char *dir, phrex_rerank_pool pool) {
    phrex_rerank_model *m;
    make_reranker(dir, 160, pool, &m);
    phrex_reranker *r;
    assert_int_equal(phrex_reranker_init(&r, dir), PHREX_OK);
    assert_int_equal(phrex_reranker_pool(r), (int)pool);
    assert_int_equal(phrex_reranker_layers(r), 1);
    assert_int_equal(phrex_reranker_max_seq_len(r), 160);
    phrex_rerank_worker *w;
    assert_int_equal(phrex_rerank_worker_init(&w, r, 8), PHREX_OK);
    phrex_wordpiece *wp;
    assert_int_equal(phrex_embedder_load_tokenizer(PHREX_BASE_MODEL_DIR, &wp), PHREX_OK);
    phrex_rerank_tokenizer t;
    assert_int_equal(phrex_rerank_tokenizer_init(&t, wp, 160, 0, 1, 2), PHREX_OK);
    int32_t ids[8 * 160], types[8 * 160], lens[8];
    float s_inf[8], s_train[8], worst = 0, spread = 0;
    for (int q = 0; q < 6; q++) {
        const qa_item *it = &items[q * 9];
        phrex_rerank_candidate c[8];
        for (int k = 0; k < 8; k++) {
            const qa_item *o = &items[(q * 9 + k * 5) % n_items];
            c[k] = k == 0 ? cand(it, it->start, it->end) : k == 7 ? cand(o, -1, -1) : cand(o, o->start, o->end);
        }
        assert_int_equal(phrex_rerank_score(w, it->question, strlen(it->question), c, 8, s_inf), PHREX_OK);
        assert_int_equal(phrex_rerank_tokenizer_set_question(&t, it->question, strlen(it->question)), PHREX_OK);
        int at = 0;
        for (int k = 0; k < 8; k++) {
            phrex_rerank_pair_info info;
            assert_int_equal(phrex_rerank_tokenizer_pair(&t, &c[k], ids + at, types + at, NULL, NULL, &info),
                             PHREX_OK);
            lens[k] = info.len, at += info.len;
            assert_int_equal(phrex_rerank_worker_pair_len(w, k), info.len);
        }
        assert_int_equal(phrex_rerank_model_forward(m, ids, types, lens, 8, s_train), PHREX_OK);
        for (int k = 0; k < 8; k++) {
            float d = fabsf(s_inf[k] - s_train[k]);
            if (d > worst) worst = d;
            if (fabsf(s_inf[k] - s_inf[0]) > spread) spread = fabsf(s_inf[k] - s_inf[0]);
        }
    }
    printf("inference vs training score: worst |diff| %.2e (scores spread %.3f)\n", worst, spread);
    assert_true(spread > 1e-2); // the scores differ between pairs, so the check means something
    assert_true(worst < 2e-4f + 1e-4f * spread);
    // Calls with 0 and too many pairs.
    assert_int_equal(phrex_rerank_score(w, "why", 3, NULL, 0, s_inf), PHREX_OK);
    phrex_rerank_candidate many[9];
    assert_int_equal(phrex_rerank_score(w, "why", 3, many, 9, s_inf), PHREX_ERR_INPUT);
    phrex_rerank_tokenizer_free(&t);
    phrex_wordpiece_free(wp);
    phrex_rerank_worker_free(w);
    phrex_reranker_free(r);
    phrex_rerank_model_free(m);
}

static void test_inference_equals_training(void **state) {
    (void)state;
    char marks_dir[600];
    snprintf(marks_dir, sizeof marks_dir, "%s/marks", tmp_dir);
    inference_equals_training(good_dir, PHREX_RERANK_POOL_CLS);
    inference_equals_training(marks_dir, PHREX_RERANK_POOL_MARKS);
}

// --- bad folders -----------------------------------------------------------------

static char *good_json;

static void write_json(const char *dir, const char *text) {
    char path[600];
    test_join_path(path, sizeof path, dir, PHREX_RERANKER_JSON);
    test_write_string(path, text);
}

// good_json with `from` replaced by `to`.
static void write_json_replaced(const char *dir, const char *from, const char *to) {
    const char *at = strstr(good_json, from);
    assert_non_null(at);
    size_t n = strlen(good_json) + strlen(to) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%.*s%s%s", (int)(at - good_json), good_json, to, at + strlen(from));
    write_json(dir, s);
    free(s);
}

static void expect_fail(const char *dir, int code, const char *needle) {
    phrex_reranker *r = (phrex_reranker *)1;
    int rc = phrex_reranker_init(&r, dir);
    printf("  %-40s -> %d: %s\n", needle, rc, phrex_last_error());
    assert_int_equal(rc, code);
    assert_null(r);
    assert_non_null(strstr(phrex_last_error(), needle));
}

static void test_bad_folders(void **state) {
    (void)state;
    char path[700], dir[600];
    test_join_path(path, sizeof path, good_dir, PHREX_RERANKER_JSON);
    char *probe = test_read_file(path, NULL); // the earlier test made it, unless run alone
    if (!probe) make_reranker(good_dir, 160, PHREX_RERANK_POOL_CLS, NULL);
    free(probe);
    good_json = test_load_file(path, NULL);
    // A copy of the folder whose json and head we damage; the encoder is shared by a link.
    snprintf(dir, sizeof dir, "%s/bad", tmp_dir);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && ln -sf '%s/encoder' '%s/encoder' && cp '%s/head.safetensors' '%s/'",
             dir, good_dir, dir, good_dir, dir);
    assert_int_equal(test_run_shell(cmd), 0);

    expect_fail("/nonexistent/reranker", PHREX_ERR_IO, "no such folder");
    expect_fail(dir, PHREX_ERR_IO, PHREX_RERANKER_JSON); // no json yet
    write_json(dir, "{\"format\": \"phrex-reranker\", ");
    expect_fail(dir, PHREX_ERR_FORMAT, "not valid JSON");
    write_json_replaced(dir, "\"phrex-reranker\"", "\"phrex-densephrases\"");
    expect_fail(dir, PHREX_ERR_FORMAT, "'format'");
    write_json_replaced(dir, "\"version\": 1", "\"version\": 7");
    expect_fail(dir, PHREX_ERR_FORMAT, "newer");
    write_json_replaced(dir, "\"layers\": 1", "\"layers\": 4");
    expect_fail(dir, PHREX_ERR_MISMATCH, "num_hidden_layers");
    write_json_replaced(dir, "\"layers\": 1,", "");
    expect_fail(dir, PHREX_ERR_FORMAT, "'layers' is missing");
    write_json_replaced(dir, "\"marker_end_id\": 2", "\"marker_end_id\": 3");
    expect_fail(dir, PHREX_ERR_MISMATCH, "marker ids");
    write_json_replaced(dir, "\"hidden_size\": 384", "\"hidden_size\": 256");
    expect_fail(dir, PHREX_ERR_MISMATCH, "hidden_size");
    write_json_replaced(dir, "\"max_seq_len\": 160", "\"max_seq_len\": 1024");
    expect_fail(dir, PHREX_ERR_MISMATCH, "positions");
    write_json_replaced(dir, "\"encoder\": \"encoder\"", "\"encoder\": \"../good/encoder\"");
    expect_fail(dir, PHREX_ERR_FORMAT, "inside the folder");
    write_json_replaced(dir, "\"encoder\": \"encoder\"", "\"encoder\": \"missing\"");
    expect_fail(dir, PHREX_ERR_IO, "missing");
    write_json_replaced(dir, "\"backbone\": \"bert\"", "\"backbone\": \"t5\"");
    expect_fail(dir, PHREX_ERR_MISMATCH, "backbone");
    write_json_replaced(dir, "\"pool\": \"cls\"", "\"pool\": \"max\"");
    expect_fail(dir, PHREX_ERR_FORMAT, "'pool'");
    write_json_replaced(dir, "\"pool\": \"cls\"", "\"pool\": 1");
    expect_fail(dir, PHREX_ERR_FORMAT, "'pool'");
    // The head: missing, then of the wrong width.
    write_json(dir, good_json);
    phrex_reranker *r;
    assert_int_equal(phrex_reranker_init(&r, dir), PHREX_OK); // the copy itself is fine
    uint64_t h1 = phrex_reranker_hash(r);
    phrex_reranker_free(r);
    snprintf(path, sizeof path, "%s/head.safetensors", dir);
    remove(path);
    expect_fail(dir, PHREX_ERR_IO, "head.safetensors");
    float w[256] = {0};
    assert_int_equal(phrex_reranker_write_head(path, w, 0.5f, 256, PHREX_DTYPE_F32), PHREX_OK);
    expect_fail(dir, PHREX_ERR_MISMATCH, "score.weight");
    // Another head of the right shape loads, with another hash.
    float w2[384];
    for (int i = 0; i < 384; i++) w2[i] = 0.01f * (float)(i % 7);
    assert_int_equal(phrex_reranker_write_head(path, w2, 0.5f, 384, PHREX_DTYPE_F16), PHREX_OK);
    assert_int_equal(phrex_reranker_init(&r, dir), PHREX_OK);
    assert_true(phrex_reranker_hash(r) != h1);
    float b;
    assert_true(fabsf(phrex_reranker_head(r, &b)[6] - 0.06f) < 1e-4f && b == 0.5f);
    phrex_reranker_free(r);
    free(good_json);
}

// --- gradients --------------------------------------------------------------------------

// The gBCE loss of groups through the model, forward only (no state change).
static double groups_loss(phrex_rerank_model *m, const int32_t *ids, const int32_t *types, const int32_t *lens,
                          const int32_t *groups, int n_groups, float beta) {
    float s[64];
    int n = 0;
    for (int g = 0; g < n_groups; g++) n += groups[g];
    assert_int_equal(phrex_rerank_model_forward(m, ids, types, lens, n, s), PHREX_OK);
    double L = 0;
    for (int g = 0, at = 0; g < n_groups; at += groups[g], g++) L += phrex_gbce_loss(s + at, groups[g] - 1, beta, NULL);
    return L / n_groups;
}

// Directional derivatives of the loss along random directions over every
// trainable parameter (backbone and head together), central differences in
// f32 on a tiny model where the loss is O(1): rounding noise ~1e-7/h = 1e-4
// relative, truncation ~h² ~ 1e-6, so 2% catches any wrong term (a missing
// head factor in dL/dh, a wrong [CLS] or marker row, a dropped 1/(n+1)) by
// far. With the markers' head, the sequences carry markers 3 and 4 (two of
// them one marker only, which reads [CLS] alone).
static void gradient_check(phrex_rerank_pool pool) {
    phrex_bert_config cfg = {.vocab_size = 50, .hidden_size = 16, .num_hidden_layers = 2, .num_attention_heads = 2,
                             .head_dim = 8, .intermediate_size = 32, .max_position_embeddings = 32,
                             .type_vocab_size = 2, .layer_norm_eps = 1e-5f};
    phrex_rerank_backbone bb;
    assert_int_equal(phrex_rerank_backbone_bert_random(&bb, &cfg, 11, 0.3f, 256, 32), PHREX_OK);
    phrex_rerank_model *m;
    assert_int_equal(phrex_rerank_model_init(&m, &bb, 3, 0.5f), PHREX_OK);
    phrex_rerank_model_set_pool(m, pool, 3, 4);
    phrex_rng r = phrex_rng_init(99);
    const int32_t groups[3] = {4, 3, 5};
    int32_t lens[12], ids[256], types[256];
    int N = 0;
    for (int i = 0; i < 12; i++) {
        lens[i] = 5 + (int)phrex_rng_below(&r, 12);
        for (int k = 0; k < lens[i]; k++) {
            int32_t id = 5 + (int32_t)phrex_rng_below(&r, 45); // no marker but where placed below
            if (k == lens[i] / 2 + 1) id = 3;
            if (k == lens[i] - 2 && i % 5) id = 4;
            ids[N + k] = id, types[N + k] = k > lens[i] / 2;
        }
        N += lens[i];
    }
    const float beta = 0.4f;
    float loss;
    phrex_rerank_model_zero_grads(m);
    assert_int_equal(phrex_rerank_model_step(m, ids, types, lens, groups, 3, beta, 1.0f, &loss, NULL), PHREX_OK);
    assert_true(fabs(loss - groups_loss(m, ids, types, lens, groups, 3, beta)) < 1e-5);
    phrex_rerank_backbone *b = phrex_rerank_model_backbone(m);
    phrex_train_params views[2] = {b->params(b->self), phrex_rerank_model_head_params(m)};
    for (int trial = 0; trial < 4; trial++) {
        // trial 0..2: all parameters; 3: the head alone.
        float *dirs[2];
        double analytic = 0;
        for (int v = 0; v < 2; v++) {
            dirs[v] = malloc(views[v].n_grads * 4);
            for (size_t i = 0; i < views[v].n_grads; i++) {
                dirs[v][i] = (trial == 3 && v == 0) ? 0.0f : phrex_rng_symmetric(&r);
                analytic += (double)dirs[v][i] * views[v].grads[i];
            }
        }
        const float h = 1e-2f / sqrtf((float)(views[0].n_grads + views[1].n_grads) / 100.0f);
        double Ls[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            for (int v = 0; v < 2; v++)
                for (size_t i = 0; i < views[v].n_grads; i++)
                    views[v].params[views[v].grad_offset + i] += (sgn ? -2 : 1) * h * dirs[v][i];
            Ls[sgn] = groups_loss(m, ids, types, lens, groups, 3, beta);
        }
        for (int v = 0; v < 2; v++)
            for (size_t i = 0; i < views[v].n_grads; i++) views[v].params[views[v].grad_offset + i] += h * dirs[v][i];
        double numeric = (Ls[0] - Ls[1]) / (2.0 * h), rel = fabs(analytic - numeric) / fabs(numeric);
        printf("direction %d: analytic %.6f numeric %.6f rel %.2e\n", trial, analytic, numeric, rel);
        assert_true(fabs(numeric) > 1e-3);
        assert_true(rel < 2e-2);
        free(dirs[0]), free(dirs[1]);
    }
    // grad_scale scales every gradient.
    float *g0 = malloc(views[0].n_grads * 4);
    memcpy(g0, views[0].grads, views[0].n_grads * 4);
    phrex_rerank_model_zero_grads(m);
    assert_int_equal(phrex_rerank_model_step(m, ids, types, lens, groups, 3, beta, 0.25f, &loss, NULL), PHREX_OK);
    for (size_t i = 0; i < views[0].n_grads; i += 97) assert_true(fabsf(views[0].grads[i] - 0.25f * g0[i]) <=
                                                                   1e-6f + 1e-4f * fabsf(g0[i]));
    free(g0);
    phrex_rerank_model_free(m);
}

static void test_gradient_check(void **state) {
    (void)state;
    gradient_check(PHREX_RERANK_POOL_CLS);
    gradient_check(PHREX_RERANK_POOL_MARKS);
}

// --- candidates files ---------------------------------------------------------------

static void test_candidates_file(void **state) {
    (void)state;
    char path[600];
    test_join_path(path, sizeof path, tmp_dir, "cands.jsonl");
    const char *head = "{\"format\": \"phrex-rerank-candidates\", \"version\": 1, \"squad\": \"" SQUAD
                       "\", \"k\": 3, \"titles\": [\"Super_Bowl_50\"]}\n";
    char text[4096];
    snprintf(text, sizeof text,
             "%s{\"id\": \"q1\", \"question\": \"Who won?\", \"answers\": [\"Denver Broncos\"], "
             "\"gold\": [\"Super_Bowl_50:0\", 177, 191], \"phrases\": [[\"Super_Bowl_50:0\", 177, 191, 9.5, 1], "
             "[\"Super_Bowl_50:1\", 0, 10, 8.0, 0]]}\n",
             head);
    test_write_string(path, text);
    phrex_rerank_set *s;
    assert_int_equal(phrex_rerank_set_load(&s, path, NULL), PHREX_OK);
    assert_int_equal(phrex_rerank_set_questions(s), 1);
    const phrex_rerank_question *q = phrex_rerank_set_question(s, 0);
    const phrex_rerank_paragraph *p = phrex_rerank_set_paragraph(s, q->gold_par);
    assert_memory_equal(p->text + q->gold_start, "Denver Broncos", 14);
    assert_int_equal(q->n_spans, 2);
    assert_int_equal(phrex_rerank_set_spans(s)[q->first_span].match, 1);
    phrex_rerank_set_free(s);
    // Damaged lines name the file and line.
    const char *bad[] = {"{\"id\": \"q1\"}", "not json",
                         "{\"id\": \"q\", \"question\": \"x\", \"answers\": [\"a\"], \"gold\": [\"Nope:0\", 0, 1], "
                         "\"phrases\": []}",
                         "{\"id\": \"q\", \"question\": \"x\", \"answers\": [\"a\"], \"gold\": [\"Super_Bowl_50:0\", "
                         "5, 99999], \"phrases\": []}"};
    const int codes[] = {PHREX_ERR_FORMAT, PHREX_ERR_FORMAT, PHREX_ERR_MISMATCH, PHREX_ERR_FORMAT};
    for (int i = 0; i < 4; i++) {
        snprintf(text, sizeof text, "%s%s\n", head, bad[i]);
        test_write_string(path, text);
        assert_int_equal(phrex_rerank_set_load(&s, path, NULL), codes[i]);
        printf("  %s\n", phrex_last_error());
        assert_non_null(strstr(phrex_last_error(), "cands.jsonl:2"));
    }
    test_write_string(path, "{\"format\": \"other\"}\n");
    assert_int_equal(phrex_rerank_set_load(&s, path, NULL), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "'format'"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair_marking_and_windows),
        cmocka_unit_test(test_passage_pairs_and_bad_spans),
        cmocka_unit_test(test_inference_equals_training),
        cmocka_unit_test(test_bad_folders),
        cmocka_unit_test(test_gradient_check),
        cmocka_unit_test(test_candidates_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
