// phrex rerank-eval: the shallow cross-encoder protocol of Petrov et al.
// (ECIR 2024) on TREC Deep Learning 2019/2020 passage ranking.
//
// For every judged query of a first-stage run (BM25 by default), the top k
// passages are scored by the reranker ([CLS] query [SEP] passage [SEP], no
// span marks) and reordered by that score (or by first-stage + w * score
// with --rerank-weight); passages below k keep their first-stage order
// after them. Quality is nDCG@10 with linear gains, as trec_eval
// -m ndcg_cut.10 (data/ndcg.h); latency is the wall time of reranking one
// query (tokenise + forward + sort) at --threads, the first stage being
// read from the run file (add its cost with --first-stage-ms).
//
// Modes:
//   --k K            rerank the top K (0: the first stage alone)
//   --budget-ms MS   K chosen from a saved calibration (rerank/budget.h) as
//                    the largest K whose predicted p95 fits
//   --budgets LIST   the paper's sweep: every K of the grid up to --depth is
//                    run and timed; each budget takes the largest K whose
//                    measured mean latency fits (the paper's rule), and the
//                    table shows its nDCG@10 (and p95, for the stricter rule)
// Output: a table on stdout; with --out DIR, DIR/summary.json and, for --k
// or --budget-ms, DIR/reranked.trec (a TREC run for trec_eval).
#include "tools/cli.h"
#include "tools/cli_util.h"

#include "common/error.h"
#include "common/json_write.h"
#include "common/progress.h"
#include "common/threads.h"
#include "data/ndcg.h"
#include "data/trec.h"
#include "rerank/budget.h"
#include "rerank/combine.h"
#include "rerank/reranker.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_BUDGETS 32
#define NDCG_K 10

typedef struct {
    const char *reranker, *topics, *qrels, *run, *collection, *out, *calibration;
    int k, depth, threads, limit, weight_set;
    double budget_ms, first_stage_ms;
    double budgets[MAX_BUDGETS];
    int n_budgets;
    float weight;
} re_options;

// One measured setting: K with its quality and latency over the queries.
typedef struct {
    int k;
    double ndcg, mean_ms, p95_ms;
} re_row;

static void print_help(FILE *f) {
    fprintf(f,
            "usage: phrex rerank-eval --reranker DIR --qrels F --run F [options]\n\n"
            "Reranks a first-stage run (TREC DL) with a cross-encoder and reports nDCG@10\n"
            "(linear gains, as trec_eval) and the reranking latency per query.\n\n"
            "  --reranker DIR       reranker folder (phrex_reranker.json); not needed with --k 0\n"
            "  --qrels F            TREC qrels (qid 0 pid grade)\n"
            "  --run F              first-stage run: TREC run file, or rank_llm *.retrieve_results.json\n"
            "                       (which carries queries and passages)\n"
            "  --topics F           queries (qid<TAB>query); needed for a TREC run file\n"
            "  --collection F       passages (pid<TAB>passage); needed for a TREC run file\n"
            "  --k K                rerank the top K (default 100 = --depth; 0: first stage alone)\n"
            "  --budget-ms MS       choose K from the calibrated reranker cost (p95 within MS)\n"
            "  --budgets LIST       sweep every K of the grid and pick K per budget, e.g. 5,10,25,50,100\n"
            "  --depth N            first-stage candidates considered (default 100)\n"
            "  --first-stage-ms MS  first-stage latency to add to the budget (default 0)\n"
            "  --rerank-weight W    order by first-stage + W * reranker score (default: reranker alone)\n"
            "  --threads N          threads for one query (default: all cores)\n"
            "  --limit N            the first N judged queries only\n"
            "  --calibration FILE   calibration file for --budget-ms (default under ~/.cache/phrex)\n"
            "  --out DIR            write DIR/summary.json (and DIR/reranked.trec)\n");
}

static int parse_double(const char *name, const char *text, double lo, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end != '\0' || !isfinite(v) || !(v > lo)) {
        fprintf(stderr, "phrex rerank-eval: %s expects a number > %g, got '%s'\n", name, lo, text);
        return 2;
    }
    *out = v;
    return 0;
}

