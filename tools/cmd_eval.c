// phrex eval: answers every question of a QA file (JSONL, DPR qa.csv, SQuAD
// JSON; data/qa.h) over a phrase dump and reports
//   EM and F1 of the top phrase (SQuAD normalisation, best over the gold
//     answers; with --regex, CuratedTREC's regex match and F1 = EM),
//   passage recall@1/5/20/100: a gold answer occurs (DPR has_answer) in one
//     of the top k passages, the phrase results de-duplicated by passage,
//   latency p50/p95/p99 per question (encode + search) and questions/s.
// Questions are answered by --threads workers, each with its own search
// handle and one core, taking questions as they free up; output is in file
// order whatever the thread count. --threads 1 is one question at a time on
// one core: the single-query latency. --question-threads N is one question at
// a time with N threads inside it (the two query encoders, the start and end
// searches, the reranker's batch), as `phrex ask` answers: the latency one
// user sees on an otherwise idle machine.
#include "tools/cli.h"
#include "tools/cli_util.h"

#include "common/error.h"
#include "common/json_write.h"
#include "common/progress.h"
#include "common/threads.h"
#include "data/metrics.h"
#include "data/qa.h"
#include "rerank/combine.h"
#include "rerank/rerank_search.h"
#include "search/search.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const int recall_ks[] = {1, 5, 20, 100};
#define N_RECALL 4

typedef struct {
    phrex_searcher_options so;
    phrex_search_options o;
    const char *qa_path, *out_dir;
    phrex_qa_format format;
    int threads, limit, regex;
    int question_threads; // > 0: one question at a time, this many threads inside it
    phrex_rerank_flags rf; // --reranker, --budget-ms, ... (rerank/rerank_search.h)
    int tune_weight;       // grid-search the combine weight on these questions
} eval_options;

// One question with its gold answers (copied out of the reader).
typedef struct {
    char *question;
    size_t question_len;
    char **golds;
    size_t n_golds;
    size_t line;
} eval_question;

typedef struct {
    char *prediction, *passage_id, *title, *error;
    float score;
    int em, first_hit; // first_hit: 1-based rank of the first passage with an answer, 0: none
    double f1, latency_ms, encode_ms, search_ms, rerank_ms;
    // --tune-weight: the reranked candidates, retrieval order
    int tune_n;
    float *tune_ret, *tune_ce;
    unsigned char *tune_ok;
} eval_result;

static void print_help(FILE *f) {
    fprintf(f,
            "usage: phrex eval --dump DUMP --qa FILE [options]\n\n"
            "  --dump DUMP          phrase dump built by 'phrex build'\n"
            "  --qa FILE            questions: JSONL, DPR qa.csv or SQuAD JSON\n"
            "  --format F           auto (default), jsonl, dpr-csv, squad-json\n"
            "  --out DIR            write DIR/predictions.jsonl and DIR/summary.json\n"
            "  --top-k K            passages retrieved per question (default 100)\n"
            "  --search-k K         FAISS hits per query half (default max(2K, 200))\n"
            "  --threads N          workers, one core each (default: all cores)\n"
            "  --question-threads N one question at a time with N threads inside it (as phrex ask)\n"
            "  --limit N            the first N questions only\n"
            "  --regex              answers are regexes (CuratedTREC)\n"
            "  --model DIR          the model the dump was built with (default %s)\n"
            "  --query-model DIR    query encoder (default: the phrase model)\n"
            "  --pool P             mean (default) or cls\n"
            "  --max-answer-len N   longest answer in word pieces (default 10)\n"
            "  --nprobe N           inverted lists visited (IVF dumps; default 256)\n"
            "  --tune-weight        grid-search the rerank weight on these questions (validation only)\n",
            phrex_cli_default_model_dir());
    phrex_rerank_flags_help(f);
}

