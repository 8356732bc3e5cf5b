#include "ndcg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "data/buf.h"

// Judgments sorted by (qid, pid); per query, its grades sorted descending
// for the ideal DCG.
typedef struct {
    const char *qid, *pid;
    int grade;
    size_t line;
} judgment;

typedef struct {
    const char *qid;
    size_t first, n;  // its judgments: j[first .. first + n)
    int *ideal;       // (n) grades, descending
} qrel_query;

struct phrex_qrels {
    phrex_buf pool;
    judgment *j;
    size_t n;
    qrel_query *queries;
    size_t n_queries;
    int *ideal; // all queries' ideal grade lists, back to back
};

static int cmp_judgment(const void *a, const void *b) {
    const judgment *x = a, *y = b;
    int c = strcmp(x->qid, y->qid);
    return c ? c : strcmp(x->pid, y->pid);
}

static int cmp_int_desc(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

typedef struct {
    size_t qid, pid, line;
    int grade;
} judgment_off;

static int read_judgments(phrex_qrels *q, const char *path, judgment_off **out, size_t *n_out) {
    phrex_trec_reader *r;
    int rc = phrex_trec_reader_init(&r, path, PHREX_TREC_QRELS), has;
    if (rc) return rc;
    judgment_off *jo = NULL;
    size_t n = 0, cap = 0;
    phrex_trec_record rec;
    while (!(rc = phrex_trec_reader_next(r, &rec, &has)) && has) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            judgment_off *grown = realloc(jo, cap * sizeof *jo);
            if (!grown) {
                rc = phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory at line %zu", path, rec.line);
                break;
            }
            jo = grown;
        }
        judgment_off *o = &jo[n++];
        o->grade = rec.grade;
        o->line = rec.line;
        o->qid = q->pool.len;
        if ((rc = phrex_buf_append(&q->pool, rec.qid, rec.qid_len + 1))) break; // with its NUL
        o->pid = q->pool.len;
        if ((rc = phrex_buf_append(&q->pool, rec.pid, rec.pid_len + 1))) break;
    }
    phrex_trec_reader_free(r);
    *out = jo;
    *n_out = n;
    return rc;
}

// Groups the sorted judgments by query and builds the ideal grade lists.
static int index_queries(phrex_qrels *q, const char *path) {
    size_t nq = 0;
    for (size_t i = 0; i < q->n; i++) nq += i == 0 || strcmp(q->j[i - 1].qid, q->j[i].qid) != 0;
    q->queries = calloc(nq ? nq : 1, sizeof *q->queries);
    q->ideal = malloc((q->n ? q->n : 1) * sizeof *q->ideal);
    if (!q->queries || !q->ideal) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    for (size_t i = 0; i < q->n; i++) {
        if (i > 0 && !strcmp(q->j[i - 1].qid, q->j[i].qid)) {
            if (!strcmp(q->j[i - 1].pid, q->j[i].pid)) {
                size_t a = q->j[i - 1].line, b = q->j[i].line;
                return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: field 'pid': %s judged again for query %s (line %zu)",
                                  path, a > b ? a : b, q->j[i].pid, q->j[i].qid, a < b ? a : b);
            }
            q->queries[q->n_queries - 1].n++;
        } else {
            q->queries[q->n_queries++] = (qrel_query){q->j[i].qid, i, 1, q->ideal + i};
        }
        q->ideal[i] = q->j[i].grade;
    }
    for (size_t k = 0; k < q->n_queries; k++)
        qsort(q->queries[k].ideal, q->queries[k].n, sizeof(int), cmp_int_desc);
    return PHREX_OK;
}

