#include "search.h"

#include "common/error.h"
#include "common/progress.h"
#include "search/span_text.h"

#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/IndexPreTransform_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/utils/distances_c.h>
#include <stdlib.h>
#include <string.h>

#define POOL_BLOCK_BYTES (1u << 20)
#define MAX_SEARCH_K (1 << 16)
#define MAX_ANSWER_LEN 256

// --- the shared part ------------------------------------------------------

struct phrex_searcher {
    phrex_dump *dump;     // read by each phrex_search through its own phrex_dump_reader
    FaissIndex *index;    // read-only while searching: shared as it is
    phrex_query_model *qm;
    int dim, ivf;
    phrex_metric metric;
};

static const char *const unit_names[] = {"phrase", "sentence", "passage", "document"};

const char *phrex_search_unit_name(phrex_search_unit u) {
    return (unsigned)u < 4 ? unit_names[u] : "?";
}

int phrex_search_parse_unit(const char *name, phrex_search_unit *out) {
    for (int u = 0; u < 4; u++)
        if (!strcmp(name, unit_names[u])) {
            *out = (phrex_search_unit)u;
            return PHREX_OK;
        }
    return phrex_fail(PHREX_ERR_INPUT, "unknown unit '%s' (phrase, sentence, passage or document)", name);
}

void phrex_searcher_options_default(phrex_searcher_options *o) {
    memset(o, 0, sizeof *o);
    o->pool = PHREX_QUERY_POOL_DEFAULT;
}

void phrex_search_options_default(phrex_search_options *o) {
    o->unit = PHREX_UNIT_PHRASE;
    o->top_k = PHREX_SEARCH_DEFAULT_TOP_K;
    o->search_k = 0;
    o->max_answer_len = PHREX_SEARCH_DEFAULT_MAX_ANSWER_LEN;
}

static int has_inverted_lists(FaissIndex *index) {
    if (faiss_IndexIVF_cast(index)) return 1;
    FaissIndexPreTransform *pt = faiss_IndexPreTransform_cast(index);
    return pt && faiss_IndexIVF_cast(faiss_IndexPreTransform_index(pt));
}

int phrex_searcher_set_nprobe(phrex_searcher *s, int nprobe) { return phrex_dump_set_nprobe(s->dump, nprobe); }
int phrex_searcher_is_ivf(const phrex_searcher *s) { return s->ivf; }
phrex_dump *phrex_searcher_dump(phrex_searcher *s) { return s->dump; }
int phrex_searcher_reconstruct(const phrex_searcher *s, int64_t id, float *out) {
    return phrex_dump_reconstruct(s->dump, id, out);
}
const phrex_dump_info *phrex_searcher_info(const phrex_searcher *s) { return phrex_dump_get_info(s->dump); }
const phrex_query_model *phrex_searcher_query_model(const phrex_searcher *s) { return s->qm; }

void phrex_searcher_free(phrex_searcher *s) {
    if (!s) return;
    phrex_dump_free(s->dump);
    phrex_query_model_free(s->qm);
    free(s);
}

static int open_dump(phrex_searcher *s, const phrex_searcher_options *o) {
    int rc = phrex_dump_open_ex(&s->dump, o->dump_dir, o->model_dir, o->open_flags);
    if (rc) return rc;
    const phrex_dump_info *info = phrex_dump_get_info(s->dump);
    s->index = phrex_dump_index(s->dump);
    s->dim = info->dim;
    s->metric = info->metric;
    s->ivf = has_inverted_lists(s->index);
    if (info->kept <= 0) return phrex_fail(PHREX_ERR_FORMAT, "%s: the dump holds no vectors", o->dump_dir);
    if (phrex_query_model_dim(s->qm) != s->dim)
        return phrex_fail(PHREX_ERR_MISMATCH, "%s: vectors of %d dimensions, but the query encoder '%s' gives %d",
                          o->dump_dir, s->dim, phrex_query_model_name(s->qm), phrex_query_model_dim(s->qm));
    // Flat search of a few queries takes FAISS's scalar loop (BLAS only from
    // 20 queries up), which the Debian build leaves unvectorised: sgemm
    // through OpenBLAS is many times faster for our 2 queries. That holds for
    // an IVF index's coarse quantizer too (a flat index over the centroids:
    // fvec_inner_product_ref was 20% of an IVF8192 search's profile).
    // Process-wide.
    faiss_set_distance_compute_blas_threshold(1);
    if (o->nprobe > 0) return phrex_dump_set_nprobe(s->dump, o->nprobe);
    return s->ivf ? phrex_dump_set_nprobe(s->dump, PHREX_SEARCH_DEFAULT_NPROBE) : PHREX_OK;
}

