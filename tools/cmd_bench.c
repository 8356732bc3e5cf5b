// phrex bench: how fast this machine encodes, with the model a dump would be
// built with. Passage throughput (tokens/s over real passages packed into
// batches, as `phrex build` encodes) and the latency of one short question
// (as `phrex ask` encodes), medians of --repeats runs, one JSON line.
// Search latency is what `phrex eval` measures (p50/p95/p99); the
// side-by-side comparisons with PyTorch are bench/encoder.py
// (docs/BENCHMARKS.md).
#include "tools/cli.h"
#include "tools/cli_util.h"

#include "common/error.h"
#include "common/json_write.h"
#include "common/progress.h"
#include "common/threads.h"
#include "data/corpus.h"
#include "encoder/embedder.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_TOKENS 8192 // what phrex build packs per forward pass
#define MAX_REPEATS 50

typedef struct {
    const char *model, *passages;
    int threads, n_passages, repeats;
} bench_options;

static void print_help(FILE *f) {
    fprintf(f,
            "usage: phrex bench [--model DIR] [--passages FILE] [--limit N] [--repeats R] [--threads N]\n\n"
            "  --model DIR      the model (default %s): its phrase encoder is timed\n"
            "  --passages FILE  corpus to encode (default ../shared/data/wikipedia/enwiki-2019-good-articles-sample/"
            "psgs_w100.tsv)\n"
            "  --limit N        passages read (default 256)\n"
            "  --repeats R      timed runs, the median is reported (default 5)\n"
            "  --threads N      threads (default: all cores)\n\n"
            "Prints one JSON line: tokens, tokens_per_s (packed passages), query_ms (one 16-piece question).\n",
            phrex_cli_default_model_dir());
}

// Tokenizes up to o->n_passages passages into t (each [CLS] pieces [SEP], cut
// to the model's positions); lens gets each sequence's length.
static int read_passages(const bench_options *o, phrex_embedder *e, phrex_tokens *t, int32_t *lens, int *n) {
    phrex_corpus *c;
    int rc = phrex_corpus_init(&c, o->passages, NULL), has = 1;
    *n = 0;
    while (!rc && *n < o->n_passages) {
        phrex_passage p;
        if ((rc = phrex_corpus_next(c, &p, &has)) || !has) break;
        int added = 0;
        rc = phrex_embedder_tokenize(e, p.text, p.text_len, 1, t, &added);
        if (rc == PHREX_ERR_INPUT) { // an empty passage: nothing to time
            rc = PHREX_OK;
            continue;
        }
        if (!rc) lens[(*n)++] = added;
    }
    phrex_corpus_free(c);
    if (!rc && *n == 0) rc = phrex_fail(PHREX_ERR_INPUT, "%s: no passage to encode", o->passages);
    return rc;
}

// One pass over all sequences in packed batches of up to BATCH_TOKENS.
static int encode_all(phrex_encoder *enc, const phrex_tokens *t, const int32_t *lens, int n, float *out) {
    int at = 0, rc = PHREX_OK;
    for (int i = 0; i < n && !rc;) {
        int first = i, tokens = 0;
        while (i < n && tokens + lens[i] <= BATCH_TOKENS) tokens += lens[i++];
        rc = phrex_encoder_forward(enc, t->ids + at, NULL, lens + first, i - first, out);
        at += tokens;
    }
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int run(const bench_options *o) {
    const char *dir = phrex_cli_phrase_encoder_dir("bench", o->model);
    if (!dir) return 1;
    phrex_embedder *e = NULL;
    phrex_tokens t = {0};
    int32_t *lens = malloc((size_t)o->n_passages * sizeof *lens);
    float *out = NULL;
    int n = 0, rc = lens ? PHREX_OK : phrex_fail(PHREX_ERR_MEMORY, "out of memory");
    if (!rc) rc = phrex_embedder_init(&e, dir, BATCH_TOKENS);
    if (!rc) rc = phrex_tokens_init(&t, 1 << 16);
    if (!rc) rc = read_passages(o, e, &t, lens, &n);
    int C = e ? phrex_embedder_config(e)->hidden_size : 0;
    if (!rc && !(out = malloc((size_t)BATCH_TOKENS * (size_t)C * sizeof *out)))
        rc = phrex_fail(PHREX_ERR_MEMORY, "out of memory");
    double pass_s[MAX_REPEATS], query_ms[MAX_REPEATS];
    phrex_encoder *enc = e ? phrex_embedder_encoder(e) : NULL;
    int32_t qlen = 16; // the first 16 tokens of the first passage: a typical question's length
    if (!rc && lens[0] < qlen) qlen = lens[0];
    if (!rc) rc = encode_all(enc, &t, lens, n, out); // warm-up
    for (int r = 0; r < o->repeats && !rc; r++) {
        double t0 = phrex_now_seconds();
        rc = encode_all(enc, &t, lens, n, out);
        pass_s[r] = phrex_now_seconds() - t0;
        t0 = phrex_now_seconds();
        if (!rc) rc = phrex_encoder_forward(enc, t.ids, NULL, &qlen, 1, out);
        query_ms[r] = 1e3 * (phrex_now_seconds() - t0);
    }
    if (!rc) {
        fputs("{\"model\": ", stdout);
        phrex_json_write_string(stdout, dir, strlen(dir));
        printf(", \"threads\": %d, \"passages\": %d, \"tokens\": %d, \"tokens_per_s\": %.1f, \"query_ms\": %.3f, "
               "\"repeats\": %d}\n",
               phrex_get_threads(), n, t.n, (double)t.n / median(pass_s, o->repeats), median(query_ms, o->repeats),
               o->repeats);
    }
    free(out);
    phrex_tokens_free(&t);
    phrex_embedder_free(e);
    free(lens);
    if (rc) fprintf(stderr, "phrex bench: %s\n", phrex_last_error());
    return rc ? 1 : 0;
}

int cmd_bench(int argc, char **argv) {
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},   {"passages", required_argument, 0, 'p'},
        {"limit", required_argument, 0, 'l'},   {"repeats", required_argument, 0, 'r'},
        {"threads", required_argument, 0, 'j'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    bench_options o = {phrex_cli_default_model_dir(),
                       "../shared/data/wikipedia/enwiki-2019-good-articles-sample/psgs_w100.tsv", 0, 256, 5};
    int opt, rc = 0;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1 && !rc) {
        switch (opt) {
        case 'm': o.model = optarg; break;
        case 'p': o.passages = optarg; break;
        case 'l': rc = phrex_cli_parse_int("--limit", optarg, 1, 1 << 20, &o.n_passages); break;
        case 'r': rc = phrex_cli_parse_int("--repeats", optarg, 1, MAX_REPEATS, &o.repeats); break;
        case 'j': rc = phrex_cli_parse_int("--threads", optarg, 1, 1024, &o.threads); break;
        case 'h': print_help(stdout); return 0;
        default: print_help(stderr); return 2;
        }
    }
    if (rc) return rc;
    if (optind < argc) {
        fprintf(stderr, "phrex bench: unexpected argument '%s'\n\n", argv[optind]);
        print_help(stderr);
        return 2;
    }
    if (o.threads) phrex_set_threads(o.threads);
    return run(&o);
}
