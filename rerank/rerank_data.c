#include "rerank/rerank_data.h"

#include "common/error.h"

#include <string.h>

int phrex_rerank_marker_ids(const phrex_wordpiece *wp, int32_t *mark_start, int32_t *mark_end) {
    *mark_start = phrex_wordpiece_token_id(wp, PHREX_RERANK_MARK_START, strlen(PHREX_RERANK_MARK_START));
    *mark_end = phrex_wordpiece_token_id(wp, PHREX_RERANK_MARK_END, strlen(PHREX_RERANK_MARK_END));
    if (*mark_start < 0 || *mark_end < 0)
        return phrex_fail(PHREX_ERR_FORMAT, "vocabulary has no marker token %s",
                          *mark_start < 0 ? PHREX_RERANK_MARK_START : PHREX_RERANK_MARK_END);
    return PHREX_OK;
}

int phrex_rerank_tokenizer_init(phrex_rerank_tokenizer *t, const phrex_wordpiece *wp, int max_seq_len,
                                int max_query_len, int32_t mark_start, int32_t mark_end) {
    memset(t, 0, sizeof *t);
    if (max_seq_len < PHREX_RERANK_MIN_SEQ_LEN)
        return phrex_fail(PHREX_ERR_INPUT, "reranker: max_seq_len %d is below %d", max_seq_len,
                          PHREX_RERANK_MIN_SEQ_LEN);
    int vocab = phrex_wordpiece_vocab_size(wp);
    if (mark_start < 0 || mark_start >= vocab || mark_end < 0 || mark_end >= vocab || mark_start == mark_end)
        return phrex_fail(PHREX_ERR_INPUT, "reranker: marker ids %d, %d are not two tokens of a %d-token vocabulary",
                          mark_start, mark_end, vocab);
    t->wp = wp;
    t->max_seq_len = max_seq_len;
    if (max_query_len <= 0) max_query_len = PHREX_RERANK_MAX_QUERY_LEN;
    t->max_query_len = max_query_len < max_seq_len / 2 ? max_query_len : max_seq_len / 2;
    t->cls = phrex_wordpiece_special(wp, PHREX_SPECIAL_CLS);
    t->sep = phrex_wordpiece_special(wp, PHREX_SPECIAL_SEP);
    t->colon = phrex_wordpiece_token_id(wp, ":", 1);
    if (t->colon < 0) t->colon = t->sep; // every BERT vocab has ':'; a toy one may not
    t->mark_start = mark_start, t->mark_end = mark_end;
    // Sized for typical inputs so the first calls do not grow them.
    if (phrex_tokens_init(&t->question, 128) || phrex_tokens_init(&t->title, 64) ||
        phrex_tokens_init(&t->passage, 1024)) {
        phrex_rerank_tokenizer_free(t);
        return phrex_fail(PHREX_ERR_MEMORY, "reranker: out of memory for token buffers");
    }
    return PHREX_OK;
}

void phrex_rerank_tokenizer_free(phrex_rerank_tokenizer *t) {
    phrex_tokens_free(&t->question);
    phrex_tokens_free(&t->title);
    phrex_tokens_free(&t->passage);
    memset(t, 0, sizeof *t);
}

int phrex_rerank_tokenizer_set_question(phrex_rerank_tokenizer *t, const char *question, size_t len) {
    t->question_set = 0;
    phrex_tokens_clear(&t->question);
    int rc = phrex_wordpiece_encode(t->wp, question, len, &t->question);
    if (rc) return phrex_fail_context(rc, "reranker: question");
    if (t->question.n == 0) return phrex_fail(PHREX_ERR_INPUT, "reranker: the question is empty (no word piece)");
    t->question_set = 1;
    return PHREX_OK;
}

// The passage pieces [*a, *b] that the byte span [s, e) overlaps; *b = *a - 1
// when it overlaps none.
static void span_pieces(const phrex_tokens *p, int32_t s, int32_t e, int *a, int *b) {
    int i = 0;
    while (i < p->n && p->end[i] <= s) i++;
    *a = i;
    int j = i - 1;
    while (j + 1 < p->n && p->start[j + 1] < e) j++;
    *b = j;
}

