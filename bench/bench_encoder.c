// Encoder throughput and latency, against an sgemm peak measured here.
//
//   build/bench_encoder [model_dir] [--block ROWS] [--chunk FFN_FEATURES] [--reps N]
//
// 1. sgemm peak: (4096 x 384)·(384 x 1536), the shape of the FFN's first
//    linear layer on a 32 x 128 batch, at 1 and 2 threads.
// 2. Throughput: 32 sequences of 128 random ids, packed, at 1 and 2 threads:
//    tokens/s and the FLOP rate as a share of that peak.
// 3. Latency: one 16-token query at 1 and 2 threads.
// Every figure is the median of its repetitions (after a warm-up run).
#include "common/error.h"
#include "common/threads.h"
#include "encoder/bert.h"
#include "bench/bench_util.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// FLOPs of one forward over n_seqs sequences of len tokens: the linear
// layers, plus q·kᵀ and p·v of attention (softmax, GELU, LN not counted).
static double forward_flops(const phrex_bert_config *c, int n_seqs, int len) {
    double C = c->hidden_size, F = c->intermediate_size, N = (double)n_seqs * len;
    double linear = 2.0 * N * (3 * C * C + C * C + 2 * C * F);
    double attention = 2.0 * 2.0 * n_seqs * (double)len * len * C;
    return c->num_hidden_layers * (linear + attention);
}

static bench_timing forward_seconds(phrex_encoder *enc, const int32_t *ids, const int32_t *lens, int n_seqs, float *out,
                              int reps) {
    double *t = malloc((size_t)reps * sizeof *t);
    for (int r = -1; r < reps; r++) {
        double t0 = phrex_now_seconds();
        if (phrex_encoder_forward(enc, ids, NULL, lens, n_seqs, out) != PHREX_OK) {
            fprintf(stderr, "forward: %s\n", phrex_last_error());
            exit(1);
        }
        if (r >= 0) t[r] = phrex_now_seconds() - t0;
    }
    bench_timing m = {bench_median(t, reps), t[0]};
    free(t);
    return m;
}

// Random ids between [CLS] and [SEP], as tokenised text would look.
static void random_ids(int32_t *ids, int n_seqs, int len, int vocab) {
    uint64_t s = 0x2545f4914f6cdd1dull;
    for (int q = 0; q < n_seqs; q++)
        for (int i = 0; i < len; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            ids[q * len + i] = i == 0 ? 101 : i == len - 1 ? 102 : 1000 + (int32_t)(s % (uint64_t)(vocab - 1000));
        }
}

int main(int argc, char **argv) {
    const char *model_dir = "models/base/all-MiniLM-L6-v2";
    int block = 0, chunk = 0, reps = 7;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--block") == 0 && i + 1 < argc)
            block = atoi(argv[++i]);
        else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc)
            chunk = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else
            model_dir = argv[i];
    }
    if (reps < 1) reps = 1;
    phrex_bert *model;
    if (phrex_bert_init(&model, model_dir) != PHREX_OK) {
        fprintf(stderr, "%s\n", phrex_last_error());
        return 1;
    }
    const phrex_bert_config *c = phrex_bert_get_config(model);
    enum { BATCH = 32, LEN = 128, QLEN = 16 };
    phrex_encoder *enc;
    if (phrex_encoder_init(&enc, model, BATCH * LEN) != PHREX_OK ||
        ((block > 0 || chunk > 0) && phrex_encoder_set_blocking(enc, block, chunk) != PHREX_OK)) {
        fprintf(stderr, "%s\n", phrex_last_error());
        return 1;
    }
    int32_t *ids = malloc(BATCH * LEN * sizeof *ids), lens[BATCH], qlen = QLEN;
    float *out = malloc((size_t)BATCH * LEN * c->hidden_size * sizeof *out);
    random_ids(ids, BATCH, LEN, c->vocab_size);
    for (int i = 0; i < BATCH; i++) lens[i] = LEN;
    double flops = forward_flops(c, BATCH, LEN);
    printf("model %s: %.1f MFLOP/token at %d tokens/sequence\n", model_dir, flops / (BATCH * LEN) / 1e6, LEN);
    printf("medians (best run in brackets); %% of peak compares medians\n");
    for (int threads = 1; threads <= 2; threads++) {
        phrex_set_threads(threads);
        bench_timing g = bench_sgemm_seconds(reps * 3);
        double gemm_flops = 2.0 * 4096 * 384 * 1536;
        bench_timing f = forward_seconds(enc, ids, lens, BATCH, out, reps);
        printf("threads %d: sgemm peak %5.1f (%5.1f) GFLOPS | %dx%d: %6.0f (%6.0f) tokens/s, %5.1f GFLOPS = %4.1f%% of peak",
               threads, gemm_flops / g.median / 1e9, gemm_flops / g.best / 1e9, BATCH, LEN, BATCH * LEN / f.median,
               BATCH * LEN / f.best, flops / f.median / 1e9, 100.0 * flops / f.median / (gemm_flops / g.median));
        int32_t qids[QLEN];
        random_ids(qids, 1, QLEN, c->vocab_size);
        bench_timing q = forward_seconds(enc, qids, &qlen, 1, out, reps * 30);
        printf(" | %d-token query: %.3f (%.3f) ms\n", QLEN, q.median * 1e3, q.best * 1e3);
    }
    free(ids);
    free(out);
    phrex_encoder_free(enc);
    phrex_bert_free(model);
    return 0;
}
