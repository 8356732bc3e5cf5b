#include "trec.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "data/buf.h"
#include "data/jsonpos.h"
#include "data/lines.h"

// --- the line reader ------------------------------------------------------------

#define MAX_FIELDS 8

struct phrex_trec_reader {
    phrex_lines *lines;
    phrex_trec_kind kind;
};

const char *phrex_trec_kind_name(phrex_trec_kind kind) {
    switch (kind) {
    case PHREX_TREC_TOPICS: return "topics";
    case PHREX_TREC_QRELS: return "qrels";
    case PHREX_TREC_RUN: return "run";
    case PHREX_TREC_COLLECTION: return "collection";
    }
    return "?";
}

int phrex_trec_reader_init(phrex_trec_reader **out, const char *path, phrex_trec_kind kind) {
    *out = NULL;
    phrex_trec_reader *r = calloc(1, sizeof *r);
    if (!r) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    r->kind = kind;
    int rc = phrex_lines_init(&r->lines, path, 0);
    if (rc) {
        free(r);
        return rc;
    }
    *out = r;
    return PHREX_OK;
}

void phrex_trec_reader_free(phrex_trec_reader *r) {
    if (!r) return;
    phrex_lines_free(r->lines);
    free(r);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

// Splits on runs of blanks in place; returns the field count (up to cap; one
// more than cap means "too many").
static int split_blanks(char *s, size_t len, char **f, size_t *flen, int cap) {
    int n = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && is_space(s[i])) i++;
        if (i == len) break;
        size_t start = i;
        while (i < len && !is_space(s[i])) i++;
        if (n == cap) return cap + 1;
        f[n] = s + start;
        flen[n] = i - start;
        n++;
        if (i < len) s[i++] = '\0';
    }
    return n;
}