// The window [w0, w0 + n) of P pieces, n <= budget, that keeps [a, b] in its
// middle (a <= b + 1; a passage candidate passes a = 0, b = -1).
static void choose_window(int P, int budget, int a, int b, int *w0, int *n) {
    if (P <= budget) {
        *w0 = 0, *n = P;
        return;
    }
    int m = b - a + 1, start = a - (budget - m) / 2;
    if (m >= budget) start = a;
    if (start > P - budget) start = P - budget;
    if (start < 0) start = 0;
    *w0 = start, *n = budget;
}

static int check_candidate(const phrex_rerank_candidate *c) {
    if (!c->text && c->text_len) return phrex_fail(PHREX_ERR_INPUT, "reranker: candidate text is NULL");
    if (c->text_len > INT32_MAX) return phrex_fail(PHREX_ERR_INPUT, "reranker: candidate text over 2 GiB");
    if (c->span_start == -1 && c->span_end == -1) return PHREX_OK;
    if (c->span_start < 0 || c->span_end <= c->span_start || (size_t)c->span_end > c->text_len)
        return phrex_fail(PHREX_ERR_INPUT,
                          "reranker: candidate span [%d, %d) is not inside its %zu-byte text (or -1, -1 for a passage)",
                          c->span_start, c->span_end, c->text_len);
    return PHREX_OK;
}

static inline void put(int32_t *ids, int32_t *types, int32_t *os, int32_t *oe, int at, int32_t id, int32_t type,
                       int32_t s, int32_t e) {
    ids[at] = id, types[at] = type;
    if (os) os[at] = s, oe[at] = e;
}

int phrex_rerank_tokenizer_pair(phrex_rerank_tokenizer *t, const phrex_rerank_candidate *c, int32_t *ids,
                                int32_t *type_ids, int32_t *off_start, int32_t *off_end,
                                phrex_rerank_pair_info *info) {
    if (!t->question_set) return phrex_fail(PHREX_ERR_INPUT, "reranker: no question set");
    int rc = check_candidate(c);
    if (rc) return rc;
    phrex_tokens_clear(&t->title);
    phrex_tokens_clear(&t->passage);
    if (c->title && c->title_len && (rc = phrex_wordpiece_encode(t->wp, c->title, c->title_len, &t->title)))
        return phrex_fail_context(rc, "reranker: candidate title");
    if (c->text_len && (rc = phrex_wordpiece_encode(t->wp, c->text, c->text_len, &t->passage)))
        return phrex_fail_context(rc, "reranker: candidate text");
    int marked = c->span_start >= 0, L = t->max_seq_len;
    int nq = t->question.n < t->max_query_len - 2 ? t->question.n : t->max_query_len - 2;
    int title_cap = L / 8 < PHREX_RERANK_MAX_TITLE_PIECES ? L / 8 : PHREX_RERANK_MAX_TITLE_PIECES;
    int nt = t->title.n < title_cap ? t->title.n : title_cap;
    int budget = L - (nq + 2) - (nt ? nt + 1 : 0) - 1 - (marked ? 2 : 0);
    int a = 0, b = -1, w0, nw;
    if (marked) span_pieces(&t->passage, c->span_start, c->span_end, &a, &b);
    choose_window(t->passage.n, budget, a, b, &w0, &nw);
    int at = 0;
    put(ids, type_ids, off_start, off_end, at++, t->cls, 0, -1, -1);
    for (int i = 0; i < nq; i++) put(ids, type_ids, off_start, off_end, at++, t->question.ids[i], 0, -1, -1);
    put(ids, type_ids, off_start, off_end, at++, t->sep, 0, -1, -1);
    int q_tokens = at;
    for (int i = 0; i < nt; i++) put(ids, type_ids, off_start, off_end, at++, t->title.ids[i], 1, -1, -1);
    if (nt) put(ids, type_ids, off_start, off_end, at++, t->colon, 1, -1, -1);
    int passage_at = at, ms = -1, me = -1;
    // m0 before piece a, m1 after piece b, both clamped into the window so a
    // span cut by the window is still bracketed.
    int mark_a = a < w0 ? w0 : (a > w0 + nw ? w0 + nw : a);
    int mark_b = b + 1 > w0 + nw ? w0 + nw : (b + 1 < mark_a ? mark_a : b + 1);
    for (int i = w0; i <= w0 + nw; i++) {
        if (marked && i == mark_a) ms = at, put(ids, type_ids, off_start, off_end, at++, t->mark_start, 1, -1, -1);
        if (marked && i == mark_b) me = at, put(ids, type_ids, off_start, off_end, at++, t->mark_end, 1, -1, -1);
        if (i < w0 + nw)
            put(ids, type_ids, off_start, off_end, at++, t->passage.ids[i], 1, t->passage.start[i], t->passage.end[i]);
    }
    put(ids, type_ids, off_start, off_end, at++, t->sep, 1, -1, -1);
    if (info)
        *info = (phrex_rerank_pair_info){.len = at, .question_tokens = q_tokens,
                                         .question_truncated = nq < t->question.n, .passage_at = passage_at,
                                         .first_piece = w0, .n_pieces = nw, .passage_pieces = t->passage.n,
                                         .mark_start_at = ms, .mark_end_at = me,
                                         .span_cut = marked && (a < w0 || b >= w0 + nw)};
    return PHREX_OK;
}

