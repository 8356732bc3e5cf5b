// USE-lite as the cross-encoder's backbone (rerank/backbone_use_lite.h)
// on the real model and real text: pairs built by phrex_use_lite_pair_tokens
// train under rerank/rerank_train.h's head and gBCE (the loss of one group
// falls when it is fitted), the vtable's forward is the training encoder's,
// and a saved backbone reloads in the inference encoder with the scores the
// training model gave.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "encoder/adamw.h"
#include "encoder/safetensors.h"
#include "encoder/use_lite.h"
#include "rerank/backbone_use_lite.h"
#include "rerank/gbce.h"
#include "rerank/rerank_train.h"
#include "support/test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USE_LITE_DIR PHREX_SHARED_DIR "/models/use-lite"

enum { G = 4, MAX_SEQ = 96, C = PHREX_USE_LITE_DIM, STEPS = 20 };

static const char *question = "Where does the Seine flow into the sea?";
static const char *title = "Seine";
static const char *passage =
    "The Seine is a 777-kilometre-long river in northern France. Its drainage basin is in the Paris Basin "
    "covering most of northern France. It rises at Source-Seine, 30 kilometres northwest of Dijon, and flows "
    "through Paris and into the English Channel at Le Havre.";
// The positive first, then three wrong spans of the same passage.
static const char *spans[G] = {"English Channel", "Dijon", "Paris Basin", "777-kilometre-long river"};

static int build_group(const phrex_spm *spm, int32_t *ids, int32_t *lens) {
    phrex_tokens scratch;
    assert_int_equal(phrex_tokens_init(&scratch, 64), PHREX_OK);
    phrex_use_lite_pair_limits lim = {MAX_SEQ, 32, 8};
    int at = 0;
    for (int i = 0; i < G; i++) {
        const char *s = strstr(passage, spans[i]);
        assert_non_null(s);
        int32_t s0 = (int32_t)(s - passage), s1 = s0 + (int32_t)strlen(spans[i]);
        int n = 0;
        assert_int_equal(phrex_use_lite_pair_tokens(spm, &lim, question, strlen(question), title, strlen(title),
                                                    passage, strlen(passage), s0, s1, &scratch, ids + at, &n),
                         PHREX_OK);
        lens[i] = n, at += n;
    }
    phrex_tokens_free(&scratch);
    return at;
}

