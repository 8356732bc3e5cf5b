// phrex train-filter: the phrase filter (index/filter.h) of a phrase
// encoder. Every token of the SQuAD training articles' windows is encoded
// by the frozen phrase encoder; tokens that start (end) a gold answer are
// the positives of the start (end) head, the others negatives, of which a
// seeded fraction is kept and weighted up so the logits stay calibrated.
// Two logistic regressions are trained with Adam, then measured on the
// validation articles: for each threshold, the share of tokens kept and the
// share of gold answers whose first and last tokens are both kept (a phrase
// needs both vectors to be found).
#include "tools/cli.h"
#include "tools/cli_util.h"

#include "common/error.h"
#include "common/progress.h"
#include "common/threads.h"
#include "data/squad_windows.h"
#include "encoder/embedder.h"
#include "index/dump.h"
#include "index/filter.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_TOKENS 8192
#define MAX_SEQ 384
#define DOC_STRIDE 128
#define MAX_THRESHOLDS 16

typedef struct {
    const char *model_dir, *out, *squad, *train_titles, *valid_titles;
    phrex_filter_train_options t;
    float neg_rate;
    int threads, max_paragraphs;
    float thresholds[MAX_THRESHOLDS];
    int n_thresholds;
} options;

static void print_help(FILE *f) {
    fprintf(f,
            "usage: phrex train-filter --out FILE [options]\n\n"
            "Trains the phrase filter (start/end logistic regressions on the phrase encoder's\n"
            "token vectors) that 'phrex build --filter FILE --filter-threshold X' applies, and\n"
            "reports tokens kept against gold answers kept on the validation articles.\n\n"
            "  --out FILE             filter file to write\n"
            "  --model DIR            model folder (default %s)\n"
            "  --squad FILE           SQuAD v1.1 JSON (default ../shared/data/squad-v1.1/dev-v1.1.40-articles.json)\n"
            "  --train-titles FILE    training articles (default data/splits/squad_train_titles.txt)\n"
            "  --valid-titles FILE    validation articles (default data/splits/squad_valid_titles.txt)\n"
            "  --epochs N             passes over the training tokens (default 4)\n"
            "  --lr X                 Adam step size (default 0.01)\n"
            "  --neg-rate X           share of negative tokens trained on (default 0.25)\n"
            "  --max-paragraphs N     use only the first N paragraphs of each split (default all)\n"
            "  --thresholds A,B,..    thresholds to report (default -4,-3,-2,-1,0,1,2)\n"
            "  --seed S               negative sampling and order (default 2024)\n"
            "  --threads N            threads (default: all cores)\n",
            phrex_cli_default_model_dir());
}

static int parse_thresholds(options *o, const char *text) {
    char buf[512], *save = NULL;
    snprintf(buf, sizeof buf, "%s", text);
    o->n_thresholds = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->n_thresholds == MAX_THRESHOLDS) {
            fprintf(stderr, "phrex train-filter: at most %d thresholds\n", MAX_THRESHOLDS);
            return 2;
        }
        if (phrex_cli_parse_float("--thresholds", tok, -1e6f, 1e6f, &o->thresholds[o->n_thresholds++])) return 2;
    }
    if (!o->n_thresholds) {
        fprintf(stderr, "phrex train-filter: --thresholds is empty\n");
        return 2;
    }
    return 0;
}

