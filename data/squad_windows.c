#include "data/squad_windows.h"

#include "common/error.h"
#include "data/qa.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct phrex_squad_windows {
    phrex_squad_window_options opt;
    int32_t cls, sep;
    // Paragraph pieces of every kept paragraph, back to back.
    int32_t *piece_ids, *piece_start, *piece_end;
    int n_pieces, cap_pieces;
    int32_t *query_ids;
    int n_query, cap_query;
    phrex_squad_paragraph *paragraphs;
    int n_paragraphs, cap_paragraphs;
    phrex_squad_window *windows;
    int n_windows, cap_windows;
    phrex_squad_example *examples;
    int n_examples, cap_examples;
    char **strings; // every malloc'd string (contexts, ids, answers) and answer array
    int n_strings, cap_strings;
    phrex_squad_window_stats stats;
};

// Grows *p (of *cap elements of size sz) to hold `need` elements.
static int grow(void **p, int *cap, int need, size_t sz) {
    if (need <= *cap) return PHREX_OK;
    int c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * sz);
    if (!q) return phrex_fail(PHREX_ERR_MEMORY, "squad windows: out of memory");
    *p = q, *cap = c;
    return PHREX_OK;
}

#define GROW(arr, cap, need) grow((void **)&(arr), &(cap), (need), sizeof *(arr))

// The three piece arrays grow together.
static int grow_pieces(phrex_squad_windows *s, int need) {
    if (need <= s->cap_pieces) return PHREX_OK;
    int c = s->cap_pieces ? s->cap_pieces : 4096;
    while (c < need) c *= 2;
    int32_t **arrays[3] = {&s->piece_ids, &s->piece_start, &s->piece_end};
    for (int i = 0; i < 3; i++) {
        int32_t *q = realloc(*arrays[i], (size_t)c * sizeof **arrays[i]);
        if (!q) return phrex_fail(PHREX_ERR_MEMORY, "squad windows: out of memory");
        *arrays[i] = q;
    }
    s->cap_pieces = c;
    return PHREX_OK;
}

static char *keep_string(phrex_squad_windows *s, const char *text, size_t len) {
    if (GROW(s->strings, s->cap_strings, s->n_strings + 1)) return NULL;
    char *c = malloc(len + 1);
    if (!c) return NULL;
    memcpy(c, text, len);
    c[len] = '\0';
    s->strings[s->n_strings++] = c;
    return c;
}

int phrex_squad_read_titles(const char *path, char ***titles, int *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot open title list", path);
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (int c; (c = fgetc(f)) != EOF;) {
        if (len + 2 > cap) {
            cap = cap ? cap * 2 : 4096;
            char *t = realloc(text, cap);
            if (!t) return free(text), fclose(f), phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
            text = t;
        }
        text[len++] = (char)c;
    }
    fclose(f);
    if (len == 0) return free(text), phrex_fail(PHREX_ERR_FORMAT, "%s: empty title list", path);
    if (text[len - 1] != '\n') text[len++] = '\n';
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    // One block: the pointer array, then the text it points into.
    char **out = malloc((size_t)lines * sizeof *out + len);
    if (!out) return free(text), phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    char *body = (char *)(out + lines);
    memcpy(body, text, len);
    free(text);
    int k = 0;
    const char *end = body + len; // the copy has no NUL: search within it
    for (char *p = body; k < lines; k++) {
        char *nl = memchr(p, '\n', (size_t)(end - p)); // every line ends in '\n' (added above)
        *nl = '\0';
        if (nl > p && nl[-1] == '\r') nl[-1] = '\0';
        // The message is formatted before free: p points into out.
        int rc = !*p ? phrex_fail(PHREX_ERR_FORMAT, "%s:%d: empty title", path, k + 1) : PHREX_OK;
        for (int j = 0; !rc && j < k; j++)
            if (!strcmp(out[j], p))
                rc = phrex_fail(PHREX_ERR_FORMAT, "%s:%d: title '%s' repeats line %d", path, k + 1, p, j + 1);
        if (rc) return free(out), rc;
        out[k] = p;
        p = nl + 1;
    }
    *titles = out, *n = lines;
    return PHREX_OK;
}

