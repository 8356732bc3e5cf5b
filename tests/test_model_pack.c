// Packed models (encoder/weights.h, encoder/model_dir.h): a fine-tuned
// MiniLM stored as int8 (or f16) deltas over the base loads back, through
// both the inference and the training loaders, as the same model up to the
// quantisation error; a delta over another base, or a damaged one, is
// refused; a phrex model folder resolves to its parts, and a dump
// fingerprint of the folder equals that of its phrase encoder.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "encoder/bert.h"
#include "encoder/checkpoint.h"
#include "encoder/model_dir.h"
#include "encoder/train_bert.h"
#include "encoder/weights.h"
#include "encoder/wordpiece.h"
#include "index/dump.h"
#include "tests/support/test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char tmp[256], full_dir[300], int8_dir[300], f16_dir[300];

// Sentences written for this test.
static const char *const sentences[] = {
    "The river was frozen solid by the end of the long winter.",
    "Which composer wrote the opera that opened the new hall in 1911?",
    "Packing a model as small differences keeps the repository light.",
};

// A stand-in for fine-tuning: every tensor but the (frozen) word embeddings
// moves by about 1e-3 of a deterministic pattern, the scale of change a few
// epochs at lr 1e-4 make.
static void perturb(phrex_train_bert *m) {
    phrex_train_params p = phrex_train_bert_params(m);
    for (int i = 0; i < p.n_tensors; i++) {
        const phrex_param_tensor *t = &p.tensors[i];
        if (!strcmp(t->name, "embeddings.word_embeddings.weight")) continue;
        for (size_t k = 0; k < t->numel; k++) p.params[t->offset + k] += 1e-3f * sinf(0.7f * (float)k + (float)i);
    }
}

static int setup(void **state) {
    (void)state;
    snprintf(tmp, sizeof tmp, "/tmp/phrex_pack_XXXXXX");
    assert_int_equal(test_make_tmpdir(tmp), 0);
    snprintf(full_dir, sizeof full_dir, "%s/full", tmp);
    snprintf(int8_dir, sizeof int8_dir, "%s/int8", tmp);
    snprintf(f16_dir, sizeof f16_dir, "%s/f16", tmp);
    phrex_train_bert_options o = {.freeze_word_embeddings = 1};
    phrex_train_bert *m;
    assert_int_equal(phrex_train_bert_init(&m, PHREX_BASE_MODEL_DIR, &o), PHREX_OK);
    perturb(m);
    assert_int_equal(phrex_checkpoint_save_model(full_dir, m, PHREX_DTYPE_F32, PHREX_BASE_MODEL_DIR), PHREX_OK);
    phrex_train_bert_free(m);
    double err8 = 1, err16 = 1;
    assert_int_equal(phrex_weights_write_delta(full_dir, PHREX_BASE_MODEL_DIR, int8_dir, 1, &err8), PHREX_OK);
    assert_int_equal(phrex_weights_write_delta(full_dir, PHREX_BASE_MODEL_DIR, f16_dir, 0, &err16), PHREX_OK);
    // per-row int8 of differences up to 1e-3: at most half a step, 1e-3/254
    assert_true(err8 > 0 && err8 <= 1e-3 / 254 * 1.01);
    assert_true(err16 > 0 && err16 <= 1e-3 / 2048 * 1.01);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    test_remove_tree(tmp);
    return 0;
}

static long long file_size(const char *dir, const char *name) {
    char path[512];
    test_join_path(path, sizeof path, dir, name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long long)st.st_size;
}

