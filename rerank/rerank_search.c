#include "rerank_search.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/progress.h"
#include "common/threads.h"
#include "rerank/combine.h"

// Calibration candidates: copies of the probes' top results (real passages
// of this dump with their best phrase), cycled to make up k pairs.
typedef struct {
    char *question;
    size_t question_len;
    phrex_rerank_candidate *cands;
    char **texts, **titles;
    int n, cap;
} sample_set;

struct phrex_reranking {
    phrex_reranker *model;
    char dir[4096];
    int fixed_k;
    int k, max_results;
    double budget_ms, base_p95;
    float weight;
    char calibration_path[4096];
};

struct phrex_rerank_search {
    const phrex_reranking *r;
    phrex_rerank_worker *worker;
    phrex_rerank_candidate *cands;  // (max_results)
    float *retrieval, *ce;          // (max_results)
    int *order;                     // (max_results)
    phrex_search_result *results;   // (max_results)
    int last_n;
};

const char *const phrex_rerank_probe_questions[] = {
    "who wrote the declaration of independence",
    "when did the second world war end",
    "what is the capital city of the country with the largest population in europe",
    "how many moons does jupiter have",
    "where was the first university in the world founded",
    "which river flows through the city of cairo",
    "what causes the seasons on earth",
    "who was the first person to walk on the moon and in which year did it happen",
    "what language is spoken in brazil",
    "when was the printing press invented",
    "who painted the mona lisa",
    "what is the largest organ of the human body",
    "how tall is mount everest",
    "which team won the first football world cup",
    "what does dna stand for",
    "who discovered penicillin",
};
const int phrex_rerank_n_probe_questions =
    (int)(sizeof phrex_rerank_probe_questions / sizeof phrex_rerank_probe_questions[0]);

// --- the shared part ------------------------------------------------------------------

int phrex_reranking_init(phrex_reranking **out, const phrex_rerank_options *o) {
    *out = NULL;
    if (o->k < 0) return phrex_fail(PHREX_ERR_INPUT, "rerank k must be >= 0, got %d", o->k);
    if (o->k == 0 && !(o->budget_ms > 0))
        return phrex_fail(PHREX_ERR_INPUT, "the latency budget must be > 0 ms, got %g", o->budget_ms);
    if (o->max_results < 1) return phrex_fail(PHREX_ERR_INPUT, "max_results must be >= 1, got %d", o->max_results);
    if (o->weight_set && !(o->weight >= 0 && isfinite(o->weight)))
        return phrex_fail(PHREX_ERR_INPUT, "the rerank weight must be a finite number >= 0, got %g", o->weight);
    phrex_reranking *r = calloc(1, sizeof *r);
    if (!r) return phrex_fail(PHREX_ERR_MEMORY, "out of memory");
    r->k = o->k < o->max_results ? o->k : o->max_results;
    r->fixed_k = o->k > 0;
    snprintf(r->dir, sizeof r->dir, "%s", o->dir);
    r->max_results = o->max_results;
    r->budget_ms = o->budget_ms;
    r->weight = PHREX_COMBINE_DEFAULT_WEIGHT;
    int rc = phrex_reranker_init(&r->model, o->dir);
    int found = 0;
    if (!rc && !o->weight_set) rc = phrex_combine_read_weight(o->dir, &r->weight, &found);
    if (!rc && o->weight_set) r->weight = o->weight;
    if (!rc && o->calibration_path) snprintf(r->calibration_path, sizeof r->calibration_path, "%s", o->calibration_path);
    if (rc) {
        phrex_reranking_free(r);
        return rc;
    }
    *out = r;
    return PHREX_OK;
}

void phrex_reranking_free(phrex_reranking *r) {
    if (!r) return;
    phrex_reranker_free(r->model);
    free(r);
}

const phrex_reranker *phrex_reranking_model(const phrex_reranking *r) { return r->model; }
int phrex_reranking_k(const phrex_reranking *r) { return r->k; }
float phrex_reranking_weight(const phrex_reranking *r) { return r->weight; }
void phrex_reranking_set_weight(phrex_reranking *r, float w) { r->weight = w; }
double phrex_reranking_base_p95(const phrex_reranking *r) { return r->base_p95; }
double phrex_reranking_budget_ms(const phrex_reranking *r) { return r->fixed_k ? 0 : r->budget_ms; }

// --- planning: probes, calibration, k ----------------------------------------------------