// Windows of a paragraph of n pieces, as HF's run_squad cuts them: each
// at most max_seq_len - 2 pieces, starting doc_stride pieces apart, the
// last one reaching the end.
static int add_windows(phrex_squad_windows *s, int paragraph, int n) {
    int room = s->opt.max_seq_len - 2;
    for (int start = 0;;) {
        int len = n - start < room ? n - start : room;
        if (GROW(s->windows, s->cap_windows, s->n_windows + 1)) return PHREX_ERR_MEMORY;
        s->windows[s->n_windows++] = (phrex_squad_window){paragraph, start, len};
        if (start + len >= n) return PHREX_OK;
        start += len < s->opt.doc_stride ? len : s->opt.doc_stride;
    }
}

static int add_paragraph(phrex_squad_windows *s, const phrex_wordpiece *wp, phrex_tokens *t, const phrex_qa *q,
                         int article) {
    phrex_tokens_clear(t);
    int rc = phrex_wordpiece_encode(wp, q->context, q->context_len, t);
    if (rc) return phrex_fail_context(rc, "%s:%zu: context", q->file, q->line), rc;
    if ((rc = GROW(s->paragraphs, s->cap_paragraphs, s->n_paragraphs + 1))) return rc;
    if ((rc = grow_pieces(s, s->n_pieces + t->n))) return rc;
    memcpy(s->piece_ids + s->n_pieces, t->ids, (size_t)t->n * 4);
    memcpy(s->piece_start + s->n_pieces, t->start, (size_t)t->n * 4);
    memcpy(s->piece_end + s->n_pieces, t->end, (size_t)t->n * 4);
    char *ctx = keep_string(s, q->context, q->context_len);
    if (!ctx) return phrex_fail(PHREX_ERR_MEMORY, "squad windows: out of memory");
    phrex_squad_paragraph *p = &s->paragraphs[s->n_paragraphs];
    *p = (phrex_squad_paragraph){ctx, q->context_len, s->n_pieces, t->n, s->n_windows, 0, article};
    s->n_pieces += t->n;
    if ((rc = add_windows(s, s->n_paragraphs, t->n))) return rc;
    p->n_windows = s->n_windows - p->first_window;
    s->n_paragraphs++;
    s->stats.paragraphs++;
    return PHREX_OK;
}

// Maps the first answer to pieces [*a, *b] of paragraph p; returns the
// stats counter to bump when it cannot (NULL: found).
static size_t *map_answer(phrex_squad_windows *s, const phrex_squad_paragraph *p, const phrex_qa *q, int *a, int *b) {
    if (q->n_answers == 0 || q->answers[0].start_byte < 0) return &s->stats.no_answer;
    const phrex_qa_answer *ans = &q->answers[0];
    size_t b0 = (size_t)ans->start_byte, b1 = b0 + ans->len;
    if (b1 > q->context_len || memcmp(q->context + b0, ans->text, ans->len) != 0) return &s->stats.mismatch;
    const int32_t *st = s->piece_start + p->first_piece, *en = s->piece_end + p->first_piece;
    *a = *b = -1;
    for (int i = 0; i < p->n_pieces; i++) {
        if (*a < 0 && (size_t)en[i] > b0) *a = i;
        if ((size_t)st[i] < b1) *b = i;
    }
    if (*a < 0 || *b < *a) return &s->stats.empty;
    return NULL;
}

// The window of p holding pieces [a, b] with the most context on its
// thinner side (ties: the earlier window), or -1.
static int best_window(const phrex_squad_windows *s, const phrex_squad_paragraph *p, int a, int b) {
    int best = -1, best_score = -1;
    for (int w = p->first_window; w < p->first_window + p->n_windows; w++) {
        const phrex_squad_window *win = &s->windows[w];
        if (a < win->piece_start || b >= win->piece_start + win->n_pieces) continue;
        int left = a - win->piece_start, right = win->piece_start + win->n_pieces - 1 - b;
        int score = left < right ? left : right;
        if (score > best_score) best = w, best_score = score;
    }
    return best;
}

