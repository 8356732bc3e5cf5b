// The DensePhrases objective (encoder/phrase_train.h): its gradients against
// central differences of a double-precision transcription of the losses
// (single-passage, in-batch and pre-batch negatives), the pre-batch cache's
// ring and warm-up, span decoding, and a tiny end-to-end run: a phrase
// encoder and two query encoders trained together from random weights until
// the gold phrase scores highest.
//
// Thresholds as in test_grad.c: 1e-4 relative L2, 1e-3 of the largest
// element at worst (measured ~1e-7: the loss is computed in double from
// f32 inputs, so only the f32 storage of the gradients rounds).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "encoder/adamw.h"
#include "encoder/checkpoint.h"
#include "encoder/phrase_train.h"
#include "encoder/train_bert.h"
#include "encoder/train_rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FD_H 1e-5
#define TOL_L2 1e-4
#define TOL_MAX 1e-3

static phrex_rng rng;

static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * phrex_rng_symmetric(&rng);
}

static void check_grad(const char *what, const float *a, const double *num, size_t n) {
    double d2 = 0, r2 = 0, dmax = 0, rmax = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - num[i]);
        d2 += d * d, r2 += num[i] * num[i];
        dmax = fmax(dmax, d), rmax = fmax(rmax, fabs(num[i]));
    }
    double rel_l2 = sqrt(d2 / (r2 > 0 ? r2 : 1)), rel_max = dmax / (rmax > 0 ? rmax : 1);
    printf("  %-24s n=%-4zu rel_l2 %.2e  rel_max %.2e\n", what, n, rel_l2, rel_max);
    if (!(rel_l2 <= TOL_L2 && rel_max <= TOL_MAX))
        fail_msg("%s: gradient off: relative L2 %.3e, max %.3e", what, rel_l2, rel_max);
}

// --- double reference of the loss ----------------------------------------------------

enum { B = 3, C = 8, N = 16 };
static const int32_t lens[B] = {5, 7, 4}, gs[B] = {1, 0, 2}, ge[B] = {3, 6, 2};

typedef struct {
    double h[N * C], qs[B * C], qe[B * C];
    const float *cache_s, *cache_e; // (n_cache, C) constants
    int n_cache;
    double ls, ln;
} ref_ctx;

static double ddot(const double *a, const double *b) {
    double s = 0;
    for (int c = 0; c < C; c++) s += a[c] * b[c];
    return s;
}

// -log softmax(logits)[t]
static double ce(const double *logits, int n, int t) {
    double max = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) max = fmax(max, logits[i]);
    for (int i = 0; i < n; i++) sum += exp(logits[i] - max);
    return max + log(sum) - logits[t];
}

static double ref_loss(void *p) {
    ref_ctx *r = p;
    double single = 0, neg = 0, logits[64];
    for (int b = 0, start = 0; b < B; start += lens[b], b++) {
        for (int side = 0; side < 2; side++) {
            const double *q = (side ? r->qe : r->qs) + b * C;
            for (int i = 0; i < lens[b]; i++) logits[i] = ddot(q, r->h + (start + i) * C);
            single += ce(logits, lens[b], side ? ge[b] : gs[b]);
            // Candidates: the batch's gold vectors, then the cache.
            for (int k = 0, st = 0; k < B; st += lens[k], k++)
                logits[k] = ddot(q, r->h + (st + (side ? ge[k] : gs[k])) * C);
            for (int k = 0; k < r->n_cache; k++) {
                const float *v = (side ? r->cache_e : r->cache_s) + k * C;
                double d = 0;
                for (int c = 0; c < C; c++) d += q[c] * v[c];
                logits[B + k] = d;
            }
            neg += ce(logits, B + r->n_cache, b);
        }
    }
    return r->ls * single / (2 * B) + r->ln * neg / (2 * B);
}

