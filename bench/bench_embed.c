// The phrex side of bench/encoder.sh: the same inputs as bench_torch.py, one
// JSON object per measurement on stdout.
//
//   build/bench_embed --threads N [--model DIR] [--passages TSV]
//                     [--n-passages 256] [--repeats 5]
//
//   sgemm:    OpenBLAS sgemm peak, (4096 x 384)·(384 x 1536) as nn.Linear
//   fixed:    32 sequences x 128 tokens (real passages, truncated), tokens/s
//   passages: real variable-length passages, 32 per forward, packed (no
//             padding), tokens/s; tokenization is not timed (as for torch)
//   query:    one 16-token query, latency in ms
// Medians over --repeats runs after one warm-up run.
#include "common/error.h"
#include "common/progress.h"
#include "common/threads.h"
#include "data/corpus.h"
#include "encoder/embedder.h"
#include "bench/bench_util.h"

#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_SEQS 32
#define FIXED_LEN 128
#define QUERY_LEN 16

typedef struct {
    const char *model_dir, *passages;
    int threads, n_passages, repeats;
} bench_options;

// A packed batch: ids and sequence lengths.
typedef struct {
    int32_t *ids, *lens;
    int n_tokens, n_seqs;
} packed_batch;

static double sgemm_gflops(int repeats) {
    return bench_sgemm_flops() / bench_sgemm_seconds(repeats).median / 1e9;
}

// FLOPs of the matrix products of one pass over the batches: the linear
// layers (2·(4C² + 2CF) per token and layer) plus attention's q·kᵀ and p·v
// (2·2·L²·C per sequence of L tokens and layer). Softmax, GELU and
// LayerNorm are not counted.
static double batches_flops(const phrex_bert_config *c, const packed_batch *batches, int n_batches) {
    double C = c->hidden_size, F = c->intermediate_size, flops = 0;
    for (int b = 0; b < n_batches; b++)
        for (int s = 0; s < batches[b].n_seqs; s++) {
            double L = batches[b].lens[s];
            flops += 2.0 * L * (4 * C * C + 2 * C * F) + 4.0 * L * L * C;
        }
    return flops * c->num_hidden_layers;
}

// Median seconds to run all batches once.
static double time_batches(phrex_embedder *e, const packed_batch *batches, int n_batches, float *out, int repeats) {
    double t[64];
    for (int r = -1; r < repeats; r++) {
        double t0 = phrex_now_seconds();
        for (int b = 0; b < n_batches; b++) {
            if (phrex_encoder_forward(phrex_embedder_encoder(e), batches[b].ids, NULL, batches[b].lens,
                                      batches[b].n_seqs, out)) {
                fprintf(stderr, "bench_embed: %s\n", phrex_last_error());
                exit(1);
            }
        }
        if (r >= 0) t[r] = phrex_now_seconds() - t0;
    }
    return bench_median(t, repeats);
}

// Reads n passages of at least min_len tokens (shorter ones are passed
// over) and tokenizes each as [CLS] pieces [SEP], truncated to max_len
// tokens; returns them packed BATCH_SEQS to a batch.
static int load_batches(phrex_embedder *e, const char *path, int n, int min_len, int max_len, packed_batch **out,
                        int *n_out) {
    phrex_corpus *corpus;
    int rc = phrex_corpus_init(&corpus, path, NULL);
    if (rc) return rc;
    int n_batches = (n + BATCH_SEQS - 1) / BATCH_SEQS;
    packed_batch *batches = calloc((size_t)n_batches, sizeof *batches);
    phrex_tokens tok;
    phrex_tokens_init(&tok, 512);
    int seen = 0;
    for (int b = 0; b < n_batches && rc == PHREX_OK; b++) {
        batches[b].ids = malloc((size_t)BATCH_SEQS * 512 * sizeof(int32_t));
        batches[b].lens = malloc(BATCH_SEQS * sizeof(int32_t));
        for (int s = 0; s < BATCH_SEQS && seen < n; s++, seen++) {
            phrex_passage p;
            int has = 0, added;
            if ((rc = phrex_corpus_next(corpus, &p, &has)) || !has) break;
            phrex_tokens_clear(&tok);
            if ((rc = phrex_embedder_tokenize(e, p.text, p.text_len, 1, &tok, &added))) break;
            if (added < min_len) {
                s--, seen--;
                continue;
            }
            if (added > max_len) { // keep [CLS] + first pieces, end with [SEP]
                tok.ids[max_len - 1] = tok.ids[added - 1];
                added = max_len;
            }
            memcpy(batches[b].ids + batches[b].n_tokens, tok.ids, (size_t)added * sizeof(int32_t));
            batches[b].lens[batches[b].n_seqs++] = added;
            batches[b].n_tokens += added;
        }
    }
    phrex_tokens_free(&tok);
    phrex_corpus_free(corpus);
    *out = batches;
    *n_out = n_batches;
    return rc;
}