// --- mined candidates -----------------------------------------------------------

#include "data/corpus.h"
#include "data/lines.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const char *id;
    int index;
} par_key;

struct phrex_rerank_set {
    phrex_rerank_paragraph *pars;
    int n_pars;
    par_key *keys; // (n_pars) sorted by id
    phrex_rerank_question *qs;
    int n_qs, cap_qs;
    phrex_rerank_span *spans;
    size_t n_spans, cap_spans;
    int k;
    char **strings; // everything strdup'd, freed together
    size_t n_strings, cap_strings;
};

// A block of `bytes` owned by the set (freed with it).
static void *keep_block(phrex_rerank_set *s, size_t bytes) {
    if (s->n_strings == s->cap_strings) {
        size_t cap = s->cap_strings ? 2 * s->cap_strings : 1024;
        char **p = realloc(s->strings, cap * sizeof *p);
        if (!p) return NULL;
        s->strings = p, s->cap_strings = cap;
    }
    char *c = malloc(bytes);
    return c ? (s->strings[s->n_strings++] = c) : NULL;
}

static char *keep(phrex_rerank_set *s, const char *text, size_t len) {
    char *c = keep_block(s, len + 1);
    if (!c) return NULL;
    memcpy(c, text, len);
    c[len] = 0;
    return c;
}

static int cmp_key(const void *a, const void *b) { return strcmp(((const par_key *)a)->id, ((const par_key *)b)->id); }

static int find_par(const phrex_rerank_set *s, const char *id) {
    par_key k = {id, 0};
    const par_key *f = bsearch(&k, s->keys, (size_t)s->n_pars, sizeof k, cmp_key);
    return f ? f->index : -1;
}

static int title_listed(const cJSON *titles, const char *title) {
    const cJSON *t;
    cJSON_ArrayForEach(t, titles) if (cJSON_IsString(t) && !strcmp(t->valuestring, title)) return 1;
    return 0;
}

// The paragraphs of the listed articles, in corpus order.
static int load_paragraphs(phrex_rerank_set *s, const char *squad, const cJSON *titles) {
    phrex_corpus_options co = {.format = PHREX_CORPUS_SQUAD_JSON};
    phrex_corpus *c;
    int rc = phrex_corpus_init(&c, squad, &co), has = 1, cap = 0;
    if (rc) return rc;
    while (!rc) {
        phrex_passage p;
        if ((rc = phrex_corpus_next(c, &p, &has)) || !has) break;
        if (!title_listed(titles, p.title)) continue;
        if (s->n_pars == cap) {
            cap = cap ? 2 * cap : 1024;
            phrex_rerank_paragraph *np = realloc(s->pars, (size_t)cap * sizeof *np);
            if (!np) {
                rc = phrex_fail(PHREX_ERR_MEMORY, "candidates: out of memory");
                break;
            }
            s->pars = np;
        }
        phrex_rerank_paragraph *q = &s->pars[s->n_pars];
        q->id = keep(s, p.id, p.id_len), q->title = keep(s, p.title, p.title_len), q->text = keep(s, p.text, p.text_len);
        q->title_len = p.title_len, q->text_len = p.text_len;
        if (!q->id || !q->title || !q->text) rc = phrex_fail(PHREX_ERR_MEMORY, "candidates: out of memory");
        s->n_pars++;
    }
    phrex_corpus_free(c);
    if (rc) return rc;
    s->keys = malloc((size_t)(s->n_pars + 1) * sizeof *s->keys);
    if (!s->keys) return phrex_fail(PHREX_ERR_MEMORY, "candidates: out of memory");
    for (int i = 0; i < s->n_pars; i++) s->keys[i] = (par_key){s->pars[i].id, i};
    qsort(s->keys, (size_t)s->n_pars, sizeof *s->keys, cmp_key);
    return PHREX_OK;
}

