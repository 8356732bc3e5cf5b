#include "rerank/rerank_train.h"

#include "common/error.h"
#include "encoder/checkpoint.h"
#include "encoder/train_rng.h"
#include "rerank/gbce.h"
#include "rerank/rerank_data.h"
#include "rerank/reranker.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// --- the BERT backbone ------------------------------------------------------------

typedef struct {
    phrex_train_bert *m;
    phrex_train_encoder *e;
} bert_bb;

static int bert_set_dropout(void *self, float p, uint64_t key) {
    return phrex_train_encoder_set_dropout(((bert_bb *)self)->e, p, p, key);
}
static int bert_forward(void *self, const int32_t *ids, const int32_t *types, const int32_t *lens, int n,
                        const float **out) {
    return phrex_train_encoder_forward(((bert_bb *)self)->e, ids, types, lens, n, out);
}
static int bert_backward(void *self, const float *dout) {
    return phrex_train_encoder_backward(((bert_bb *)self)->e, dout);
}
static phrex_train_params bert_params(void *self) { return phrex_train_bert_params(((bert_bb *)self)->m); }
static void bert_zero(void *self) { phrex_train_bert_zero_grads(((bert_bb *)self)->m); }
static int bert_save(void *self, const char *dir, int dtype, const char *tok_dir) {
    return phrex_checkpoint_save_model(dir, ((bert_bb *)self)->m, (phrex_dtype)dtype, tok_dir);
}
static phrex_train_bert *bert_tb(void *self) { return ((bert_bb *)self)->m; }
static void bert_free(void *self) {
    bert_bb *b = self;
    if (!b) return;
    phrex_train_encoder_free(b->e);
    phrex_train_bert_free(b->m);
    free(b);
}

static int bert_wrap(phrex_rerank_backbone *out, bert_bb *b, int max_tokens, int max_seq) {
    int rc = phrex_train_encoder_init(&b->e, b->m, max_tokens, max_seq);
    if (rc) {
        bert_free(b);
        return rc;
    }
    *out = (phrex_rerank_backbone){.name = "bert", .hidden_size = phrex_train_bert_config(b->m)->hidden_size,
                                   .max_tokens = max_tokens, .self = b, .set_dropout = bert_set_dropout,
                                   .forward = bert_forward, .backward = bert_backward, .params = bert_params,
                                   .zero_grads = bert_zero, .save = bert_save, .train_bert = bert_tb,
                                   .free = bert_free};
    return PHREX_OK;
}

int phrex_rerank_backbone_bert(phrex_rerank_backbone *out, const char *model_dir, int layers, int max_tokens,
                               int max_seq, int freeze_word_embeddings) {
    memset(out, 0, sizeof *out);
    bert_bb *b = calloc(1, sizeof *b);
    if (!b) return phrex_fail(PHREX_ERR_MEMORY, "reranker backbone: out of memory");
    phrex_train_bert_options o = {.num_layers = layers, .freeze_word_embeddings = freeze_word_embeddings};
    int rc = phrex_train_bert_init(&b->m, model_dir, &o);
    if (rc) {
        free(b);
        return phrex_fail_context(rc, "reranker backbone %s", model_dir);
    }
    return bert_wrap(out, b, max_tokens, max_seq);
}

int phrex_rerank_backbone_bert_random(phrex_rerank_backbone *out, const phrex_bert_config *cfg, uint64_t seed,
                                      float scale, int max_tokens, int max_seq) {
    memset(out, 0, sizeof *out);
    bert_bb *b = calloc(1, sizeof *b);
    if (!b) return phrex_fail(PHREX_ERR_MEMORY, "reranker backbone: out of memory");
    int rc = phrex_train_bert_init_random(&b->m, cfg, seed, scale, NULL);
    if (rc) return free(b), rc;
    return bert_wrap(out, b, max_tokens, max_seq);
}

// --- the model: backbone + head ------------------------------------------------------

