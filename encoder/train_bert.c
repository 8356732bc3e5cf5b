#include "train_bert.h"

#include "common/arena.h"
#include "common/error.h"
#include "encoder/weights.h"
#include "encoder/train_kernels.h"
#include "encoder/train_rng.h"

#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ============================================================================
// Parameters
// ============================================================================

// Pointers to one layer's tensors inside a flat buffer (parameters or
// gradients; in the gradient view a frozen tensor is NULL).
typedef struct {
    float *qkv_w;  // (3C, C) query, key, value weights stacked
    float *qkv_b;  // (3C)
    float *ao_w;   // (C, C) attention.output.dense
    float *ao_b;   // (C)
    float *ln1_g;  // (C) attention.output.LayerNorm
    float *ln1_b;  // (C)
    float *fi_w;   // (F, C) intermediate.dense
    float *fi_b;   // (F)
    float *fo_w;   // (C, F) output.dense
    float *fo_b;   // (C)
    float *ln2_g;  // (C) output.LayerNorm
    float *ln2_b;  // (C)
} layer_view;

typedef struct {
    float *wte;    // (V, C)
    float *wpe;    // (P, C)
    float *wtt;    // (T, C)
    float *ln_g;   // (C)
    float *ln_b;   // (C)
    layer_view *layers; // (L)
} model_view;

struct phrex_train_bert {
    phrex_bert_config config;
    phrex_train_params buf;
    phrex_param_tensor *tensors;
    int n_tensors;
    model_view p; // into buf.params
    model_view g; // into buf.grads
};

// Tensors per layer in the table, and before the first layer.
#define LAYER_TENSORS 16
#define EMBED_TENSORS 5