static int read_header(phrex_rerank_set *s, const char *path, const char *line, const char *squad_override) {
    cJSON *h = cJSON_Parse(line);
    int rc = PHREX_OK;
    const cJSON *f = h ? cJSON_GetObjectItemCaseSensitive(h, "format") : NULL;
    const cJSON *v = h ? cJSON_GetObjectItemCaseSensitive(h, "version") : NULL;
    const cJSON *sq = h ? cJSON_GetObjectItemCaseSensitive(h, "squad") : NULL;
    const cJSON *ti = h ? cJSON_GetObjectItemCaseSensitive(h, "titles") : NULL;
    const cJSON *k = h ? cJSON_GetObjectItemCaseSensitive(h, "k") : NULL;
    if (!h) rc = phrex_fail(PHREX_ERR_FORMAT, "%s:1: the header is not valid JSON", path);
    else if (!cJSON_IsString(f) || strcmp(f->valuestring, PHREX_RERANK_CANDIDATES_FORMAT))
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s:1: field 'format' must be \"%s\"", path, PHREX_RERANK_CANDIDATES_FORMAT);
    else if (!cJSON_IsNumber(v) || v->valueint < 1 || v->valueint > PHREX_RERANK_CANDIDATES_VERSION)
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s:1: field 'version' must be 1..%d", path,
                        PHREX_RERANK_CANDIDATES_VERSION);
    else if (!cJSON_IsString(sq) && !squad_override)
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s:1: field 'squad' (a path) is missing", path);
    else if (!cJSON_IsArray(ti) || cJSON_GetArraySize(ti) < 1)
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s:1: field 'titles' must be a non-empty array of strings", path);
    else if (!cJSON_IsNumber(k) || k->valueint < 1)
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s:1: field 'k' must be a positive integer", path);
    if (!rc) {
        s->k = k->valueint;
        rc = load_paragraphs(s, squad_override ? squad_override : sq->valuestring, ti);
        if (!rc && s->n_pars == 0)
            rc = phrex_fail(PHREX_ERR_MISMATCH, "%s: none of its titles is in %s", path,
                            squad_override ? squad_override : sq->valuestring);
    }
    cJSON_Delete(h);
    return rc;
}

// [PARAGRAPH_ID, start, end, ...] -> paragraph index and a span inside it.
static int read_span(const phrex_rerank_set *s, const cJSON *a, int min_size, const char *where, int32_t *par,
                     int32_t *start, int32_t *end) {
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) < min_size || !cJSON_IsString(cJSON_GetArrayItem(a, 0)) ||
        !cJSON_IsNumber(cJSON_GetArrayItem(a, 1)) || !cJSON_IsNumber(cJSON_GetArrayItem(a, 2)))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: expected [paragraph id, start, end%s]", where,
                          min_size > 3 ? ", score, match" : "");
    const char *id = cJSON_GetArrayItem(a, 0)->valuestring;
    *par = find_par(s, id);
    if (*par < 0) return phrex_fail(PHREX_ERR_MISMATCH, "%s: paragraph \"%s\" is not in the SQuAD file", where, id);
    double b = cJSON_GetArrayItem(a, 1)->valuedouble, e = cJSON_GetArrayItem(a, 2)->valuedouble;
    if (!(b >= 0 && e > b && e <= (double)s->pars[*par].text_len))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: span [%g, %g) is not inside paragraph \"%s\" (%zu bytes)", where, b, e,
                          id, s->pars[*par].text_len);
    *start = (int32_t)b, *end = (int32_t)e;
    return PHREX_OK;
}

