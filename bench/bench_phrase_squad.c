// A learning-curve check of the DensePhrases objective on real data: trains
// a phrase encoder and two query encoders (all from MiniLM) on SQuAD v1.1
// dev questions of the first articles, and measures reading-comprehension
// EM/F1 (the best phrase of up to 10 tokens in the gold paragraph) on the
// questions of the last articles, before and after.
//
//   build/bench_phrase_squad [--steps S] [--batch B] [--eval N] [--lr LR] [--threads T]
//
// Only the dev set is available here (SQuAD train is not), so this is a
// smoke test of the machinery on real text, not a reproduction of the
// paper's 78 EM. Passages are the paragraphs cut at 384 tokens (questions
// whose answer falls beyond are skipped), questions at 64.
#include "common/error.h"
#include "common/threads.h"
#include "data/metrics.h"
#include "data/qa.h"
#include "encoder/adamw.h"
#include "encoder/phrase_train.h"
#include "encoder/train_bert.h"
#include "encoder/train_rng.h"
#include "encoder/wordpiece.h"

#include "common/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SQUAD PHREX_SHARED_DIR "/data/squad-v1.1/dev-v1.1.40-articles.json"
#define MAX_P 384
#define MAX_Q 64
#define EVAL_ARTICLES 8

typedef struct {
    int32_t pids[MAX_P], plen;
    int32_t qids[MAX_Q], qlen;
    int32_t start, end;        // gold token span in the passage
    int32_t off_s[MAX_P], off_e[MAX_P]; // byte span of each passage token (-1: special)
    char *context;
    char **answers;
    size_t n_answers;
    int article;
} example;

// [CLS] pieces [SEP] of text, cut to max tokens; offsets when off_s given.
static int encode(const phrex_wordpiece *wp, phrex_tokens *t, const char *text, size_t len, int max, int32_t *ids,
                  int32_t *off_s, int32_t *off_e) {
    phrex_tokens_clear(t);
    if (phrex_wordpiece_encode(wp, text, len, t)) return -1;
    int n = t->n < max - 2 ? t->n : max - 2;
    ids[0] = phrex_wordpiece_special(wp, PHREX_SPECIAL_CLS);
    ids[n + 1] = phrex_wordpiece_special(wp, PHREX_SPECIAL_SEP);
    for (int i = 0; i < n; i++) ids[i + 1] = t->ids[i];
    if (off_s) {
        off_s[0] = off_e[0] = off_s[n + 1] = off_e[n + 1] = -1;
        for (int i = 0; i < n; i++) off_s[i + 1] = t->start[i], off_e[i + 1] = t->end[i];
    }
    return n + 2;
}

// The examples of the file; the article index counts titles in order.
static example *load(const phrex_wordpiece *wp, int *n_out, int *n_articles) {
    phrex_qa_options opts = {PHREX_QA_SQUAD_JSON, 0, 0};
    phrex_qa_reader *r;
    if (phrex_qa_init(&r, SQUAD, &opts)) return NULL;
    phrex_tokens t;
    phrex_tokens_init(&t, 512);
    int cap = 1024, n = 0, article = -1;
    example *ex = malloc((size_t)cap * sizeof *ex);
    char last_title[512] = "";
    phrex_qa q;
    int has;
    while (!phrex_qa_next(r, &q, &has) && has) {
        if (strncmp(last_title, q.title, sizeof last_title - 1) != 0) {
            snprintf(last_title, sizeof last_title, "%s", q.title);
            article++;
        }
        if (n == cap) ex = realloc(ex, (size_t)(cap *= 2) * sizeof *ex);
        example *e = &ex[n];
        e->plen = encode(wp, &t, q.context, q.context_len, MAX_P, e->pids, e->off_s, e->off_e);
        e->qlen = encode(wp, &t, q.question, q.question_len, MAX_Q, e->qids, NULL, NULL);
        if (e->plen < 0 || e->qlen < 0 || q.n_answers == 0 || q.answers[0].start_byte < 0) continue;
        long b0 = q.answers[0].start_byte, b1 = b0 + (long)q.answers[0].len;
        e->start = e->end = -1;
        for (int i = 1; i < e->plen - 1; i++) {
            if (e->start < 0 && e->off_e[i] > b0) e->start = i;
            if (e->off_s[i] < b1) e->end = i;
        }
        if (e->start < 0 || e->end < e->start) continue; // answer cut off with the passage
        e->context = strdup(q.context);
        e->n_answers = q.n_answers;
        e->answers = malloc(q.n_answers * sizeof *e->answers);
        for (size_t a = 0; a < q.n_answers; a++) e->answers[a] = strdup(q.answers[a].text);
        e->article = article;
        n++;
    }
    phrex_tokens_free(&t);
    phrex_qa_free(r);
    *n_out = n;
    *n_articles = article + 1;
    return ex;
}