static int add_query(phrex_squad_windows *s, const phrex_wordpiece *wp, phrex_tokens *t, const phrex_qa *q,
                     phrex_squad_example *e) {
    phrex_tokens_clear(t);
    int rc = phrex_wordpiece_encode(wp, q->question, q->question_len, t);
    if (rc) return phrex_fail_context(rc, "%s:%zu: question", q->file, q->line), rc;
    int n = t->n < s->opt.max_query_len - 2 ? t->n : s->opt.max_query_len - 2;
    if ((rc = GROW(s->query_ids, s->cap_query, s->n_query + n + 2))) return rc;
    int32_t *ids = s->query_ids + s->n_query;
    ids[0] = s->cls;
    memcpy(ids + 1, t->ids, (size_t)n * 4);
    ids[n + 1] = s->sep;
    e->query_offset = s->n_query, e->query_len = n + 2;
    s->n_query += n + 2;
    return PHREX_OK;
}

static int keep_answers(phrex_squad_windows *s, const phrex_qa *q, phrex_squad_example *e) {
    if (GROW(s->strings, s->cap_strings, s->n_strings + 1)) return PHREX_ERR_MEMORY;
    char **arr = malloc((q->n_answers ? q->n_answers : 1) * sizeof *arr);
    if (!arr) return phrex_fail(PHREX_ERR_MEMORY, "squad windows: out of memory");
    s->strings[s->n_strings++] = (char *)arr;
    for (size_t i = 0; i < q->n_answers; i++)
        if (!(arr[i] = keep_string(s, q->answers[i].text, q->answers[i].len)))
            return phrex_fail(PHREX_ERR_MEMORY, "squad windows: out of memory");
    e->answers = (const char *const *)arr, e->n_answers = q->n_answers;
    e->id = keep_string(s, q->id, q->id_len);
    return e->id ? PHREX_OK : phrex_fail(PHREX_ERR_MEMORY, "squad windows: out of memory");
}

static int add_question(phrex_squad_windows *s, const phrex_wordpiece *wp, phrex_tokens *t, const phrex_qa *q) {
    s->stats.questions++;
    const phrex_squad_paragraph *p = &s->paragraphs[s->n_paragraphs - 1];
    int a, b;
    size_t *skip = map_answer(s, p, q, &a, &b);
    int w = skip ? -1 : best_window(s, p, a, b);
    if (!skip && w < 0) skip = &s->stats.outside;
    if (skip) return ++*skip, PHREX_OK;
    int rc = GROW(s->examples, s->cap_examples, s->n_examples + 1);
    if (rc) return rc;
    phrex_squad_example *e = &s->examples[s->n_examples];
    const phrex_squad_window *win = &s->windows[w];
    *e = (phrex_squad_example){.paragraph = s->n_paragraphs - 1, .window = w,
                               .gold_start = a - win->piece_start + 1, .gold_end = b - win->piece_start + 1};
    if ((rc = add_query(s, wp, t, q, e)) || (rc = keep_answers(s, q, e))) return rc;
    s->n_examples++;
    s->stats.kept++;
    return PHREX_OK;
}

static int title_index(const char *const *titles, int n, const char *title) {
    for (int i = 0; i < n; i++)
        if (!strcmp(titles[i], title)) return i;
    return -1;
}

// Reads every record, adding the selected ones; seen[i] marks titles met.
static int read_file(phrex_squad_windows *s, phrex_qa_reader *r, const phrex_wordpiece *wp, const char *const *titles,
                     int n_titles, char *seen) {
    phrex_tokens t;
    int rc = phrex_tokens_init(&t, 512);
    if (rc) return rc;
    const char *last_context = NULL;
    int article = -1, selected = 0, n_articles = 0;
    char *last_title = NULL;
    phrex_qa q;
    int has;
    while (!(rc = phrex_qa_next(r, &q, &has)) && has) {
        if (!last_title || strcmp(last_title, q.title)) {
            free(last_title);
            if (!(last_title = strdup(q.title))) { rc = phrex_fail(PHREX_ERR_MEMORY, "out of memory"); break; }
            article = titles ? title_index(titles, n_titles, q.title) : n_articles;
            n_articles++;
            selected = article >= 0;
            if (selected) seen[titles ? article : 0] = 1, s->stats.articles++;
            last_context = NULL;
        }
        if (!selected) continue;
        // Questions of one paragraph come together; a new context is a new paragraph.
        int new_paragraph = !last_context || s->paragraphs[s->n_paragraphs - 1].context_len != q.context_len ||
                            memcmp(s->paragraphs[s->n_paragraphs - 1].context, q.context, q.context_len);
        if (new_paragraph && (rc = add_paragraph(s, wp, &t, &q, article))) break;
        last_context = s->paragraphs[s->n_paragraphs - 1].context;
        if ((rc = add_question(s, wp, &t, &q))) break;
    }
    free(last_title);
    phrex_tokens_free(&t);
    return rc;
}