static void free_batches(packed_batch *b, int n) {
    for (int i = 0; i < n; i++) free(b[i].ids), free(b[i].lens);
    free(b);
}

static int parse(int argc, char **argv, bench_options *o) {
    static const struct option opts[] = {{"model", 1, 0, 'm'},     {"passages", 1, 0, 'p'}, {"threads", 1, 0, 't'},
                                         {"n-passages", 1, 0, 'n'}, {"repeats", 1, 0, 'r'}, {0, 0, 0, 0}};
    *o = (bench_options){PHREX_BASE_MODEL_DIR,
                         PHREX_SHARED_DIR "/data/wikipedia/enwiki-2019-good-articles-sample/psgs_w100.tsv", 1, 256, 5};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model_dir = optarg; break;
        case 'p': o->passages = optarg; break;
        case 't': o->threads = atoi(optarg); break;
        case 'n': o->n_passages = atoi(optarg); break;
        case 'r': o->repeats = atoi(optarg); break;
        default: return 2;
        }
    }
    if (o->repeats < 1 || o->repeats > 64 || o->n_passages < BATCH_SEQS || o->threads < 1) return 2;
    return 0;
}

int main(int argc, char **argv) {
    bench_options o;
    if (parse(argc, argv, &o)) {
        fprintf(stderr, "usage: bench_embed --threads N [--model DIR] [--passages TSV] [--n-passages N] [--repeats N]\n");
        return 2;
    }
    phrex_set_threads(o.threads);
    phrex_embedder *e;
    packed_batch *fixed, *passages;
    int n_fixed, n_passages;
    if (phrex_embedder_init(&e, o.model_dir, BATCH_SEQS * 512) ||
        load_batches(e, o.passages, BATCH_SEQS, FIXED_LEN, FIXED_LEN, &fixed, &n_fixed) ||
        load_batches(e, o.passages, o.n_passages, 1, 512, &passages, &n_passages)) {
        fprintf(stderr, "bench_embed: %s\n", phrex_last_error());
        return 1;
    }
    const phrex_bert_config *cfg = phrex_embedder_config(e);
    float *out = malloc((size_t)BATCH_SEQS * 512 * (size_t)cfg->hidden_size * sizeof(float));
    double peak = sgemm_gflops(o.repeats);
    printf("{\"impl\":\"phrex\",\"threads\":%d,\"case\":\"sgemm\",\"gflops\":%.1f}\n", o.threads, peak);

    double t = time_batches(e, fixed, n_fixed, out, o.repeats);
    double tps = fixed[0].n_tokens / t, gflops = batches_flops(cfg, fixed, n_fixed) / t / 1e9;
    printf("{\"impl\":\"phrex\",\"threads\":%d,\"case\":\"fixed\",\"tokens\":%d,\"seconds\":%.6f,\"tokens_per_s\":%.1f,"
           "\"gflops\":%.1f,\"peak_fraction\":%.3f}\n",
           o.threads, fixed[0].n_tokens, t, tps, gflops, gflops / peak);

    long real = 0;
    for (int b = 0; b < n_passages; b++) real += passages[b].n_tokens;
    t = time_batches(e, passages, n_passages, out, (o.repeats + 1) / 2);
    tps = (double)real / t, gflops = batches_flops(cfg, passages, n_passages) / t / 1e9;
    printf("{\"impl\":\"phrex\",\"threads\":%d,\"case\":\"passages\",\"tokens\":%ld,\"seconds\":%.6f,"
           "\"tokens_per_s\":%.1f,\"gflops\":%.1f,\"peak_fraction\":%.3f}\n",
           o.threads, real, t, tps, gflops, gflops / peak);

    int32_t qids[QUERY_LEN], qlen = QUERY_LEN;
    qids[0] = 101, qids[QUERY_LEN - 1] = 102; // [CLS] ... [SEP], as bench_torch.py
    for (int i = 1; i < QUERY_LEN - 1; i++) qids[i] = 2000 + i - 1;
    packed_batch query = {qids, &qlen, QUERY_LEN, 1};
    t = time_batches(e, &query, 1, out, 50 * o.repeats > 64 ? 63 : 50 * o.repeats);
    printf("{\"impl\":\"phrex\",\"threads\":%d,\"case\":\"query\",\"tokens\":%d,\"seconds\":%.6f,\"latency_ms\":%.3f}\n",
           o.threads, QUERY_LEN, t, 1e3 * t);

    free(out);
    free_batches(fixed, n_fixed);
    free_batches(passages, n_passages);
    phrex_embedder_free(e);
    return 0;
}