int phrex_qrels_load(phrex_qrels **out, const char *path) {
    *out = NULL;
    phrex_qrels *q = calloc(1, sizeof *q);
    if (!q) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    judgment_off *jo = NULL;
    int rc = read_judgments(q, path, &jo, &q->n);
    if (!rc && q->n == 0) rc = phrex_fail(PHREX_ERR_FORMAT, "%s: no judgments", path);
    if (!rc && !(q->j = malloc(q->n * sizeof *q->j))) rc = phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    for (size_t i = 0; !rc && i < q->n; i++)
        q->j[i] = (judgment){q->pool.data + jo[i].qid, q->pool.data + jo[i].pid, jo[i].grade, jo[i].line};
    free(jo);
    if (!rc) {
        qsort(q->j, q->n, sizeof *q->j, cmp_judgment);
        rc = index_queries(q, path);
    }
    if (rc) {
        phrex_qrels_free(q);
        return rc;
    }
    *out = q;
    return PHREX_OK;
}

void phrex_qrels_free(phrex_qrels *q) {
    if (!q) return;
    phrex_buf_free(&q->pool);
    free(q->j);
    free(q->queries);
    free(q->ideal);
    free(q);
}

size_t phrex_qrels_count_queries(const phrex_qrels *q) { return q->n_queries; }
size_t phrex_qrels_count_judgments(const phrex_qrels *q) { return q->n; }

static const qrel_query *find_query(const phrex_qrels *q, const char *qid) {
    size_t lo = 0, hi = q->n_queries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(q->queries[mid].qid, qid);
        if (c == 0) return &q->queries[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int phrex_qrels_has_query(const phrex_qrels *q, const char *qid) { return find_query(q, qid) != NULL; }

static int grade_in(const phrex_qrels *q, const qrel_query *qq, const char *pid, int *judged) {
    size_t lo = qq->first, hi = qq->first + qq->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(q->j[mid].pid, pid);
        if (c == 0) {
            if (judged) *judged = 1;
            return q->j[mid].grade;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    if (judged) *judged = 0;
    return 0;
}

int phrex_qrels_grade(const phrex_qrels *q, const char *qid, const char *pid, int *judged) {
    const qrel_query *qq = find_query(q, qid);
    if (!qq) {
        if (judged) *judged = 0;
        return 0;
    }
    return grade_in(q, qq, pid, judged);
}

// Rank r (1-based) is discounted by log2(r + 1), as trec_eval's log2(i + 2)
// for 0-based i.
static double ideal_dcg(const qrel_query *qq, int k) {
    double idcg = 0;
    for (size_t i = 0; i < qq->n && (int)i < k && qq->ideal[i] > 0; i++) idcg += qq->ideal[i] / log2((double)i + 2);
    return idcg;
}

double phrex_ndcg_ranked(const phrex_qrels *q, const char *qid, const char *const *pids, int n, int k) {
    const qrel_query *qq = find_query(q, qid);
    if (!qq) return 0;
    double idcg = ideal_dcg(qq, k);
    if (idcg <= 0) return 0;
    double dcg = 0;
    for (int i = 0; i < n && i < k; i++) {
        int g = grade_in(q, qq, pids[i], NULL);
        if (g > 0) dcg += g / log2((double)i + 2);
    }
    return dcg / idcg;
}

double phrex_ndcg_query(const phrex_qrels *q, const phrex_trec_query *query, int k) {
    const qrel_query *qq = find_query(q, query->qid);
    if (!qq) return 0;
    double idcg = ideal_dcg(qq, k);
    if (idcg <= 0) return 0;
    double dcg = 0;
    for (int i = 0; i < query->n_hits && i < k; i++) {
        int g = grade_in(q, qq, query->hits[i].pid, NULL);
        if (g > 0) dcg += g / log2((double)i + 2);
    }
    return dcg / idcg;
}

double phrex_ndcg_run(const phrex_qrels *q, const phrex_trec_run *run, int k, size_t *n_queries) {
    double sum = 0;
    size_t n = 0;
    for (size_t i = 0; i < phrex_trec_run_count(run); i++) {
        const phrex_trec_query *query = phrex_trec_run_query(run, i);
        if (!find_query(q, query->qid)) continue;
        sum += phrex_ndcg_query(q, query, k);
        n++;
    }
    if (n_queries) *n_queries = n;
    return n ? sum / (double)n : 0;
}