int phrex_squad_windows_init(phrex_squad_windows **out, const char *squad_path, const phrex_wordpiece *wp,
                             const char *const *titles, int n_titles, const phrex_squad_window_options *opts) {
    *out = NULL;
    phrex_squad_window_options o = opts ? *opts : (phrex_squad_window_options){384, 128, 64};
    if (o.max_seq_len < 3 || o.doc_stride < 1 || o.max_query_len < 3)
        return phrex_fail(PHREX_ERR_INPUT,
                          "squad windows: max_seq_len %d, doc_stride %d, max_query_len %d out of range",
                          o.max_seq_len, o.doc_stride, o.max_query_len);
    phrex_squad_windows *s = calloc(1, sizeof *s);
    char *seen = calloc((size_t)(n_titles > 0 ? n_titles : 1), 1);
    if (!s || !seen) return free(s), free(seen), phrex_fail(PHREX_ERR_MEMORY, "squad windows: out of memory");
    s->opt = o;
    s->cls = phrex_wordpiece_special(wp, PHREX_SPECIAL_CLS);
    s->sep = phrex_wordpiece_special(wp, PHREX_SPECIAL_SEP);
    phrex_qa_options qo = {PHREX_QA_SQUAD_JSON, 0, 0};
    phrex_qa_reader *r;
    int rc = phrex_qa_init(&r, squad_path, &qo);
    if (!rc) {
        rc = read_file(s, r, wp, titles, n_titles, seen);
        phrex_qa_free(r);
    }
    for (int i = 0; !rc && titles && i < n_titles; i++)
        if (!seen[i]) rc = phrex_fail(PHREX_ERR_INPUT, "%s: no article titled '%s'", squad_path, titles[i]);
    free(seen);
    s->stats.windows = (size_t)s->n_windows;
    if (rc) return phrex_squad_windows_free(s), rc;
    *out = s;
    return PHREX_OK;
}

void phrex_squad_windows_free(phrex_squad_windows *s) {
    if (!s) return;
    for (int i = 0; i < s->n_strings; i++) free(s->strings[i]);
    free(s->strings);
    free(s->piece_ids), free(s->piece_start), free(s->piece_end), free(s->query_ids);
    free(s->paragraphs), free(s->windows), free(s->examples);
    free(s);
}

const phrex_squad_window_stats *phrex_squad_windows_stats(const phrex_squad_windows *s) { return &s->stats; }
int phrex_squad_windows_count(const phrex_squad_windows *s) { return s->n_examples; }
const phrex_squad_example *phrex_squad_windows_example(const phrex_squad_windows *s, int i) { return &s->examples[i]; }
const phrex_squad_paragraph *phrex_squad_windows_paragraph(const phrex_squad_windows *s, int i) {
    return &s->paragraphs[i];
}
const phrex_squad_window *phrex_squad_windows_window(const phrex_squad_windows *s, int i) { return &s->windows[i]; }
const int32_t *phrex_squad_windows_query(const phrex_squad_windows *s, const phrex_squad_example *e) {
    return s->query_ids + e->query_offset;
}

int phrex_squad_windows_fill(const phrex_squad_windows *s, int w, int32_t *ids, int32_t *off_s, int32_t *off_e) {
    const phrex_squad_window *win = &s->windows[w];
    const phrex_squad_paragraph *p = &s->paragraphs[win->paragraph];
    int at = p->first_piece + win->piece_start, n = win->n_pieces;
    ids[0] = s->cls;
    memcpy(ids + 1, s->piece_ids + at, (size_t)n * 4);
    ids[n + 1] = s->sep;
    if (off_s) {
        off_s[0] = off_e[0] = off_s[n + 1] = off_e[n + 1] = -1;
        memcpy(off_s + 1, s->piece_start + at, (size_t)n * 4);
        memcpy(off_e + 1, s->piece_end + at, (size_t)n * 4);
    }
    return n + 2;
}