struct phrex_rerank_model {
    phrex_rerank_backbone bb;
    int C;
    float *head;   // (C + 1): w then b
    float *dhead;  // (C + 1)
    phrex_param_tensor head_tensors[2];
    phrex_rerank_pool pool;
    int32_t mark_start, mark_end;
    float *dhidden;        // (max_tokens, C), zero but for the pooled rows
    const float *hidden;   // (N, C) of the last forward, in the backbone's workspace
    int32_t *pool_at;      // (max_tokens, 3) rows the head averaged for each sequence in the last forward
    int32_t *pool_n;       // (max_tokens) how many
    int last_n, last_tokens;
    float *scores, *dscores; // (max_tokens) each, scratch for _step
};

int phrex_rerank_model_init(phrex_rerank_model **out, phrex_rerank_backbone *bb, uint64_t seed, float head_scale) {
    *out = NULL;
    phrex_rerank_model *m = calloc(1, sizeof *m);
    if (!m) {
        if (bb->free) bb->free(bb->self);
        return phrex_fail(PHREX_ERR_MEMORY, "reranker model: out of memory");
    }
    m->bb = *bb;
    memset(bb, 0, sizeof *bb); // owned now
    int C = m->C = m->bb.hidden_size, T = m->bb.max_tokens;
    m->head = calloc((size_t)C + 1, 4), m->dhead = calloc((size_t)C + 1, 4);
    m->dhidden = calloc((size_t)T * (size_t)C, 4);
    m->pool_at = malloc((size_t)T * PHREX_RERANK_POOL_MAX_ROWS * 4), m->pool_n = malloc((size_t)T * 4);
    m->dscores = malloc((size_t)T * 4), m->scores = malloc((size_t)T * 4);
    if (!m->head || !m->dhead || !m->dhidden || !m->pool_at || !m->pool_n || !m->dscores || !m->scores) {
        phrex_rerank_model_free(m);
        return phrex_fail(PHREX_ERR_MEMORY, "reranker model: out of memory for %d tokens", T);
    }
    phrex_rng r = phrex_rng_init(seed ^ 0x68656164ull);
    for (int c = 0; c < C; c++) m->head[c] = head_scale * phrex_rng_symmetric(&r);
    m->head_tensors[0] = (phrex_param_tensor){.name = PHREX_RERANKER_HEAD_WEIGHT, .ndim = 2, .shape = {1, C},
                                              .offset = 0, .numel = (size_t)C, .decay = 1, .trainable = 1};
    m->head_tensors[1] = (phrex_param_tensor){.name = PHREX_RERANKER_HEAD_BIAS, .ndim = 1, .shape = {1},
                                              .offset = (size_t)C, .numel = 1, .decay = 0, .trainable = 1};
    *out = m;
    return PHREX_OK;
}

void phrex_rerank_model_free(phrex_rerank_model *m) {
    if (!m) return;
    if (m->bb.free) m->bb.free(m->bb.self);
    free(m->head), free(m->dhead), free(m->dhidden), free(m->pool_at), free(m->pool_n), free(m->dscores), free(m->scores);
    free(m);
}

phrex_rerank_backbone *phrex_rerank_model_backbone(phrex_rerank_model *m) { return &m->bb; }

void phrex_rerank_model_set_pool(phrex_rerank_model *m, phrex_rerank_pool pool, int32_t mark_start, int32_t mark_end) {
    m->pool = pool, m->mark_start = mark_start, m->mark_end = mark_end;
}

int phrex_rerank_model_start_at_prior(phrex_rerank_model *m, float beta, int n_negatives) {
    double b = phrex_gbce_prior_score(beta, n_negatives);
    if (!isfinite(b))
        return phrex_fail(PHREX_ERR_INPUT, "reranker head: no prior score for beta %g and %d negatives", beta,
                          n_negatives);
    m->head[m->C] = (float)b;
    return PHREX_OK;
}

phrex_train_params phrex_rerank_model_head_params(phrex_rerank_model *m) {
    return (phrex_train_params){.params = m->head, .n_params = (size_t)m->C + 1, .grads = m->dhead,
                                .n_grads = (size_t)m->C + 1, .grad_offset = 0, .tensors = m->head_tensors,
                                .n_tensors = 2};
}