typedef struct {
    phrex_train_bert *m;
    phrex_train_encoder *e;
    phrex_adamw *opt;
} enc;

static int enc_init(enc *x, int layers_frozen_emb, int max_tokens, int max_seq, const phrex_adamw_config *cfg) {
    phrex_train_bert_options o = {.freeze_word_embeddings = layers_frozen_emb};
    if (phrex_train_bert_init(&x->m, PHREX_BASE_MODEL_DIR, &o)) return -1;
    if (phrex_train_encoder_init(&x->e, x->m, max_tokens, max_seq)) return -1;
    phrex_train_params p = phrex_train_bert_params(x->m);
    return phrex_adamw_init(&x->opt, cfg, &p) ? -1 : 0;
}

// EM and F1 (in %) of the best phrase over the first n eval examples.
static void evaluate(enc *ph, enc *qs, enc *qe, example **ev, int n, double *em, double *f1) {
    *em = *f1 = 0;
    phrex_train_encoder_set_dropout(ph->e, 0, 0, 0);
    phrex_train_encoder_set_dropout(qs->e, 0, 0, 0);
    phrex_train_encoder_set_dropout(qe->e, 0, 0, 0);
    for (int i = 0; i < n; i++) {
        example *x = ev[i];
        const float *h, *hs, *he;
        phrex_train_encoder_forward(ph->e, x->pids, NULL, &x->plen, 1, &h);
        phrex_train_encoder_forward(qs->e, x->qids, NULL, &x->qlen, 1, &hs);
        phrex_train_encoder_forward(qe->e, x->qids, NULL, &x->qlen, 1, &he);
        int s, e;
        float score;
        // [CLS] and [SEP] are not phrases: search the pieces only.
        phrex_phrase_best_span(h + 384, x->plen - 2, 384, hs, he, 10, &s, &e, &score);
        s++, e++;
        char pred[4096];
        int len = x->off_e[e] - x->off_s[s];
        snprintf(pred, sizeof pred, "%.*s", len > 4000 ? 4000 : len, x->context + x->off_s[s]);
        *em += phrex_metric_max_exact_match(pred, (const char *const *)x->answers, x->n_answers);
        *f1 += phrex_metric_max_f1(pred, (const char *const *)x->answers, x->n_answers);
    }
    *em *= 100.0 / n, *f1 *= 100.0 / n;
}