static void fd(double *out, double *x, size_t n, ref_ctx *r) {
    for (size_t i = 0; i < n; i++) {
        double save = x[i];
        x[i] = save + FD_H;
        double lp = ref_loss(r);
        x[i] = save - FD_H;
        double lm = ref_loss(r);
        x[i] = save;
        out[i] = (lp - lm) / (2 * FD_H);
    }
}

static void test_loss_gradients(void **state) {
    (void)state;
    phrex_phrase_loss_config cfg = {.lambda_single = 1.0f, .lambda_neg = 2.0f, .pre_batches = 2,
                                    .pre_batch_warmup = 2, .max_answer_len = 10};
    phrex_phrase_loss *pl;
    assert_int_equal(phrex_phrase_loss_init(&pl, &cfg, C, 4), PHREX_OK);
    float h[N * C], qs[B * C], qe[B * C], dh[N * C], dqs[B * C], dqe[B * C];
    phrex_phrase_loss_parts parts;
    // Step 1, in the warm-up: in-batch negatives only; its gold vectors are cached.
    fill(h, N * C, 1), fill(qs, B * C, 1), fill(qe, B * C, 1);
    float cache_s[B * C], cache_e[B * C];
    for (int b = 0, st = 0; b < B; st += lens[b], b++) {
        memcpy(cache_s + b * C, h + (st + gs[b]) * C, C * sizeof(float));
        memcpy(cache_e + b * C, h + (st + ge[b]) * C, C * sizeof(float));
    }
    assert_int_equal(phrex_phrase_loss_step(pl, h, lens, B, qs, qe, gs, ge, 1, dh, dqs, dqe, &parts), PHREX_OK);
    assert_int_equal(parts.n_candidates, B);
    // Step 2, past the warm-up: step 1's vectors are negatives now.
    for (int pass = 0; pass < 2; pass++) {
        ref_ctx *r = calloc(1, sizeof *r);
        r->ls = cfg.lambda_single, r->ln = cfg.lambda_neg;
        if (pass == 0) {
            fill(h, N * C, 1), fill(qs, B * C, 1), fill(qe, B * C, 1);
            assert_int_equal(phrex_phrase_loss_step(pl, h, lens, B, qs, qe, gs, ge, 2, dh, dqs, dqe, &parts),
                             PHREX_OK);
            assert_int_equal(parts.n_candidates, 2 * B);
            r->cache_s = cache_s, r->cache_e = cache_e, r->n_cache = B;
        } else {
            // A fresh loss without a cache: in-batch only, the same formula.
            phrex_phrase_loss *fresh;
            assert_int_equal(phrex_phrase_loss_init(&fresh, &cfg, C, 4), PHREX_OK);
            assert_int_equal(phrex_phrase_loss_step(fresh, h, lens, B, qs, qe, gs, ge, 5, dh, dqs, dqe, &parts),
                             PHREX_OK);
            phrex_phrase_loss_free(fresh);
        }
        for (int i = 0; i < N * C; i++) r->h[i] = h[i];
        for (int i = 0; i < B * C; i++) r->qs[i] = qs[i], r->qe[i] = qe[i];
        double want = ref_loss(r);
        printf("  loss %.6f (reference %.6f)\n", parts.total, want);
        assert_float_equal(parts.total, want, 1e-5 * fabs(want));
        double num[N * C];
        fd(num, r->h, N * C, r);
        check_grad(pass ? "dh (in-batch)" : "dh (pre-batch)", dh, num, N * C);
        fd(num, r->qs, B * C, r);
        check_grad(pass ? "dq_start (in-batch)" : "dq_start (pre-batch)", dqs, num, B * C);
        fd(num, r->qe, B * C, r);
        check_grad(pass ? "dq_end (in-batch)" : "dq_end (pre-batch)", dqe, num, B * C);
        free(r);
    }
    phrex_phrase_loss_free(pl);
}