static int parse_option(eval_options *e, int opt, const char *arg) {
    switch (opt) {
    case 'd': e->so.dump_dir = arg; return 0;
    case 'q': e->qa_path = arg; return 0;
    case 'f':
        if (phrex_qa_parse_format(arg, &e->format) == PHREX_OK) return 0;
        fprintf(stderr, "phrex eval: unknown --format '%s'\n", arg);
        return 2;
    case 'o': e->out_dir = arg; return 0;
    case 'k': return phrex_cli_parse_int("--top-k", arg, 1, 10000, &e->o.top_k);
    case 'K': return phrex_cli_parse_int("--search-k", arg, 1, 65536, &e->o.search_k);
    case 'j': return phrex_cli_parse_int("--threads", arg, 1, 1024, &e->threads);
    case 'J': return phrex_cli_parse_int("--question-threads", arg, 1, 1024, &e->question_threads);
    case 'l': return phrex_cli_parse_int("--limit", arg, 1, INT_MAX, &e->limit);
    case 'r': e->regex = 1; return 0;
    case 'm': e->so.model_dir = arg; return 0;
    case 'Q': e->so.query_model_dir = arg; return 0;
    case 'p':
        if (phrex_query_parse_pool(arg, &e->so.pool) == PHREX_OK) return 0;
        fprintf(stderr, "phrex eval: %s\n", phrex_last_error());
        return 2;
    case 'L': return phrex_cli_parse_int("--max-answer-len", arg, 1, 256, &e->o.max_answer_len);
    case 'n': return phrex_cli_parse_int("--nprobe", arg, 1, 1 << 20, &e->so.nprobe);
    case 'T': e->tune_weight = 1; return 0;
    default:
        if (phrex_rerank_is_opt(opt)) return phrex_rerank_flags_parse(&e->rf, opt, arg, "phrex eval");
        print_help(stderr);
        return 2;
    }
}

static int parse_options(int argc, char **argv, eval_options *e) {
    static const struct option longopts[] = {
        {"dump", required_argument, 0, 'd'},        {"qa", required_argument, 0, 'q'},
        {"format", required_argument, 0, 'f'},      {"out", required_argument, 0, 'o'},
        {"top-k", required_argument, 0, 'k'},       {"search-k", required_argument, 0, 'K'},
        {"threads", required_argument, 0, 'j'},     {"limit", required_argument, 0, 'l'},
        {"regex", no_argument, 0, 'r'},             {"model", required_argument, 0, 'm'},
        {"query-model", required_argument, 0, 'Q'}, {"pool", required_argument, 0, 'p'},
        {"max-answer-len", required_argument, 0, 'L'}, {"nprobe", required_argument, 0, 'n'},
        {"tune-weight", no_argument, 0, 'T'},       {"question-threads", required_argument, 0, 'J'},
        PHREX_RERANK_LONGOPTS,
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    memset(e, 0, sizeof *e);
    phrex_searcher_options_default(&e->so);
    phrex_search_options_default(&e->o);
    e->so.model_dir = phrex_cli_default_model_dir();
    e->rf.default_dir = phrex_cli_default_reranker_dir();
    e->o.unit = PHREX_UNIT_PASSAGE; // the top passage's best phrase is the top phrase
    e->o.top_k = 100;
    int opt, rc;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt == 'h') {
            print_help(stdout);
            return -1;
        }
        if ((rc = parse_option(e, opt, optarg))) return rc;
    }
    if (optind != argc) {
        fprintf(stderr, "phrex eval: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!e->so.dump_dir || !e->qa_path) {
        fprintf(stderr, "phrex eval: --dump and --qa are required\n\n");
        print_help(stderr);
        return 2;
    }
    return 0;
}

// --- questions ----------------------------------------------------------------

static void free_questions(eval_question *qs, size_t n) {
    for (size_t i = 0; qs && i < n; i++) {
        free(qs[i].question);
        for (size_t g = 0; g < qs[i].n_golds; g++) free(qs[i].golds[g]);
        free(qs[i].golds);
    }
    free(qs);
}

// All n bytes, NUL-terminated: a question with a NUL byte ("\u0000" in
// JSON) must reach the query checks whole, not cut at the NUL by strndup
// (which would also leave question_len past the end of the copy).
static char *copy_bytes(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n), d[n] = '\0';
    return d;
}

static int copy_question(const phrex_qa *r, eval_question *q) {
    q->question = copy_bytes(r->question, r->question_len);
    q->question_len = r->question_len;
    q->golds = calloc(r->n_answers ? r->n_answers : 1, sizeof *q->golds);
    q->line = r->line;
    if (!q->question || !q->golds) return phrex_fail(PHREX_ERR_MEMORY, "cannot hold the questions");
    for (size_t g = 0; g < r->n_answers; g++, q->n_golds++)
        if (!(q->golds[g] = strndup(r->answers[g].text, r->answers[g].len)))
            return phrex_fail(PHREX_ERR_MEMORY, "cannot hold the answers");
    return PHREX_OK;
}