static int fail_field(const phrex_trec_reader *r, size_t line, const char *field, const char *what) {
    return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: field '%s': %s", phrex_lines_path(r->lines), line, field, what);
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

// A TREC id: non-empty (blank splitting guarantees no spaces), valid UTF-8.
static int check_id(const phrex_trec_reader *r, size_t line, const char *field, const char *s, size_t n) {
    if (n == 0) return fail_field(r, line, field, "empty");
    phrex_buf where = {0};
    int rc = phrex_data_check_field(phrex_data_format_where(&where, phrex_lines_path(r->lines), line, 0), field, s, n);
    phrex_buf_free(&where);
    return rc;
}

static int parse_qrels(const phrex_trec_reader *r, size_t line, char **f, size_t *fl, int n, phrex_trec_record *rec) {
    char what[128];
    if (n != 4) {
        snprintf(what, sizeof what, "expected 4 fields 'qid 0 pid grade', got %s%d", n > 4 ? "more than " : "",
                 n > 4 ? 4 : n);
        return fail_field(r, line, n > 4 ? "line" : (n < 2 ? "iteration" : n < 3 ? "pid" : "grade"), what);
    }
    if (strcmp(f[1], "0") && strcmp(f[1], "Q0")) return fail_field(r, line, "iteration", "expected 0 or Q0");
    long grade;
    if (parse_long(f[3], -1000, 1000, &grade)) return fail_field(r, line, "grade", "expected an integer");
    int rc = check_id(r, line, "qid", f[0], fl[0]);
    if (!rc) rc = check_id(r, line, "pid", f[2], fl[2]);
    rec->qid = f[0], rec->qid_len = fl[0];
    rec->pid = f[2], rec->pid_len = fl[2];
    rec->grade = (int)grade;
    return rc;
}

static int parse_run(const phrex_trec_reader *r, size_t line, char **f, size_t *fl, int n, phrex_trec_record *rec) {
    static const char *names[] = {"qid", "Q0", "pid", "rank", "score", "tag"};
    if (n != 6) {
        char what[128];
        snprintf(what, sizeof what, "expected 6 fields 'qid Q0 pid rank score tag', got %s%d",
                 n > 6 ? "more than " : "", n > 6 ? 6 : n);
        return fail_field(r, line, n > 6 ? "line" : names[n], what);
    }
    long rank;
    if (parse_long(f[3], 0, INT32_MAX, &rank)) return fail_field(r, line, "rank", "expected an integer >= 0");
    char *end;
    errno = 0;
    double score = strtod(f[4], &end);
    if (end == f[4] || *end != '\0' || !isfinite(score)) return fail_field(r, line, "score", "expected a finite number");
    int rc = check_id(r, line, "qid", f[0], fl[0]);
    if (!rc) rc = check_id(r, line, "pid", f[2], fl[2]);
    if (!rc) rc = check_id(r, line, "tag", f[5], fl[5]);
    rec->qid = f[0], rec->qid_len = fl[0];
    rec->pid = f[2], rec->pid_len = fl[2];
    rec->text = f[5], rec->text_len = fl[5];
    rec->rank = (int)rank;
    rec->score = score;
    return rc;
}

// `id<TAB>text`: exactly one TAB, both parts non-empty.
static int parse_tab_pair(const phrex_trec_reader *r, size_t line, char *s, size_t len, const char *id_name,
                          const char *text_name, phrex_trec_record *rec) {
    char *tab = memchr(s, '\t', len);
    if (!tab) return fail_field(r, line, text_name, "missing: expected 'id<TAB>text'");
    size_t id_len = (size_t)(tab - s), text_len = len - id_len - 1;
    if (memchr(tab + 1, '\t', text_len)) return fail_field(r, line, "line", "more than 2 TAB-separated fields");
    *tab = '\0';
    if (memchr(s, ' ', id_len)) return fail_field(r, line, id_name, "contains a space");
    int rc = check_id(r, line, id_name, s, id_len);
    if (rc) return rc;
    if (text_len == 0 || strspn(tab + 1, " ") == text_len) return fail_field(r, line, text_name, "empty");
    phrex_buf where = {0};
    rc = phrex_data_check_field(phrex_data_format_where(&where, phrex_lines_path(r->lines), line, 0), text_name,
                                tab + 1, text_len);
    phrex_buf_free(&where);
    rec->text = tab + 1, rec->text_len = text_len;
    if (r->kind == PHREX_TREC_TOPICS) rec->qid = s, rec->qid_len = id_len;
    else rec->pid = s, rec->pid_len = id_len;
    return rc;
}

int phrex_trec_reader_next(phrex_trec_reader *r, phrex_trec_record *rec, int *has) {
    *has = 0;
    for (;;) {
        char *s;
        size_t len;
        int got, rc = phrex_lines_next(r->lines, &s, &len, &got);
        if (rc || !got) return rc;
        size_t line = phrex_lines_number(r->lines);
        size_t blank = 0;
        while (blank < len && is_space(s[blank])) blank++;
        if (blank == len) continue;
        memset(rec, 0, sizeof *rec);
        rec->line = line;
        if (r->kind == PHREX_TREC_TOPICS || r->kind == PHREX_TREC_COLLECTION) {
            rc = r->kind == PHREX_TREC_TOPICS ? parse_tab_pair(r, line, s, len, "qid", "query", rec)
                                              : parse_tab_pair(r, line, s, len, "pid", "passage", rec);
        } else {
            char *f[MAX_FIELDS];
            size_t fl[MAX_FIELDS];
            int n = split_blanks(s, len, f, fl, 6);
            rc = r->kind == PHREX_TREC_QRELS ? parse_qrels(r, line, f, fl, n, rec) : parse_run(r, line, f, fl, n, rec);
        }
        if (rc) return rc;
        *has = 1;
        return PHREX_OK;
    }
}

// --- a string pool and a string hash --------------------------------------------

// Strings appended to one buffer, named by offset until the buffer stops
// growing (pointers would move with realloc).
static int pool_add(phrex_buf *pool, const char *s, size_t n, size_t *off) {
    *off = pool->len;
    int rc = phrex_buf_append(pool, s, n);
    if (!rc) rc = phrex_buf_append(pool, "", 1); // keep the NUL: the next append writes after it
    return rc;
}

typedef struct {
    size_t *slots; // offset + 1 into the pool; 0 = empty
    size_t *vals;
    size_t cap, n;
} str_map;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void map_free(str_map *m) {
    free(m->slots);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static int map_grow(str_map *m, const phrex_buf *pool) {
    size_t cap = m->cap ? 2 * m->cap : 1024;
    size_t *slots = calloc(cap, sizeof *slots), *vals = calloc(cap, sizeof *vals);
    if (!slots || !vals) {
        free(slots);
        free(vals);
        return phrex_fail(PHREX_ERR_MEMORY, "out of memory for a table of %zu ids", cap);
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i]) continue;
        size_t j = hash_str(pool->data + m->slots[i] - 1) & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
        vals[j] = m->vals[i];
    }
    free(m->slots);
    free(m->vals);
    m->slots = slots, m->vals = vals, m->cap = cap;
    return PHREX_OK;
}

