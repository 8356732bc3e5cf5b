#include "query.h"

#include "common/error.h"
#include "common/utf8.h"
#include "encoder/bert.h"
#include "encoder/embedder.h"
#include "encoder/model_dir.h"
#include "encoder/tokens.h"
#include "encoder/wordpiece.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct phrex_query_model {
    phrex_query_backend b;
};

struct phrex_query_encoder {
    const phrex_query_model *model;
    void *worker;
};

// --- the generic part -----------------------------------------------------

const char *phrex_query_pool_name(phrex_query_pool pool) {
    return pool == PHREX_QUERY_POOL_MEAN ? "mean" : pool == PHREX_QUERY_POOL_CLS ? "cls" : "auto";
}

int phrex_query_parse_pool(const char *name, phrex_query_pool *out) {
    if (!strcmp(name, "cls")) *out = PHREX_QUERY_POOL_CLS;
    else if (!strcmp(name, "mean")) *out = PHREX_QUERY_POOL_MEAN;
    else if (!strcmp(name, "auto")) *out = PHREX_QUERY_POOL_AUTO;
    else return phrex_fail(PHREX_ERR_INPUT, "unknown query pooling '%s' (auto, cls or mean)", name);
    return PHREX_OK;
}

int phrex_query_model_init_backend(phrex_query_model **out, const phrex_query_backend *backend) {
    *out = NULL;
    if (!backend || backend->dim <= 0 || !backend->worker_init || !backend->worker_free || !backend->encode)
        return phrex_fail(PHREX_ERR_INPUT, "query backend '%s': incomplete (dim and the three worker functions "
                                           "are required)",
                          backend && backend->name ? backend->name : "?");
    phrex_query_model *m = calloc(1, sizeof *m);
    if (!m) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate a query model");
    m->b = *backend;
    *out = m;
    return PHREX_OK;
}

void phrex_query_model_free(phrex_query_model *m) {
    if (!m) return;
    if (m->b.model_free) m->b.model_free(m->b.model);
    free(m);
}

int phrex_query_model_dim(const phrex_query_model *m) { return m->b.dim; }
const char *phrex_query_model_name(const phrex_query_model *m) { return m->b.name ? m->b.name : "custom"; }

int phrex_query_encoder_init(phrex_query_encoder **out, const phrex_query_model *m) {
    *out = NULL;
    phrex_query_encoder *enc = calloc(1, sizeof *enc);
    if (!enc) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate a query encoder");
    enc->model = m;
    int rc = m->b.worker_init(m->b.model, &enc->worker);
    if (rc) {
        free(enc);
        return rc;
    }
    *out = enc;
    return PHREX_OK;
}

void phrex_query_encoder_free(phrex_query_encoder *enc) {
    if (!enc) return;
    enc->model->b.worker_free(enc->worker);
    free(enc);
}