static void test_cache_ring(void **state) {
    (void)state;
    phrex_phrase_loss_config cfg = {.lambda_single = 1, .lambda_neg = 1, .pre_batches = 2, .max_answer_len = 10};
    phrex_phrase_loss *pl;
    assert_int_equal(phrex_phrase_loss_init(&pl, &cfg, C, 4), PHREX_OK);
    float h[N * C], q[B * C], dh[N * C], dqs[B * C], dqe[B * C];
    fill(h, N * C, 1), fill(q, B * C, 1);
    phrex_phrase_loss_parts parts;
    const int want[5] = {B, 2 * B, 3 * B, 3 * B, 3 * B}; // the cache holds at most 2 batches
    for (int s = 0; s < 5; s++) {
        h[0] = (float)s; // a mark of each batch, in row 0 = example 0's... not gold; gold rows below
        assert_int_equal(phrex_phrase_loss_step(pl, h, lens, B, q, q, gs, ge, s + 1, dh, dqs, dqe, &parts), PHREX_OK);
        assert_int_equal(parts.n_candidates, want[s]);
    }
    int32_t meta[4];
    assert_int_equal(phrex_phrase_loss_cache_meta(pl, meta, 4), PHREX_OK);
    assert_int_equal(meta[0], 2);
    assert_int_equal(meta[1], 1); // 5 pushes into 2 slots: the next goes to slot 1
    assert_int_equal(meta[2], B);
    // Bad spans are refused.
    int32_t bad_end[B] = {3, 7, 2};
    assert_int_equal(phrex_phrase_loss_step(pl, h, lens, B, q, q, gs, bad_end, 9, dh, dqs, dqe, &parts),
                     PHREX_ERR_INPUT);
    assert_int_equal(phrex_phrase_loss_set_cache_meta(pl, meta, 4), PHREX_OK);
    meta[0] = 3;
    assert_int_equal(phrex_phrase_loss_set_cache_meta(pl, meta, 4), PHREX_ERR_FORMAT);
    phrex_phrase_loss_free(pl);
}

static void test_best_span(void **state) {
    (void)state;
    // C = 1: h = token values; q_start = q_end = 1: score = h_i + h_j.
    const float h[8] = {0, 5, -1, -1, -1, 4, 0, 0};
    float one = 1, score;
    int i, j;
    phrex_phrase_best_span(h, 8, 1, &one, &one, 10, &i, &j, &score);
    assert_true(i == 1 && j == 1 && score == 10.0f); // (1, 1) = 10 beats (1, 5) = 9
    float q_end = 0.5f;
    phrex_phrase_best_span(h, 8, 1, &one, &q_end, 10, &i, &j, &score);
    assert_true(i == 1 && j == 1); // 5 + 2.5 = 7.5 still beats 5 + 2
    // C = 2: h_i = (a_i, b_i), q_start = (1, 0), q_end = (0, 1): score = a_i + b_j.
    const float h2[16] = {0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0};
    const float qs[2] = {1, 0}, qe[2] = {0, 1};
    phrex_phrase_best_span(h2, 8, 2, qs, qe, 10, &i, &j, &score);
    assert_true(i == 1 && j == 6 && score == 12.0f);
    phrex_phrase_best_span(h2, 8, 2, qs, qe, 5, &i, &j, &score); // (1, 6) is 6 tokens: too long
    assert_true(i == 2 && j == 6 && score == 7.0f);              // the earliest start reaching b_6
    float zero = 0;
    phrex_phrase_best_span(h, 8, 1, &zero, &zero, 3, &i, &j, &score); // all tie: the earliest
    assert_true(i == 0 && j == 0);
}

// --- end to end -----------------------------------------------------------------------

// A toy reading task: a passage of random ids holds one "answer" token
// (id 40 + k) and the question names k with the token 30 + k; the gold phrase
// is the answer token. The phrase encoder and two query encoders learn it
// from random weights with AdamW.
static const phrex_bert_config tiny = {
    .vocab_size = 50, .hidden_size = 16, .num_hidden_layers = 2, .num_attention_heads = 2, .head_dim = 8,
    .intermediate_size = 32, .max_position_embeddings = 16, .type_vocab_size = 2, .layer_norm_eps = 1e-12f};

