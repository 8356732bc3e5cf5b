#include "metrics.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "buf.h"
#include "common/error.h"
#include "pyregex.h"
#include "pytext.h"

// Work vectors one metric call reuses across its strings.
typedef struct {
    phrex_cpvec a, b;
} scratch;

static void scratch_free(scratch *w) {
    phrex_cpvec_free(&w->a);
    phrex_cpvec_free(&w->b);
}

// --- SQuAD ------------------------------------------------------------------

// string.punctuation: !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~
static int is_ascii_punct(uint32_t c) {
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
}

static int is_article(const uint32_t *w, size_t n) {
    if (n == 1) return w[0] == 'a';
    if (n == 2) return w[0] == 'a' && w[1] == 'n';
    return n == 3 && w[0] == 't' && w[1] == 'h' && w[2] == 'e';
}

// evaluate-v1.1.py's normalize_answer: lower, remove_punc, remove_articles,
// white_space_fix, in that order.
static int squad_normalize(const char *s, scratch *w, phrex_buf *out) {
    w->a.len = w->b.len = 0;
    phrex_buf_clear(out);
    int rc = phrex_pytext_decode(s, strlen(s), &w->a);
    for (size_t i = 0; rc == PHREX_OK && i < w->a.len; i++) { // lower, then drop punctuation
        uint32_t low[2];
        size_t k = phrex_pytext_lower(w->a.data, w->a.len, i, low);
        for (size_t j = 0; j < k && rc == PHREX_OK; j++)
            if (!is_ascii_punct(low[j])) rc = phrex_cpvec_push(&w->b, low[j]);
    }
    // \b(a|an|the)\b -> ' ': a word run (re's \w) that is exactly an article.
    w->a.len = 0;
    for (size_t i = 0; rc == PHREX_OK && i < w->b.len;) {
        if (!phrex_pytext_is_word(w->b.data[i])) {
            rc = phrex_cpvec_push(&w->a, w->b.data[i++]);
            continue;
        }
        size_t j = i;
        while (j < w->b.len && phrex_pytext_is_word(w->b.data[j])) j++;
        if (is_article(w->b.data + i, j - i)) rc = phrex_cpvec_push(&w->a, ' ');
        else
            for (size_t k = i; k < j && rc == PHREX_OK; k++) rc = phrex_cpvec_push(&w->a, w->b.data[k]);
        i = j;
    }
    // ' '.join(text.split())
    for (size_t i = 0; rc == PHREX_OK && i < w->a.len;) {
        if (phrex_pytext_is_space(w->a.data[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < w->a.len && !phrex_pytext_is_space(w->a.data[j])) j++;
        if (out->len > 0) rc = phrex_buf_append(out, " ", 1);
        if (rc == PHREX_OK) rc = phrex_pytext_encode(w->a.data + i, j - i, out);
        i = j;
    }
    if (rc == PHREX_OK && !out->data) rc = phrex_buf_append(out, "", 0);
    return rc;
}

char *phrex_metric_normalize(const char *s) {
    scratch w = {0};
    phrex_buf out = {0};
    int rc = squad_normalize(s, &w, &out);
    scratch_free(&w);
    if (rc) {
        phrex_buf_free(&out);
        return NULL;
    }
    return out.data;
}

typedef struct {
    const char *s;
    size_t len;
} token;

static int compare_tokens(const void *x, const void *y) {
    const token *a = x, *b = y;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, n);
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
}

// Splits a normalised string (single spaces) into tokens; NULL when empty.
static token *split_tokens(const char *s, size_t *count) {
    *count = 0;
    if (!*s) return NULL;
    size_t n = 1;
    for (const char *p = s; *p; p++) n += *p == ' ';
    token *t = malloc(n * sizeof *t);
    if (!t) return NULL;
    const char *start = s;
    for (const char *p = s;; p++) {
        if (*p == ' ' || *p == '\0') {
            t[(*count)++] = (token){start, (size_t)(p - start)};
            start = p + 1;
        }
        if (*p == '\0') break;
    }
    return t;
}

// F1 of two normalised strings; -1 when out of memory.
static double f1_normalized(const char *pred, const char *gold) {
    size_t np, ng;
    token *tp = split_tokens(pred, &np), *tg = split_tokens(gold, &ng);
    double f1 = 0.0;
    if ((*pred && !tp) || (*gold && !tg)) {
        f1 = -1.0;
        phrex_fail(PHREX_ERR_MEMORY, "out of memory splitting answer tokens");
    } else if (np > 0 && ng > 0) {
        // Counter(pred) & Counter(gold): merge the two sorted token lists.
        qsort(tp, np, sizeof *tp, compare_tokens);
        qsort(tg, ng, sizeof *tg, compare_tokens);
        size_t same = 0, i = 0, j = 0;
        while (i < np && j < ng) {
            int c = compare_tokens(&tp[i], &tg[j]);
            if (c == 0) {
                same++;
                i++;
                j++;
            } else if (c < 0) {
                i++;
            } else {
                j++;
            }
        }
        if (same > 0) {
            double precision = (double)same / (double)np, recall = (double)same / (double)ng;
            f1 = 2.0 * precision * recall / (precision + recall);
        }
    }
    free(tp);
    free(tg);
    return f1;
}

// Normalises the prediction once, then scores it against every gold answer.
static double max_over_golds(const char *prediction, const char *const *golds, size_t n, int f1) {
    scratch w = {0};
    phrex_buf np = {0}, ng = {0};
    double best = 0.0;
    int rc = squad_normalize(prediction, &w, &np);
    for (size_t i = 0; rc == PHREX_OK && i < n; i++) {
        rc = squad_normalize(golds[i], &w, &ng);
        if (rc) break;
        double score = f1 ? f1_normalized(np.data, ng.data) : (double)(strcmp(np.data, ng.data) == 0);
        if (score < 0) rc = PHREX_ERR_MEMORY;
        else if (score > best) best = score;
    }
    scratch_free(&w);
    phrex_buf_free(&np);
    phrex_buf_free(&ng);
    return rc ? -1.0 : best;
}

int phrex_metric_exact_match(const char *prediction, const char *gold) {
    return (int)max_over_golds(prediction, &gold, 1, 0);
}

double phrex_metric_f1(const char *prediction, const char *gold) { return max_over_golds(prediction, &gold, 1, 1); }

int phrex_metric_max_exact_match(const char *prediction, const char *const *golds, size_t n) {
    return (int)max_over_golds(prediction, golds, n, 0);
}

double phrex_metric_max_f1(const char *prediction, const char *const *golds, size_t n) {
    return max_over_golds(prediction, golds, n, 1);
}

// --- DPR has_answer -------------------------------------------------------------

typedef enum { TOKEN_RUN, TOKEN_SKIP, TOKEN_SINGLE } token_kind;

// SimpleTokenizer: [\p{L}\p{N}\p{M}]+ | [^\p{Z}\p{C}]
static token_kind dpr_kind(uint32_t cp) {
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME: return TOKEN_RUN;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN: return TOKEN_SKIP;
    default: return TOKEN_SINGLE;
    }
}