static int read_questions(const eval_options *e, eval_question **out, size_t *n_out) {
    phrex_qa_options qo = {e->format, 0, 0};
    phrex_qa_reader *reader = NULL;
    int rc = phrex_qa_init(&reader, e->qa_path, &qo), has = 1;
    size_t n = 0, cap = 0;
    eval_question *qs = NULL;
    while (!rc && (!e->limit || n < (size_t)e->limit)) {
        phrex_qa r;
        if ((rc = phrex_qa_next(reader, &r, &has)) || !has) break;
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            eval_question *grown = realloc(qs, cap * sizeof *qs);
            if (!grown) {
                rc = phrex_fail(PHREX_ERR_MEMORY, "cannot hold %zu questions", cap);
                break;
            }
            qs = grown;
        }
        memset(&qs[n], 0, sizeof qs[n]);
        rc = copy_question(&r, &qs[n++]);
    }
    if (reader) phrex_qa_free(reader);
    if (!rc && n == 0) rc = phrex_fail(PHREX_ERR_INPUT, "%s: no questions", e->qa_path);
    if (rc) {
        free_questions(qs, n);
        return rc;
    }
    *out = qs;
    *n_out = n;
    return PHREX_OK;
}

// --- answering ----------------------------------------------------------------

static int passage_has_answer(const eval_options *e, const char *text, const eval_question *q) {
    const char *const *golds = (const char *const *)q->golds;
    return e->regex ? phrex_metric_has_answer_regex(text, golds, q->n_golds)
                    : phrex_metric_has_answer(text, golds, q->n_golds);
}

static void score_answers(const eval_options *e, const eval_question *q, const phrex_search_output *out,
                          eval_result *r) {
    const phrex_search_result *top = out->n ? &out->results[0] : NULL;
    const char *const *golds = (const char *const *)q->golds;
    r->prediction = strdup(top ? top->answer : "");
    r->passage_id = strdup(top ? top->passage_id : "");
    r->title = strdup(top ? top->title : "");
    r->score = top ? top->score : 0;
    if (e->regex) {
        r->em = phrex_metric_regex_match(r->prediction ? r->prediction : "", golds, q->n_golds) == 1;
        r->f1 = r->em;
    } else {
        r->em = phrex_metric_max_exact_match(r->prediction ? r->prediction : "", golds, q->n_golds) == 1;
        r->f1 = phrex_metric_max_f1(r->prediction ? r->prediction : "", golds, q->n_golds);
        if (r->f1 < 0) r->f1 = 0;
    }
    for (int i = 0; i < out->n && !r->first_hit; i++)
        if (passage_has_answer(e, out->results[i].context, q) == 1) r->first_hit = i + 1;
}

// --tune-weight: keeps the reranked candidates' scores and whether each
// candidate's phrase is right (retrieval order), for phrex_combine_tune.
static void keep_for_tuning(const eval_options *e, const eval_question *q, const phrex_rerank_search *rs,
                            const phrex_search_output *out, eval_result *r) {
    const float *ret, *ce;
    const int *order;
    int k = phrex_rerank_search_last(rs, &ret, &ce, &order);
    r->tune_ret = malloc((size_t)(k ? k : 1) * sizeof(float));
    r->tune_ce = malloc((size_t)(k ? k : 1) * sizeof(float));
    r->tune_ok = calloc((size_t)(k ? k : 1), 1);
    if (!r->tune_ret || !r->tune_ce || !r->tune_ok) return; // counted as no candidates
    const char *const *golds = (const char *const *)q->golds;
    for (int j = 0; j < k; j++) {
        const char *a = out->results[j].answer;
        r->tune_ok[order[j]] = (e->regex ? phrex_metric_regex_match(a, golds, q->n_golds)
                                         : phrex_metric_max_exact_match(a, golds, q->n_golds)) == 1;
        r->tune_ret[j] = ret[j], r->tune_ce[j] = ce[j];
    }
    r->tune_n = k;
}