static int parse_budgets(re_options *o, const char *text) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", text);
    o->n_budgets = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->n_budgets == MAX_BUDGETS) {
            fprintf(stderr, "phrex rerank-eval: --budgets takes at most %d values\n", MAX_BUDGETS);
            return 2;
        }
        if (parse_double("--budgets", tok, 0, &o->budgets[o->n_budgets++])) return 2;
    }
    if (o->n_budgets == 0) {
        fprintf(stderr, "phrex rerank-eval: --budgets expects a list such as 5,10,25\n");
        return 2;
    }
    return 0;
}

static int parse_option(re_options *o, int opt, const char *arg) {
    double w;
    switch (opt) {
    case 'r': o->reranker = arg; return 0;
    case 't': o->topics = arg; return 0;
    case 'q': o->qrels = arg; return 0;
    case 'R': o->run = arg; return 0;
    case 'c': o->collection = arg; return 0;
    case 'o': o->out = arg; return 0;
    case 'C': o->calibration = arg; return 0;
    case 'k': return phrex_cli_parse_int("--k", arg, 0, 1000, &o->k);
    case 'D': return phrex_cli_parse_int("--depth", arg, 1, 1000, &o->depth);
    case 'j': return phrex_cli_parse_int("--threads", arg, 1, 1024, &o->threads);
    case 'l': return phrex_cli_parse_int("--limit", arg, 1, INT_MAX, &o->limit);
    case 'b': return parse_double("--budget-ms", arg, 0, &o->budget_ms);
    case 'B': return parse_budgets(o, arg);
    case 'f': return parse_double("--first-stage-ms", arg, -1e-300, &o->first_stage_ms);
    case 'w':
        if (parse_double("--rerank-weight", arg, -1e-300, &w)) return 2;
        o->weight = (float)w;
        o->weight_set = 1;
        return 0;
    default: print_help(stderr); return 2;
    }
}