static void sample_free(sample_set *s) {
    for (int i = 0; i < s->n; i++) free(s->texts[i]), free(s->titles[i]);
    free(s->texts), free(s->titles), free(s->cands), free(s->question);
    memset(s, 0, sizeof *s);
}

static int sample_add(sample_set *s, const phrex_search_result *res) {
    if (s->n == s->cap) return PHREX_OK;
    char *text = malloc(res->context_len + 1), *title = strdup(res->title ? res->title : "");
    if (!text || !title) {
        free(text), free(title);
        return phrex_fail(PHREX_ERR_MEMORY, "out of memory for calibration passages");
    }
    memcpy(text, res->context, res->context_len);
    text[res->context_len] = '\0';
    s->texts[s->n] = text, s->titles[s->n] = title;
    s->cands[s->n] = (phrex_rerank_candidate){title, strlen(title), text, res->context_len, res->answer_start,
                                               res->answer_end};
    s->n++;
    return PHREX_OK;
}

typedef struct {
    phrex_rerank_worker *w;
    const sample_set *s;
    phrex_rerank_candidate *cands; // (max_k)
    float *scores;                 // (max_k)
} measure_ctx;

static int measure_k(void *p, int k, double *ms) {
    measure_ctx *m = p;
    for (int i = 0; i < k; i++) m->cands[i] = m->s->cands[i % m->s->n];
    double t0 = phrex_now_seconds();
    int rc = phrex_rerank_score(m->w, m->s->question, m->s->question_len, m->cands, k, m->scores);
    *ms = 1e3 * (phrex_now_seconds() - t0);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Searches every probe (timed: encode + search), keeping their results as
// calibration passages; *p95 gets the p95 latency.
static int run_probes(phrex_searcher *s, const phrex_search_options *so, const char *const *qs, const size_t *lens,
                      int n, sample_set *sample, double *p95) {
    phrex_search *h = NULL;
    double *lat = malloc((size_t)n * sizeof *lat);
    int rc = lat ? phrex_search_init(&h, s, so) : phrex_fail(PHREX_ERR_MEMORY, "out of memory");
    // One untimed search first: the first touches of the index and the
    // model's pages are not a question's latency.
    phrex_search_output out;
#define LEN(i) (lens ? lens[i] : strlen(qs[i]))
    if (!rc) rc = phrex_search_question(h, qs[0], LEN(0), &out);
    for (int i = 0; i < n && !rc; i++) {
        double t0 = phrex_now_seconds();
        rc = phrex_search_question(h, qs[i], LEN(i), &out);
        lat[i] = 1e3 * (phrex_now_seconds() - t0);
        for (int j = 0; j < out.n && !rc; j++) rc = sample_add(sample, &out.results[j]);
        if (rc) rc = phrex_fail_context(rc, "probe question %d", i + 1);
    }
    if (!rc && sample->n == 0) rc = phrex_fail(PHREX_ERR_INPUT, "the probe questions found no passages to calibrate on");
    if (!rc) {
        qsort(lat, (size_t)n, sizeof *lat, cmp_double);
        *p95 = phrex_budget_percentile(lat, n, 95);
        if (!(sample->question = strndup(qs[0], LEN(0)))) rc = phrex_fail(PHREX_ERR_MEMORY, "out of memory");
        sample->question_len = LEN(0);
    }
#undef LEN
    phrex_search_free(h);
    free(lat);
    return rc;
}

static int calibrate(phrex_reranking *r, const sample_set *sample, int threads, phrex_budget_calibration *cal) {
    phrex_budget_key key;
    phrex_budget_key_fill(&key, phrex_reranker_hash(r->model), threads, phrex_reranker_max_seq_len(r->model), "dump");
    if (!r->calibration_path[0]) {
        int rc = phrex_budget_default_path(r->calibration_path, sizeof r->calibration_path, &key);
        if (rc) return rc;
    }
    measure_ctx m = {NULL, sample, malloc((size_t)r->max_results * sizeof *m.cands),
                     malloc((size_t)r->max_results * sizeof *m.scores)};
    int rc = m.cands && m.scores ? phrex_rerank_worker_init(&m.w, r->model, r->max_results)
                                 : phrex_fail(PHREX_ERR_MEMORY, "out of memory");
    if (!rc) rc = phrex_budget_calibrate(r->calibration_path, &key, measure_k, &m, r->max_results, cal, NULL);
    phrex_rerank_worker_free(m.w);
    free(m.cands), free(m.scores);
    return rc;
}

int phrex_reranking_plan(phrex_reranking *r, phrex_searcher *s, const phrex_search_options *so,
                         const char *const *questions, const size_t *lens, int n, int threads) {
    if (r->k > 0) return PHREX_OK;
    if (n < 1) return phrex_fail(PHREX_ERR_INPUT, "the latency budget needs probe questions");
    int saved = phrex_get_threads();
    phrex_set_threads(threads);
    sample_set sample = {0};
    sample.cap = 4 * r->max_results;
    sample.cands = calloc((size_t)sample.cap, sizeof *sample.cands);
    sample.texts = calloc((size_t)sample.cap, sizeof *sample.texts);
    sample.titles = calloc((size_t)sample.cap, sizeof *sample.titles);
    int rc = sample.cands && sample.texts && sample.titles ? PHREX_OK : phrex_fail(PHREX_ERR_MEMORY, "out of memory");
    phrex_budget_calibration cal;
    if (!rc) rc = run_probes(s, so, questions, lens, n, &sample, &r->base_p95);
    if (!rc) rc = calibrate(r, &sample, threads, &cal);
    if (!rc) rc = phrex_budget_choose_k(&cal, r->budget_ms, r->base_p95, r->max_results, &r->k);
    // One candidate cannot be reordered: scoring it would only spend time and
    // replace its score by the combined one, out of line with the rest.
    if (!rc && r->k == 1) r->k = 0;
    sample_free(&sample);
    phrex_set_threads(saved);
    return rc;
}

// --- per thread ----------------------------------------------------------------------------

int phrex_rerank_search_init(phrex_rerank_search **out, const phrex_reranking *r) {
    *out = NULL;
    phrex_rerank_search *rs = calloc(1, sizeof *rs);
    if (!rs) return phrex_fail(PHREX_ERR_MEMORY, "out of memory");
    rs->r = r;
    size_t n = (size_t)r->max_results;
    rs->cands = calloc(n, sizeof *rs->cands);
    rs->retrieval = calloc(n, sizeof *rs->retrieval);
    rs->ce = calloc(n, sizeof *rs->ce);
    rs->order = calloc(n, sizeof *rs->order);
    rs->results = calloc(n, sizeof *rs->results);
    int rc = rs->cands && rs->retrieval && rs->ce && rs->order && rs->results
                 ? PHREX_OK
                 : phrex_fail(PHREX_ERR_MEMORY, "out of memory for %zu rerank candidates", n);
    // A worker sized for k pairs (at least 1, so that a k chosen as 0 still
    // gets a valid handle).
    if (!rc) rc = phrex_rerank_worker_init(&rs->worker, r->model, r->k > 0 ? r->k : 1);
    if (rc) {
        phrex_rerank_search_free(rs);
        return rc;
    }
    *out = rs;
    return PHREX_OK;
}

void phrex_rerank_search_free(phrex_rerank_search *rs) {
    if (!rs) return;
    phrex_rerank_worker_free(rs->worker);
    free(rs->cands), free(rs->retrieval), free(rs->ce), free(rs->order), free(rs->results);
    free(rs);
}

int phrex_rerank_search_apply(phrex_rerank_search *rs, const char *question, size_t len, phrex_search_output *out,
                              double *rerank_ms) {
    double t0 = phrex_now_seconds();
    int n = out->n < rs->r->max_results ? out->n : rs->r->max_results;
    int k = rs->r->k < n ? rs->r->k : n;
    rs->last_n = 0;
    if (rerank_ms) *rerank_ms = 0;
    if (k <= 0) return PHREX_OK;
    for (int i = 0; i < k; i++) {
        const phrex_search_result *res = &out->results[i];
        rs->cands[i] = (phrex_rerank_candidate){res->title, res->title ? strlen(res->title) : 0, res->context,
                                                res->context_len, res->answer_start, res->answer_end};
        rs->retrieval[i] = res->score;
    }
    int rc = phrex_rerank_score(rs->worker, question, len, rs->cands, k, rs->ce);
    if (rc) return phrex_fail_context(rc, "reranking");
    phrex_combine_rank(rs->retrieval, rs->ce, k, rs->r->weight, rs->order);
    for (int i = 0; i < k; i++) {
        rs->results[i] = out->results[rs->order[i]];
        rs->results[i].score = phrex_combine_score(rs->retrieval[rs->order[i]], rs->ce[rs->order[i]], rs->r->weight);
    }
    for (int i = k; i < n; i++) rs->results[i] = out->results[i];
    out->results = rs->results;
    out->n = n;
    rs->last_n = k;
    if (rerank_ms) *rerank_ms = 1e3 * (phrex_now_seconds() - t0);
    return PHREX_OK;
}

int phrex_rerank_search_last(const phrex_rerank_search *rs, const float **retrieval, const float **ce,
                             const int **order) {
    if (retrieval) *retrieval = rs->retrieval;
    if (ce) *ce = rs->ce;
    if (order) *order = rs->order;
    return rs->last_n;
}

// --- flags ---------------------------------------------------------------------------------

static int parse_number(const char *text, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end != '\0' || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int phrex_rerank_flags_parse(phrex_rerank_flags *f, int opt, const char *arg, const char *cmd) {
    double v;
    char *end;
    long k;
    switch (opt) {
    case PHREX_RERANK_OPT_RERANKER: f->dir = arg; return 0;
    case PHREX_RERANK_OPT_NO_RERANK: f->no_rerank = 1; return 0;
    case PHREX_RERANK_OPT_CALIBRATION: f->calibration = arg; return 0;
    case PHREX_RERANK_OPT_BUDGET:
        if (parse_number(arg, &v) || !(v > 0)) {
            fprintf(stderr, "%s: --budget-ms expects a latency budget > 0 ms, got '%s'\n", cmd, arg);
            return 2;
        }
        f->budget_ms = v, f->budget_set = 1;
        return 0;
    case PHREX_RERANK_OPT_WEIGHT:
        if (parse_number(arg, &v) || v < 0) {
            fprintf(stderr, "%s: --rerank-weight expects a number >= 0, got '%s'\n", cmd, arg);
            return 2;
        }
        f->weight = (float)v, f->weight_set = 1;
        return 0;
    case PHREX_RERANK_OPT_K:
        errno = 0;
        k = strtol(arg, &end, 10);
        if (errno || end == arg || *end != '\0' || k < 1 || k > 1000) {
            fprintf(stderr, "%s: --rerank-k expects an integer in [1, 1000], got '%s'\n", cmd, arg);
            return 2;
        }
        f->k = (int)k;
        return 0;
    }
    fprintf(stderr, "%s: unknown reranking option\n", cmd);
    return 2;
}

void phrex_rerank_flags_help(FILE *out) {
    fprintf(out,
            "  --reranker DIR       cross-encoder reranker (default: $PHREX_RERANKER or %s when\n"
            "                       it exists; otherwise no reranking; PHREX_RERANKER=none: no default)\n"
            "  --no-rerank          no reranking, even with a default reranker\n"
            "  --budget-ms MS       p95 latency budget for encode + search + rerank (default %g): the\n"
            "                       number of results reranked is chosen to fit (calibrated once per machine)\n"
            "  --rerank-k K         rerank exactly the top K results instead\n"
            "  --rerank-weight W    final score = retrieval + W * reranker (default: the reranker's json, else %g)\n"
            "  --calibration FILE   reranker cost calibration (default under ~/.cache/phrex)\n",
            PHREX_RERANK_DEFAULT_DIR, PHREX_RERANK_DEFAULT_BUDGET_MS, (double)PHREX_COMBINE_DEFAULT_WEIGHT);
}

int phrex_reranking_from_flags(phrex_reranking **out, const phrex_rerank_flags *f, int max_results) {
    *out = NULL;
    if (f->no_rerank) return PHREX_OK;
    const char *dir = f->dir;
    if (!dir) {
        const char *env = getenv("PHREX_RERANKER");
        struct stat st;
        if (env && !strcmp(env, "none")) return PHREX_OK; // no default reranker asked for
        dir = env && *env ? env : f->default_dir ? f->default_dir : PHREX_RERANK_DEFAULT_DIR;
        if (stat(dir, &st) != 0) return PHREX_OK; // no default reranker here: no reranking
    }
    phrex_rerank_options o = {dir, f->k, f->budget_set ? f->budget_ms : PHREX_RERANK_DEFAULT_BUDGET_MS,
                              f->weight_set, f->weight, max_results, f->calibration};
    return phrex_reranking_init(out, &o);
}

void phrex_reranking_describe(const phrex_reranking *r, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "reranker %s (%d layers), k %d", r->dir, phrex_reranker_layers(r->model), r->k);
    if (n >= 0 && (size_t)n < cap && !r->fixed_k)
        n += snprintf(buf + n, cap - (size_t)n, " (budget %g ms, encode + search p95 %.1f ms)", r->budget_ms,
                      r->base_p95);
    if (n >= 0 && (size_t)n < cap) snprintf(buf + n, cap - (size_t)n, ", weight %g", (double)r->weight);
}