static void test_fit_and_save(void **state) {
    (void)state;
    phrex_spm *spm;
    assert_int_equal(phrex_use_lite_tokenizer_init(&spm, USE_LITE_DIR "/vocab_spm_unigram.json"), PHREX_OK);
    int32_t ids[G * MAX_SEQ], lens[G], group = G;
    int N = build_group(spm, ids, lens);
    phrex_rerank_backbone bb;
    assert_int_equal(phrex_rerank_backbone_use_lite(&bb, USE_LITE_DIR "/use_lite.safetensors", G * MAX_SEQ, MAX_SEQ, 1),
                     PHREX_OK);
    assert_string_equal(bb.name, "use-lite");
    assert_int_equal(bb.hidden_size, C);
    assert_null(bb.train_bert(bb.self));
    phrex_rerank_model *m;
    assert_int_equal(phrex_rerank_model_init(&m, &bb, 1, 0.02f), PHREX_OK);
    phrex_rerank_backbone *b = phrex_rerank_model_backbone(m);
    phrex_train_params p = b->params(b->self), hp = phrex_rerank_model_head_params(m);
    // Frozen word embeddings: the trainable tail starts after them.
    assert_int_equal(p.grad_offset, (size_t)128 + C * C + C + (size_t)PHREX_USE_LITE_VOCAB * PHREX_USE_LITE_EMBED);
    phrex_adamw_config cfg = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f};
    phrex_adamw *opt, *hopt;
    assert_int_equal(phrex_adamw_init(&opt, &cfg, &p), PHREX_OK);
    assert_int_equal(phrex_adamw_init(&hopt, &cfg, &hp), PHREX_OK);
    float beta = (float)phrex_gbce_beta(G - 1, 20, 0.75), first = 0, loss = 0, scores[G];
    for (int step = 0; step < STEPS; step++) {
        phrex_rerank_model_zero_grads(m);
        assert_int_equal(b->set_dropout(b->self, 0.1f, (uint64_t)step + 1), PHREX_OK);
        assert_int_equal(phrex_rerank_model_step(m, ids, NULL, lens, &group, 1, beta, 1.0f, &loss, scores), PHREX_OK);
        if (step == 0) first = loss;
        assert_int_equal(phrex_adamw_step(opt, &p, NULL), PHREX_OK);
        assert_int_equal(phrex_adamw_step(hopt, &hp, NULL), PHREX_OK);
    }
    assert_int_equal(b->set_dropout(b->self, 0, 0), PHREX_OK);
    assert_int_equal(phrex_rerank_model_forward(m, ids, NULL, lens, G, scores), PHREX_OK);
    printf("  gBCE of one group: %.4f at step 1, %.4f after %d updates; scores %.3f | %.3f %.3f %.3f\n", first, loss, STEPS,
           scores[0], scores[1], scores[2], scores[3]);
    assert_true(loss < 0.5f * first);
    for (int i = 1; i < G; i++) assert_true(scores[0] > scores[i]);
    // Saved, reloaded by the inference encoder: the same [<s>] states, so
    // the same scores under the head.
    char dir[] = "/tmp/phrex-use-bb-XXXXXX", enc[256], path[300];
    assert_int_equal(test_make_tmpdir(dir), 0);
    test_join_path(enc, sizeof enc, dir, "encoder");
    assert_int_equal(b->save(b->self, enc, PHREX_DTYPE_F32, USE_LITE_DIR), PHREX_OK);
    test_join_path(path, sizeof path, enc, "vocab_spm_unigram.json");
    phrex_spm *spm2;
    assert_int_equal(phrex_use_lite_tokenizer_init(&spm2, path), PHREX_OK);
    test_join_path(path, sizeof path, enc, "use_lite.safetensors");
    phrex_use_lite *inf;
    phrex_use_lite_encoder *ie;
    assert_int_equal(phrex_use_lite_init(&inf, path), PHREX_OK);
    assert_int_equal(phrex_use_lite_encoder_init(&ie, inf, G * MAX_SEQ, MAX_SEQ), PHREX_OK);
    float *h = malloc((size_t)N * C * 4);
    assert_int_equal(phrex_use_lite_forward(ie, ids, lens, G, h, NULL), PHREX_OK);
    const float *w = hp.params;
    for (int i = 0, at = 0; i < G; at += lens[i++]) {
        float s = w[C];
        for (int c = 0; c < C; c++) s += w[c] * h[(size_t)at * C + c];
        if (!(fabsf(s - scores[i]) <= 1e-3f * fmaxf(1.0f, fabsf(scores[i]))))
            fail_msg("pair %d: inference score %.6f, training %.6f", i, s, scores[i]);
    }
    free(h);
    phrex_use_lite_encoder_free(ie);
    phrex_use_lite_free(inf);
    phrex_spm_free(spm2);
    assert_int_equal(test_remove_tree(dir), 0);
    phrex_adamw_free(opt);
    phrex_adamw_free(hopt);
    phrex_rerank_model_free(m);
    phrex_spm_free(spm);
}

static void test_bad_input(void **state) {
    (void)state;
    phrex_rerank_backbone bb;
    assert_int_equal(phrex_rerank_backbone_use_lite(&bb, USE_LITE_DIR "/missing.safetensors", 64, 32, 0), PHREX_ERR_IO);
    assert_non_null(strstr(phrex_last_error(), "missing.safetensors"));
    assert_int_equal(phrex_rerank_backbone_use_lite(&bb, USE_LITE_DIR "/use_lite.safetensors", 64, 65, 0),
                     PHREX_ERR_INPUT);
    assert_null(bb.self);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fit_and_save), cmocka_unit_test(test_bad_input)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