enum { EB = 4, PLEN = 10, QLEN = 3, STEPS = 60 };

typedef struct {
    phrex_train_bert *m;
    phrex_train_encoder *e;
    phrex_adamw *opt;
} enc;

static void enc_init(enc *x, uint64_t seed, int max_tokens, int max_seq) {
    static const phrex_adamw_config cfg = {.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                                           .weight_decay = 0.01f, .warmup_steps = 5, .total_steps = STEPS,
                                           .max_grad_norm = 1.0f};
    assert_int_equal(phrex_train_bert_init_random(&x->m, &tiny, seed, 0.1f, NULL), PHREX_OK);
    assert_int_equal(phrex_train_encoder_init(&x->e, x->m, max_tokens, max_seq), PHREX_OK);
    phrex_train_params p = phrex_train_bert_params(x->m);
    assert_int_equal(phrex_adamw_init(&x->opt, &cfg, &p), PHREX_OK);
}

static void enc_free(enc *x) {
    phrex_adamw_free(x->opt);
    phrex_train_encoder_free(x->e);
    phrex_train_bert_free(x->m);
}

static void enc_step(enc *x) {
    phrex_train_params p = phrex_train_bert_params(x->m);
    assert_int_equal(phrex_adamw_step(x->opt, &p, NULL), PHREX_OK);
}

static void make_batch(phrex_rng *r, int32_t *pids, int32_t *qids, int32_t *gold) {
    for (int b = 0; b < EB; b++) {
        int k = (int)phrex_rng_below(r, 8), at = 1 + (int)phrex_rng_below(r, PLEN - 2);
        pids[b * PLEN] = 1; // "[CLS]"
        for (int i = 1; i < PLEN; i++) pids[b * PLEN + i] = 2 + (int)phrex_rng_below(r, 20);
        pids[b * PLEN + at] = 40 + k;
        gold[b] = at;
        qids[b * QLEN] = 1, qids[b * QLEN + 1] = 30 + k, qids[b * QLEN + 2] = 2;
    }
}

// Everything a DensePhrases run holds: three encoders with their
// optimisers, the loss with its pre-batch cache, the data RNG and the step.
typedef struct {
    enc phrase, qstart, qend;
    phrex_phrase_loss *pl;
    phrex_train_progress prog; // rng_state: the data stream; step: updates done
    double first, last;        // mean loss of the first and last 5 steps
} e2e;

static const phrex_phrase_loss_config e2e_cfg = {.lambda_single = 1, .lambda_neg = 1, .pre_batches = 2,
                                                 .pre_batch_warmup = 20, .max_answer_len = 10};

static void e2e_init(e2e *r, uint64_t seed) {
    memset(r, 0, sizeof *r);
    enc_init(&r->phrase, seed, EB * PLEN, PLEN);
    enc_init(&r->qstart, seed + 1, EB * QLEN, QLEN);
    enc_init(&r->qend, seed + 2, EB * QLEN, QLEN);
    assert_int_equal(phrex_phrase_loss_init(&r->pl, &e2e_cfg, 16, EB), PHREX_OK);
    r->prog.rng_state = 77;
}

static void e2e_free(e2e *r) {
    phrex_phrase_loss_free(r->pl);
    enc_free(&r->phrase), enc_free(&r->qstart), enc_free(&r->qend);
}