int phrex_searcher_init_with_model(phrex_searcher **out, const phrex_searcher_options *o, phrex_query_model *qm) {
    *out = NULL;
    phrex_searcher *s = calloc(1, sizeof *s);
    if (!s) {
        phrex_query_model_free(qm);
        return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate a searcher");
    }
    s->qm = qm;
    int rc = open_dump(s, o);
    if (rc) {
        phrex_searcher_free(s);
        return rc;
    }
    *out = s;
    return PHREX_OK;
}

int phrex_searcher_init(phrex_searcher **out, const phrex_searcher_options *o) {
    *out = NULL;
    phrex_query_model *qm;
    int rc = phrex_query_model_init(&qm, o->query_model_dir ? o->query_model_dir : o->model_dir, o->pool);
    return rc ? rc : phrex_searcher_init_with_model(out, o, qm);
}

// --- per-thread buffers ---------------------------------------------------

// A chain of blocks that keeps its blocks when reset: pointers stay valid
// until the next reset, and once the blocks have grown to a query's needs
// no query allocates again.
typedef struct pool_block {
    struct pool_block *next;
    size_t cap, used;
    char data[];
} pool_block;

typedef struct {
    pool_block *head, *cur;
} byte_pool;

static void pool_reset(byte_pool *p) {
    for (pool_block *b = p->head; b; b = b->next) b->used = 0;
    p->cur = p->head;
}