static void answer_one(phrex_search *h, phrex_rerank_search *rs, const eval_options *e, const eval_question *q,
                       eval_result *r) {
    phrex_search_output out;
    double t0 = phrex_now_seconds();
    int rc = phrex_search_question(h, q->question, q->question_len, &out);
    if (!rc && rs) rc = phrex_rerank_search_apply(rs, q->question, q->question_len, &out, &r->rerank_ms);
    r->latency_ms = 1e3 * (phrex_now_seconds() - t0);
    r->encode_ms = out.encode_ms;
    r->search_ms = out.search_ms;
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s:%zu: %s", e->qa_path, q->line, phrex_last_error());
        r->error = strdup(msg);
        r->prediction = strdup("");
        r->passage_id = strdup("");
        r->title = strdup("");
        return;
    }
    score_answers(e, q, &out, r);
    if (rs && e->tune_weight) keep_for_tuning(e, q, rs, &out, r);
}

typedef struct {
    const eval_options *e;
    phrex_searcher *s;
    const eval_question *qs;
    eval_result *rs;
    size_t n;
    phrex_progress prog;
    int failed;       // a worker could not start
    char error[1024]; // its message
    const phrex_reranking *rr; // NULL: no reranking
} eval_job;

static void worker(eval_job *job) {
    phrex_search *h = NULL;
    phrex_rerank_search *rs = NULL;
    if (phrex_search_init(&h, job->s, &job->e->o) || (job->rr && phrex_rerank_search_init(&rs, job->rr))) {
        phrex_search_free(h);
        h = NULL;
#pragma omp critical(eval_error)
        if (!job->failed) {
            job->failed = 1;
            snprintf(job->error, sizeof job->error, "%s", phrex_last_error());
        }
    }
#pragma omp for schedule(dynamic, 1)
    for (size_t i = 0; i < job->n; i++) {
        if (!h) continue;
        answer_one(h, rs, job->e, &job->qs[i], &job->rs[i]);
#pragma omp critical(eval_progress)
        phrex_progress_add(&job->prog, 1, NULL);
    }
    phrex_search_free(h);
    phrex_rerank_search_free(rs);
}

// Workers run single-threaded inside (nested OpenMP regions of FAISS, the
// encoder and OpenBLAS stay inactive), so N workers use N cores; a single
// worker runs with inner_threads (--question-threads).
static int answer_all(eval_job *job, int threads, int inner_threads, double *wall_s) {
    phrex_progress_init(&job->prog, "eval", "questions", (int64_t)job->n);
    double t0 = phrex_now_seconds();
    if (threads == 1) {
        phrex_set_threads(inner_threads);
        worker(job);
    } else {
        omp_set_max_active_levels(1);
#pragma omp parallel num_threads(threads)
        worker(job);
    }
    *wall_s = phrex_now_seconds() - t0;
    phrex_progress_finish(&job->prog);
    if (job->failed) return phrex_fail(PHREX_ERR_MEMORY, "%s", job->error);
    return PHREX_OK;
}

// --- summary --------------------------------------------------------------------