// Finds key (NUL-terminated); when absent inserts pool string `off` with
// value `val`. *found tells which; *val_out gets the stored value.
static int map_get_or_put(str_map *m, const phrex_buf *pool, const char *key, size_t off, size_t val, int *found,
                          size_t *val_out) {
    if (2 * (m->n + 1) > m->cap) {
        int rc = map_grow(m, pool);
        if (rc) return rc;
    }
    size_t j = hash_str(key) & (m->cap - 1);
    for (; m->slots[j]; j = (j + 1) & (m->cap - 1))
        if (!strcmp(pool->data + m->slots[j] - 1, key)) {
            *found = 1;
            *val_out = m->vals[j];
            return PHREX_OK;
        }
    m->slots[j] = off + 1;
    m->vals[j] = val;
    m->n++;
    *found = 0;
    *val_out = val;
    return PHREX_OK;
}

// --- id -> text tables (topics, collection) -------------------------------------

typedef struct {
    const char *id, *text;
    size_t text_len;
} id_text;

typedef struct {
    phrex_buf pool;
    id_text *rows; // sorted by id
    size_t n;
} id_table;

static int cmp_id_text(const void *a, const void *b) {
    return strcmp(((const id_text *)a)->id, ((const id_text *)b)->id);
}

static void id_table_free(id_table *t) {
    phrex_buf_free(&t->pool);
    free(t->rows);
}

// Reads every (id, text) of a topics or collection file; a repeated id is
// an error naming both lines.
static int id_table_load(id_table *t, const char *path, phrex_trec_kind kind) {
    phrex_trec_reader *r;
    int rc = phrex_trec_reader_init(&r, path, kind), has;
    if (rc) return rc;
    typedef struct {
        size_t id, text, text_len, line;
    } row_off;
    row_off *rows = NULL;
    size_t n = 0, cap = 0;
    phrex_trec_record rec;
    while (!(rc = phrex_trec_reader_next(r, &rec, &has)) && has) {
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            row_off *grown = realloc(rows, cap * sizeof *rows);
            if (!grown) {
                rc = phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory at line %zu", path, rec.line);
                break;
            }
            rows = grown;
        }
        const char *id = kind == PHREX_TREC_TOPICS ? rec.qid : rec.pid;
        size_t id_len = kind == PHREX_TREC_TOPICS ? rec.qid_len : rec.pid_len;
        row_off *o = &rows[n++];
        o->line = rec.line;
        o->text_len = rec.text_len;
        if ((rc = pool_add(&t->pool, id, id_len, &o->id)) || (rc = pool_add(&t->pool, rec.text, rec.text_len, &o->text)))
            break;
    }
    phrex_trec_reader_free(r);
    if (!rc && !(t->rows = malloc((n ? n : 1) * sizeof *t->rows))) rc = phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    for (size_t i = 0; !rc && i < n; i++)
        t->rows[i] = (id_text){t->pool.data + rows[i].id, t->pool.data + rows[i].text, rows[i].text_len};
    if (!rc) {
        t->n = n;
        qsort(t->rows, n, sizeof *t->rows, cmp_id_text);
        for (size_t i = 1; i < n && !rc; i++)
            if (!strcmp(t->rows[i - 1].id, t->rows[i].id)) {
                // Find the two lines for the message (rare path: a linear scan is fine).
                size_t lines[2] = {0, 0}, k = 0;
                for (size_t j = 0; j < n && k < 2; j++)
                    if (!strcmp(t->pool.data + rows[j].id, t->rows[i].id)) lines[k++] = rows[j].line;
                rc = phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: field '%s': '%s' already given on line %zu", path, lines[1],
                                kind == PHREX_TREC_TOPICS ? "qid" : "pid", t->rows[i].id, lines[0]);
            }
    }
    free(rows);
    return rc;
}