static int parse_options(int argc, char **argv, options *o) {
    static const struct option longopts[] = {
        {"out", required_argument, 0, 'o'},          {"model", required_argument, 0, 'm'},
        {"squad", required_argument, 0, 'q'},        {"train-titles", required_argument, 0, 't'},
        {"valid-titles", required_argument, 0, 'v'}, {"epochs", required_argument, 0, 'e'},
        {"lr", required_argument, 0, 'l'},           {"neg-rate", required_argument, 0, 'n'},
        {"max-paragraphs", required_argument, 0, 'p'}, {"thresholds", required_argument, 0, 'T'},
        {"seed", required_argument, 0, 's'},         {"threads", required_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->model_dir = phrex_cli_default_model_dir();
    o->squad = "../shared/data/squad-v1.1/dev-v1.1.40-articles.json";
    o->train_titles = "data/splits/squad_train_titles.txt";
    o->valid_titles = "data/splits/squad_valid_titles.txt";
    phrex_filter_train_options_default(&o->t);
    o->neg_rate = 0.25f;
    const float th[] = {-4, -3, -2, -1, 0, 1, 2};
    memcpy(o->thresholds, th, sizeof th);
    o->n_thresholds = 7;
    int opt, seed;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int rc = 0;
        switch (opt) {
        case 'h': print_help(stdout); return -1;
        case 'o': o->out = optarg; break;
        case 'm': o->model_dir = optarg; break;
        case 'q': o->squad = optarg; break;
        case 't': o->train_titles = optarg; break;
        case 'v': o->valid_titles = optarg; break;
        case 'e': rc = phrex_cli_parse_int("--epochs", optarg, 1, 1000, &o->t.epochs); break;
        case 'l': rc = phrex_cli_parse_float("--lr", optarg, 1e-7f, 10.0f, &o->t.lr); break;
        case 'n': rc = phrex_cli_parse_float("--neg-rate", optarg, 1e-4f, 1.0f, &o->neg_rate); break;
        case 'p': rc = phrex_cli_parse_int("--max-paragraphs", optarg, 1, 1 << 30, &o->max_paragraphs); break;
        case 'T': rc = parse_thresholds(o, optarg); break;
        case 's':
            rc = phrex_cli_parse_int("--seed", optarg, 0, 1 << 30, &seed);
            o->t.seed = (uint64_t)seed;
            break;
        case 'j': rc = phrex_cli_parse_int("--threads", optarg, 1, 1024, &o->threads); break;
        default: print_help(stderr); return 2;
        }
        if (rc) return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "phrex train-filter: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->out) {
        fprintf(stderr, "phrex train-filter: --out is required\n\n");
        print_help(stderr);
        return 2;
    }
    return 0;
}

// --- encoding the windows ---------------------------------------------------

// Token vectors of a split with their gold labels, one row per paragraph
// piece (a piece in several windows is taken from the first that holds it).
typedef struct {
    float *x;             // (n, C)
    uint8_t *start, *end; // (n) gold answer start / end
    float *weight;        // (n)
    int64_t n, cap;
    int64_t tokens;       // pieces seen (kept or sampled out)
} rows;

static int rows_push(rows *r, int C, const float *v, int s, int e, float w) {
    if (r->n == r->cap) {
        int64_t cap = r->cap ? 2 * r->cap : 65536;
        float *x = realloc(r->x, (size_t)cap * (size_t)C * sizeof(float));
        if (x) r->x = x;
        uint8_t *a = realloc(r->start, (size_t)cap), *b = a ? realloc(r->end, (size_t)cap) : NULL;
        if (a) r->start = a;
        if (b) r->end = b;
        float *ww = realloc(r->weight, (size_t)cap * sizeof(float));
        if (ww) r->weight = ww;
        if (!x || !a || !b || !ww) return phrex_fail(PHREX_ERR_MEMORY, "cannot hold %lld token vectors", (long long)cap);
        r->cap = cap;
    }
    memcpy(r->x + (size_t)r->n * (size_t)C, v, (size_t)C * sizeof(float));
    r->start[r->n] = (uint8_t)s;
    r->end[r->n] = (uint8_t)e;
    r->weight[r->n] = w;
    r->n++;
    return PHREX_OK;
}

static void rows_free(rows *r) {
    free(r->x);
    free(r->start);
    free(r->end);
    free(r->weight);
}

static uint64_t next_random(uint64_t *s) { // splitmix64
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct {
    phrex_embedder *emb;
    int C;
    int32_t *ids, *seq_lens; // (BATCH_TOKENS)
    float *hidden;           // (BATCH_TOKENS, C)
    // Per paragraph piece: gold flags (bit 0 start, bit 1 end).
    uint8_t *gold;
    int gold_cap;
} encoder_ctx;

// Gold flags of every paragraph piece: each example's span in its window,
// moved to paragraph piece numbers.
static int mark_gold(encoder_ctx *E, const phrex_squad_windows *s, int paragraph, int n_pieces, int *ex) {
    if (n_pieces > E->gold_cap) {
        uint8_t *g = realloc(E->gold, (size_t)n_pieces);
        if (!g) return phrex_fail(PHREX_ERR_MEMORY, "cannot hold %d labels", n_pieces);
        E->gold = g;
        E->gold_cap = n_pieces;
    }
    memset(E->gold, 0, (size_t)n_pieces);
    int n = phrex_squad_windows_count(s);
    // Examples are grouped by paragraph, in paragraph order.
    for (; *ex < n && phrex_squad_windows_example(s, *ex)->paragraph <= paragraph; (*ex)++) {
        const phrex_squad_example *e = phrex_squad_windows_example(s, *ex);
        if (e->paragraph != paragraph) continue;
        const phrex_squad_window *w = phrex_squad_windows_window(s, e->window);
        int ps = w->piece_start + e->gold_start - 1, pe = w->piece_start + e->gold_end - 1; // [CLS] is token 0
        if (ps >= 0 && ps < n_pieces) E->gold[ps] |= 1;
        if (pe >= 0 && pe < n_pieces) E->gold[pe] |= 2;
    }
    return PHREX_OK;
}

// Called with every piece vector of the split, in order.
typedef int (*piece_fn)(void *ctx, const float *v, int gold);

// Encodes windows [w0, w1) (one forward pass) and hands each piece that
// the windows supply first (piece >= *covered of its paragraph) to fn.
static int run_windows(encoder_ctx *E, const phrex_squad_windows *s, int w0, int w1, const int *covered_from,
                       piece_fn fn, void *ctx) {
    int t = 0;
    for (int w = w0; w < w1; w++) {
        int len = phrex_squad_windows_fill(s, w, E->ids + t, NULL, NULL);
        E->seq_lens[w - w0] = len;
        t += len;
    }
    int rc = phrex_encoder_forward(phrex_embedder_encoder(E->emb), E->ids, NULL, E->seq_lens, w1 - w0, E->hidden);
    if (rc) return rc;
    t = 0;
    for (int w = w0; w < w1 && !rc; w++) {
        const phrex_squad_window *win = phrex_squad_windows_window(s, w);
        for (int j = 0; j < win->n_pieces && !rc; j++) {
            int piece = win->piece_start + j;
            if (piece < covered_from[w - w0]) continue;
            rc = fn(ctx, E->hidden + (size_t)(t + 1 + j) * (size_t)E->C, E->gold[piece]);
        }
        t += E->seq_lens[w - w0];
    }
    return rc;
}

// Every paragraph (up to max_paragraphs) of s, window by window, batched
// into forward passes of at most BATCH_TOKENS tokens. Gold flags are set
// per paragraph before its windows run, so a batch holds one paragraph's
// windows at a time only when it must: paragraphs are flushed whole.
static int encode_split(encoder_ctx *E, const phrex_squad_windows *s, int max_paragraphs, piece_fn fn, void *ctx) {
    int n_par = (int)phrex_squad_windows_stats(s)->paragraphs, ex = 0, rc = PHREX_OK;
    if (max_paragraphs > 0 && max_paragraphs < n_par) n_par = max_paragraphs;
    int covered[MAX_SEQ * 2];
    for (int p = 0; p < n_par && !rc; p++) {
        const phrex_squad_paragraph *par = phrex_squad_windows_paragraph(s, p);
        if ((rc = mark_gold(E, s, p, par->n_pieces, &ex))) break;
        int hi = 0;
        for (int w0 = par->first_window, w1; w0 < par->first_window + par->n_windows && !rc; w0 = w1) {
            int t = 0, k = 0;
            for (w1 = w0; w1 < par->first_window + par->n_windows && k < MAX_SEQ * 2; w1++, k++) {
                const phrex_squad_window *win = phrex_squad_windows_window(s, w1);
                if (t + win->n_pieces + 2 > BATCH_TOKENS) break;
                t += win->n_pieces + 2;
                covered[k] = hi;
                if (win->piece_start + win->n_pieces > hi) hi = win->piece_start + win->n_pieces;
            }
            rc = run_windows(E, s, w0, w1, covered, fn, ctx);
        }
    }
    return rc;
}

typedef struct {
    rows *r;
    int C;
    float neg_rate;
    uint64_t rng;
} collect_ctx;

static int collect(void *ctx, const float *v, int gold) {
    collect_ctx *c = ctx;
    c->r->tokens++;
    if (!gold && (double)(next_random(&c->rng) >> 11) * 0x1.0p-53 >= c->neg_rate) return PHREX_OK;
    return rows_push(c->r, c->C, v, gold & 1, gold >> 1 & 1, gold ? 1.0f : 1.0f / c->neg_rate);
}

// --- validation -------------------------------------------------------------

static int load_split(const char *titles_path, const options *o, const phrex_wordpiece *wp, phrex_squad_windows **out) {
    char **titles;
    int n;
    int rc = phrex_squad_read_titles(titles_path, &titles, &n);
    if (rc) return rc;
    phrex_squad_window_options wo = {MAX_SEQ, DOC_STRIDE, 64};
    rc = phrex_squad_windows_init(out, o->squad, wp, (const char *const *)titles, n, &wo);
    free(titles);
    if (rc) return rc;
    const phrex_squad_window_stats *st = phrex_squad_windows_stats(*out);
    fprintf(stderr, "%s: %zu articles, %zu paragraphs, %zu windows, %zu questions with a usable answer\n", titles_path,
            st->articles, st->paragraphs, st->windows, st->kept);
    if (st->kept == 0) return phrex_fail(PHREX_ERR_INPUT, "%s: no usable question in these articles", titles_path);
    return PHREX_OK;
}

// Per-piece scores of the whole validation split, then each example's
// start and end looked up in them.
typedef struct {
    const phrex_filter *f;
    float *score; // (all paragraph pieces of the split, in order)
    int64_t n, cap;
} score_ctx;

static int score_piece(void *ctx, const float *v, int gold) {
    (void)gold;
    score_ctx *c = ctx;
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 65536;
        float *s = realloc(c->score, (size_t)cap * sizeof *s);
        if (!s) return phrex_fail(PHREX_ERR_MEMORY, "cannot hold %lld scores", (long long)cap);
        c->score = s;
        c->cap = cap;
    }
    float s, e;
    phrex_filter_logits(c->f, v, 1, &s, &e);
    c->score[c->n++] = s > e ? s : e;
    return PHREX_OK;
}

static int report(encoder_ctx *E, const phrex_squad_windows *valid, const phrex_filter *f, const options *o) {
    score_ctx sc = {f, NULL, 0, 0};
    int rc = encode_split(E, valid, o->max_paragraphs, score_piece, &sc);
    if (rc) {
        free(sc.score);
        return rc;
    }
    // Paragraph piece offsets into sc.score: pieces come out paragraph by paragraph.
    int n_par = (int)phrex_squad_windows_stats(valid)->paragraphs, n_ex = phrex_squad_windows_count(valid);
    if (o->max_paragraphs > 0 && o->max_paragraphs < n_par) n_par = o->max_paragraphs;
    while (n_ex > 0 && phrex_squad_windows_example(valid, n_ex - 1)->paragraph >= n_par) n_ex--; // grouped by paragraph
    int64_t *base = malloc((size_t)(n_par + 1) * sizeof *base);
    if (!base) {
        free(sc.score);
        return phrex_fail(PHREX_ERR_MEMORY, "out of memory");
    }
    base[0] = 0;
    for (int p = 0; p < n_par; p++) base[p + 1] = base[p] + phrex_squad_windows_paragraph(valid, p)->n_pieces;
    if (base[n_par] != sc.n) rc = phrex_fail(PHREX_ERR_INTERNAL, "scored %lld pieces of %lld", (long long)sc.n, (long long)base[n_par]);
    printf("| threshold | tokens kept | answers kept (start and end) | starts kept | ends kept |\n");
    printf("|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < o->n_thresholds && !rc; i++) {
        float th = o->thresholds[i];
        int64_t kept = 0, both = 0, st = 0, en = 0;
        for (int64_t k = 0; k < sc.n; k++) kept += sc.score[k] > th;
        for (int x = 0; x < n_ex; x++) {
            const phrex_squad_example *e = phrex_squad_windows_example(valid, x);
            const phrex_squad_window *w = phrex_squad_windows_window(valid, e->window);
            int64_t b = base[e->paragraph];
            int a = sc.score[b + w->piece_start + e->gold_start - 1] > th;
            int z = sc.score[b + w->piece_start + e->gold_end - 1] > th;
            st += a, en += z, both += a && z;
        }
        printf("| %g | %.1f%% | %.1f%% | %.1f%% | %.1f%% |\n", (double)th, 100.0 * (double)kept / (double)(sc.n ? sc.n : 1),
               100.0 * (double)both / (n_ex ? n_ex : 1), 100.0 * (double)st / (n_ex ? n_ex : 1),
               100.0 * (double)en / (n_ex ? n_ex : 1));
    }
    printf("(%lld validation tokens, %d gold answers)\n", (long long)sc.n, n_ex);
    free(base);
    free(sc.score);
    return rc;
}

// --- entry point ------------------------------------------------------------

static int run(const options *o) {
    const char *phrase = phrex_cli_phrase_encoder_dir("train-filter", o->model_dir);
    if (!phrase) return 1;
    char phrase_dir[4096];
    snprintf(phrase_dir, sizeof phrase_dir, "%s", phrase);
    encoder_ctx E = {0};
    phrex_squad_windows *train = NULL, *valid = NULL;
    rows r = {0};
    phrex_filter f = {0};
    uint64_t model_hash;
    int rc = phrex_dump_model_hash(o->model_dir, &model_hash);
    if (!rc) rc = phrex_embedder_init(&E.emb, phrase_dir, BATCH_TOKENS);
    if (!rc) {
        E.C = phrex_embedder_config(E.emb)->hidden_size;
        E.ids = malloc(BATCH_TOKENS * sizeof *E.ids);
        E.seq_lens = malloc(BATCH_TOKENS * sizeof *E.seq_lens);
        E.hidden = malloc((size_t)BATCH_TOKENS * (size_t)E.C * sizeof(float));
        if (!E.ids || !E.seq_lens || !E.hidden) rc = phrex_fail(PHREX_ERR_MEMORY, "cannot allocate a batch");
    }
    const phrex_wordpiece *wp = rc ? NULL : phrex_embedder_tokenizer(E.emb);
    if (!rc) rc = load_split(o->train_titles, o, wp, &train);
    if (!rc) rc = load_split(o->valid_titles, o, wp, &valid);
    double t0 = phrex_now_seconds();
    collect_ctx cc = {&r, E.C, o->neg_rate, o->t.seed ^ 0x6e6567ull};
    if (!rc) rc = encode_split(&E, train, o->max_paragraphs, collect, &cc);
    double loss = 0;
    if (!rc) {
        fprintf(stderr, "train-filter: %lld training tokens encoded in %.1f s; training on %lld (negatives at rate %g)\n",
                (long long)r.tokens, phrex_now_seconds() - t0, (long long)r.n, (double)o->neg_rate);
        rc = phrex_filter_init(&f, E.C, model_hash);
    }
    if (!rc) rc = phrex_filter_train(&f, r.x, r.start, r.end, r.weight, r.n, &o->t, &loss);
    if (!rc) rc = phrex_filter_save(&f, o->out);
    if (!rc) {
        char name[64];
        phrex_filter_name(&f, 0, name, sizeof name);
        fprintf(stderr, "train-filter: wrote %s (%s; last epoch loss %.4f per token)\n", o->out, name, loss);
        printf("Phrase filter %s on %s, validation articles %s:\n\n", o->out, o->model_dir, o->valid_titles);
        rc = report(&E, valid, &f, o);
    }
    phrex_filter_free(&f);
    rows_free(&r);
    phrex_squad_windows_free(train);
    phrex_squad_windows_free(valid);
    free(E.ids);
    free(E.seq_lens);
    free(E.hidden);
    free(E.gold);
    phrex_embedder_free(E.emb);
    if (rc) {
        fprintf(stderr, "phrex train-filter: %s\n", phrex_last_error());
        return 1;
    }
    return 0;
}

int cmd_train_filter(int argc, char **argv) {
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    phrex_set_threads(o.threads);
    return run(&o);
}