int phrex_rerank_model_forward(phrex_rerank_model *m, const int32_t *ids, const int32_t *types, const int32_t *lens,
                               int n, float *scores) {
    m->last_n = 0;
    int N = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] < 1) return phrex_fail(PHREX_ERR_INPUT, "reranker forward: sequence %d is empty", i);
        N += lens[i];
    }
    if (N > m->bb.max_tokens)
        return phrex_fail(PHREX_ERR_INPUT, "reranker forward: %d tokens, the workspace holds %d", N, m->bb.max_tokens);
    int rc = m->bb.forward(m->bb.self, ids, types, lens, n, &m->hidden);
    if (rc) return rc;
    const float *w = m->head;
    for (int i = 0, at = 0; i < n; at += lens[i], i++) {
        int32_t *rows = m->pool_at + (size_t)i * PHREX_RERANK_POOL_MAX_ROWS, local[PHREX_RERANK_POOL_MAX_ROWS];
        int k = m->pool_n[i] = phrex_rerank_pool_rows(ids + at, lens[i], m->pool, m->mark_start, m->mark_end, local);
        float s = 0;
        for (int j = 0; j < k; j++) {
            rows[j] = at + local[j];
            const float *h = m->hidden + (size_t)rows[j] * m->C;
            for (int c = 0; c < m->C; c++) s += w[c] * h[c];
        }
        scores[i] = w[m->C] + s / (float)k;
    }
    m->last_n = n, m->last_tokens = N;
    return PHREX_OK;
}

// s_i = w·mean_r h_r + b over the pooled rows r of sequence i:
//   dw += Σ ds_i mean_r h_r,  db += Σ ds_i,  dh_r += ds_i w / k_i.
int phrex_rerank_model_backward(phrex_rerank_model *m, const float *dscores) {
    if (!m->last_n) return phrex_fail(PHREX_ERR_INPUT, "reranker backward: no forward to go back through");
    int C = m->C;
    memset(m->dhidden, 0, (size_t)m->last_tokens * (size_t)C * 4);
    for (int i = 0; i < m->last_n; i++) {
        int k = m->pool_n[i];
        float ds = dscores[i] / (float)k;
        for (int j = 0; j < k; j++) {
            int32_t row = m->pool_at[(size_t)i * PHREX_RERANK_POOL_MAX_ROWS + j];
            const float *h = m->hidden + (size_t)row * C;
            float *dh = m->dhidden + (size_t)row * C;
            for (int c = 0; c < C; c++) m->dhead[c] += ds * h[c], dh[c] += ds * m->head[c];
        }
        m->dhead[C] += dscores[i];
    }
    return m->bb.backward(m->bb.self, m->dhidden);
}

void phrex_rerank_model_zero_grads(phrex_rerank_model *m) {
    memset(m->dhead, 0, ((size_t)m->C + 1) * 4);
    m->bb.zero_grads(m->bb.self);
}

int phrex_rerank_model_step(phrex_rerank_model *m, const int32_t *ids, const int32_t *types, const int32_t *lens,
                            const int32_t *group_size, int n_groups, float beta, float grad_scale, float *loss,
                            float *scores) {
    int n = 0;
    for (int g = 0; g < n_groups; g++) {
        if (group_size[g] < 1) return phrex_fail(PHREX_ERR_INPUT, "reranker step: group %d is empty", g);
        n += group_size[g];
    }
    if (n > m->bb.max_tokens) return phrex_fail(PHREX_ERR_INPUT, "reranker step: %d sequences is too many", n);
    float *s = scores ? scores : m->scores;
    int rc = phrex_rerank_model_forward(m, ids, types, lens, n, s);
    if (rc) return rc;
    double total = 0;
    for (int g = 0, at = 0; g < n_groups; at += group_size[g], g++) {
        float L = phrex_gbce_loss(s + at, group_size[g] - 1, beta, m->dscores + at);
        if (!isfinite(L)) return phrex_fail(PHREX_ERR_INPUT, "reranker step: group %d has a non-finite loss", g);
        total += L;
    }
    for (int i = 0; i < n; i++) m->dscores[i] *= grad_scale / (float)n_groups;
    *loss = (float)(total / n_groups);
    return phrex_rerank_model_backward(m, m->dscores);
}