static const id_text *id_table_find(const id_table *t, const char *id) {
    id_text key = {id, NULL, 0};
    return t->n ? bsearch(&key, t->rows, t->n, sizeof *t->rows, cmp_id_text) : NULL;
}

struct phrex_trec_topics {
    id_table t;
};
struct phrex_trec_collection {
    id_table t;
};

int phrex_trec_topics_load(phrex_trec_topics **out, const char *path) {
    *out = calloc(1, sizeof **out);
    if (!*out) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    int rc = id_table_load(&(*out)->t, path, PHREX_TREC_TOPICS);
    if (rc) {
        phrex_trec_topics_free(*out);
        *out = NULL;
    }
    return rc;
}

void phrex_trec_topics_free(phrex_trec_topics *t) {
    if (!t) return;
    id_table_free(&t->t);
    free(t);
}

size_t phrex_trec_topics_count(const phrex_trec_topics *t) { return t->t.n; }

const char *phrex_trec_topics_find(const phrex_trec_topics *t, const char *qid) {
    const id_text *row = id_table_find(&t->t, qid);
    return row ? row->text : NULL;
}

int phrex_trec_collection_load(phrex_trec_collection **out, const char *path) {
    *out = calloc(1, sizeof **out);
    if (!*out) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    int rc = id_table_load(&(*out)->t, path, PHREX_TREC_COLLECTION);
    if (rc) {
        phrex_trec_collection_free(*out);
        *out = NULL;
    }
    return rc;
}

void phrex_trec_collection_free(phrex_trec_collection *c) {
    if (!c) return;
    id_table_free(&c->t);
    free(c);
}

size_t phrex_trec_collection_count(const phrex_trec_collection *c) { return c->t.n; }

const char *phrex_trec_collection_find(const phrex_trec_collection *c, const char *pid, size_t *len) {
    const id_text *row = id_table_find(&c->t, pid);
    if (len) *len = row ? row->text_len : 0;
    return row ? row->text : NULL;
}

// --- runs -------------------------------------------------------------------------

// A hit while loading: pool offsets, its query's index, where it came from.
typedef struct {
    size_t qid, pid, text, text_len, line, query; // text: SIZE_MAX when none
    double score;
    int rank;
} hit_off;

typedef struct {
    size_t qid, query_text; // query_text: SIZE_MAX when none
    size_t n_hits;
} query_off;

struct phrex_trec_run {
    phrex_buf pool;
    phrex_trec_query *queries;
    phrex_trec_hit *hits;
    size_t n_queries;
    // loading state
    hit_off *ho;
    size_t n_ho, cap_ho;
    query_off *qo;
    size_t n_qo, cap_qo;
    str_map qids;
    const char *path;
};