// Last hidden states of the test sentences under the model in dir.
static float *encode(const char *dir, int *n_out) {
    phrex_wordpiece *wp;
    char vocab[512];
    test_join_path(vocab, sizeof vocab, dir, "vocab.txt");
    assert_int_equal(phrex_wordpiece_init(&wp, vocab, 1), PHREX_OK);
    int32_t ids[512], lens[3], n = 0;
    for (int s = 0; s < 3; s++) {
        phrex_tokens t;
        assert_int_equal(phrex_tokens_init(&t, 64), PHREX_OK);
        assert_int_equal(phrex_wordpiece_encode(wp, sentences[s], strlen(sentences[s]), &t), PHREX_OK);
        ids[n] = phrex_wordpiece_special(wp, PHREX_SPECIAL_CLS);
        for (int i = 0; i < t.n; i++) ids[n + 1 + i] = t.ids[i];
        ids[n + 1 + t.n] = phrex_wordpiece_special(wp, PHREX_SPECIAL_SEP);
        lens[s] = t.n + 2, n += t.n + 2;
        phrex_tokens_free(&t);
    }
    phrex_wordpiece_free(wp);
    phrex_bert *m;
    phrex_encoder *e;
    assert_int_equal(phrex_bert_init(&m, dir), PHREX_OK);
    assert_int_equal(phrex_encoder_init(&e, m, n), PHREX_OK);
    float *out = malloc((size_t)n * 384 * sizeof *out);
    assert_non_null(out);
    assert_int_equal(phrex_encoder_forward(e, ids, NULL, lens, 3, out), PHREX_OK);
    phrex_encoder_free(e);
    phrex_bert_free(m);
    *n_out = n * 384;
    return out;
}