typedef struct {
    double em, f1, recall[N_RECALL], p50, p95, p99, qps, wall_s;
    double encode_ms, search_ms; // means: where the latency goes
    size_t n, errors;
    // reranking (rerank_k -1: off)
    int rerank_k;
    double rerank_ms, budget_ms, base_p95, tuned_em;
    float rerank_weight, tuned_weight; // tuned_weight < 0: not tuned
} eval_summary;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Linear interpolation between closest ranks (numpy's default).
static double percentile(const double *sorted, size_t n, double p) {
    if (n == 0) return 0;
    double at = p / 100.0 * (double)(n - 1);
    size_t lo = (size_t)floor(at), hi = lo + 1 < n ? lo + 1 : lo;
    return sorted[lo] + (at - (double)lo) * (sorted[hi] - sorted[lo]);
}

static int summarise(const eval_result *rs, size_t n, double wall_s, eval_summary *sum) {
    memset(sum, 0, sizeof *sum);
    double *lat = malloc(n * sizeof *lat);
    if (!lat) return phrex_fail(PHREX_ERR_MEMORY, "cannot hold %zu latencies", n);
    for (size_t i = 0; i < n; i++) {
        sum->em += rs[i].em;
        sum->f1 += rs[i].f1;
        sum->errors += rs[i].error != NULL;
        for (int k = 0; k < N_RECALL; k++) sum->recall[k] += rs[i].first_hit && rs[i].first_hit <= recall_ks[k];
        lat[i] = rs[i].latency_ms;
        sum->encode_ms += rs[i].encode_ms / (double)n;
        sum->search_ms += rs[i].search_ms / (double)n;
        sum->rerank_ms += rs[i].rerank_ms / (double)n;
    }
    qsort(lat, n, sizeof *lat, cmp_double);
    sum->n = n;
    sum->em *= 100.0 / (double)n;
    sum->f1 *= 100.0 / (double)n;
    for (int k = 0; k < N_RECALL; k++) sum->recall[k] *= 100.0 / (double)n;
    sum->p50 = percentile(lat, n, 50);
    sum->p95 = percentile(lat, n, 95);
    sum->p99 = percentile(lat, n, 99);
    sum->wall_s = wall_s;
    sum->qps = wall_s > 0 ? (double)n / wall_s : 0;
    free(lat);
    return PHREX_OK;
}

static void print_table(const eval_options *e, const phrex_searcher *s, const eval_summary *m, int threads) {
    const phrex_dump_info *info = phrex_searcher_info(s);
    printf("phrex eval: %s, %zu questions over %s (%s, %lld vectors), query encoder %s, %d thread%s\n",
           e->qa_path, m->n, e->so.dump_dir, info->factory, (long long)info->kept,
           phrex_query_model_name(phrex_searcher_query_model(s)), threads, threads == 1 ? "" : "s");
    if (e->question_threads > 0) printf("  (one question at a time, %d threads inside it)\n", e->question_threads);
    printf("  %-22s %8.2f\n  %-22s %8.2f\n", e->regex ? "EM (regex, %)" : "EM (%)", m->em,
           e->regex ? "F1 (= EM with --regex)" : "F1 (%)", m->f1);
    for (int k = 0; k < N_RECALL; k++) {
        char label[32];
        snprintf(label, sizeof label, "passage recall@%d (%%)", recall_ks[k]);
        printf("  %-22s %8.2f\n", label, m->recall[k]);
    }
    printf("  %-22s %8.2f / %.2f / %.2f\n  %-22s %8.2f + %.2f\n  %-22s %8.2f\n", "latency ms p50/95/99", m->p50,
           m->p95, m->p99, "mean encode + search ms", m->encode_ms, m->search_ms, "questions/s", m->qps);
    if (m->rerank_k >= 0) printf("  %-22s %8.2f (k %d, weight %g)\n", "mean rerank ms", m->rerank_ms, m->rerank_k,
                                 (double)m->rerank_weight);
    if (m->tuned_weight >= 0)
        printf("  %-22s %8g (EM %.2f on these questions)\n", "tuned rerank weight", (double)m->tuned_weight,
               m->tuned_em);
    if (m->errors) printf("  %-22s %8zu (no answer, counted as wrong)\n", "questions with errors", m->errors);
}

static void write_str(FILE *f, const char *s) { phrex_json_write_string(f, s, strlen(s)); }

static int write_predictions(const char *path, const eval_question *qs, const eval_result *rs, size_t n) {
    FILE *f = fopen(path, "w");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    for (size_t i = 0; i < n; i++) {
        fputs("{\"question\":", f);
        phrex_json_write_string(f, qs[i].question, qs[i].question_len);
        fputs(",\"answers\":[", f);
        for (size_t g = 0; g < qs[i].n_golds; g++) {
            if (g) putc(',', f);
            write_str(f, qs[i].golds[g]);
        }
        fputs("],\"prediction\":", f);
        write_str(f, rs[i].prediction ? rs[i].prediction : "");
        fprintf(f, ",\"score\":%.6g,\"passage_id\":", (double)rs[i].score);
        write_str(f, rs[i].passage_id ? rs[i].passage_id : "");
        fputs(",\"title\":", f);
        write_str(f, rs[i].title ? rs[i].title : "");
        fprintf(f, ",\"em\":%d,\"f1\":%.6g,\"first_hit\":%d,\"latency_ms\":%.3f", rs[i].em, rs[i].f1,
                rs[i].first_hit, rs[i].latency_ms);
        if (rs[i].error) {
            fputs(",\"error\":", f);
            write_str(f, rs[i].error);
        }
        fputs("}\n", f);
    }
    if (fclose(f)) return phrex_fail(PHREX_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return PHREX_OK;
}

static int write_summary(const char *path, const eval_options *e, const phrex_searcher *s, const eval_summary *m,
                         int threads) {
    FILE *f = fopen(path, "w");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    const phrex_dump_info *info = phrex_searcher_info(s);
    fprintf(f, "{\n  \"n\": %zu,\n  \"em\": %.4f,\n  \"f1\": %.4f,\n", m->n, m->em, m->f1);
    for (int k = 0; k < N_RECALL; k++) fprintf(f, "  \"recall_at_%d\": %.4f,\n", recall_ks[k], m->recall[k]);
    fprintf(f, "  \"latency_ms_p50\": %.4f,\n  \"latency_ms_p95\": %.4f,\n  \"latency_ms_p99\": %.4f,\n", m->p50,
            m->p95, m->p99);
    fprintf(f, "  \"encode_ms_mean\": %.4f,\n  \"search_ms_mean\": %.4f,\n", m->encode_ms, m->search_ms);
    fprintf(f, "  \"qps\": %.4f,\n  \"wall_s\": %.4f,\n  \"errors\": %zu,\n  \"threads\": %d,\n", m->qps, m->wall_s,
            m->errors, threads);
    fprintf(f, "  \"question_threads\": %d,\n", e->question_threads > 0 ? e->question_threads : 1);
    fprintf(f, "  \"rerank_k\": %d,\n  \"budget_ms\": ", m->rerank_k < 0 ? 0 : m->rerank_k);
    if (m->budget_ms > 0) fprintf(f, "%g,\n", m->budget_ms);
    else fputs("null,\n", f);
    if (m->rerank_k >= 0)
        fprintf(f, "  \"rerank_weight\": %g,\n  \"rerank_ms_mean\": %.4f,\n  \"base_p95_ms\": %.4f,\n",
                (double)m->rerank_weight, m->rerank_ms, m->base_p95);
    if (m->tuned_weight >= 0)
        fprintf(f, "  \"rerank_weight_tuned\": %g,\n  \"em_at_tuned_weight\": %.4f,\n", (double)m->tuned_weight,
                m->tuned_em);
    fprintf(f, "  \"top_k\": %d,\n  \"regex\": %s,\n  \"factory\": ", e->o.top_k, e->regex ? "true" : "false");
    write_str(f, info->factory);
    fputs(",\n  \"query_encoder\": ", f);
    write_str(f, phrex_query_model_name(phrex_searcher_query_model(s)));
    fputs(",\n  \"dump\": ", f);
    write_str(f, e->so.dump_dir);
    fputs(",\n  \"qa\": ", f);
    write_str(f, e->qa_path);
    fputs("\n}\n", f);
    if (fclose(f)) return phrex_fail(PHREX_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return PHREX_OK;
}

static int write_outputs(const eval_options *e, const phrex_searcher *s, const eval_job *job, const eval_summary *m,
                         int threads) {
    if (mkdir(e->out_dir, 0755) != 0 && errno != EEXIST)
        return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", e->out_dir, strerror(errno));
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/predictions.jsonl", e->out_dir);
    int rc = write_predictions(path, job->qs, job->rs, job->n);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/summary.json", e->out_dir);
    return write_summary(path, e, s, m, threads);
}

static void free_results(eval_result *rs, size_t n) {
    for (size_t i = 0; rs && i < n; i++) {
        free(rs[i].prediction);
        free(rs[i].passage_id);
        free(rs[i].title);
        free(rs[i].error);
        free(rs[i].tune_ret), free(rs[i].tune_ce), free(rs[i].tune_ok);
    }
    free(rs);
}

// Reranking facts for the summary; with --tune-weight, the best weight of
// the grid on these questions (EM of the top candidate at that weight).
static int summarise_rerank(const eval_options *e, const phrex_reranking *rr, const eval_result *rs, size_t n,
                            eval_summary *m) {
    m->rerank_k = rr ? phrex_reranking_k(rr) : -1;
    m->budget_ms = rr ? phrex_reranking_budget_ms(rr) : 0;
    m->base_p95 = rr ? phrex_reranking_base_p95(rr) : 0;
    m->rerank_weight = rr ? phrex_reranking_weight(rr) : 0;
    m->tuned_weight = -1;
    if (!rr || !e->tune_weight) return PHREX_OK;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += (size_t)rs[i].tune_n;
    float *ret = malloc((total ? total : 1) * sizeof *ret), *ce = malloc((total ? total : 1) * sizeof *ce);
    unsigned char *ok = malloc(total ? total : 1);
    size_t *off = malloc((n + 1) * sizeof *off);
    int rc = ret && ce && ok && off ? PHREX_OK : phrex_fail(PHREX_ERR_MEMORY, "cannot hold the tuning candidates");
    for (size_t i = 0, at = 0; !rc && i <= n; i++) {
        off[i] = at;
        if (i == n) break;
        for (int j = 0; j < rs[i].tune_n; j++, at++)
            ret[at] = rs[i].tune_ret[j], ce[at] = rs[i].tune_ce[j], ok[at] = rs[i].tune_ok[j];
    }
    phrex_combine_set set = {ret, ce, ok, off, n};
    double acc = 0;
    if (!rc) rc = phrex_combine_tune(&set, phrex_combine_grid, PHREX_COMBINE_GRID_LEN, &m->tuned_weight, &acc);
    m->tuned_em = 100.0 * acc;
    free(ret), free(ce), free(ok), free(off);
    return rc;
}

// k from the budget: the first questions are the probes (at most 32), with
// the threads per question the workers will answer them with (one core, or
// --question-threads).
static int plan_rerank(phrex_reranking *rr, phrex_searcher *s, const eval_options *e, const eval_question *qs,
                       size_t n) {
    if (!rr) return PHREX_OK;
    int np = n < 32 ? (int)n : 32;
    const char *probes[32];
    size_t lens[32];
    for (int i = 0; i < np; i++) probes[i] = qs[i].question, lens[i] = qs[i].question_len;
    return phrex_reranking_plan(rr, s, &e->o, probes, lens, np, e->question_threads > 0 ? e->question_threads : 1);
}

static int run_eval(const eval_options *e, phrex_searcher *s, const phrex_reranking *rr, eval_question *qs, size_t n) {
    int threads = e->threads > 0 ? e->threads : omp_get_num_procs();
    if ((size_t)threads > n) threads = (int)n;
    if (e->question_threads > 0) threads = 1;
    eval_job job = {e, s, qs, calloc(n, sizeof(eval_result)), n, {0}, 0, {0}, rr};
    if (!job.rs) return phrex_fail(PHREX_ERR_MEMORY, "cannot hold %zu results", n);
    double wall_s;
    eval_summary m;
    int rc = answer_all(&job, threads, e->question_threads > 0 ? e->question_threads : 1, &wall_s);
    if (!rc) rc = summarise(job.rs, n, wall_s, &m);
    if (!rc) rc = summarise_rerank(e, rr, job.rs, n, &m);
    if (!rc) print_table(e, s, &m, threads);
    if (!rc && e->out_dir) rc = write_outputs(e, s, &job, &m, threads);
    for (size_t i = 0; !rc && i < n && m.errors; i++)
        if (job.rs[i].error) fprintf(stderr, "phrex eval: %s\n", job.rs[i].error);
    free_results(job.rs, n);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    eval_options e;
    int rc = parse_options(argc, argv, &e);
    if (rc) return rc < 0 ? 0 : rc;
    eval_question *qs = NULL;
    size_t n = 0;
    phrex_searcher *s = NULL;
    phrex_reranking *rr = NULL;
    if ((rc = read_questions(&e, &qs, &n)) == PHREX_OK && (rc = phrex_reranking_from_flags(&rr, &e.rf, e.o.top_k)) == PHREX_OK &&
        (rc = e.tune_weight && !rr ? phrex_fail(PHREX_ERR_INPUT, "--tune-weight needs a reranker") : PHREX_OK) == PHREX_OK &&
        (rc = phrex_searcher_init(&s, &e.so)) == PHREX_OK && (rc = plan_rerank(rr, s, &e, qs, n)) == PHREX_OK)
        rc = run_eval(&e, s, rr, qs, n);
    if (rc) fprintf(stderr, "phrex eval: %s\n", phrex_last_error());
    phrex_reranking_free(rr);
    phrex_searcher_free(s);
    free_questions(qs, n);
    return rc ? 1 : 0;
}