static int parse_options(int argc, char **argv, re_options *o) {
    static const struct option longopts[] = {
        {"reranker", required_argument, 0, 'r'},  {"topics", required_argument, 0, 't'},
        {"qrels", required_argument, 0, 'q'},     {"run", required_argument, 0, 'R'},
        {"collection", required_argument, 0, 'c'}, {"out", required_argument, 0, 'o'},
        {"calibration", required_argument, 0, 'C'}, {"k", required_argument, 0, 'k'},
        {"depth", required_argument, 0, 'D'},     {"threads", required_argument, 0, 'j'},
        {"limit", required_argument, 0, 'l'},     {"budget-ms", required_argument, 0, 'b'},
        {"budgets", required_argument, 0, 'B'},   {"first-stage-ms", required_argument, 0, 'f'},
        {"rerank-weight", required_argument, 0, 'w'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->k = -1;
    o->depth = 100;
    int opt, rc;
    opterr = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt == 'h') {
            print_help(stdout);
            return -1;
        }
        if ((rc = parse_option(o, opt, optarg))) return rc;
    }
    if (optind != argc) {
        fprintf(stderr, "phrex rerank-eval: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->qrels || !o->run) {
        fprintf(stderr, "phrex rerank-eval: --qrels and --run are required\n\n");
        print_help(stderr);
        return 2;
    }
    int modes = (o->k >= 0) + (o->budget_ms > 0) + (o->n_budgets > 0);
    if (modes > 1) {
        fprintf(stderr, "phrex rerank-eval: give one of --k, --budget-ms and --budgets\n");
        return 2;
    }
    if (modes == 0) o->k = o->depth;
    if (o->k > o->depth) o->k = o->depth;
    if (!o->reranker && o->k != 0) {
        fprintf(stderr, "phrex rerank-eval: --reranker is required (or --k 0 for the first stage alone)\n");
        return 2;
    }
    return 0;
}

// --- data ------------------------------------------------------------------------

typedef struct {
    phrex_qrels *qrels;
    phrex_trec_run *run;
    phrex_trec_topics *topics;
    phrex_trec_collection *collection;
    const phrex_trec_query **queries; // judged, with at most --limit
    size_t n;
    int depth; // max hits over the queries (<= --depth)
} re_data;

static void free_data(re_data *d) {
    phrex_qrels_free(d->qrels);
    phrex_trec_run_free(d->run);
    phrex_trec_topics_free(d->topics);
    phrex_trec_collection_free(d->collection);
    free(d->queries);
}

static int load_data(const re_options *o, re_data *d) {
    int rc = phrex_qrels_load(&d->qrels, o->qrels);
    if (!rc) rc = phrex_trec_run_load(&d->run, o->run);
    if (!rc && o->topics && !(rc = phrex_trec_topics_load(&d->topics, o->topics)))
        rc = phrex_trec_run_attach_queries(d->run, d->topics);
    if (!rc && o->collection && !(rc = phrex_trec_collection_load(&d->collection, o->collection)))
        rc = phrex_trec_run_attach_texts(d->run, d->collection);
    if (rc) return rc;
    size_t n = phrex_trec_run_count(d->run);
    if (!(d->queries = calloc(n ? n : 1, sizeof *d->queries))) return phrex_fail(PHREX_ERR_MEMORY, "out of memory");
    for (size_t i = 0; i < n && (!o->limit || d->n < (size_t)o->limit); i++) {
        const phrex_trec_query *q = phrex_trec_run_query(d->run, i);
        if (!phrex_qrels_has_query(d->qrels, q->qid)) continue;
        if (o->k != 0 && !q->query)
            return phrex_fail(PHREX_ERR_INPUT, "%s: query %s has no text: give --topics", o->run, q->qid);
        for (int h = 0; o->k != 0 && h < q->n_hits && h < o->depth; h++)
            if (!q->hits[h].text)
                return phrex_fail(PHREX_ERR_INPUT, "%s: query %s: passage %s has no text: give --collection", o->run,
                                  q->qid, q->hits[h].pid);
        int m = q->n_hits < o->depth ? q->n_hits : o->depth;
        if (m > d->depth) d->depth = m;
        d->queries[d->n++] = q;
    }
    if (d->n == 0) return phrex_fail(PHREX_ERR_INPUT, "%s: no query of the run is judged in %s", o->run, o->qrels);
    return PHREX_OK;
}

// --- reranking ---------------------------------------------------------------------

typedef struct {
    const re_options *o;
    const re_data *d;
    phrex_reranker *model;
    phrex_rerank_worker *worker;
    phrex_rerank_candidate *cands; // (depth)
    float *first, *ce;             // (depth)
    int *order;                    // (depth)
    const char **pids;             // (depth)
    double *lat;                   // (n queries)
} re_ctx;

// Reranks one query's top k into ctx->pids (the final order, depth long);
// *ms gets the reranking time.
static int rerank_query(re_ctx *c, const phrex_trec_query *q, int k, double *ms) {
    int m = q->n_hits < c->d->depth ? q->n_hits : c->d->depth;
    if (k > m) k = m;
    double t0 = phrex_now_seconds();
    for (int i = 0; i < k; i++) {
        const phrex_trec_hit *h = &q->hits[i];
        c->cands[i] = (phrex_rerank_candidate){NULL, 0, h->text, h->text_len, -1, -1};
        c->first[i] = (float)h->score;
    }
    int rc = k > 0 ? phrex_rerank_score(c->worker, q->query, strlen(q->query), c->cands, k, c->ce) : PHREX_OK;
    if (rc) return phrex_fail_context(rc, "query %s", q->qid);
    // Reranker alone: w large against a zeroed first stage is the same
    // order as sorting by ce; written as the combine rule with w = 1.
    if (!c->o->weight_set)
        for (int i = 0; i < k; i++) c->first[i] = 0;
    phrex_combine_rank(c->first, c->ce, k, c->o->weight_set ? c->o->weight : 1.0f, c->order);
    for (int i = 0; i < k; i++) c->pids[i] = q->hits[c->order[i]].pid;
    for (int i = k; i < m; i++) c->pids[i] = q->hits[i].pid;
    *ms = 1e3 * (phrex_now_seconds() - t0);
    return PHREX_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Runs every query at one k: nDCG@10 and latency; with `trec` also writes
// the final ranking as a TREC run.
static int run_k(re_ctx *c, int k, re_row *row, FILE *trec) {
    memset(row, 0, sizeof *row);
    row->k = k;
    char label[64];
    snprintf(label, sizeof label, "rerank k=%d", k);
    phrex_progress prog;
    phrex_progress_init(&prog, label, "queries", (int64_t)c->d->n);
    int rc = PHREX_OK;
    for (size_t i = 0; i < c->d->n && !rc; i++) {
        const phrex_trec_query *q = c->d->queries[i];
        if ((rc = rerank_query(c, q, k, &c->lat[i]))) break;
        int m = q->n_hits < c->d->depth ? q->n_hits : c->d->depth;
        row->ndcg += phrex_ndcg_ranked(c->d->qrels, q->qid, c->pids, m, NDCG_K);
        for (int r = 0; trec && r < m; r++)
            fprintf(trec, "%s Q0 %s %d %d phrex-k%d\n", q->qid, c->pids[r], r + 1, m - r, k);
        phrex_progress_add(&prog, 1, NULL);
    }
    phrex_progress_finish(&prog);
    if (rc) return rc;
    size_t n = c->d->n;
    for (size_t i = 0; i < n; i++) row->mean_ms += c->lat[i] / (double)n;
    qsort(c->lat, n, sizeof *c->lat, cmp_double);
    row->p95_ms = phrex_budget_percentile(c->lat, (int)n, 95);
    row->ndcg /= (double)n;
    return PHREX_OK;
}

// Calibration on this run's own passages (workload "trec-dl"): k pairs of
// the first queries' hits, cycled.
typedef struct {
    re_ctx *c;
    const phrex_trec_query *q;
} calib_ctx;

static int measure_k(void *p, int k, double *ms) {
    calib_ctx *m = p;
    re_ctx *c = m->c;
    size_t qi = 0;
    int h = 0;
    for (int i = 0; i < k; i++) {
        const phrex_trec_query *q = c->d->queries[qi];
        c->cands[i] = (phrex_rerank_candidate){NULL, 0, q->hits[h].text, q->hits[h].text_len, -1, -1};
        if (++h >= q->n_hits || h >= c->d->depth) h = 0, qi = (qi + 1) % c->d->n;
    }
    double t0 = phrex_now_seconds();
    int rc = phrex_rerank_score(c->worker, m->q->query, strlen(m->q->query), c->cands, k, c->ce);
    *ms = 1e3 * (phrex_now_seconds() - t0);
    return rc;
}

static int choose_k_by_budget(re_ctx *c, int threads, int *k) {
    phrex_budget_key key;
    phrex_budget_key_fill(&key, phrex_reranker_hash(c->model), threads, phrex_reranker_max_seq_len(c->model),
                          "trec-dl");
    char path[4096];
    int rc = PHREX_OK;
    if (c->o->calibration) snprintf(path, sizeof path, "%s", c->o->calibration);
    else rc = phrex_budget_default_path(path, sizeof path, &key);
    calib_ctx m = {c, c->d->queries[0]};
    phrex_budget_calibration cal;
    int measured = 0;
    if (!rc) rc = phrex_budget_calibrate(path, &key, measure_k, &m, c->d->depth, &cal, &measured);
    if (!rc) rc = phrex_budget_choose_k(&cal, c->o->budget_ms, c->o->first_stage_ms, c->d->depth, k);
    if (!rc)
        printf("calibration %s (%s): %d ms budget, first stage %.2f ms -> k = %d (predicted p95 %.2f ms)\n", path,
               measured ? "measured now" : "reused", (int)c->o->budget_ms, c->o->first_stage_ms, *k,
               phrex_budget_predict_p95(&cal, *k));
    return rc;
}

// --- output ------------------------------------------------------------------------

static void write_str(FILE *f, const char *s) { phrex_json_write_string(f, s, strlen(s)); }

static void write_row(FILE *f, const re_row *r) {
    fprintf(f, "{\"k\": %d, \"ndcg_at_10\": %.4f, \"latency_ms_mean\": %.4f, \"latency_ms_p95\": %.4f}", r->k,
            r->ndcg, r->mean_ms, r->p95_ms);
}

static int write_summary(const re_options *o, const re_data *d, const phrex_reranker *model, int threads,
                         double baseline, const re_row *rows, int n_rows, const int *picks) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/summary.json", o->out);
    FILE *f = fopen(path, "w");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    fputs("{\n  \"run\": ", f);
    write_str(f, o->run);
    fputs(",\n  \"qrels\": ", f);
    write_str(f, o->qrels);
    fputs(",\n  \"reranker\": ", f);
    if (o->reranker && model) write_str(f, o->reranker);
    else fputs("null", f);
    fprintf(f, ",\n  \"reranker_layers\": %d,\n  \"threads\": %d,\n  \"queries\": %zu,\n  \"depth\": %d,\n",
            model ? phrex_reranker_layers(model) : 0, threads, d->n, d->depth);
    fprintf(f, "  \"gain\": \"linear\",\n  \"first_stage_ndcg_at_10\": %.4f,\n", baseline);
    if (o->weight_set) fprintf(f, "  \"rerank_weight\": %.6g,\n", (double)o->weight);
    else fputs("  \"rerank_weight\": null,\n", f);
    fputs("  \"rows\": [", f);
    for (int i = 0; i < n_rows; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        write_row(f, &rows[i]);
    }
    fputs("\n  ]", f);
    if (o->n_budgets) {
        fputs(",\n  \"budgets\": [", f);
        for (int b = 0; b < o->n_budgets; b++) {
            const re_row *r = &rows[picks[b]];
            fprintf(f, "%s{\"budget_ms\": %g, \"k\": %d, \"ndcg_at_10\": %.4f, \"latency_ms_mean\": %.4f, "
                       "\"latency_ms_p95\": %.4f}",
                    b ? ",\n    " : "\n    ", o->budgets[b], r->k, r->ndcg, r->mean_ms, r->p95_ms);
        }
        fputs("\n  ]", f);
    } else if (o->budget_ms > 0) {
        fprintf(f, ",\n  \"budget_ms\": %g", o->budget_ms);
    }
    fputs("\n}\n", f);
    if (fclose(f)) return phrex_fail(PHREX_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return PHREX_OK;
}

// --- main ----------------------------------------------------------------------------


static int alloc_ctx(re_ctx *c) {
    size_t m = (size_t)c->d->depth;
    c->cands = calloc(m, sizeof *c->cands);
    c->first = calloc(m, sizeof *c->first);
    c->ce = calloc(m, sizeof *c->ce);
    c->order = calloc(m, sizeof *c->order);
    c->pids = calloc(m, sizeof *c->pids);
    c->lat = calloc(c->d->n, sizeof *c->lat);
    if (!c->cands || !c->first || !c->ce || !c->order || !c->pids || !c->lat)
        return phrex_fail(PHREX_ERR_MEMORY, "out of memory");
    return PHREX_OK;
}

static void free_ctx(re_ctx *c) {
    phrex_rerank_worker_free(c->worker);
    free(c->cands), free(c->first), free(c->ce), free(c->order), free(c->pids), free(c->lat);
}

// The sweep: every grid k up to the depth (and 0), then per budget the
// largest k whose mean latency fits.
static int sweep(re_ctx *c, re_row *rows, int *n_rows, int *picks) {
    int rc = run_k(c, 0, &rows[0], NULL);
    *n_rows = 1;
    for (int g = 0; !rc && g < PHREX_BUDGET_GRID_LEN && phrex_budget_grid[g] <= c->d->depth; g++)
        rc = run_k(c, phrex_budget_grid[g], &rows[(*n_rows)++], NULL);
    for (int b = 0; !rc && b < c->o->n_budgets; b++) {
        picks[b] = 0;
        for (int i = 1; i < *n_rows; i++)
            if (c->o->first_stage_ms + rows[i].mean_ms <= c->o->budgets[b]) picks[b] = i;
    }
    return rc;
}

static void print_rows(const re_row *rows, int n) {
    printf("  %6s %10s %10s %10s\n", "k", "nDCG@10", "mean ms", "p95 ms");
    for (int i = 0; i < n; i++)
        printf("  %6d %10.4f %10.3f %10.3f\n", rows[i].k, rows[i].ndcg, rows[i].mean_ms, rows[i].p95_ms);
}

// nDCG@10 of the first stage cut to the depth (what k = 0 gives).
static double first_stage_ndcg(const re_data *d, const char **pids) {
    double sum = 0;
    for (size_t i = 0; i < d->n; i++) {
        const phrex_trec_query *q = d->queries[i];
        int m = q->n_hits < d->depth ? q->n_hits : d->depth;
        for (int h = 0; h < m; h++) pids[h] = q->hits[h].pid;
        sum += phrex_ndcg_ranked(d->qrels, q->qid, pids, m, NDCG_K);
    }
    return sum / (double)d->n;
}

// model: NULL with --k 0 (the first stage alone).
static int run_eval(const re_options *o, re_data *d, phrex_reranker *model, int threads) {
    re_ctx c = {.o = o, .d = d, .model = model};
    re_row rows[PHREX_BUDGET_GRID_LEN + 1];
    int n_rows = 0, picks[MAX_BUDGETS], k = o->k;
    double baseline = 0;
    int rc = alloc_ctx(&c);
    if (!rc) baseline = first_stage_ndcg(d, c.pids);
    int need_model = model != NULL;
    if (!rc && need_model) rc = phrex_rerank_worker_init(&c.worker, model, d->depth);
    printf("phrex rerank-eval: %s, %zu judged queries, depth %d, %d thread%s; reranker %s (%d layers)\n", o->run, d->n,
           d->depth, threads, threads == 1 ? "" : "s", need_model ? o->reranker : "none",
           c.model ? phrex_reranker_layers(c.model) : 0);
    printf("  first stage nDCG@10 (linear gains, top %d)  %.4f\n", d->depth, baseline);
    if (!rc && o->budget_ms > 0) rc = choose_k_by_budget(&c, threads, &k);
    FILE *trec = NULL;
    if (!rc && o->out && !o->n_budgets) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/reranked.trec", o->out);
        if (!(trec = fopen(path, "w"))) rc = phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    if (!rc && o->n_budgets) rc = sweep(&c, rows, &n_rows, picks);
    else if (!rc) {
        rc = run_k(&c, k, &rows[0], trec);
        n_rows = 1;
    }
    if (trec && fclose(trec) && !rc) rc = phrex_fail(PHREX_ERR_IO, "%s/reranked.trec: write failed", o->out);
    if (!rc) print_rows(rows, n_rows);
    for (int b = 0; !rc && b < o->n_budgets; b++)
        printf("  budget %6g ms -> k %4d  nDCG@10 %.4f  mean %.3f ms  p95 %.3f ms\n", o->budgets[b],
               rows[picks[b]].k, rows[picks[b]].ndcg, rows[picks[b]].mean_ms, rows[picks[b]].p95_ms);
    if (!rc && o->out) rc = write_summary(o, d, c.model, threads, baseline, rows, n_rows, picks);
    free_ctx(&c);
    return rc;
}

int cmd_rerank_eval(int argc, char **argv) {
    re_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (o.out && mkdir(o.out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "phrex rerank-eval: %s: cannot create: %s\n", o.out, strerror(errno));
        return 1;
    }
    int threads = o.threads > 0 ? o.threads : omp_get_num_procs();
    phrex_set_threads(threads);
    re_data d = {0};
    phrex_reranker *model = NULL;
    if (o.k != 0) rc = phrex_reranker_init(&model, o.reranker); // fail fast, before reading the data
    if (!rc) rc = load_data(&o, &d);
    if (!rc) rc = run_eval(&o, &d, model, threads);
    if (rc) fprintf(stderr, "phrex rerank-eval: %s\n", phrex_last_error());
    free_data(&d);
    phrex_reranker_free(model);
    return rc ? 1 : 0;
}