int phrex_query_check_text(const char *text, size_t len) {
    const char *nul = memchr(text, '\0', len);
    if (nul) return phrex_fail(PHREX_ERR_INPUT, "NUL byte at byte %zu of the question", (size_t)(nul - text));
    size_t bad;
    if (!phrex_utf8_check(text, len, &bad))
        return phrex_fail(PHREX_ERR_INPUT, "invalid UTF-8 at byte %zu of the question", bad);
    return PHREX_OK;
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Where to cut a question longer than PHREX_QUERY_MAX_BYTES: at the last
// whitespace before the cap, so that the pieces kept are exactly the first
// pieces of the whole question (WordPiece never joins across whitespace),
// else at a UTF-8 sequence boundary.
static size_t cut_length(const char *text, size_t len) {
    if (len <= PHREX_QUERY_MAX_BYTES) return len;
    for (size_t i = PHREX_QUERY_MAX_BYTES; i > PHREX_QUERY_MAX_BYTES / 2; i--)
        if (is_space((unsigned char)text[i])) return i;
    size_t i = PHREX_QUERY_MAX_BYTES;
    while (i > 0 && ((unsigned char)text[i] & 0xC0) == 0x80) i--;
    return i;
}

int phrex_query_encode(phrex_query_encoder *enc, const char *text, size_t len, float *q_start, float *q_end,
                       int *truncated) {
    int rc = phrex_query_check_text(text, len);
    if (rc) return rc;
    size_t used = cut_length(text, len);
    int cut = 0;
    rc = enc->model->b.encode(enc->worker, text, used, q_start, q_end, &cut);
    if (truncated) *truncated = cut || used < len;
    return rc;
}

// --- the built-in BERT backend --------------------------------------------

typedef struct {
    phrex_bert *bert[2]; // start, end; bert[1] NULL: one model for both
    phrex_wordpiece *tokenizer;
    phrex_query_pool pool;
    int dim, cls, sep, max_pieces;
} bert_model;

typedef struct {
    const bert_model *m;
    phrex_encoder *enc[2];
    phrex_tokens tokens; // [CLS] pieces [SEP]
    float *hidden;       // (PHREX_QUERY_MAX_LEN, dim)
} bert_worker;

static void bert_model_free(void *p) {
    bert_model *m = p;
    if (!m) return;
    phrex_bert_free(m->bert[0]);
    phrex_bert_free(m->bert[1]);
    phrex_wordpiece_free(m->tokenizer);
    free(m);
}

static int load_tokenizer(bert_model *m, const char *dir) {
    int rc = phrex_embedder_load_tokenizer(dir, &m->tokenizer);
    if (rc) return rc;
    int vocab_size = phrex_wordpiece_vocab_size(m->tokenizer);
    if (vocab_size != phrex_bert_get_config(m->bert[0])->vocab_size)
        return phrex_fail(PHREX_ERR_MISMATCH, "%s/vocab.txt has %d tokens but %s/config.json says vocab_size %d", dir,
                          vocab_size, dir, phrex_bert_get_config(m->bert[0])->vocab_size);
    m->cls = phrex_wordpiece_special(m->tokenizer, PHREX_SPECIAL_CLS);
    m->sep = phrex_wordpiece_special(m->tokenizer, PHREX_SPECIAL_SEP);
    return PHREX_OK;
}

// start/ and end/ must agree on everything a shared tokenizer and a shared
// score space assume.
static int check_pair(const bert_model *m, const char *start_dir, const char *end_dir) {
    const phrex_bert_config *a = phrex_bert_get_config(m->bert[0]), *b = phrex_bert_get_config(m->bert[1]);
    if (a->hidden_size != b->hidden_size || a->vocab_size != b->vocab_size)
        return phrex_fail(PHREX_ERR_MISMATCH, "%s (hidden %d, vocab %d) and %s (hidden %d, vocab %d) differ", start_dir,
                          a->hidden_size, a->vocab_size, end_dir, b->hidden_size, b->vocab_size);
    return PHREX_OK;
}

// The query encoders of a model folder: query_start/ and query_end/ of a
// trained model, or the plain folder's one BERT. *trained tells which.
static int load_berts(bert_model *m, const char *model_dir, char *tok_dir, size_t cap, int *trained) {
    phrex_model_paths *p = malloc(sizeof *p); // three paths: too big for a worker's stack
    if (!p) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate model paths");
    int rc = phrex_model_dir_resolve(model_dir, p);
    *trained = !rc && p->trained;
    if (!rc && p->trained) {
        snprintf(tok_dir, cap, "%s", p->query_start);
        if (!(rc = phrex_bert_init(&m->bert[0], p->query_start)) && !(rc = phrex_bert_init(&m->bert[1], p->query_end)))
            rc = check_pair(m, p->query_start, p->query_end);
    } else if (!rc) {
        snprintf(tok_dir, cap, "%s", p->phrase);
        rc = phrex_bert_init(&m->bert[0], p->phrase);
    }
    free(p);
    return rc;
}

static int max_pieces_of(const bert_model *m) {
    int p = phrex_bert_get_config(m->bert[0])->max_position_embeddings;
    if (m->bert[1] && phrex_bert_get_config(m->bert[1])->max_position_embeddings < p)
        p = phrex_bert_get_config(m->bert[1])->max_position_embeddings;
    return (p < PHREX_QUERY_MAX_LEN ? p : PHREX_QUERY_MAX_LEN) - 2;
}

static void bert_worker_free(void *p) {
    bert_worker *w = p;
    if (!w) return;
    phrex_encoder_free(w->enc[0]);
    phrex_encoder_free(w->enc[1]);
    phrex_tokens_free(&w->tokens);
    free(w->hidden);
    free(w);
}

static int bert_worker_init(void *model, void **out) {
    const bert_model *m = model;
    *out = NULL;
    bert_worker *w = calloc(1, sizeof *w);
    if (!w) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate a query worker");
    w->m = m;
    // Pieces never outnumber bytes by much ('İ' gives two pieces), so the
    // token buffer is sized once for the longest text we look at.
    int rc = phrex_tokens_init(&w->tokens, 2 * PHREX_QUERY_MAX_BYTES + 2);
    w->hidden = malloc((size_t)PHREX_QUERY_MAX_LEN * (size_t)m->dim * sizeof(float));
    if (!rc && !w->hidden) rc = phrex_fail(PHREX_ERR_MEMORY, "cannot allocate query activations");
    for (int h = 0; h < 2 && !rc; h++)
        if (m->bert[h]) rc = phrex_encoder_init(&w->enc[h], m->bert[h], PHREX_QUERY_MAX_LEN);
    if (rc) {
        bert_worker_free(w);
        return rc;
    }
    *out = w;
    return PHREX_OK;
}

// [CLS] pieces [SEP] of text into w->tokens, cut to max_pieces pieces.
static int tokenize(bert_worker *w, const char *text, size_t len, int *truncated) {
    const bert_model *m = w->m;
    phrex_tokens_clear(&w->tokens);
    int rc;
    if ((rc = phrex_tokens_push(&w->tokens, m->cls, -1, -1)) ||
        (rc = phrex_wordpiece_encode(m->tokenizer, text, len, &w->tokens)))
        return rc;
    int pieces = w->tokens.n - 1;
    if (pieces == 0) return phrex_fail(PHREX_ERR_INPUT, "empty question: it has no word to search for");
    *truncated = pieces > m->max_pieces;
    if (*truncated) w->tokens.n = 1 + m->max_pieces;
    return phrex_tokens_push(&w->tokens, m->sep, -1, -1);
}

static void pool(const bert_model *m, const float *hidden, int n, float *out) {
    if (m->pool == PHREX_QUERY_POOL_CLS) {
        memcpy(out, hidden, (size_t)m->dim * sizeof(float));
        return;
    }
    int32_t len = n;
    phrex_bert_mean_pool(hidden, &len, 1, m->dim, out);
}

static int bert_encode(void *worker, const char *text, size_t len, float *q_start, float *q_end, int *truncated) {
    bert_worker *w = worker;
    const bert_model *m = w->m;
    int rc = tokenize(w, text, len, truncated);
    if (rc) return rc;
    int32_t n = w->tokens.n;
    float *outs[2] = {q_start, q_end};
    for (int h = 0; h < 2; h++) {
        if (!w->enc[h]) break;
        if ((rc = phrex_encoder_forward(w->enc[h], w->tokens.ids, NULL, &n, 1, w->hidden))) return rc;
        pool(m, w->hidden, n, outs[h]);
    }
    if (!w->enc[1]) memcpy(q_end, q_start, (size_t)m->dim * sizeof(float));
    return PHREX_OK;
}

int phrex_query_model_init(phrex_query_model **out, const char *model_dir, phrex_query_pool pool_mode) {
    *out = NULL;
    bert_model *m = calloc(1, sizeof *m);
    if (!m) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate a query model");
    char tok_dir[PATH_MAX];
    int rc, trained = 0;
    if ((rc = load_berts(m, model_dir, tok_dir, sizeof tok_dir, &trained)) || (rc = load_tokenizer(m, tok_dir))) {
        bert_model_free(m);
        return phrex_fail_context(rc, "query model %s", model_dir);
    }
    if (pool_mode == PHREX_QUERY_POOL_AUTO) pool_mode = trained ? PHREX_QUERY_POOL_CLS : PHREX_QUERY_POOL_MEAN;
    m->pool = pool_mode;
    m->dim = phrex_bert_get_config(m->bert[0])->hidden_size;
    m->max_pieces = max_pieces_of(m);
    static const char *const names[2][2] = {{"bert-cls", "bert-mean"}, {"bert-start-end-cls", "bert-start-end-mean"}};
    phrex_query_backend b = {names[m->bert[1] != NULL][pool_mode == PHREX_QUERY_POOL_MEAN],
                             m->dim,
                             m,
                             bert_worker_init,
                             bert_worker_free,
                             bert_encode,
                             bert_model_free};
    if ((rc = phrex_query_model_init_backend(out, &b))) bert_model_free(m);
    return rc;
}
