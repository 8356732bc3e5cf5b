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
// one core: the single-query latency.
#include "tools/cli.h"
#include "tools/cli_util.h"

#include "common/error.h"
#include "common/json_write.h"
#include "common/progress.h"
#include "common/threads.h"
#include "data/metrics.h"
#include "data/qa.h"
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
    double f1, latency_ms, encode_ms, search_ms;
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
            "  --limit N            the first N questions only\n"
            "  --regex              answers are regexes (CuratedTREC)\n"
            "  --model DIR          the model the dump was built with (default %s)\n"
            "  --query-model DIR    query encoder (default: the phrase model)\n"
            "  --pool P             mean (default) or cls\n"
            "  --max-answer-len N   longest answer in word pieces (default 10)\n"
            "  --nprobe N           inverted lists visited (IVF dumps; default 256)\n",
            phrex_cli_default_model_dir());
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
    default: print_help(stderr); return 2;
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
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    memset(e, 0, sizeof *e);
    phrex_searcher_options_default(&e->so);
    phrex_search_options_default(&e->o);
    e->so.model_dir = phrex_cli_default_model_dir();
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

static int copy_question(const phrex_qa *r, eval_question *q) {
    q->question = strndup(r->question, r->question_len);
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

static void answer_one(phrex_search *h, const eval_options *e, const eval_question *q, eval_result *r) {
    phrex_search_output out;
    double t0 = phrex_now_seconds();
    int rc = phrex_search_question(h, q->question, q->question_len, &out);
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
} eval_job;

static void worker(eval_job *job) {
    phrex_search *h = NULL;
    if (phrex_search_init(&h, job->s, &job->e->o)) {
#pragma omp critical(eval_error)
        if (!job->failed) {
            job->failed = 1;
            snprintf(job->error, sizeof job->error, "%s", phrex_last_error());
        }
    }
#pragma omp for schedule(dynamic, 1)
    for (size_t i = 0; i < job->n; i++) {
        if (!h) continue;
        answer_one(h, job->e, &job->qs[i], &job->rs[i]);
#pragma omp critical(eval_progress)
        phrex_progress_add(&job->prog, 1, NULL);
    }
    phrex_search_free(h);
}

// Workers run single-threaded inside (nested OpenMP regions of FAISS, the
// encoder and OpenBLAS stay inactive), so N workers use N cores.
static int answer_all(eval_job *job, int threads, double *wall_s) {
    phrex_progress_init(&job->prog, "eval", "questions", (int64_t)job->n);
    double t0 = phrex_now_seconds();
    if (threads == 1) {
        phrex_set_threads(1);
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
    printf("  %-22s %8.2f\n  %-22s %8.2f\n", e->regex ? "EM (regex, %)" : "EM (%)", m->em,
           e->regex ? "F1 (= EM with --regex)" : "F1 (%)", m->f1);
    for (int k = 0; k < N_RECALL; k++) {
        char label[32];
        snprintf(label, sizeof label, "passage recall@%d (%%)", recall_ks[k]);
        printf("  %-22s %8.2f\n", label, m->recall[k]);
    }
    printf("  %-22s %8.2f / %.2f / %.2f\n  %-22s %8.2f + %.2f\n  %-22s %8.2f\n", "latency ms p50/95/99", m->p50,
           m->p95, m->p99, "mean encode + search ms", m->encode_ms, m->search_ms, "questions/s", m->qps);
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
    }
    free(rs);
}

static int run_eval(const eval_options *e, phrex_searcher *s, eval_question *qs, size_t n) {
    int threads = e->threads > 0 ? e->threads : omp_get_num_procs();
    if ((size_t)threads > n) threads = (int)n;
    eval_job job = {e, s, qs, calloc(n, sizeof(eval_result)), n, {0}, 0, {0}};
    if (!job.rs) return phrex_fail(PHREX_ERR_MEMORY, "cannot hold %zu results", n);
    double wall_s;
    eval_summary m;
    int rc = answer_all(&job, threads, &wall_s);
    if (!rc) rc = summarise(job.rs, n, wall_s, &m);
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
    if ((rc = read_questions(&e, &qs, &n)) == PHREX_OK && (rc = phrex_searcher_init(&s, &e.so)) == PHREX_OK)
        rc = run_eval(&e, s, qs, n);
    if (rc) fprintf(stderr, "phrex eval: %s\n", phrex_last_error());
    phrex_searcher_free(s);
    free_questions(qs, n);
    return rc ? 1 : 0;
}