static int grow_spans(phrex_rerank_set *s, size_t need) {
    if (need <= s->cap_spans) return PHREX_OK;
    size_t cap = s->cap_spans ? s->cap_spans : 4096;
    while (cap < need) cap *= 2;
    phrex_rerank_span *p = realloc(s->spans, cap * sizeof *p);
    if (!p) return phrex_fail(PHREX_ERR_MEMORY, "candidates: out of memory");
    s->spans = p, s->cap_spans = cap;
    return PHREX_OK;
}

static int read_question(phrex_rerank_set *s, const cJSON *o, const char *where) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id"), *q = cJSON_GetObjectItemCaseSensitive(o, "question");
    const cJSON *ans = cJSON_GetObjectItemCaseSensitive(o, "answers"), *gold = cJSON_GetObjectItemCaseSensitive(o, "gold");
    const cJSON *ph = cJSON_GetObjectItemCaseSensitive(o, "phrases");
    char field[4600];
    if (!cJSON_IsString(id)) return phrex_fail(PHREX_ERR_FORMAT, "%s: field 'id' must be a string", where);
    if (!cJSON_IsString(q) || !q->valuestring[0])
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field 'question' must be a non-empty string", where);
    if (!cJSON_IsArray(ans) || cJSON_GetArraySize(ans) < 1)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field 'answers' must be a non-empty array of strings", where);
    if (!cJSON_IsArray(ph)) return phrex_fail(PHREX_ERR_FORMAT, "%s: field 'phrases' must be an array", where);
    if (s->n_qs == s->cap_qs) {
        int cap = s->cap_qs ? 2 * s->cap_qs : 1024;
        phrex_rerank_question *p = realloc(s->qs, (size_t)cap * sizeof *p);
        if (!p) return phrex_fail(PHREX_ERR_MEMORY, "candidates: out of memory");
        s->qs = p, s->cap_qs = cap;
    }
    phrex_rerank_question *x = &s->qs[s->n_qs];
    memset(x, 0, sizeof *x);
    snprintf(field, sizeof field, "%s: field 'gold'", where);
    int rc = read_span(s, gold, 3, field, &x->gold_par, &x->gold_start, &x->gold_end);
    if (rc) return rc;
    x->id = keep(s, id->valuestring, strlen(id->valuestring));
    x->question_len = strlen(q->valuestring);
    x->question = keep(s, q->valuestring, x->question_len);
    int na = cJSON_GetArraySize(ans);
    char **answers = keep_block(s, (size_t)na * sizeof *answers);
    if (!x->id || !x->question || !answers) return phrex_fail(PHREX_ERR_MEMORY, "candidates: out of memory");
    for (int i = 0; i < na; i++) {
        const cJSON *a = cJSON_GetArrayItem(ans, i);
        if (!cJSON_IsString(a))
            return phrex_fail(PHREX_ERR_FORMAT, "%s: field 'answers'[%d] must be a string", where, i);
        if (!(answers[i] = keep(s, a->valuestring, strlen(a->valuestring))))
            return phrex_fail(PHREX_ERR_MEMORY, "candidates: out of memory");
    }
    x->answers = (const char *const *)answers, x->n_answers = na;
    int n = cJSON_GetArraySize(ph);
    if ((rc = grow_spans(s, s->n_spans + (size_t)n))) return rc;
    x->first_span = (int)s->n_spans, x->n_spans = n;
    for (int i = 0; i < n; i++) {
        const cJSON *a = cJSON_GetArrayItem(ph, i);
        phrex_rerank_span *sp = &s->spans[s->n_spans + (size_t)i];
        snprintf(field, sizeof field, "%s: field 'phrases'[%d]", where, i);
        if ((rc = read_span(s, a, 5, field, &sp->par, &sp->start, &sp->end))) return rc;
        const cJSON *sc = cJSON_GetArrayItem(a, 3), *m = cJSON_GetArrayItem(a, 4);
        if (!cJSON_IsNumber(sc) || !cJSON_IsNumber(m))
            return phrex_fail(PHREX_ERR_FORMAT, "%s: score and match must be numbers", field);
        sp->score = (float)sc->valuedouble, sp->match = m->valueint != 0;
    }
    s->n_spans += (size_t)n;
    s->n_qs++;
    return PHREX_OK;
}