static int grow(void **p, size_t *cap, size_t n, size_t size) {
    if (n < *cap) return PHREX_OK;
    size_t c = *cap ? 2 * *cap : 256;
    void *grown = realloc(*p, c * size);
    if (!grown) return phrex_fail(PHREX_ERR_MEMORY, "out of memory for %zu run entries", c);
    *p = grown;
    *cap = c;
    return PHREX_OK;
}

// Adds one hit; query_text (may be NULL) is kept for a query seen the first time.
static int run_add(phrex_trec_run *run, const char *qid, size_t qid_len, const char *pid, size_t pid_len,
                   const char *text, size_t text_len, const char *query, size_t query_len, double score, int rank,
                   size_t line) {
    int rc = grow((void **)&run->ho, &run->cap_ho, run->n_ho, sizeof *run->ho);
    if (rc) return rc;
    hit_off *h = &run->ho[run->n_ho];
    if ((rc = pool_add(&run->pool, qid, qid_len, &h->qid)) || (rc = pool_add(&run->pool, pid, pid_len, &h->pid)))
        return rc;
    h->text = SIZE_MAX;
    if (text && (rc = pool_add(&run->pool, text, text_len, &h->text))) return rc;
    h->text_len = text_len;
    h->score = score;
    h->rank = rank;
    h->line = line;
    int found;
    size_t qi;
    if ((rc = map_get_or_put(&run->qids, &run->pool, run->pool.data + h->qid, h->qid, run->n_qo, &found, &qi))) return rc;
    if (!found) {
        if ((rc = grow((void **)&run->qo, &run->cap_qo, run->n_qo, sizeof *run->qo))) return rc;
        query_off *q = &run->qo[run->n_qo++];
        q->qid = h->qid;
        q->query_text = SIZE_MAX;
        q->n_hits = 0;
        if (query && (rc = pool_add(&run->pool, query, query_len, &q->query_text))) return rc;
    }
    h->query = qi;
    run->qo[qi].n_hits++;
    run->n_ho++;
    return PHREX_OK;
}

// trec_eval's order (form_res_rels.c, comp_sim_docno): score descending as a
// C float (trec_eval keeps `float sim`), then docno descending by strcmp.
static int cmp_trec_hit(const void *a, const void *b) {
    const phrex_trec_hit *x = a, *y = b;
    float sx = (float)x->score, sy = (float)y->score;
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(y->pid, x->pid);
}

static int cmp_hit_pid(const void *a, const void *b) {
    return strcmp(((const phrex_trec_hit *)a)->pid, ((const phrex_trec_hit *)b)->pid);
}

// Groups the hits by query (first-appearance order), rejects a pid listed
// twice for one query, and sorts each query's hits in trec_eval's order.
static int run_finish(phrex_trec_run *run) {
    run->queries = calloc(run->n_qo ? run->n_qo : 1, sizeof *run->queries);
    run->hits = calloc(run->n_ho ? run->n_ho : 1, sizeof *run->hits);
    size_t *fill = calloc(run->n_qo ? run->n_qo : 1, sizeof *fill);
    if (!run->queries || !run->hits || !fill) {
        free(fill);
        return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", run->path);
    }
    const char *p = run->pool.data;
    size_t at = 0;
    for (size_t q = 0; q < run->n_qo; q++) {
        run->queries[q].qid = p + run->qo[q].qid;
        run->queries[q].query = run->qo[q].query_text == SIZE_MAX ? NULL : p + run->qo[q].query_text;
        run->queries[q].hits = run->hits + at;
        run->queries[q].n_hits = (int)run->qo[q].n_hits;
        at += run->qo[q].n_hits;
    }
    for (size_t i = 0; i < run->n_ho; i++) {
        const hit_off *h = &run->ho[i];
        phrex_trec_hit *d = &run->queries[h->query].hits[fill[h->query]++];
        d->pid = p + h->pid;
        d->text = h->text == SIZE_MAX ? NULL : p + h->text;
        d->text_len = h->text == SIZE_MAX ? 0 : h->text_len;
        d->score = h->score;
        d->rank = h->rank;
    }
    free(fill);
    run->n_queries = run->n_qo;
    for (size_t q = 0; q < run->n_queries; q++) {
        phrex_trec_query *Q = &run->queries[q];
        qsort(Q->hits, (size_t)Q->n_hits, sizeof *Q->hits, cmp_hit_pid);
        for (int i = 1; i < Q->n_hits; i++)
            if (!strcmp(Q->hits[i - 1].pid, Q->hits[i].pid)) {
                size_t line = 0; // the second line with this (qid, pid)
                for (size_t j = 0, seen = 0; j < run->n_ho && !line; j++)
                    if (!strcmp(p + run->ho[j].qid, Q->qid) && !strcmp(p + run->ho[j].pid, Q->hits[i].pid) && seen++)
                        line = run->ho[j].line;
                return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: field 'pid': '%s' listed twice for query %s", run->path,
                                  line, Q->hits[i].pid, Q->qid);
            }
        qsort(Q->hits, (size_t)Q->n_hits, sizeof *Q->hits, cmp_trec_hit);
    }
    return PHREX_OK;
}

