// Training step throughput of the C BERT trainer.
//
//   build/bench_train [model_dir] [--seqs N] [--len L] [--reps R] [--threads T] [--freeze] [--dropout P]
//
// Packs N sequences of L random ids (default 4 x 384, DensePhrases' max
// sequence length), then times the training forward, the backward, and one
// AdamW step (with clipping), each the median of R repetitions after a
// warm-up. Reports tokens/s for forward + backward and the FLOP rate, with
// the backward counted as twice the forward's FLOPs.
#include "common/error.h"
#include "common/threads.h"
#include "encoder/adamw.h"
#include "encoder/train_bert.h"
#include "encoder/train_rng.h"

#include "bench/bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// Forward FLOPs: linear layers plus q·kᵀ and p·v.
static double forward_flops(const phrex_bert_config *c, int n_seqs, int len) {
    double C = c->hidden_size, F = c->intermediate_size, N = (double)n_seqs * len;
    double linear = 2.0 * N * (4 * C * C + 2 * C * F);
    double attention = 2.0 * 2.0 * n_seqs * (double)len * len * C;
    return c->num_hidden_layers * (linear + attention);
}

int main(int argc, char **argv) {
    const char *dir = PHREX_BASE_MODEL_DIR;
    int seqs = 4, len = 384, reps = 5, threads = 2, freeze = 0;
    float dropout = 0.0f;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seqs") && i + 1 < argc) seqs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--len") && i + 1 < argc) len = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--freeze")) freeze = 1;
        else if (!strcmp(argv[i], "--dropout") && i + 1 < argc) dropout = (float)atof(argv[++i]);
        else if (argv[i][0] != '-') dir = argv[i];
        else {
            fprintf(stderr, "usage: %s [model_dir] [--seqs N] [--len L] [--reps R] [--threads T] [--freeze] [--dropout P]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    phrex_set_threads(threads);
    phrex_train_bert *m;
    phrex_train_bert_options opts = {.freeze_word_embeddings = freeze};
    phrex_train_encoder *e;
    phrex_adamw *opt;
    phrex_adamw_config cfg = {.lr = 3e-5f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                              .warmup_steps = 10, .total_steps = 1000, .max_grad_norm = 1.0f};
    int n = seqs * len;
    if (phrex_train_bert_init(&m, dir, &opts) || phrex_train_encoder_init(&e, m, n, len)) {
        fprintf(stderr, "%s\n", phrex_last_error());
        return 1;
    }
    phrex_train_params p = phrex_train_bert_params(m);
    if (phrex_adamw_init(&opt, &cfg, &p) || phrex_train_encoder_set_dropout(e, dropout, dropout, 1)) {
        fprintf(stderr, "%s\n", phrex_last_error());
        return 1;
    }
    const phrex_bert_config *c = phrex_train_bert_config(m);
    int32_t *ids = malloc((size_t)n * sizeof *ids), *lens = malloc((size_t)seqs * sizeof *lens);
    float *dout = malloc((size_t)n * c->hidden_size * sizeof *dout);
    phrex_rng rng = phrex_rng_init(1);
    for (int i = 0; i < n; i++) ids[i] = 1000 + (int32_t)phrex_rng_below(&rng, 20000);
    for (int s = 0; s < seqs; s++) lens[s] = len;
    for (size_t i = 0; i < (size_t)n * c->hidden_size; i++) dout[i] = 1e-3f * phrex_rng_symmetric(&rng);
    double *tf = malloc((size_t)reps * sizeof *tf), *tb = malloc((size_t)reps * sizeof *tb);
    double *ta = malloc((size_t)reps * sizeof *ta);
    for (int r = -1; r < reps; r++) {
        const float *out;
        double t0 = phrex_now_seconds();
        phrex_train_encoder_forward(e, ids, NULL, lens, seqs, &out);
        double t1 = phrex_now_seconds();
        phrex_train_bert_zero_grads(m);
        double t2 = phrex_now_seconds();
        phrex_train_encoder_backward(e, dout);
        double t3 = phrex_now_seconds();
        phrex_adamw_step(opt, &p, NULL);
        double t4 = phrex_now_seconds();
        if (r >= 0) tf[r] = t1 - t0, tb[r] = t3 - t2, ta[r] = t4 - t3;
    }
    double f = bench_median(tf, reps), b = bench_median(tb, reps), a = bench_median(ta, reps);
    double flops = 3.0 * forward_flops(c, seqs, len);
    printf("model %s: %d layers, C=%d; %d x %d tokens, %d threads, word embeddings %s, dropout %g\n", dir,
           c->num_hidden_layers, c->hidden_size, seqs, len, threads, freeze ? "frozen" : "trained", dropout);
    printf("activations %.0f MiB, parameters %zu (%zu with gradients)\n",
           (double)phrex_train_encoder_bytes(e) / (1 << 20), p.n_params, p.n_grads);
    printf("forward  %.3f s   backward %.3f s   adamw %.3f s\n", f, b, a);
    printf("forward+backward: %.0f tokens/s, %.1f GFLOP/s; with the AdamW step: %.0f tokens/s\n", n / (f + b),
           flops / (f + b) * 1e-9, n / (f + b + a));
    free(ids), free(lens), free(dout), free(tf), free(tb), free(ta);
    phrex_adamw_free(opt);
    phrex_train_encoder_free(e);
    phrex_train_bert_free(m);
    return 0;
}