int phrex_rerank_set_load(phrex_rerank_set **out, const char *path, const char *squad_path) {
    *out = NULL;
    phrex_lines *lr;
    int rc = phrex_lines_init(&lr, path, 0);
    if (rc) return rc;
    phrex_rerank_set *s = calloc(1, sizeof *s);
    if (!s) return phrex_lines_free(lr), phrex_fail(PHREX_ERR_MEMORY, "candidates: out of memory");
    char *line, where[4200];
    size_t len;
    int has = 0;
    rc = phrex_lines_next(lr, &line, &len, &has);
    if (!rc && !has) rc = phrex_fail(PHREX_ERR_FORMAT, "%s: empty file (no header)", path);
    if (!rc) rc = read_header(s, path, line, squad_path);
    while (!rc) {
        if ((rc = phrex_lines_next(lr, &line, &len, &has)) || !has) break;
        snprintf(where, sizeof where, "%s:%zu", path, phrex_lines_number(lr));
        cJSON *o = cJSON_ParseWithLength(line, len);
        if (!o || !cJSON_IsObject(o)) rc = phrex_fail(PHREX_ERR_FORMAT, "%s: not a JSON object", where);
        else rc = read_question(s, o, where);
        cJSON_Delete(o);
    }
    phrex_lines_free(lr);
    if (!rc && s->n_qs == 0) rc = phrex_fail(PHREX_ERR_FORMAT, "%s: no question after the header", path);
    if (rc) {
        phrex_rerank_set_free(s);
        return rc;
    }
    *out = s;
    return PHREX_OK;
}

void phrex_rerank_set_free(phrex_rerank_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_strings; i++) free(s->strings[i]);
    free(s->strings), free(s->pars), free(s->keys), free(s->qs), free(s->spans);
    free(s);
}

int phrex_rerank_set_questions(const phrex_rerank_set *s) { return s->n_qs; }
int phrex_rerank_set_paragraphs(const phrex_rerank_set *s) { return s->n_pars; }
int phrex_rerank_set_k(const phrex_rerank_set *s) { return s->k; }
const phrex_rerank_question *phrex_rerank_set_question(const phrex_rerank_set *s, int i) { return &s->qs[i]; }
const phrex_rerank_paragraph *phrex_rerank_set_paragraph(const phrex_rerank_set *s, int i) { return &s->pars[i]; }
const phrex_rerank_span *phrex_rerank_set_spans(const phrex_rerank_set *s) { return s->spans; }

// --- pooling ------------------------------------------------------------------------

int phrex_rerank_pool_rows(const int32_t *ids, int len, phrex_rerank_pool pool, int32_t mark_start, int32_t mark_end,
                           int rows[PHREX_RERANK_POOL_MAX_ROWS]) {
    rows[0] = 0;
    if (pool != PHREX_RERANK_POOL_MARKS) return 1;
    int m0 = -1, m1 = -1;
    for (int i = 1; i < len; i++) {
        if (ids[i] == mark_start && m0 < 0) m0 = i;
        else if (ids[i] == mark_end && m1 < 0) m1 = i;
    }
    if (m0 < 0 || m1 < 0) return 1; // a passage candidate
    rows[1] = m0, rows[2] = m1;
    return 3;
}

const char *phrex_rerank_pool_name(phrex_rerank_pool pool) { return pool == PHREX_RERANK_POOL_MARKS ? "marks" : "cls"; }

int phrex_rerank_pool_parse(const char *name, phrex_rerank_pool *pool) {
    if (!strcmp(name, "cls")) return *pool = PHREX_RERANK_POOL_CLS, PHREX_OK;
    if (!strcmp(name, "marks")) return *pool = PHREX_RERANK_POOL_MARKS, PHREX_OK;
    return phrex_fail(PHREX_ERR_FORMAT, "pool \"%s\" is not \"cls\" or \"marks\"", name);
}