static int run_load_trec(phrex_trec_run *run, const char *path) {
    phrex_trec_reader *r;
    int rc = phrex_trec_reader_init(&r, path, PHREX_TREC_RUN), has;
    if (rc) return rc;
    phrex_trec_record rec;
    while (!(rc = phrex_trec_reader_next(r, &rec, &has)) && has)
        if ((rc = run_add(run, rec.qid, rec.qid_len, rec.pid, rec.pid_len, NULL, 0, NULL, 0, rec.score, rec.rank,
                          rec.line)))
            break;
    phrex_trec_reader_free(r);
    return rc;
}

// A JSON id: a string, or an integer number written back in decimal.
static int json_id(const cJSON *v, char *buf, size_t cap, const char **s, size_t *n) {
    if (cJSON_IsString(v) && v->valuestring[0]) {
        *s = v->valuestring;
        *n = strlen(v->valuestring);
        return 0;
    }
    if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 1e15) {
        *n = (size_t)snprintf(buf, cap, "%.0f", v->valuedouble);
        *s = buf;
        return 0;
    }
    return -1;
}

static int json_hit(phrex_trec_run *run, const char *path, const cJSON *hit, size_t line, size_t col,
                    const char *query, size_t query_len) {
    char qbuf[32], pbuf[32];
    const char *qid, *pid;
    size_t qn, pn;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(hit, "content");
    const cJSON *score = cJSON_GetObjectItemCaseSensitive(hit, "score");
    const cJSON *rank = cJSON_GetObjectItemCaseSensitive(hit, "rank");
    const char *bad = NULL;
    if (!cJSON_IsObject(hit)) bad = "hit";
    else if (json_id(cJSON_GetObjectItemCaseSensitive(hit, "qid"), qbuf, sizeof qbuf, &qid, &qn)) bad = "qid";
    else if (json_id(cJSON_GetObjectItemCaseSensitive(hit, "docid"), pbuf, sizeof pbuf, &pid, &pn)) bad = "docid";
    else if (!cJSON_IsString(content) || !content->valuestring[0]) bad = "content";
    else if (!cJSON_IsNumber(score) || !isfinite(score->valuedouble)) bad = "score";
    else if (rank && (!cJSON_IsNumber(rank) || rank->valuedouble < 0 || rank->valuedouble > INT32_MAX)) bad = "rank";
    if (bad)
        return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu:%zu: field '%s': missing or of the wrong type", path, line, col, bad);
    return run_add(run, qid, qn, pid, pn, content->valuestring, strlen(content->valuestring), query, query_len,
                   score->valuedouble, rank ? (int)rank->valuedouble : 0, line);
}