static void add_tensor(phrex_train_bert *m, size_t *at, int64_t d0, int64_t d1, int decay, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void add_tensor(phrex_train_bert *m, size_t *at, int64_t d0, int64_t d1, int decay, const char *fmt, ...) {
    phrex_param_tensor *t = &m->tensors[m->n_tensors++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1 > 0 ? d1 : 0;
    t->numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    t->offset = *at;
    t->decay = decay;
    t->trainable = 1;
    *at += t->numel;
}

// The table, in buffer order. Returns the total floats.
static size_t build_table(phrex_train_bert *m) {
    const phrex_bert_config *c = &m->config;
    int64_t C = c->hidden_size, F = c->intermediate_size;
    size_t at = 0;
    m->n_tensors = 0;
    add_tensor(m, &at, c->vocab_size, C, 1, "embeddings.word_embeddings.weight");
    add_tensor(m, &at, c->max_position_embeddings, C, 1, "embeddings.position_embeddings.weight");
    add_tensor(m, &at, c->type_vocab_size, C, 1, "embeddings.token_type_embeddings.weight");
    add_tensor(m, &at, C, 0, 0, "embeddings.LayerNorm.weight");
    add_tensor(m, &at, C, 0, 0, "embeddings.LayerNorm.bias");
    static const char *qkv[3] = {"query", "key", "value"};
    for (int l = 0; l < c->num_hidden_layers; l++) {
        for (int i = 0; i < 3; i++) add_tensor(m, &at, C, C, 1, "encoder.layer.%d.attention.self.%s.weight", l, qkv[i]);
        for (int i = 0; i < 3; i++) add_tensor(m, &at, C, 0, 0, "encoder.layer.%d.attention.self.%s.bias", l, qkv[i]);
        add_tensor(m, &at, C, C, 1, "encoder.layer.%d.attention.output.dense.weight", l);
        add_tensor(m, &at, C, 0, 0, "encoder.layer.%d.attention.output.dense.bias", l);
        add_tensor(m, &at, C, 0, 0, "encoder.layer.%d.attention.output.LayerNorm.weight", l);
        add_tensor(m, &at, C, 0, 0, "encoder.layer.%d.attention.output.LayerNorm.bias", l);
        add_tensor(m, &at, F, C, 1, "encoder.layer.%d.intermediate.dense.weight", l);
        add_tensor(m, &at, F, 0, 0, "encoder.layer.%d.intermediate.dense.bias", l);
        add_tensor(m, &at, C, F, 1, "encoder.layer.%d.output.dense.weight", l);
        add_tensor(m, &at, C, 0, 0, "encoder.layer.%d.output.dense.bias", l);
        add_tensor(m, &at, C, 0, 0, "encoder.layer.%d.output.LayerNorm.weight", l);
        add_tensor(m, &at, C, 0, 0, "encoder.layer.%d.output.LayerNorm.bias", l);
    }
    return at;
}

// Points a view into `base`, where the buffer's float `first` sits at
// base[0]; tensors before `first` (frozen) get NULL.
static void bind_view(model_view *v, const phrex_train_bert *m, float *base, size_t first) {
    const phrex_param_tensor *t = m->tensors;
#define AT(i) (t[i].offset >= first ? base + (t[i].offset - first) : NULL)
    v->wte = AT(0), v->wpe = AT(1), v->wtt = AT(2), v->ln_g = AT(3), v->ln_b = AT(4);
    for (int l = 0; l < m->config.num_hidden_layers; l++) {
        int k = EMBED_TENSORS + l * LAYER_TENSORS;
        layer_view *w = &v->layers[l];
        w->qkv_w = AT(k), w->qkv_b = AT(k + 3), w->ao_w = AT(k + 6), w->ao_b = AT(k + 7);
        w->ln1_g = AT(k + 8), w->ln1_b = AT(k + 9), w->fi_w = AT(k + 10), w->fi_b = AT(k + 11);
        w->fo_w = AT(k + 12), w->fo_b = AT(k + 13), w->ln2_g = AT(k + 14), w->ln2_b = AT(k + 15);
    }
#undef AT
}

// Table, buffers (parameters uninitialised, gradients zero) and views for
// m->config, which the caller has set.
static int alloc_model(phrex_train_bert *m, const phrex_train_bert_options *opts) {
    int L = m->config.num_hidden_layers;
    m->tensors = calloc((size_t)(EMBED_TENSORS + L * LAYER_TENSORS), sizeof *m->tensors);
    m->p.layers = calloc((size_t)L, sizeof(layer_view));
    m->g.layers = calloc((size_t)L, sizeof(layer_view));
    if (!m->tensors || !m->p.layers || !m->g.layers) return phrex_fail(PHREX_ERR_MEMORY, "train model: out of memory");
    size_t n = build_table(m);
    size_t first = 0;
    if (opts && opts->freeze_word_embeddings) {
        m->tensors[0].trainable = 0;
        first = m->tensors[0].numel;
    }
    m->buf = (phrex_train_params){NULL, n, NULL, n - first, first, m->tensors, m->n_tensors};
    void *p = NULL, *g = NULL;
    if (posix_memalign(&p, PHREX_ARENA_ALIGN, n * sizeof(float)) ||
        posix_memalign(&g, PHREX_ARENA_ALIGN, (n - first) * sizeof(float) + 1)) {
        free(p);
        return phrex_fail(PHREX_ERR_MEMORY, "train model: cannot allocate %zu parameters and gradients", n);
    }
    m->buf.params = p;
    m->buf.grads = g;
    memset(g, 0, (n - first) * sizeof(float));
    bind_view(&m->p, m, m->buf.params, 0);
    bind_view(&m->g, m, m->buf.grads, first);
    return PHREX_OK;
}

void phrex_train_bert_free(phrex_train_bert *m) {
    if (!m) return;
    free(m->buf.params);
    free(m->buf.grads);
    free(m->tensors);
    free(m->p.layers);
    free(m->g.layers);
    free(m);
}

static int check_options(const phrex_train_bert_options *opts, int source_layers, const char *where) {
    if (opts && (opts->num_layers < 0 || opts->num_layers > source_layers))
        return phrex_fail(PHREX_ERR_INPUT, "%s: num_layers is %d, the source has %d", where, opts->num_layers,
                          source_layers);
    return PHREX_OK;
}

// Every tensor of the table from `st`, by name (with `prefix`), f32.
static int read_tensors(phrex_train_bert *m, const phrex_weights *w) {
    const char *prefix = "";
    if (!phrex_weights_has(w, "embeddings.word_embeddings.weight") &&
        phrex_weights_has(w, "bert.embeddings.word_embeddings.weight"))
        prefix = "bert."; // saved from a BertFor* head, as BertModel accepts
    for (int i = 0; i < m->n_tensors; i++) {
        const phrex_param_tensor *t = &m->tensors[i];
        char name[PHREX_PARAM_NAME_MAX + 8];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        int rc = phrex_weights_read_f32(w, name, t->ndim, t->shape, m->buf.params + t->offset);
        if (rc) return rc;
    }
    return PHREX_OK;
}

int phrex_train_bert_init(phrex_train_bert **out, const char *model_dir, const phrex_train_bert_options *opts) {
    *out = NULL;
    char path[4096];
    phrex_train_bert *m = calloc(1, sizeof *m);
    if (!m) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", model_dir);
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    int rc = phrex_bert_config_read(&m->config, path);
    if (!rc) rc = check_options(opts, m->config.num_hidden_layers, model_dir);
    if (!rc && opts && opts->num_layers > 0) m->config.num_hidden_layers = opts->num_layers;
    if (!rc) rc = alloc_model(m, opts);
    if (!rc) {
        phrex_weights *w;
        rc = phrex_weights_open(&w, model_dir); // model.safetensors, or base + delta
        if (!rc) rc = read_tensors(m, w);
        phrex_weights_close(w);
    }
    if (rc) {
        phrex_train_bert_free(m);
        return rc;
    }
    *out = m;
    return PHREX_OK;
}

int phrex_train_bert_init_random(phrex_train_bert **out, const phrex_bert_config *cfg, uint64_t seed, float scale,
                                 const phrex_train_bert_options *opts) {
    *out = NULL;
    if (cfg->vocab_size < 1 || cfg->hidden_size < 1 || cfg->num_hidden_layers < 1 || cfg->num_attention_heads < 1 ||
        cfg->hidden_size % cfg->num_attention_heads != 0 || cfg->intermediate_size < 1 ||
        cfg->max_position_embeddings < 1 || cfg->type_vocab_size < 1 || !(cfg->layer_norm_eps > 0))
        return phrex_fail(PHREX_ERR_INPUT, "phrex_train_bert_init_random: bad config (C %d, heads %d, layers %d)",
                          cfg->hidden_size, cfg->num_attention_heads, cfg->num_hidden_layers);
    phrex_train_bert *m = calloc(1, sizeof *m);
    if (!m) return phrex_fail(PHREX_ERR_MEMORY, "train model: out of memory");
    m->config = *cfg;
    m->config.head_dim = cfg->hidden_size / cfg->num_attention_heads;
    int rc = check_options(opts, cfg->num_hidden_layers, "phrex_train_bert_init_random");
    if (!rc && opts && opts->num_layers > 0) m->config.num_hidden_layers = opts->num_layers;
    if (!rc) rc = alloc_model(m, opts);
    if (rc) {
        phrex_train_bert_free(m);
        return rc;
    }
    phrex_rng rng = phrex_rng_init(seed);
    for (int i = 0; i < m->n_tensors; i++) {
        const phrex_param_tensor *t = &m->tensors[i];
        float *p = m->buf.params + t->offset;
        int is_ln_weight = strstr(t->name, "LayerNorm.weight") != NULL;
        int is_ln = strstr(t->name, "LayerNorm") != NULL;
        for (size_t j = 0; j < t->numel; j++) {
            float u = phrex_rng_symmetric(&rng);
            p[j] = is_ln_weight ? 1.0f + 0.5f * scale * u : is_ln ? 0.5f * scale * u : scale * u;
        }
    }
    *out = m;
    return PHREX_OK;
}

const phrex_bert_config *phrex_train_bert_config(const phrex_train_bert *m) { return &m->config; }

phrex_train_params phrex_train_bert_params(phrex_train_bert *m) { return m->buf; }

const phrex_param_tensor *phrex_train_bert_find(const phrex_train_bert *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

float *phrex_train_bert_grad_of(phrex_train_bert *m, const phrex_param_tensor *t) {
    if (!t->trainable) return NULL;
    return m->buf.grads + (t->offset - m->buf.grad_offset);
}

void phrex_train_bert_zero_grads(phrex_train_bert *m) { memset(m->buf.grads, 0, m->buf.n_grads * sizeof(float)); }

// ============================================================================
// Workspace
// ============================================================================

// What the backward of one layer needs from its forward.
typedef struct {
    float *qkv;        // (N, 3C)
    float *probs;      // H · Σ L_s² attention weights (phrex_train_packing)
    float *ctx;        // (N, C) attention output, heads side by side
    float *r1;         // (N, C) x + attention projection: LN1's input
    float *mean1, *rstd1; // (N)
    float *h1;         // (N, C) LN1's output
    float *ff_pre;     // (N, F) before GELU
    float *ff_act;     // (N, F) after GELU
    float *r2;         // (N, C) h1 + FFN: LN2's input
    float *mean2, *rstd2; // (N)
} layer_acts;

struct phrex_train_encoder {
    phrex_train_bert *model;
    int max_tokens, max_seq;
    phrex_arena arena;
    // Inputs of the last forward, kept for the backward.
    int n_tokens, n_seqs;
    int32_t *ids, *type_ids, *pos; // (max_tokens)
    int32_t *seq_start;            // (max_tokens + 1)
    size_t *probs_start;           // (max_tokens)
    // Activations.
    float *emb;                    // (N, C) embedding sum: the embedding LN's input
    float *emb_mean, *emb_rstd;    // (N)
    float **x;                     // (L + 1) of (N, C): x[0] embeddings out, x[l + 1] layer l out
    layer_acts *acts;              // (L)
    // Backward scratch.
    float *dres;                   // (N, C) gradient of the residual stream
    float *dqkv;                   // (N, 3C)
    float *dctx;                   // (N, C)
    float *dff;                    // (N, F)
    float *dtmp;                   // (N, C) a gradient through a dropout mask
    float *att_scratch;            // (n_slots, slot_floats)
    size_t slot_floats;
    int n_slots;
    // Dropout (phrex_train_encoder_set_dropout); key_fwd is the key the
    // last forward drew its masks with, which its backward must reuse.
    float hidden_p, attn_p;
    uint64_t key, key_fwd;
};

// Dropout sites of a layer (the embeddings are layer -1).
enum { SITE_EMBED = 0, SITE_PROBS = 1, SITE_ATTN_OUT = 2, SITE_FFN_OUT = 3 };

// Every allocation of the workspace, in order; with `a` NULL only counts
// bytes, so sizing and carving cannot drift apart.
static size_t carve(phrex_train_encoder *e, phrex_arena *a) {
    const phrex_bert_config *c = &e->model->config;
    size_t N = (size_t)e->max_tokens, C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    size_t probs = (size_t)c->num_attention_heads * N * (size_t)e->max_seq;
    int L = c->num_hidden_layers;
    size_t bytes = 0;
#define TAKE(ptr, count, type)                                                          \
    do {                                                                                \
        size_t b_ = phrex_arena_round((size_t)(count) * sizeof(type));                  \
        bytes += b_;                                                                    \
        if (a) (ptr) = (type *)phrex_arena_alloc(a, (size_t)(count) * sizeof(type));  \
    } while (0)
    TAKE(e->ids, N, int32_t);
    TAKE(e->type_ids, N, int32_t);
    TAKE(e->pos, N, int32_t);
    TAKE(e->seq_start, N + 1, int32_t);
    TAKE(e->probs_start, N, size_t);
    TAKE(e->emb, N * C, float);
    TAKE(e->emb_mean, N, float);
    TAKE(e->emb_rstd, N, float);
    TAKE(e->x, L + 1, float *);
    TAKE(e->acts, L, layer_acts);
    for (int l = 0; l <= L; l++) {
        float *x0 = NULL;
        TAKE(x0, N * C, float);
        if (a && e->x) e->x[l] = x0;
    }
    for (int l = 0; l < L; l++) {
        layer_acts tmp, *la = a && e->acts ? &e->acts[l] : &tmp;
        TAKE(la->qkv, N * 3 * C, float);
        TAKE(la->probs, probs, float);
        TAKE(la->ctx, N * C, float);
        TAKE(la->r1, N * C, float);
        TAKE(la->mean1, N, float);
        TAKE(la->rstd1, N, float);
        TAKE(la->h1, N * C, float);
        TAKE(la->ff_pre, N * F, float);
        TAKE(la->ff_act, N * F, float);
        TAKE(la->r2, N * C, float);
        TAKE(la->mean2, N, float);
        TAKE(la->rstd2, N, float);
    }
    TAKE(e->dres, N * C, float);
    TAKE(e->dqkv, N * 3 * C, float);
    TAKE(e->dctx, N * C, float);
    TAKE(e->dff, N * F, float);
    TAKE(e->dtmp, N * C, float);
    TAKE(e->att_scratch, (size_t)e->n_slots * e->slot_floats, float);
#undef TAKE
    return bytes;
}

int phrex_train_encoder_init(phrex_train_encoder **out, phrex_train_bert *m, int max_tokens, int max_seq) {
    *out = NULL;
    const phrex_bert_config *c = &m->config;
    if (max_tokens < 1 || max_tokens > (1 << 22))
        return phrex_fail(PHREX_ERR_INPUT, "phrex_train_encoder_init: max_tokens is %d, expected 1..%d", max_tokens,
                          1 << 22);
    int limit = max_tokens < c->max_position_embeddings ? max_tokens : c->max_position_embeddings;
    if (max_seq < 0 || max_seq > limit)
        return phrex_fail(PHREX_ERR_INPUT, "phrex_train_encoder_init: max_seq is %d, expected 0..%d", max_seq, limit);
    phrex_train_encoder *e = calloc(1, sizeof *e);
    if (!e) return phrex_fail(PHREX_ERR_MEMORY, "phrex_train_encoder_init: out of memory");
    e->model = m;
    e->max_tokens = max_tokens;
    e->max_seq = max_seq ? max_seq : limit;
    // One attention scratch per thread the caller may run us with.
    e->n_slots = omp_get_num_procs() > omp_get_max_threads() ? omp_get_num_procs() : omp_get_max_threads();
    // Attention's backward takes two (L, L) blocks: dP and the dropped weights.
    e->slot_floats = phrex_arena_round(2 * (size_t)e->max_seq * e->max_seq * sizeof(float)) / sizeof(float);
    int rc = phrex_arena_init(&e->arena, carve(e, NULL));
    if (!rc) {
        carve(e, &e->arena);
        if (!e->att_scratch) rc = phrex_fail(PHREX_ERR_INTERNAL, "phrex_train_encoder_init: arena sized too small");
    }
    if (rc) {
        phrex_train_encoder_free(e);
        return phrex_fail_context(rc, "phrex_train_encoder_init(max_tokens=%d, max_seq=%d)", max_tokens, max_seq);
    }
    *out = e;
    return PHREX_OK;
}

void phrex_train_encoder_free(phrex_train_encoder *e) {
    if (!e) return;
    phrex_arena_free(&e->arena);
    free(e);
}

size_t phrex_train_encoder_bytes(const phrex_train_encoder *e) { return e->arena.capacity; }

int phrex_train_encoder_set_dropout(phrex_train_encoder *e, float hidden_p, float attn_p, uint64_t key) {
    if (!(hidden_p >= 0 && hidden_p < 1) || !(attn_p >= 0 && attn_p < 1))
        return phrex_fail(PHREX_ERR_INPUT, "phrex_train_encoder_set_dropout: probabilities %g, %g, expected [0, 1)",
                          hidden_p, attn_p);
    e->hidden_p = hidden_p, e->attn_p = attn_p, e->key = key;
    return PHREX_OK;
}

// ============================================================================
// Forward and backward
// ============================================================================

// Copies the inputs and indexes the sequences (positions, offsets).
static phrex_train_packing keep_inputs(phrex_train_encoder *e, const int32_t *ids, const int32_t *type_ids,
                                       const int32_t *seq_lens, int n_seqs, int n_tokens) {
    int H = e->model->config.num_attention_heads;
    memcpy(e->ids, ids, (size_t)n_tokens * sizeof *ids);
    if (type_ids)
        memcpy(e->type_ids, type_ids, (size_t)n_tokens * sizeof *type_ids);
    else
        memset(e->type_ids, 0, (size_t)n_tokens * sizeof *type_ids);
    int32_t start = 0;
    for (int s = 0; s < n_seqs; s++) {
        e->seq_start[s] = start;
        for (int32_t p = 0; p < seq_lens[s]; p++) e->pos[start + p] = p;
        start += seq_lens[s];
    }
    e->seq_start[n_seqs] = start;
    phrex_train_packing_index(e->probs_start, e->seq_start, n_seqs, H);
    e->n_tokens = n_tokens;
    e->n_seqs = n_seqs;
    return (phrex_train_packing){n_seqs, e->seq_start, e->probs_start};
}

// x += y, (n) floats.
static void add_inplace(float *x, const float *y, size_t n) {
#pragma omp parallel for schedule(static) if (n >= 32768)
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

// One post-LN layer: r1 = x + drop(Attn(x)·Woᵀ + bo); h1 = LN1(r1);
// r2 = h1 + drop(gelu(h1·W1ᵀ + b1)·W2ᵀ + b2); y = LN2(r2), with dropout
// on the attention weights too (drop = identity when p = 0).
// x, y: (N, C).
static void layer_forward(phrex_train_encoder *e, int l, const float *x, float *y, const phrex_train_packing *pk) {
    const phrex_bert_config *c = &e->model->config;
    const layer_view *w = &e->model->p.layers[l];
    layer_acts *a = &e->acts[l];
    int C = c->hidden_size, F = c->intermediate_size, H = c->num_attention_heads, N = e->n_tokens;
    float eps = c->layer_norm_eps, hp = e->hidden_p;
    uint64_t k = e->key_fwd;
    phrex_train_linear_forward(a->qkv, x, w->qkv_w, w->qkv_b, N, C, 3 * C);
    phrex_train_attention_forward(a->ctx, a->probs, a->qkv, pk, C, H, e->attn_p,
                                  phrex_train_dropout_site(k, l, SITE_PROBS), e->att_scratch, e->slot_floats,
                                  e->n_slots);
    phrex_train_linear_forward(a->r1, a->ctx, w->ao_w, w->ao_b, N, C, C);
    phrex_train_dropout(a->r1, (size_t)N * C, phrex_train_dropout_site(k, l, SITE_ATTN_OUT), 0, hp);
    add_inplace(a->r1, x, (size_t)N * C);
    phrex_train_layernorm_forward(a->h1, a->mean1, a->rstd1, a->r1, w->ln1_g, w->ln1_b, N, C, eps);
    phrex_train_linear_forward(a->ff_pre, a->h1, w->fi_w, w->fi_b, N, C, F);
    phrex_train_gelu_forward(a->ff_act, a->ff_pre, (size_t)N * F);
    phrex_train_linear_forward(a->r2, a->ff_act, w->fo_w, w->fo_b, N, F, C);
    phrex_train_dropout(a->r2, (size_t)N * C, phrex_train_dropout_site(k, l, SITE_FFN_OUT), 0, hp);
    add_inplace(a->r2, a->h1, (size_t)N * C);
    phrex_train_layernorm_forward(y, a->mean2, a->rstd2, a->r2, w->ln2_g, w->ln2_b, N, C, eps);
}

// The backward of layer_forward. e->dres holds dL/dy on entry and dL/dx on
// exit; g: the layer's gradients (accumulated).
// The gradient of a sublayer's output through its dropout: d itself when
// there is none, else d ⊙ mask in dtmp (d also flows on unmasked, along
// the residual).
static const float *through_dropout(phrex_train_encoder *e, const float *d, int l, int site) {
    if (!(e->hidden_p > 0)) return d;
    size_t n = (size_t)e->n_tokens * e->model->config.hidden_size;
    memcpy(e->dtmp, d, n * sizeof *d);
    phrex_train_dropout(e->dtmp, n, phrex_train_dropout_site(e->key_fwd, l, site), 0, e->hidden_p);
    return e->dtmp;
}

static void layer_backward(phrex_train_encoder *e, int l, const float *x, const phrex_train_packing *pk) {
    const phrex_bert_config *c = &e->model->config;
    const layer_view *w = &e->model->p.layers[l], *g = &e->model->g.layers[l];
    const layer_acts *a = &e->acts[l];
    int C = c->hidden_size, F = c->intermediate_size, H = c->num_attention_heads, N = e->n_tokens;
    float *d = e->dres; // (N, C)
    phrex_train_layernorm_backward(d, g->ln2_g, g->ln2_b, d, a->r2, a->mean2, a->rstd2, w->ln2_g, N, C); // d = dr2
    const float *dt = through_dropout(e, d, l, SITE_FFN_OUT);
    phrex_train_linear_backward(e->dff, g->fo_w, g->fo_b, dt, a->ff_act, w->fo_w, N, F, C, 0);
    phrex_train_gelu_backward(e->dff, e->dff, a->ff_pre, (size_t)N * F);
    // The residual: dh1 = dr2 + (FFN path), summed in place.
    phrex_train_linear_backward(d, g->fi_w, g->fi_b, e->dff, a->h1, w->fi_w, N, C, F, 1);
    phrex_train_layernorm_backward(d, g->ln1_g, g->ln1_b, d, a->r1, a->mean1, a->rstd1, w->ln1_g, N, C); // d = dr1
    dt = through_dropout(e, d, l, SITE_ATTN_OUT);
    phrex_train_linear_backward(e->dctx, g->ao_w, g->ao_b, dt, a->ctx, w->ao_w, N, C, C, 0);
    phrex_train_attention_backward(e->dqkv, e->dctx, a->probs, a->qkv, pk, C, H, e->attn_p,
                                   phrex_train_dropout_site(e->key_fwd, l, SITE_PROBS), e->att_scratch,
                                   e->slot_floats, e->n_slots);
    // dx = dr1 + (attention path).
    phrex_train_linear_backward(d, g->qkv_w, g->qkv_b, e->dqkv, x, w->qkv_w, N, C, 3 * C, 1);
}

int phrex_train_encoder_forward(phrex_train_encoder *e, const int32_t *ids, const int32_t *type_ids,
                                const int32_t *seq_lens, int n_seqs, const float **out) {
    if (!e || !ids || !seq_lens || !out)
        return phrex_fail(PHREX_ERR_INPUT, "phrex_train_encoder_forward: NULL workspace, ids, seq_lens or out");
    int N = 0;
    int rc = phrex_bert_check_packed(&e->model->config, "phrex_train_encoder_forward", ids, type_ids, seq_lens, n_seqs,
                                     1, e->max_seq, "the workspace's max_seq", e->max_tokens, &N);
    if (rc) return rc;
    const phrex_train_bert *m = e->model;
    const phrex_bert_config *c = &m->config;
    int C = c->hidden_size;
    phrex_train_packing pk = keep_inputs(e, ids, type_ids, seq_lens, n_seqs, N);
    e->key_fwd = e->key;
    phrex_train_embed_forward(e->emb, e->ids, e->pos, e->type_ids, m->p.wte, m->p.wpe, m->p.wtt, N, C);
    phrex_train_layernorm_forward(e->x[0], e->emb_mean, e->emb_rstd, e->emb, m->p.ln_g, m->p.ln_b, N, C,
                                  c->layer_norm_eps);
    phrex_train_dropout(e->x[0], (size_t)N * C, phrex_train_dropout_site(e->key_fwd, -1, SITE_EMBED), 0, e->hidden_p);
    for (int l = 0; l < c->num_hidden_layers; l++) layer_forward(e, l, e->x[l], e->x[l + 1], &pk);
    *out = e->x[c->num_hidden_layers];
    return PHREX_OK;
}

int phrex_train_encoder_backward(phrex_train_encoder *e, const float *dout) {
    if (!e || !dout) return phrex_fail(PHREX_ERR_INPUT, "phrex_train_encoder_backward: NULL workspace or dout");
    if (e->n_tokens == 0)
        return phrex_fail(PHREX_ERR_INPUT, "phrex_train_encoder_backward: no forward to take the backward of");
    phrex_train_bert *m = e->model;
    const phrex_bert_config *c = &m->config;
    int C = c->hidden_size, N = e->n_tokens;
    phrex_train_packing pk = {e->n_seqs, e->seq_start, e->probs_start};
    memcpy(e->dres, dout, (size_t)N * C * sizeof *dout);
    for (int l = c->num_hidden_layers - 1; l >= 0; l--) layer_backward(e, l, e->x[l], &pk);
    // All of x[0]'s gradient passed its dropout: masked in place.
    phrex_train_dropout(e->dres, (size_t)N * C, phrex_train_dropout_site(e->key_fwd, -1, SITE_EMBED), 0, e->hidden_p);
    phrex_train_layernorm_backward(e->dres, m->g.ln_g, m->g.ln_b, e->dres, e->emb, e->emb_mean, e->emb_rstd,
                                   m->p.ln_g, N, C);
    phrex_train_embed_backward(m->g.wte, m->g.wpe, m->g.wtt, e->dres, e->ids, e->pos, e->type_ids, N, C);
    return PHREX_OK;
}