static float max_diff(const float *a, const float *b, int n) {
    float d = 0;
    for (int i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

static void test_delta_forward_matches(void **state) {
    (void)state;
    int n, n8, n16;
    float *full = encode(full_dir, &n), *q8 = encode(int8_dir, &n8), *q16 = encode(f16_dir, &n16), *base;
    assert_int_equal(n, n8);
    assert_int_equal(n, n16);
    int nb;
    base = encode(PHREX_BASE_MODEL_DIR, &nb);
    float d8 = max_diff(full, q8, n), d16 = max_diff(full, q16, n), moved = max_diff(full, base, n);
    printf("max |full - int8| %.3g, |full - f16| %.3g, |full - base| %.3g\n", d8, d16, moved);
    // the packing error is a small fraction of what the fine-tuning changed
    assert_true(moved > 1e-2f);
    assert_true(d8 < moved / 50);
    assert_true(d16 < moved / 200);
    free(full), free(q8), free(q16), free(base);
    // frozen word embeddings cost nothing: int8 ~ 1/8 of the f32 file
    long long f = file_size(full_dir, "model.safetensors"), d = file_size(int8_dir, PHREX_DELTA_FILE);
    printf("full %lld bytes, int8 delta %lld bytes\n", f, d);
    assert_true(d * 6 < f);
}

static void test_delta_training_loader(void **state) {
    (void)state;
    phrex_train_bert *a, *b;
    assert_int_equal(phrex_train_bert_init(&a, full_dir, NULL), PHREX_OK);
    assert_int_equal(phrex_train_bert_init(&b, int8_dir, NULL), PHREX_OK);
    phrex_train_params pa = phrex_train_bert_params(a), pb = phrex_train_bert_params(b);
    assert_int_equal(pa.n_params, pb.n_params);
    float d = max_diff(pa.params, pb.params, (int)pa.n_params);
    assert_true(d <= 1e-3f / 254 * 1.01f + 1e-7f);
    phrex_train_bert_free(a);
    phrex_train_bert_free(b);
}

// Rewrites dir/phrex_delta.json with `from` replaced by `to`.
static void edit_delta_json(const char *dir, const char *from, const char *to) {
    char path[512];
    test_join_path(path, sizeof path, dir, PHREX_DELTA_JSON);
    char *text = test_load_file(path, NULL), *at = strstr(text, from);
    assert_non_null(at);
    char out[4096];
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    test_write_string(path, out);
    free(text);
}

static void copy_delta(const char *dst) {
    static const char *const files[] = {PHREX_DELTA_JSON, PHREX_DELTA_FILE, "config.json", "vocab.txt"};
    mkdir(dst, 0755);
    for (int i = 0; i < 4; i++) {
        char a[512], b[512];
        test_join_path(a, sizeof a, int8_dir, files[i]);
        test_join_path(b, sizeof b, dst, files[i]);
        test_copy_file(a, b);
    }
}

static void test_delta_refused(void **state) {
    (void)state;
    char dir[300];
    phrex_bert *m = NULL;
    snprintf(dir, sizeof dir, "%s/bad_hash", tmp);
    copy_delta(dir);
    char path[512], *text;
    test_join_path(path, sizeof path, dir, PHREX_DELTA_JSON);
    text = test_load_file(path, NULL);
    char *h = strstr(text, "\"base_hash\"");
    assert_non_null(h);
    h = strchr(h + 11, '"') + 1;
    char old[17];
    memcpy(old, h, 16), old[16] = 0;
    free(text);
    edit_delta_json(dir, old, old[0] == '0' ? "1000000000000000" : "0000000000000000");
    assert_int_equal(phrex_bert_init(&m, dir), PHREX_ERR_MISMATCH);
    assert_non_null(strstr(phrex_last_error(), "another base"));

    snprintf(dir, sizeof dir, "%s/bad_format", tmp);
    copy_delta(dir);
    edit_delta_json(dir, "phrex-delta", "phrex-deltas");
    assert_int_equal(phrex_bert_init(&m, dir), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "\"format\""));

    snprintf(dir, sizeof dir, "%s/no_delta", tmp);
    copy_delta(dir);
    test_join_path(path, sizeof path, dir, PHREX_DELTA_FILE);
    assert_int_equal(remove(path), 0);
    assert_int_equal(phrex_bert_init(&m, dir), PHREX_ERR_IO);
    assert_non_null(strstr(phrex_last_error(), PHREX_DELTA_FILE));
    assert_null(m);
}

static void write_model_json(const char *dir, const char *body) {
    mkdir(dir, 0755);
    test_write_text(dir, PHREX_MODEL_JSON, body);
}

static void test_model_dir(void **state) {
    (void)state;
    char dir[300], json[1024];
    phrex_model_paths p;
    snprintf(dir, sizeof dir, "%s/model", tmp);
    snprintf(json, sizeof json,
             "{\"format\": \"phrex-densephrases\", \"version\": 1, \"max_answer_len\": 12, \"encoders\": "
             "{\"phrase\": \"../int8\", \"query_start\": \"../f16\", \"query_end\": \"%s\"}}",
             full_dir);
    write_model_json(dir, json);
    assert_int_equal(phrex_model_dir_resolve(dir, &p), PHREX_OK);
    assert_int_equal(p.trained, 1);
    assert_int_equal(p.max_answer_len, 12);
    assert_string_equal(p.query_end, full_dir);
    assert_non_null(strstr(p.phrase, "/../int8"));
    assert_string_equal(p.filter, "");

    // the folder's fingerprint is its phrase encoder's
    uint64_t h_dir, h_phrase, h_other;
    assert_int_equal(phrex_dump_model_hash(dir, &h_dir), PHREX_OK);
    assert_int_equal(phrex_dump_model_hash(int8_dir, &h_phrase), PHREX_OK);
    assert_int_equal(phrex_dump_model_hash(f16_dir, &h_other), PHREX_OK);
    assert_true(h_dir == h_phrase);
    assert_true(h_dir != h_other);

    // a plain folder is its own phrase encoder
    assert_int_equal(phrex_model_dir_resolve(full_dir, &p), PHREX_OK);
    assert_int_equal(p.trained, 0);
    assert_string_equal(p.phrase, full_dir);

    static const struct {
        const char *json, *want;
        int rc;
    } bad[] = {
        {"{\"format\": \"other\", \"version\": 1}", "\"format\"", PHREX_ERR_FORMAT},
        {"{\"format\": \"phrex-densephrases\", \"version\": 9}", "\"version\"", PHREX_ERR_FORMAT},
        {"{\"format\": \"phrex-densephrases\", \"version\": 1}", "\"encoders\"", PHREX_ERR_FORMAT},
        {"{\"format\": \"phrex-densephrases\", \"version\": 1, \"encoders\": {\"phrase\": \"../int8\", "
         "\"query_start\": \"../int8\", \"query_end\": \"missing\"}}",
         "encoders.query_end", PHREX_ERR_IO},
        {"{\"format\": \"phrex-densephrases\", \"version\": 1, \"encoders\": {\"phrase\": \"../int8\"}}",
         "encoders.query_start", PHREX_ERR_FORMAT},
        {"{\"format\": ", "not valid JSON", PHREX_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(dir, sizeof dir, "%s/bad%zu", tmp, i);
        write_model_json(dir, bad[i].json);
        assert_int_equal(phrex_model_dir_resolve(dir, &p), bad[i].rc);
        if (!strstr(phrex_last_error(), bad[i].want)) fail_msg("case %zu: %s", i, phrex_last_error());
        assert_non_null(strstr(phrex_last_error(), PHREX_MODEL_JSON));
    }
    snprintf(dir, sizeof dir, "%s/nowhere", tmp);
    assert_int_equal(phrex_model_dir_resolve(dir, &p), PHREX_ERR_IO);
}

// `phrex pack-model` over a trained layout (three full f32 encoders), then
// build and ask with the packed folder as --model: the dump is checked
// against the packed phrase encoder, and refused with the base model.
static void test_cli_pack_build_ask(void **state) {
    (void)state;
    char model[300], packed[300], corpus[300], dump[300], json[2048], cmd[4096];
    snprintf(model, sizeof model, "%s/trained", tmp);
    snprintf(packed, sizeof packed, "%s/packed", tmp);
    snprintf(corpus, sizeof corpus, "%s/corpus.tsv", tmp);
    snprintf(dump, sizeof dump, "%s/dump", tmp);
    snprintf(json, sizeof json,
             "{\"format\": \"phrex-densephrases\", \"version\": 1, \"max_answer_len\": 10, \"encoders\": "
             "{\"phrase\": \"%s\", \"query_start\": \"%s\", \"query_end\": \"%s\"}}",
             full_dir, full_dir, full_dir);
    write_model_json(model, json);
    snprintf(cmd, sizeof cmd, "'%s' pack-model --from '%s' --out '%s' --base '%s'", PHREX_CLI, model, packed,
             PHREX_BASE_MODEL_DIR);
    test_run_result r = test_run_command(cmd, NULL, tmp);
    if (r.status != 0) fail_msg("pack-model: %s", r.err);
    assert_non_null(strstr(r.out, "largest weight error"));
    test_free_run(&r);
    char part[400];
    snprintf(part, sizeof part, "%s/query_end", packed);
    assert_true(file_size(part, PHREX_DELTA_FILE) * 6 < file_size(full_dir, "model.safetensors"));

    assert_int_equal(test_write_corpus(corpus, PHREX_SHARED_DIR "/data/wikipedia/densephrases-sample/articles.json",
                                       6, NULL, 0),
                     0);
    snprintf(cmd, sizeof cmd, "'%s' build --model '%s' --corpus '%s' --out '%s' --index-factory Flat --threads 1 --quiet",
             PHREX_CLI, packed, corpus, dump);
    r = test_run_command(cmd, NULL, tmp);
    if (r.status != 0) fail_msg("build: %s", r.err);
    test_free_run(&r);
    const char *q = test_write_text(tmp, "q.txt", "What did the river do in winter?\n");
    snprintf(cmd, sizeof cmd, "'%s' ask --dump '%s' --model '%s' --threads 1", PHREX_CLI, dump, packed);
    r = test_run_command(cmd, q, tmp);
    if (r.status != 0 || !strstr(r.out, "\"answers\":[{")) fail_msg("ask: %s%s", r.out, r.err);
    test_free_run(&r);
    snprintf(cmd, sizeof cmd, "'%s' ask --dump '%s' --model '%s' --threads 1", PHREX_CLI, dump, PHREX_BASE_MODEL_DIR);
    r = test_run_command(cmd, q, tmp);
    assert_int_not_equal(r.status, 0);
    assert_non_null(strstr(r.err, "another model"));
    test_free_run(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delta_forward_matches),
        cmocka_unit_test(test_delta_training_loader),
        cmocka_unit_test(test_delta_refused),
        cmocka_unit_test(test_model_dir),
        cmocka_unit_test(test_cli_pack_build_ask),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