// Forward of the three encoders on a batch; q_start, q_end: the [CLS] rows.
static const float *e2e_encode(e2e *r, const int32_t *pids, const int32_t *qids, const float **hs, const float **he) {
    int32_t plens[EB], qlens[EB];
    for (int b = 0; b < EB; b++) plens[b] = PLEN, qlens[b] = QLEN;
    const float *h;
    assert_int_equal(phrex_train_encoder_forward(r->phrase.e, pids, NULL, plens, EB, &h), PHREX_OK);
    assert_int_equal(phrex_train_encoder_forward(r->qstart.e, qids, NULL, qlens, EB, hs), PHREX_OK);
    assert_int_equal(phrex_train_encoder_forward(r->qend.e, qids, NULL, qlens, EB, he), PHREX_OK);
    return h;
}

static void e2e_steps(e2e *r, int n) {
    int32_t plens[EB], pids[EB * PLEN], qids[EB * QLEN], gold[EB];
    for (int b = 0; b < EB; b++) plens[b] = PLEN;
    float dh[EB * PLEN * 16], qs[EB * 16], qe[EB * 16], dqs[EB * 16], dqe[EB * 16];
    float dqs_tok[EB * QLEN * 16], dqe_tok[EB * QLEN * 16];
    for (int k = 0; k < n; k++) {
        int64_t step = ++r->prog.step;
        phrex_rng data = {r->prog.rng_state};
        make_batch(&data, pids, qids, gold);
        r->prog.rng_state = data.state;
        const float *hs, *he, *h = e2e_encode(r, pids, qids, &hs, &he);
        for (int b = 0; b < EB; b++) {
            memcpy(qs + b * 16, hs + b * QLEN * 16, 16 * sizeof(float));
            memcpy(qe + b * 16, he + b * QLEN * 16, 16 * sizeof(float));
        }
        phrex_phrase_loss_parts parts;
        assert_int_equal(
            phrex_phrase_loss_step(r->pl, h, plens, EB, qs, qe, gold, gold, step, dh, dqs, dqe, &parts), PHREX_OK);
        if (step <= 5) r->first += parts.total / 5;
        if (step > STEPS - 5) r->last += parts.total / 5;
        // The query gradients enter at the [CLS] rows only.
        memset(dqs_tok, 0, sizeof dqs_tok), memset(dqe_tok, 0, sizeof dqe_tok);
        for (int b = 0; b < EB; b++) {
            memcpy(dqs_tok + b * QLEN * 16, dqs + b * 16, 16 * sizeof(float));
            memcpy(dqe_tok + b * QLEN * 16, dqe + b * 16, 16 * sizeof(float));
        }
        phrex_train_bert_zero_grads(r->phrase.m);
        phrex_train_bert_zero_grads(r->qstart.m);
        phrex_train_bert_zero_grads(r->qend.m);
        assert_int_equal(phrex_train_encoder_backward(r->phrase.e, dh), PHREX_OK);
        assert_int_equal(phrex_train_encoder_backward(r->qstart.e, dqs_tok), PHREX_OK);
        assert_int_equal(phrex_train_encoder_backward(r->qend.e, dqe_tok), PHREX_OK);
        enc_step(&r->phrase), enc_step(&r->qstart), enc_step(&r->qend);
    }
}

static void test_end_to_end(void **state) {
    (void)state;
    e2e r;
    e2e_init(&r, 1);
    e2e_steps(&r, STEPS);
    // Held-out batches: how often the best phrase is the gold one. Chance
    // is 1 in 55 spans of up to 10 tokens in a 10-token passage.
    int hits = 0, total = 0;
    phrex_rng data = phrex_rng_init(4242);
    int32_t pids[EB * PLEN], qids[EB * QLEN], gold[EB];
    for (int round = 0; round < 8; round++) {
        make_batch(&data, pids, qids, gold);
        const float *hs, *he, *h = e2e_encode(&r, pids, qids, &hs, &he);
        for (int b = 0; b < EB; b++, total++) {
            int i, j;
            float score;
            phrex_phrase_best_span(h + b * PLEN * 16, PLEN, 16, hs + b * QLEN * 16, he + b * QLEN * 16, 10, &i, &j,
                                   &score);
            hits += i == gold[b] && j == gold[b];
        }
    }
    printf("  mean loss, first 5 steps %.3f, last 5 %.3f; held-out exact match %d/%d\n", r.first, r.last, hits,
           total);
    assert_true(r.last < 0.5 * r.first);
    assert_true(hits >= total / 2);
    e2e_free(&r);
}