static void pool_free(byte_pool *p) {
    for (pool_block *b = p->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    p->head = p->cur = NULL;
}

static pool_block *block_new(size_t cap) {
    pool_block *b = malloc(sizeof *b + cap);
    if (b) *b = (pool_block){NULL, cap, 0};
    return b;
}

static void *pool_alloc(byte_pool *p, size_t n) {
    n = (n + 7) & ~(size_t)7;
    for (pool_block *b = p->cur; b; b = b->next) {
        if (b->cap - b->used >= n) {
            p->cur = b;
            b->used += n;
            return b->data + b->used - n;
        }
    }
    // Only on a passage set larger than any before: a new block at the end.
    pool_block *nb = block_new(n > POOL_BLOCK_BYTES ? n : POOL_BLOCK_BYTES);
    if (!nb) return NULL;
    pool_block **tail = &p->head;
    while (*tail) tail = &(*tail)->next;
    *tail = nb;
    p->cur = nb;
    nb->used = n;
    return nb->data;
}

static char *pool_strdup(byte_pool *p, const char *s, size_t n) {
    char *d = pool_alloc(p, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

// A passage of the current query: id, title and text point into the LMDB
// map (the handle's reader keeps its read transaction open), the offsets
// and keep flags are copied into the pool (the reader reuses its buffers).
typedef struct {
    int64_t number, first_id;
    int32_t n_tokens;
    const char *id, *title, *text;
    size_t id_len, title_len, text_len;
    const int32_t *start, *end;
    const uint8_t *kept;
    int taken; // a passage/document result already came from it
} cached_passage;

// A FAISS hit resolved to its passage.
typedef struct {
    int slot;      // cached_passage index
    int32_t token;
    int64_t id;
    float score;   // q . v (or -|q - v|^2 on L2 dumps)
    int half;      // 0: start hit, 1: end hit
} hit;

typedef struct {
    float score, s_score, e_score;
    int slot;
    int32_t i, j; // token span, inclusive
    int64_t i_id, j_id; // their vector ids
} span;

// What an accepted result is de-duplicated on.
typedef struct {
    int slot;
    int32_t a, b;
    uint64_t key; // text or title hash
} seen_key;

struct phrex_search {
    phrex_searcher *s;
    phrex_search_options o;
    int k, C;
    phrex_query_encoder *qenc;
    phrex_dump_reader *rd; // this handle's LMDB read transaction
    float *q;        // (2, C): q_start, q_end
    float *D;        // (2, k) FAISS scores
    int64_t *I;      // (2, k) FAISS ids
    hit *hits;       // (2k)
    int n_hits;
    cached_passage *pass; // (2k)
    int n_pass;
    int *table;      // (table_size) passage number -> slot + 1, open addressing
    int table_size;
    float *vec;      // (C) one reconstructed vector
    span *cands;     // (2k * L)
    int n_cands;
    phrex_search_result *results; // (top_k)
    seen_key *seen;  // (top_k)
    byte_pool pool;  // passage copies and result strings
};

const phrex_search_options *phrex_search_get_options(const phrex_search *h) { return &h->o; }

void phrex_search_free(phrex_search *h) {
    if (!h) return;
    phrex_query_encoder_free(h->qenc);
    phrex_dump_reader_free(h->rd);
    free(h->q);
    free(h->D);
    free(h->I);
    free(h->hits);
    free(h->pass);
    free(h->table);
    free(h->vec);
    free(h->cands);
    free(h->results);
    free(h->seen);
    pool_free(&h->pool);
    free(h);
}

static int check_options(const phrex_search_options *o) {
    if (o->top_k < 1 || o->top_k > MAX_SEARCH_K)
        return phrex_fail(PHREX_ERR_INPUT, "top_k %d: must be in [1, %d]", o->top_k, MAX_SEARCH_K);
    if (o->search_k < 0 || o->search_k > MAX_SEARCH_K)
        return phrex_fail(PHREX_ERR_INPUT, "search_k %d: must be in [0, %d]", o->search_k, MAX_SEARCH_K);
    if (o->max_answer_len < 1 || o->max_answer_len > MAX_ANSWER_LEN)
        return phrex_fail(PHREX_ERR_INPUT, "max_answer_len %d: must be in [1, %d]", o->max_answer_len, MAX_ANSWER_LEN);
    if ((unsigned)o->unit > PHREX_UNIT_DOCUMENT) return phrex_fail(PHREX_ERR_INPUT, "unknown unit %d", (int)o->unit);
    return PHREX_OK;
}

// FAISS hits per half: DensePhrases asks for top_k phrases and 200 when
// passages are the unit, since many phrases fold into one passage.
static int choose_search_k(const phrex_search_options *o, int64_t ntotal) {
    int64_t k = o->search_k;
    if (k == 0 && o->unit == PHREX_UNIT_PHRASE) k = o->top_k;
    if (k == 0) k = 2 * o->top_k > PHREX_SEARCH_PASSAGE_SEARCH_K ? 2 * o->top_k : PHREX_SEARCH_PASSAGE_SEARCH_K;
    return (int)(k < ntotal ? k : ntotal);
}

// Offset copies for one query: up to 2k passages of 9 bytes a token (two
// offsets, a keep flag), twice that for passages longer than average, and
// the results' answer and sentence strings. A query with more grows the
// pool once, for good.
static size_t pool_estimate(const phrex_search *h, const phrex_dump_info *info) {
    double tokens = info->passages ? (double)info->tokens / (double)info->passages : 0;
    double bytes = 2.0 * 2.0 * (double)h->k * (9.0 * tokens + 32.0) + (double)h->o.top_k * 1024.0;
    return bytes < POOL_BLOCK_BYTES ? POOL_BLOCK_BYTES : bytes > (1u << 30) ? (1u << 30) : (size_t)bytes;
}

static int alloc_buffers(phrex_search *h) {
    size_t k = (size_t)h->k, C = (size_t)h->C, L = (size_t)h->o.max_answer_len;
    h->table_size = 16;
    while ((size_t)h->table_size < 4 * k) h->table_size *= 2;
    h->q = malloc(2 * C * sizeof *h->q);
    h->D = malloc(2 * k * sizeof *h->D);
    h->I = malloc(2 * k * sizeof *h->I);
    h->hits = malloc(2 * k * sizeof *h->hits);
    h->pass = malloc(2 * k * sizeof *h->pass);
    h->table = calloc((size_t)h->table_size, sizeof *h->table);
    h->vec = malloc(C * sizeof *h->vec);
    h->cands = malloc(2 * k * L * sizeof *h->cands);
    h->results = malloc((size_t)h->o.top_k * sizeof *h->results);
    h->seen = malloc((size_t)h->o.top_k * sizeof *h->seen);
    h->pool.head = h->pool.cur = block_new(pool_estimate(h, phrex_dump_get_info(h->s->dump)));
    if (!h->q || !h->D || !h->I || !h->hits || !h->pass || !h->table || !h->vec || !h->cands || !h->results ||
        !h->seen || !h->pool.head)
        return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate search buffers for %zu hits per half", k);
    return PHREX_OK;
}

int phrex_search_init(phrex_search **out, phrex_searcher *s, const phrex_search_options *o) {
    *out = NULL;
    phrex_search_options def;
    if (!o) {
        phrex_search_options_default(&def);
        o = &def;
    }
    int rc = check_options(o);
    if (rc) return rc;
    phrex_search *h = calloc(1, sizeof *h);
    if (!h) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate a search handle");
    h->s = s;
    h->o = *o;
    h->C = s->dim;
    h->k = choose_search_k(o, phrex_dump_get_info(s->dump)->kept);
    if ((rc = alloc_buffers(h)) || (rc = phrex_query_encoder_init(&h->qenc, s->qm)) ||
        (rc = phrex_dump_reader_init(&h->rd, s->dump))) {
        phrex_search_free(h);
        return rc;
    }
    *out = h;
    return PHREX_OK;
}

// --- resolving hits -------------------------------------------------------

static int copy_passage(phrex_search *h, const phrex_dump_passage *p, cached_passage *c) {
    size_t n = (size_t)p->n_tokens;
    byte_pool *pool = &h->pool;
    int32_t *start = pool_alloc(pool, n * sizeof *start + 1), *end = pool_alloc(pool, n * sizeof *end + 1);
    uint8_t *kept = pool_alloc(pool, n + 1);
    *c = (cached_passage){p->number, p->first_id, p->n_tokens, p->id, p->title, p->text, p->id_len, p->title_len,
                          p->text_len, start, end, kept, 0};
    if (!start || !end || !kept)
        return phrex_fail(PHREX_ERR_MEMORY, "cannot copy the offsets of passage %lld", (long long)p->number);
    memcpy(start, p->start, n * sizeof *start);
    memcpy(end, p->end, n * sizeof *end);
    memcpy(kept, p->kept, n);
    return PHREX_OK;
}

static unsigned hash_number(int64_t n, int size) {
    uint64_t x = (uint64_t)n * 0x9E3779B97F4A7C15ull;
    return (unsigned)(x >> 32) & (unsigned)(size - 1);
}

// The cache slot of passage p (just read with a hit), copying its offsets
// if it is new to this query.
static int passage_slot(phrex_search *h, const phrex_dump_passage *p, int *slot) {
    unsigned b = hash_number(p->number, h->table_size);
    while (h->table[b]) {
        if (h->pass[h->table[b] - 1].number == p->number) {
            *slot = h->table[b] - 1;
            return PHREX_OK;
        }
        b = (b + 1) & (unsigned)(h->table_size - 1);
    }
    int rc = copy_passage(h, p, &h->pass[h->n_pass]);
    if (rc) return rc;
    *slot = h->n_pass++;
    h->table[b] = *slot + 1;
    return PHREX_OK;
}

static float faiss_to_score(const phrex_searcher *s, float d) { return s->metric == PHREX_METRIC_L2 ? -d : d; }

// Each hit: one id-map step and one record read through this handle's
// reader (no lock: readers are independent).
static int resolve_hits(phrex_search *h) {
    memset(h->table, 0, (size_t)h->table_size * sizeof *h->table);
    h->n_hits = h->n_pass = 0;
    for (int half = 0; half < 2; half++)
        for (int r = 0; r < h->k; r++) {
            int64_t id = h->I[half * h->k + r];
            if (id < 0) continue; // fewer vectors than k (or an IVF probe came up short)
            phrex_dump_passage p;
            int32_t token;
            int slot, rc;
            if ((rc = phrex_dump_reader_locate_passage(h->rd, id, &p, &token)) || (rc = passage_slot(h, &p, &slot)))
                return rc;
            h->hits[h->n_hits++] = (hit){slot, token, id, faiss_to_score(h->s, h->D[half * h->k + r]), half};
        }
    return PHREX_OK;
}

// --- span scoring ---------------------------------------------------------

static int reconstruct(const phrex_search *h, int64_t id, float *out) {
    if (faiss_Index_reconstruct(h->s->index, id, out)) {
        const char *msg = faiss_get_last_error();
        return phrex_fail(PHREX_ERR_INTERNAL, "cannot reconstruct vector %lld from the index: %s", (long long)id,
                          msg ? msg : "unknown error");
    }
    return PHREX_OK;
}

// q . v, or -|q - v|^2 on L2 dumps (what FAISS ranks by, negated).
static float score_vec(const phrex_search *h, const float *q, const float *v) {
    float acc = 0;
    if (h->s->metric == PHREX_METRIC_L2) {
        for (int c = 0; c < h->C; c++) acc -= (q[c] - v[c]) * (q[c] - v[c]);
        return acc;
    }
    for (int c = 0; c < h->C; c++) acc += q[c] * v[c];
    return acc;
}

// Scores token t (vector id `id`) with the other half's query vector.
static int other_half(phrex_search *h, int half, int64_t id, float *score) {
    int rc = reconstruct(h, id, h->vec);
    if (rc) return rc;
    *score = score_vec(h, h->q + (size_t)(1 - half) * (size_t)h->C, h->vec);
    return PHREX_OK;
}

static void add_span(phrex_search *h, const hit *x, int32_t other, int64_t other_id, float other_score) {
    span *sp = &h->cands[h->n_cands++];
    if (x->half == 0)
        *sp = (span){x->score + other_score, x->score, other_score, x->slot, x->token, other, x->id, other_id};
    else *sp = (span){x->score + other_score, other_score, x->score, x->slot, other, x->token, other_id, x->id};
}

// A start hit at i takes every kept end j in [i, i + L); an end hit at j
// every kept start i in (j - L, j]. Kept tokens have consecutive ids within
// a passage, so the id of a neighbour is the hit's id plus or minus the
// kept tokens in between.
static int expand_hit(phrex_search *h, const hit *x) {
    const cached_passage *p = &h->pass[x->slot];
    int L = h->o.max_answer_len, step = x->half == 0 ? 1 : -1;
    int64_t id = x->id;
    for (int d = 0; d < L; d++) {
        int32_t t = x->token + step * d;
        if (t < 0 || t >= p->n_tokens) break;
        if (!p->kept[t]) continue;
        if (d > 0) id += step;
        float score;
        int rc = other_half(h, x->half, id, &score);
        if (rc) return rc;
        add_span(h, x, t, id, score);
    }
    return PHREX_OK;
}

static int cmp_span(const void *pa, const void *pb) {
    const span *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->slot != b->slot) return a->slot < b->slot ? -1 : 1; // ties: deterministic order
    if (a->i != b->i) return a->i < b->i ? -1 : 1;
    return (a->j > b->j) - (a->j < b->j);
}

static int score_spans(phrex_search *h) {
    h->n_cands = 0;
    for (int x = 0; x < h->n_hits; x++) {
        int rc = expand_hit(h, &h->hits[x]);
        if (rc) return rc;
    }
    qsort(h->cands, (size_t)h->n_cands, sizeof *h->cands, cmp_span);
    return PHREX_OK;
}

// --- units and de-duplication ---------------------------------------------

static int seen_span(const phrex_search *h, int n, int slot, int32_t a, int32_t b) {
    for (int r = 0; r < n; r++)
        if (h->seen[r].slot == slot && h->seen[r].a == a && h->seen[r].b == b) return 1;
    return 0;
}

static int seen_key_of(const phrex_search *h, int n, uint64_t key) {
    for (int r = 0; r < n; r++)
        if (h->seen[r].key == key) return 1;
    return 0;
}

// The byte span of a candidate's answer, widened to whole words.
static void answer_bytes(const phrex_search *h, const span *sp, int32_t *a, int32_t *b) {
    const cached_passage *p = &h->pass[sp->slot];
    *a = p->start[sp->i];
    *b = p->end[sp->j];
    phrex_span_widen_to_words(p->text, p->text_len, a, b);
}

// The unit's byte span and de-dup key for a candidate; returns 0 when an
// accepted result already covers it.
static int unit_of(phrex_search *h, int n, const span *sp, int32_t a, int32_t b, seen_key *key) {
    cached_passage *p = &h->pass[sp->slot];
    *key = (seen_key){sp->slot, a, b, 0};
    switch (h->o.unit) {
    case PHREX_UNIT_PHRASE:
        key->key = phrex_span_normal_hash(p->text + a, (size_t)(b - a)) ^
                   phrex_span_hash_bytes(1, p->title, p->title_len);
        return !seen_span(h, n, sp->slot, a, b) && !seen_key_of(h, n, key->key);
    case PHREX_UNIT_SENTENCE:
        phrex_span_sentence(p->text, p->text_len, a, b, &key->a, &key->b);
        key->key = phrex_span_hash_bytes(2, p->text + key->a, (size_t)(key->b - key->a));
        return !seen_span(h, n, sp->slot, key->a, key->b) && !seen_key_of(h, n, key->key);
    case PHREX_UNIT_PASSAGE:
        if (p->taken) return 0; // checked first: most candidates fall here, and hashing a passage costs
        key->a = 0, key->b = (int32_t)p->text_len;
        key->key = phrex_span_hash_bytes(3, p->text, p->text_len);
        return !seen_key_of(h, n, key->key);
    case PHREX_UNIT_DOCUMENT:
        key->a = 0, key->b = (int32_t)p->text_len;
        key->key = phrex_span_hash_bytes(4, p->title, p->title_len);
        return !seen_key_of(h, n, key->key);
    }
    return 0;
}

static int fill_result(phrex_search *h, const span *sp, int32_t a, int32_t b, const seen_key *key,
                       phrex_search_result *r) {
    cached_passage *p = &h->pass[sp->slot];
    p->taken = 1;
    char *answer = pool_strdup(&h->pool, p->text + a, (size_t)(b - a));
    char *text = h->o.unit == PHREX_UNIT_PHRASE ? answer
                 : key->a == 0 && key->b == (int32_t)p->text_len
                     ? (char *)p->text
                     : pool_strdup(&h->pool, p->text + key->a, (size_t)(key->b - key->a));
    if (!answer || !text) return phrex_fail(PHREX_ERR_MEMORY, "cannot hold a result");
    *r = (phrex_search_result){sp->score, sp->s_score, sp->e_score, text, (size_t)(key->b - key->a), key->a, key->b,
                               answer, (size_t)(b - a), a, b, sp->i, sp->j, sp->i_id, sp->j_id, p->number, p->id,
                               p->title, p->text, p->text_len};
    return PHREX_OK;
}

static int collect_units(phrex_search *h, phrex_search_output *out) {
    int n = 0;
    for (int c = 0; c < h->n_cands && n < h->o.top_k; c++) {
        const span *sp = &h->cands[c];
        int32_t a, b;
        seen_key key;
        answer_bytes(h, sp, &a, &b);
        if (!unit_of(h, n, sp, a, b, &key)) continue;
        int rc = fill_result(h, sp, a, b, &key, &h->results[n]);
        if (rc) return rc;
        h->seen[n++] = key;
    }
    out->results = h->results;
    out->n = n;
    out->candidates = h->n_cands;
    return PHREX_OK;
}

// --- the query ------------------------------------------------------------

static int faiss_search(phrex_search *h) {
    if (faiss_Index_search(h->s->index, 2, h->q, h->k, h->D, h->I)) {
        const char *msg = faiss_get_last_error();
        return phrex_fail(PHREX_ERR_INTERNAL, "FAISS search failed: %s", msg ? msg : "unknown error");
    }
    return PHREX_OK;
}

static int search_encoded(phrex_search *h, phrex_search_output *out) {
    double t0 = phrex_now_seconds();
    pool_reset(&h->pool);
    int rc;
    if ((rc = faiss_search(h)) || (rc = resolve_hits(h)) || (rc = score_spans(h)) || (rc = collect_units(h, out)))
        return rc;
    out->search_ms = 1e3 * (phrex_now_seconds() - t0);
    return PHREX_OK;
}

int phrex_search_vectors(phrex_search *h, const float *q_start, const float *q_end, phrex_search_output *out) {
    memset(out, 0, sizeof *out);
    memcpy(h->q, q_start, (size_t)h->C * sizeof *h->q);
    memcpy(h->q + h->C, q_end, (size_t)h->C * sizeof *h->q);
    return search_encoded(h, out);
}

int phrex_search_question(phrex_search *h, const char *question, size_t len, phrex_search_output *out) {
    memset(out, 0, sizeof *out);
    double t0 = phrex_now_seconds();
    int truncated = 0;
    int rc = phrex_query_encode(h->qenc, question, len, h->q, h->q + h->C, &truncated);
    if (rc) return rc;
    double encode_ms = 1e3 * (phrex_now_seconds() - t0);
    if ((rc = search_encoded(h, out))) return rc;
    out->encode_ms = encode_ms;
    out->truncated = truncated;
    return PHREX_OK;
}