// NFD, SimpleTokenizer, then each token's str.lower(), into `tokens`.
static int dpr_tokens(const char *s, scratch *w, phrex_strlist *tokens) {
    w->a.len = w->b.len = 0;
    phrex_strlist_clear(tokens);
    int rc = phrex_pytext_decode(s, strlen(s), &w->a);
    if (rc == PHREX_OK) rc = phrex_pytext_nfd(w->a.data, w->a.len, &w->b);
    const uint32_t *c = w->b.data;
    size_t n = w->b.len;
    for (size_t i = 0; rc == PHREX_OK && i < n;) {
        token_kind kind = dpr_kind(c[i]);
        if (kind == TOKEN_SKIP) {
            i++;
            continue;
        }
        size_t j = i + 1;
        if (kind == TOKEN_RUN)
            while (j < n && dpr_kind(c[j]) == TOKEN_RUN) j++;
        phrex_strlist_begin(tokens);
        for (size_t k = i; k < j && rc == PHREX_OK; k++) {
            uint32_t low[2];
            size_t m = phrex_pytext_lower(c + i, j - i, k - i, low);
            rc = phrex_pytext_encode(low, m, &tokens->bytes);
        }
        if (rc == PHREX_OK) rc = phrex_strlist_end(tokens);
        i = j;
    }
    return rc;
}

static int same_token(const phrex_strlist *a, size_t i, const phrex_strlist *b, size_t j) {
    size_t la, lb;
    const char *sa = phrex_strlist_get(a, i, &la), *sb = phrex_strlist_get(b, j, &lb);
    return la == lb && memcmp(sa, sb, la) == 0;
}

static int contains_sequence(const phrex_strlist *text, const phrex_strlist *answer) {
    if (answer->n > text->n) return 0;
    for (size_t i = 0; i + answer->n <= text->n; i++) {
        size_t k = 0;
        while (k < answer->n && same_token(text, i + k, answer, k)) k++;
        if (k == answer->n) return 1;
    }
    return 0;
}

int phrex_metric_has_answer(const char *text, const char *const *answers, size_t n) {
    scratch w = {0};
    phrex_strlist text_tokens = {0}, answer_tokens = {0};
    int found = 0;
    int rc = dpr_tokens(text, &w, &text_tokens);
    for (size_t i = 0; rc == PHREX_OK && !found && i < n; i++) {
        rc = dpr_tokens(answers[i], &w, &answer_tokens);
        if (rc == PHREX_OK) found = contains_sequence(&text_tokens, &answer_tokens);
    }
    scratch_free(&w);
    phrex_strlist_free(&text_tokens);
    phrex_strlist_free(&answer_tokens);
    return rc ? -1 : found;
}

// --- regexes ----------------------------------------------------------------------

static int any_regex(const char *text, const char *const *patterns, size_t n, int anchored, unsigned flags) {
    char *folded;
    if (phrex_regex_fold(text, &folded)) return -1;
    int found = 0, rc = PHREX_OK;
    for (size_t i = 0; rc == PHREX_OK && !found && i < n; i++) {
        phrex_regex *re;
        if (phrex_regex_init(&re, patterns[i], flags) != PHREX_OK) continue; // as DPR: no match
        rc = phrex_regex_exec_folded(re, folded, anchored, &found);
        phrex_regex_free(re);
    }
    free(folded);
    return rc ? -1 : found;
}

int phrex_metric_has_answer_regex(const char *text, const char *const *patterns, size_t n) {
    return any_regex(text, patterns, n, 0, PHREX_REGEX_NFD_SOURCE);
}

int phrex_metric_regex_match(const char *prediction, const char *const *patterns, size_t n) {
    return any_regex(prediction, patterns, n, 1, 0);
}