static int run_load_json(phrex_trec_run *run, const char *path) {
    char *text;
    size_t len;
    int rc = phrex_data_read_file(path, &text, &len);
    if (rc) return rc;
    const char *err_at = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &err_at, 0);
    if (!root) {
        size_t off = err_at && err_at >= text && err_at <= text + len ? (size_t)(err_at - text) : 0;
        size_t line = phrex_data_find_line(text, off);
        free(text);
        return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: not valid JSON", path, line);
    }
    phrex_jsonpos jp;
    phrex_jsonpos_init(&jp, text, len, "hits");
    if (!cJSON_IsArray(root)) rc = phrex_fail(PHREX_ERR_FORMAT, "%s:1: expected a JSON array of {query, hits}", path);
    size_t qi = 0;
    for (const cJSON *q = root->child; !rc && q; q = q->next, qi++) {
        const cJSON *query = cJSON_GetObjectItemCaseSensitive(q, "query");
        const cJSON *hits = cJSON_GetObjectItemCaseSensitive(q, "hits");
        if (!cJSON_IsObject(q) || !cJSON_IsString(query) || !query->valuestring[0] || !cJSON_IsArray(hits)) {
            rc = phrex_fail(PHREX_ERR_FORMAT, "%s: element %zu: field '%s': missing or of the wrong type", path, qi,
                            !cJSON_IsString(query) || !query->valuestring[0] ? "query" : "hits");
            break;
        }
        for (const cJSON *h = hits->child; !rc && h; h = h->next) {
            size_t line = cJSON_IsObject(h) ? phrex_jsonpos_next(&jp) : 0;
            rc = json_hit(run, path, h, line, jp.column, query->valuestring, strlen(query->valuestring));
        }
    }
    cJSON_Delete(root);
    free(text);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

int phrex_trec_run_load(phrex_trec_run **out, const char *path) {
    *out = NULL;
    phrex_trec_run *run = calloc(1, sizeof *run);
    if (!run) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    run->path = path;
    int rc = ends_with(path, ".json") ? run_load_json(run, path) : run_load_trec(run, path);
    if (!rc && run->n_ho == 0) rc = phrex_fail(PHREX_ERR_FORMAT, "%s: no hits", path);
    if (!rc) rc = run_finish(run);
    free(run->ho);
    free(run->qo);
    map_free(&run->qids);
    run->ho = NULL, run->qo = NULL;
    run->path = NULL;
    if (rc) {
        phrex_trec_run_free(run);
        return rc;
    }
    *out = run;
    return PHREX_OK;
}

void phrex_trec_run_free(phrex_trec_run *run) {
    if (!run) return;
    phrex_buf_free(&run->pool);
    free(run->queries);
    free(run->hits);
    free(run->ho);
    free(run->qo);
    map_free(&run->qids);
    free(run);
}

size_t phrex_trec_run_count(const phrex_trec_run *run) { return run->n_queries; }

const phrex_trec_query *phrex_trec_run_query(const phrex_trec_run *run, size_t i) {
    return i < run->n_queries ? &run->queries[i] : NULL;
}

int phrex_trec_run_attach_texts(phrex_trec_run *run, const phrex_trec_collection *c) {
    for (size_t q = 0; q < run->n_queries; q++)
        for (int i = 0; i < run->queries[q].n_hits; i++) {
            phrex_trec_hit *h = &run->queries[q].hits[i];
            if (h->text) continue;
            if (!(h->text = phrex_trec_collection_find(c, h->pid, &h->text_len)))
                return phrex_fail(PHREX_ERR_INPUT, "query %s: passage %s is not in the collection",
                                  run->queries[q].qid, h->pid);
        }
    return PHREX_OK;
}

int phrex_trec_run_attach_queries(phrex_trec_run *run, const phrex_trec_topics *t) {
    for (size_t q = 0; q < run->n_queries; q++) {
        if (run->queries[q].query) continue;
        if (!(run->queries[q].query = phrex_trec_topics_find(t, run->queries[q].qid)))
            return phrex_fail(PHREX_ERR_INPUT, "query %s of the run is not in the topics", run->queries[q].qid);
    }
    return PHREX_OK;
}