int main(int argc, char **argv) {
    int steps = 300, B = 8, n_eval = 300, threads = 2;
    float lr = 1e-4f;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--eval") && i + 1 < argc) n_eval = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--lr") && i + 1 < argc) lr = (float)atof(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--steps S] [--batch B] [--eval N] [--lr LR] [--threads T]\n", argv[0]);
            return 2;
        }
    }
    phrex_set_threads(threads);
    phrex_wordpiece *wp;
    if (phrex_wordpiece_init(&wp, PHREX_BASE_MODEL_DIR "/vocab.txt", 1)) {
        fprintf(stderr, "%s\n", phrex_last_error());
        return 1;
    }
    int n, n_articles;
    example *ex = load(wp, &n, &n_articles);
    if (!ex) {
        fprintf(stderr, "%s\n", phrex_last_error());
        return 1;
    }
    example **train = malloc((size_t)n * sizeof *train), **ev = malloc((size_t)n * sizeof *ev);
    int n_train = 0, n_ev = 0;
    for (int i = 0; i < n; i++) {
        if (ex[i].article >= n_articles - EVAL_ARTICLES)
            ev[n_ev++] = &ex[i];
        else
            train[n_train++] = &ex[i];
    }
    if (n_eval > n_ev) n_eval = n_ev;
    printf("%d questions with an answer inside 384 tokens: %d train (%d articles), %d eval (%d articles, %d used)\n", n,
           n_train, n_articles - EVAL_ARTICLES, n_ev, EVAL_ARTICLES, n_eval);
    // Held-out questions spread over the eval articles.
    for (int i = 0; i < n_eval; i++) ev[i] = ev[(size_t)i * n_ev / n_eval];

    phrex_adamw_config cfg = {.lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                              .warmup_steps = steps / 10, .total_steps = steps + 1, .max_grad_norm = 0};
    enc ph, qs, qe;
    if (enc_init(&ph, 0, B * MAX_P, MAX_P, &cfg) || enc_init(&qs, 1, B * MAX_Q, MAX_Q, &cfg) ||
        enc_init(&qe, 1, B * MAX_Q, MAX_Q, &cfg)) {
        fprintf(stderr, "%s\n", phrex_last_error());
        return 1;
    }
    phrex_phrase_loss_config lc = {.lambda_single = 1, .lambda_neg = 1, .pre_batches = 2,
                                   .pre_batch_warmup = steps / 3, .max_answer_len = 10};
    phrex_phrase_loss *pl;
    phrex_phrase_loss_init(&pl, &lc, 384, B);
    double em, f1;
    evaluate(&ph, &qs, &qe, ev, n_eval, &em, &f1);
    printf("before training: EM %.1f  F1 %.1f on %d held-out questions\n", em, f1, n_eval);

    int32_t *pids = malloc((size_t)B * MAX_P * 4), *qids = malloc((size_t)B * MAX_Q * 4);
    int32_t plens[64], qlens[64], gs[64], ge[64];
    float *dh = malloc((size_t)B * MAX_P * 384 * 4), *dqs_tok = malloc((size_t)B * MAX_Q * 384 * 4);
    float *dqe_tok = malloc((size_t)B * MAX_Q * 384 * 4);
    float qsv[64 * 384], qev[64 * 384], dqs[64 * 384], dqe[64 * 384];
    phrex_rng rng = phrex_rng_init(2024);
    double t0 = phrex_now_seconds(), loss_acc = 0;
    long tokens = 0;
    for (int step = 1; step <= steps; step++) {
        int np = 0, nq = 0;
        for (int b = 0; b < B; b++) {
            example *x = train[phrex_rng_below(&rng, (uint32_t)n_train)];
            memcpy(pids + np, x->pids, (size_t)x->plen * 4);
            memcpy(qids + nq, x->qids, (size_t)x->qlen * 4);
            plens[b] = x->plen, qlens[b] = x->qlen, gs[b] = x->start, ge[b] = x->end;
            np += x->plen, nq += x->qlen;
        }
        uint64_t key = phrex_rng_hash(0x5eed ^ (uint64_t)step);
        phrex_train_encoder_set_dropout(ph.e, 0.1f, 0.1f, key);
        phrex_train_encoder_set_dropout(qs.e, 0.1f, 0.1f, key + 1);
        phrex_train_encoder_set_dropout(qe.e, 0.1f, 0.1f, key + 2);
        const float *h, *hs, *he;
        phrex_train_encoder_forward(ph.e, pids, NULL, plens, B, &h);
        phrex_train_encoder_forward(qs.e, qids, NULL, qlens, B, &hs);
        phrex_train_encoder_forward(qe.e, qids, NULL, qlens, B, &he);
        for (int b = 0, at = 0; b < B; at += qlens[b], b++) {
            memcpy(qsv + b * 384, hs + (size_t)at * 384, 384 * 4);
            memcpy(qev + b * 384, he + (size_t)at * 384, 384 * 4);
        }
        phrex_phrase_loss_parts parts;
        if (phrex_phrase_loss_step(pl, h, plens, B, qsv, qev, gs, ge, step, dh, dqs, dqe, &parts)) {
            fprintf(stderr, "%s\n", phrex_last_error());
            return 1;
        }
        memset(dqs_tok, 0, (size_t)nq * 384 * 4), memset(dqe_tok, 0, (size_t)nq * 384 * 4);
        for (int b = 0, at = 0; b < B; at += qlens[b], b++) {
            memcpy(dqs_tok + (size_t)at * 384, dqs + b * 384, 384 * 4);
            memcpy(dqe_tok + (size_t)at * 384, dqe + b * 384, 384 * 4);
        }
        phrex_train_bert_zero_grads(ph.m), phrex_train_bert_zero_grads(qs.m), phrex_train_bert_zero_grads(qe.m);
        phrex_train_encoder_backward(ph.e, dh);
        phrex_train_encoder_backward(qs.e, dqs_tok);
        phrex_train_encoder_backward(qe.e, dqe_tok);
        phrex_adamw *opts[3] = {ph.opt, qs.opt, qe.opt};
        float *grads[3] = {phrex_train_bert_params(ph.m).grads, phrex_train_bert_params(qs.m).grads,
                           phrex_train_bert_params(qe.m).grads};
        phrex_adamw_clip_joint(opts, grads, 3, 1.0f);
        phrex_train_params p1 = phrex_train_bert_params(ph.m), p2 = phrex_train_bert_params(qs.m),
                           p3 = phrex_train_bert_params(qe.m);
        phrex_adamw_step(ph.opt, &p1, NULL), phrex_adamw_step(qs.opt, &p2, NULL), phrex_adamw_step(qe.opt, &p3, NULL);
        loss_acc += parts.total;
        tokens += np + 2 * nq;
        if (step % 25 == 0 || step == steps) {
            int k = step % 25 ? step % 25 : 25;
            printf("step %4d  loss %.3f (single %.3f, negatives %.3f over %d)  %.0f tokens/s\n", step, loss_acc / k,
                   parts.single, parts.negative, parts.n_candidates, tokens / (phrex_now_seconds() - t0));
            fflush(stdout);
            loss_acc = 0;
        }
    }
    evaluate(&ph, &qs, &qe, ev, n_eval, &em, &f1);
    printf("after %d steps of %d: EM %.1f  F1 %.1f on %d held-out questions (%.0f s)\n", steps, B, em, f1, n_eval,
           phrex_now_seconds() - t0);
    return 0;
}