// The extra state of a run: the cache's bookkeeping, then its vectors.
static size_t cache_blob(e2e *r, unsigned char *out) {
    size_t floats;
    float *cache = phrex_phrase_loss_cache(r->pl, &floats);
    int32_t meta[4];
    assert_int_equal(phrex_phrase_loss_cache_meta(r->pl, meta, 4), PHREX_OK);
    if (out) {
        memcpy(out, meta, sizeof meta);
        memcpy(out + sizeof meta, cache, floats * sizeof(float));
    }
    return sizeof meta + floats * sizeof(float);
}

static void test_resume_three_encoders(void **state) {
    (void)state;
    // Stopped past the pre-batch warm-up (the cache is live state), saved
    // in one file with the cache, resumed into encoders of other weights:
    // bit-identical to the run that never stopped.
    char path[] = "/tmp/phrex_test_phrase_state_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    e2e straight, first, resumed;
    e2e_init(&straight, 1);
    e2e_steps(&straight, 30);
    e2e_init(&first, 1);
    e2e_steps(&first, 23);
    size_t nb = cache_blob(&first, NULL);
    unsigned char *blob = malloc(nb);
    cache_blob(&first, blob);
    phrex_train_slot slots[3] = {{first.phrase.m, first.phrase.opt}, {first.qstart.m, first.qstart.opt},
                                 {first.qend.m, first.qend.opt}};
    assert_int_equal(phrex_checkpoint_save_states(path, slots, 3, &first.prog, blob, nb), PHREX_OK);
    e2e_free(&first);
    e2e_init(&resumed, 50);
    phrex_train_slot rs[3] = {{resumed.phrase.m, resumed.phrase.opt}, {resumed.qstart.m, resumed.qstart.opt},
                              {resumed.qend.m, resumed.qend.opt}};
    memset(blob, 0, nb);
    if (phrex_checkpoint_load_states(path, rs, 3, &resumed.prog, blob, nb) != PHREX_OK)
        fail_msg("%s", phrex_last_error());
    size_t floats;
    float *cache = phrex_phrase_loss_cache(resumed.pl, &floats);
    memcpy(cache, blob + 4 * sizeof(int32_t), floats * sizeof(float));
    assert_int_equal(phrex_phrase_loss_set_cache_meta(resumed.pl, (const int32_t *)blob, 4), PHREX_OK);
    assert_int_equal(resumed.prog.step, 23);
    e2e_steps(&resumed, 7);
    enc *a[3] = {&straight.phrase, &straight.qstart, &straight.qend}, *b[3] = {&resumed.phrase, &resumed.qstart,
                                                                                &resumed.qend};
    for (int i = 0; i < 3; i++) {
        phrex_train_params pa = phrex_train_bert_params(a[i]->m), pb = phrex_train_bert_params(b[i]->m);
        assert_memory_equal(pa.params, pb.params, pa.n_params * sizeof(float));
    }
    // Loading into the wrong number of models, or without the cache, is refused.
    assert_int_equal(phrex_checkpoint_load_states(path, rs, 2, &resumed.prog, blob, nb), PHREX_ERR_MISMATCH);
    assert_int_equal(phrex_checkpoint_load_states(path, rs, 3, &resumed.prog, NULL, 0), PHREX_ERR_MISMATCH);
    free(blob);
    unlink(path);
    e2e_free(&straight);
    e2e_free(&resumed);
}

int main(void) {
    rng = phrex_rng_init(11);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_gradients),
        cmocka_unit_test(test_cache_ring),
        cmocka_unit_test(test_best_span),
        cmocka_unit_test(test_end_to_end),
        cmocka_unit_test(test_resume_three_encoders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
