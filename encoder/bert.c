#include "bert.h"

#include "common/arena.h"
#include "common/error.h"
#include "kernels.h"
#include "weights.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ============================================================================
// Model
// ============================================================================

typedef struct {
    phrex_matrix qkv;           // (3C, C): query, key, value weights stacked
    const float *qkv_bias;      // (3C)
    phrex_matrix attn_out;      // (C, C) attention.output.dense
    const float *attn_out_bias; // (C)
    const float *ln1_gamma;     // (C) attention.output.LayerNorm
    const float *ln1_beta;      // (C)
    phrex_matrix ffn_in;        // (F, C) intermediate.dense
    const float *ffn_in_bias;   // (F)
    phrex_matrix ffn_out;       // (C, F) output.dense
    const float *ffn_out_bias;  // (C)
    const float *ln2_gamma;     // (C) output.LayerNorm
    const float *ln2_beta;      // (C)
} bert_layer;

struct phrex_bert {
    phrex_bert_config config;
    phrex_arena weights;       // every tensor below lives here
    const float *word_emb;     // (V, C)
    const float *pos_emb;      // (P, C)
    const float *type_emb;     // (T, C)
    const float *emb_ln_gamma; // (C)
    const float *emb_ln_beta;  // (C)
    bert_layer *layers;        // (L)
};

// Arena bytes for every tensor the model keeps, padding included; computed
// by the same list of sizes the loader allocates, so the two cannot drift.
static size_t weight_bytes(const phrex_bert_config *c) {
    int C = c->hidden_size, F = c->intermediate_size;
    size_t f = sizeof(float);
    size_t emb = phrex_arena_round((size_t)c->vocab_size * C * f) +
                 phrex_arena_round((size_t)c->max_position_embeddings * C * f) +
                 phrex_arena_round((size_t)c->type_vocab_size * C * f) + 2 * phrex_arena_round((size_t)C * f);
    size_t layer = phrex_arena_round(phrex_matrix_panels_floats(3 * C, C) * f) +
                   phrex_arena_round(phrex_matrix_panels_floats(C, C) * f) +
                   phrex_arena_round(phrex_matrix_panels_floats(F, C) * f) +
                   phrex_arena_round(phrex_matrix_panels_floats(C, F) * f) + phrex_arena_round(3 * (size_t)C * f) +
                   6 * phrex_arena_round((size_t)C * f) + phrex_arena_round((size_t)F * f);
    return emb + (size_t)c->num_hidden_layers * layer +
           phrex_arena_round((size_t)c->num_hidden_layers * sizeof(bert_layer));
}

// Reads named tensors into the weight arena.
typedef struct {
    const phrex_weights *w;
    phrex_arena *arena;
    const char *prefix; // "" or "bert." (checkpoints saved from BertFor* heads)
} loader;

// Reads tensor prefix + printf(fmt, ...) of shape (d0) or, when d1 > 0,
// (d0, d1) into dst, converting to f32.
static int load_v(const loader *ld, float *dst, int64_t d0, int64_t d1, const char *fmt, va_list ap) {
    char name[256];
    int n = snprintf(name, sizeof name, "%s", ld->prefix);
    vsnprintf(name + n, sizeof name - (size_t)n, fmt, ap);
    int64_t shape[2] = {d0, d1};
    return phrex_weights_read_f32(ld->w, name, d1 > 0 ? 2 : 1, shape, dst);
}

static int load_to(const loader *ld, float *dst, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int load_to(const loader *ld, float *dst, int64_t d0, int64_t d1, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = load_v(ld, dst, d0, d1, fmt, ap);
    va_end(ap);
    return rc;
}

// Same into a fresh block of the weight arena, stored in *out.
static int load_new(const loader *ld, const float **out, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int load_new(const loader *ld, const float **out, int64_t d0, int64_t d1, const char *fmt, ...) {
    float *dst = phrex_arena_alloc_floats(ld->arena, (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1));
    if (!dst) return phrex_fail(PHREX_ERR_MEMORY, "%s: weight arena full", phrex_weights_path(ld->w));
    va_list ap;
    va_start(ap, fmt);
    int rc = load_v(ld, dst, d0, d1, fmt, ap);
    va_end(ap);
    *out = dst;
    return rc;
}

static int load_embeddings(phrex_bert *m, const loader *ld) {
    const phrex_bert_config *c = &m->config;
    int C = c->hidden_size, rc = 0;
    if (!rc) rc = load_new(ld, &m->word_emb, c->vocab_size, C, "embeddings.word_embeddings.weight");
    if (!rc) rc = load_new(ld, &m->pos_emb, c->max_position_embeddings, C, "embeddings.position_embeddings.weight");
    if (!rc) rc = load_new(ld, &m->type_emb, c->type_vocab_size, C, "embeddings.token_type_embeddings.weight");
    if (!rc) rc = load_new(ld, &m->emb_ln_gamma, C, 0, "embeddings.LayerNorm.weight");
    if (!rc) rc = load_new(ld, &m->emb_ln_beta, C, 0, "embeddings.LayerNorm.bias");
    return rc;
}

// Packs a row-major (rows, cols) matrix into panels in the weight arena:
// the layout the linear kernel streams (see kernels.h), made once here.
static int pack_matrix(const loader *ld, phrex_matrix *out, const float *w, int rows, int cols) {
    float *dst = phrex_arena_alloc_floats(ld->arena, phrex_matrix_panels_floats(rows, cols));
    if (!dst) return phrex_fail(PHREX_ERR_MEMORY, "%s: weight arena full", phrex_weights_path(ld->w));
    *out = phrex_matrix_pack_panels(dst, w, rows, cols, cols);
    return PHREX_OK;
}

// Query, key and value weights stacked into one (3C, C) matrix (and biases
// into one (3C) vector), so one linear layer computes all three: its output
// row is [q | k | v], which attention then reads in place with stride 3C.
static int load_qkv(bert_layer *w, const loader *ld, int l, int C) {
    float *W = malloc((size_t)3 * C * C * sizeof *W); // row-major staging, packed below
    float *b = phrex_arena_alloc_floats(ld->arena, (size_t)3 * C);
    if (!W || !b) {
        free(W);
        return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory at layer %d", phrex_weights_path(ld->w), l);
    }
    static const char *part[3] = {"query", "key", "value"};
    int rc = PHREX_OK;
    for (int i = 0; i < 3 && !rc; i++) {
        rc = load_to(ld, W + (size_t)i * C * C, C, C, "encoder.layer.%d.attention.self.%s.weight", l, part[i]);
        if (!rc) rc = load_to(ld, b + (size_t)i * C, C, 0, "encoder.layer.%d.attention.self.%s.bias", l, part[i]);
    }
    if (!rc) rc = pack_matrix(ld, &w->qkv, W, 3 * C, C);
    w->qkv_bias = b;
    free(W);
    return rc;
}

// A (rows, cols) weight read through a staging buffer into packed panels.
static int load_matrix(const loader *ld, phrex_matrix *out, int rows, int cols, const char *fmt, int l) {
    float *W = malloc((size_t)rows * cols * sizeof *W);
    if (!W) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory at layer %d", phrex_weights_path(ld->w), l);
    int rc = load_to(ld, W, rows, cols, fmt, l);
    if (!rc) rc = pack_matrix(ld, out, W, rows, cols);
    free(W);
    return rc;
}

static int load_layer(bert_layer *w, const loader *ld, int l, const phrex_bert_config *c) {
    int C = c->hidden_size, F = c->intermediate_size;
    memset(w, 0, sizeof *w);
    int rc = load_qkv(w, ld, l, C);
    if (!rc) rc = load_matrix(ld, &w->attn_out, C, C, "encoder.layer.%d.attention.output.dense.weight", l);
    if (!rc) rc = load_new(ld, &w->attn_out_bias, C, 0, "encoder.layer.%d.attention.output.dense.bias", l);
    if (!rc) rc = load_new(ld, &w->ln1_gamma, C, 0, "encoder.layer.%d.attention.output.LayerNorm.weight", l);
    if (!rc) rc = load_new(ld, &w->ln1_beta, C, 0, "encoder.layer.%d.attention.output.LayerNorm.bias", l);
    if (!rc) rc = load_matrix(ld, &w->ffn_in, F, C, "encoder.layer.%d.intermediate.dense.weight", l);
    if (!rc) rc = load_new(ld, &w->ffn_in_bias, F, 0, "encoder.layer.%d.intermediate.dense.bias", l);
    if (!rc) rc = load_matrix(ld, &w->ffn_out, C, F, "encoder.layer.%d.output.dense.weight", l);
    if (!rc) rc = load_new(ld, &w->ffn_out_bias, C, 0, "encoder.layer.%d.output.dense.bias", l);
    if (!rc) rc = load_new(ld, &w->ln2_gamma, C, 0, "encoder.layer.%d.output.LayerNorm.weight", l);
    if (!rc) rc = load_new(ld, &w->ln2_beta, C, 0, "encoder.layer.%d.output.LayerNorm.bias", l);
    return rc;
}

static int load_weights(phrex_bert *m, const phrex_weights *w) {
    loader ld = {w, &m->weights, ""};
    // BertModel.from_pretrained also accepts the "bert." prefix of
    // checkpoints saved from a task head; so do we.
    if (!phrex_weights_has(w, "embeddings.word_embeddings.weight") &&
        phrex_weights_has(w, "bert.embeddings.word_embeddings.weight"))
        ld.prefix = "bert.";
    int rc = load_embeddings(m, &ld);
    if (rc) return rc;
    int L = m->config.num_hidden_layers;
    m->layers = phrex_arena_alloc(&m->weights, (size_t)L * sizeof *m->layers);
    if (!m->layers) return phrex_fail(PHREX_ERR_MEMORY, "%s: weight arena full", phrex_weights_path(w));
    for (int l = 0; l < L && !rc; l++) rc = load_layer(&m->layers[l], &ld, l, &m->config);
    return rc;
}

int phrex_bert_init(phrex_bert **out, const char *model_dir) {
    *out = NULL;
    char path[4096];
    phrex_bert *m = calloc(1, sizeof *m);
    if (!m) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", model_dir);
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    int rc = phrex_bert_config_read(&m->config, path);
    if (!rc) rc = phrex_arena_init(&m->weights, weight_bytes(&m->config));
    if (!rc) {
        phrex_weights *w;
        rc = phrex_weights_open(&w, model_dir); // model.safetensors, or base + delta
        if (!rc) rc = load_weights(m, w);
        phrex_weights_close(w); // every tensor was copied (and converted)
    }
    if (rc) {
        phrex_bert_free(m);
        return rc;
    }
    *out = m;
    return PHREX_OK;
}

void phrex_bert_free(phrex_bert *model) {
    if (!model) return;
    phrex_arena_free(&model->weights);
    free(model);
}

const phrex_bert_config *phrex_bert_get_config(const phrex_bert *model) { return &model->config; }

// ============================================================================
// Workspace
// ============================================================================

// Rows per block of the token-wise phase. The weights are pre-packed, so a
// block only has to be tall enough to reuse each streamed weight panel many
// times; smaller blocks keep the block's activations in L2.
#define DEFAULT_BLOCK_ROWS 1024
// The FFN runs over slices of its F intermediate features so that a block's
// slice of the intermediate, rows x chunk floats, stays in cache between
// the two linear layers: FFN(x) = Σ_c gelu(x·W1[c]ᵀ + b1[c])·W2[:, c]ᵀ + b2.
#define DEFAULT_FFN_CHUNK 384
// Below this many rows per thread the token-wise phase runs blocks one after
// another with each linear layer split over the threads by weight panels:
// splitting a short batch by rows instead would make every thread stream
// all the weights for a few rows each.
#define MIN_ROWS_PER_THREAD 64

struct phrex_encoder {
    const phrex_bert *model;
    int max_tokens;
    int max_seq;        // longest sequence: min(P, max_tokens)
    int block_rows;     // rows per block of the token-wise phase
    int ffn_chunk;      // FFN intermediate features per slice
    int n_slots;        // per-thread scratch areas
    size_t slot_floats; // floats per slot
    phrex_arena arena;
    float *qkv;         // (max_tokens, 3C) [q | k | v] of every token
    float *ctx;         // (max_tokens, C) attention output, heads side by side
    float *slots;       // (n_slots, slot_floats) scratch, one per thread
    int32_t *pos;       // (max_tokens) position of each token in its sequence
    int32_t *seq_start; // (max_tokens + 1) first token of each sequence
};

// Scratch floats of one attention task: scores, then keys and values of
// one head packed as panels for the linear kernel.
static size_t attention_floats(int L, int D) {
    size_t scores = phrex_arena_round((size_t)L * L * sizeof(float)) / sizeof(float);
    return scores + phrex_matrix_panels_floats(L, D) + phrex_matrix_panels_floats(D, L);
}

// A thread's scratch serves both phases, which never overlap: the
// token-wise phase needs (block, C) + (block, chunk), attention its scores
// and packed keys and values (attention_floats).
static size_t slot_floats_for(const phrex_encoder *e, const phrex_bert_config *c) {
    size_t rows = (size_t)e->block_rows * (size_t)(c->hidden_size + e->ffn_chunk);
    size_t attention = attention_floats(e->max_seq, c->head_dim);
    size_t n = rows > attention ? rows : attention;
    return phrex_arena_round(n * sizeof(float)) / sizeof(float);
}

static size_t workspace_bytes(const phrex_encoder *e, const phrex_bert_config *c) {
    size_t N = (size_t)e->max_tokens, C = (size_t)c->hidden_size;
    return phrex_arena_round(N * 3 * C * sizeof(float)) + phrex_arena_round(N * C * sizeof(float)) +
           phrex_arena_round((size_t)e->n_slots * e->slot_floats * sizeof(float)) +
           phrex_arena_round(N * sizeof(int32_t)) + phrex_arena_round((N + 1) * sizeof(int32_t));
}

static int carve_workspace(phrex_encoder *e, const phrex_bert_config *c) {
    size_t N = (size_t)e->max_tokens, C = (size_t)c->hidden_size;
    phrex_arena *a = &e->arena;
    e->qkv = phrex_arena_alloc_floats(a, N * 3 * C);
    e->ctx = phrex_arena_alloc_floats(a, N * C);
    e->slots = phrex_arena_alloc_floats(a, (size_t)e->n_slots * e->slot_floats);
    e->pos = phrex_arena_alloc(a, N * sizeof(int32_t));
    e->seq_start = phrex_arena_alloc(a, (N + 1) * sizeof(int32_t));
    if (!e->qkv || !e->ctx || !e->slots || !e->pos || !e->seq_start)
        return phrex_fail(PHREX_ERR_INTERNAL, "encoder workspace: arena sized too small");
    return PHREX_OK;
}

// (Re)builds the arena for the current block_rows.
static int build_workspace(phrex_encoder *e) {
    const phrex_bert_config *c = &e->model->config;
    phrex_arena_free(&e->arena);
    e->slot_floats = slot_floats_for(e, c);
    int rc = phrex_arena_init(&e->arena, workspace_bytes(e, c));
    return rc ? rc : carve_workspace(e, c);
}

int phrex_encoder_init(phrex_encoder **out, const phrex_bert *model, int max_tokens) {
    *out = NULL;
    const phrex_bert_config *c = &model->config;
    if (max_tokens < 1 || max_tokens > (1 << 24))
        return phrex_fail(PHREX_ERR_INPUT, "phrex_encoder_init: max_tokens is %d, expected 1..%d", max_tokens, 1 << 24);
    phrex_encoder *e = calloc(1, sizeof *e);
    if (!e) return phrex_fail(PHREX_ERR_MEMORY, "phrex_encoder_init: out of memory");
    e->model = model;
    e->max_tokens = max_tokens;
    e->max_seq = max_tokens < c->max_position_embeddings ? max_tokens : c->max_position_embeddings;
    e->block_rows = max_tokens < DEFAULT_BLOCK_ROWS ? max_tokens : DEFAULT_BLOCK_ROWS;
    e->ffn_chunk = c->intermediate_size < DEFAULT_FFN_CHUNK ? c->intermediate_size : DEFAULT_FFN_CHUNK;
    // Enough slots for every thread count the caller may ask for later.
    e->n_slots = omp_get_num_procs() > omp_get_max_threads() ? omp_get_num_procs() : omp_get_max_threads();
    int rc = build_workspace(e);
    if (rc) {
        phrex_encoder_free(e);
        return phrex_fail_context(rc, "phrex_encoder_init(max_tokens=%d)", max_tokens);
    }
    *out = e;
    return PHREX_OK;
}

void phrex_encoder_free(phrex_encoder *enc) {
    if (!enc) return;
    phrex_arena_free(&enc->arena);
    free(enc);
}

int phrex_encoder_max_tokens(const phrex_encoder *enc) { return enc->max_tokens; }

int phrex_encoder_set_blocking(phrex_encoder *enc, int rows, int ffn_chunk) {
    int F = enc->model->config.intermediate_size;
    if (rows > 0) enc->block_rows = rows < enc->max_tokens ? rows : enc->max_tokens;
    // FFN slices start at multiples of the panel height (packed weights
    // are sliced by whole panels).
    ffn_chunk = (ffn_chunk + PHREX_PANEL - 1) / PHREX_PANEL * PHREX_PANEL;
    if (ffn_chunk > 0) enc->ffn_chunk = ffn_chunk < F ? ffn_chunk : F;
    int rc = build_workspace(enc);
    return rc ? phrex_fail_context(rc, "phrex_encoder_set_blocking(%d, %d)", rows, ffn_chunk) : PHREX_OK;
}

// ============================================================================
// Forward
// ============================================================================

// What one forward call works on, shared by every phase.
typedef struct {
    phrex_encoder *enc;
    const int32_t *ids;      // (N)
    const int32_t *type_ids; // (N) or NULL
    int n_tokens;            // N
    int n_seqs;
    int threads;
    float *x;                // (N, C) the residual stream: the caller's out
} fwd_pass;

static float *slot(const phrex_encoder *e, int i) { return e->slots + (size_t)i * e->slot_floats; }

// Sequence offsets and per-token positions, so that the token-wise phase can
// work on any row range without knowing where sequences start.
static void index_sequences(phrex_encoder *e, const int32_t *seq_lens, int n_seqs) {
    int32_t start = 0;
    for (int s = 0; s < n_seqs; s++) {
        e->seq_start[s] = start;
        for (int32_t p = 0; p < seq_lens[s]; p++) e->pos[start + p] = p;
        start += seq_lens[s];
    }
    e->seq_start[n_seqs] = start;
}

// --- token-wise phase ---------------------------------------------------------

// x[r] = LayerNorm(word[id] + position[pos] + type[type_id]) for rows r0.. of nr.
static void embed_rows(const fwd_pass *f, int r0, int nr) {
    const phrex_bert *m = f->enc->model;
    int C = m->config.hidden_size;
    for (int r = r0; r < r0 + nr; r++) {
        const float *w = m->word_emb + (size_t)f->ids[r] * C;
        const float *p = m->pos_emb + (size_t)f->enc->pos[r] * C;
        const float *t = m->type_emb + (size_t)(f->type_ids ? f->type_ids[r] : 0) * C;
        float *x = f->x + (size_t)r * C;
#pragma omp simd
        for (int j = 0; j < C; j++) x[j] = w[j] + p[j] + t[j];
    }
    phrex_add_layernorm_forward(f->x + (size_t)r0 * C, f->x + (size_t)r0 * C, NULL, m->emb_ln_gamma, m->emb_ln_beta,
                                nr, C, m->config.layer_norm_eps, NULL, NULL);
}

// The FFN of rows already normalised by LN1, into t (without the residual):
// t = gelu(x·W1ᵀ + b1)·W2ᵀ + b2, summed over slices c of F:
// t = b2 + Σ_c gelu(x·W1[c]ᵀ + b1[c])·W2[:, c]ᵀ. The slices bound the
// intermediate a block keeps in cache. The summation always runs over the
// same slices, so a row's result never depends on how many rows came with
// it; only the first layer, whose outputs are independent, is done in one
// call when the whole intermediate fits the scratch (few rows, where every
// extra kernel call is a fork/join).
// x: (nr, C); t: (nr, C); h: (nr, chunk) scratch, or (nr, F) when it fits.
static void ffn_rows(const fwd_pass *f, const bert_layer *w, const float *x, int nr, float *t, float *h) {
    int C = f->enc->model->config.hidden_size, F = f->enc->model->config.intermediate_size;
    int chunk = f->enc->ffn_chunk;
    int whole = (size_t)nr * F <= (size_t)f->enc->block_rows * chunk;
    if (whole) phrex_linear_gelu_forward(h, F, x, C, nr, &w->ffn_in, w->ffn_in_bias);
    for (int c0 = 0; c0 < F; c0 += chunk) {
        int fc = F - c0 < chunk ? F - c0 : chunk;
        const float *hc = whole ? h + c0 : h; // (nr, fc) at stride ldh
        int ldh = whole ? F : fc;
        if (!whole) {
            phrex_matrix w1 = phrex_matrix_slice(&w->ffn_in, c0, fc, 0, C); // (fc, C)
            phrex_linear_gelu_forward(h, fc, x, C, nr, &w1, w->ffn_in_bias + c0);
        }
        phrex_matrix w2 = phrex_matrix_slice(&w->ffn_out, 0, C, c0, fc); // (C, fc) at stride F
        if (c0 == 0)
            phrex_linear_forward(t, C, hc, ldh, nr, &w2, w->ffn_out_bias);
        else
            phrex_linear_forward_acc(t, C, hc, ldh, nr, &w2);
    }
}

// Everything of layer `w` after attention, for rows r0.. of nr:
//   x = LN1(x + ctx·Woᵀ + bo);  x = LN2(x + gelu(x·W1ᵀ + b1)·W2ᵀ + b2)
// scratch: (nr, C) for the projections + (nr, chunk) for the FFN slice.
static void layer_rows(const fwd_pass *f, const bert_layer *w, int r0, int nr, float *scratch) {
    const phrex_bert_config *c = &f->enc->model->config;
    int C = c->hidden_size;
    float eps = c->layer_norm_eps;
    float *x = f->x + (size_t)r0 * C;                    // (nr, C)
    const float *ctx = f->enc->ctx + (size_t)r0 * C;     // (nr, C)
    float *t = scratch;                                  // (nr, C)
    float *h = scratch + (size_t)f->enc->block_rows * C; // (nr, chunk)
    phrex_linear_forward(t, C, ctx, C, nr, &w->attn_out, w->attn_out_bias);
    phrex_add_layernorm_forward(x, x, t, w->ln1_gamma, w->ln1_beta, nr, C, eps, NULL, NULL);
    ffn_rows(f, w, x, nr, t, h);
    phrex_add_layernorm_forward(x, x, t, w->ln2_gamma, w->ln2_beta, nr, C, eps, NULL, NULL);
}

// One block of the token-wise phase that follows attention of layer
// `layer` (-1: the embeddings), ending with the next layer's q, k, v so that
// the rows are still in cache when they are projected.
static void rows_block(const fwd_pass *f, int layer, int r0, int nr, float *scratch) {
    const phrex_bert *m = f->enc->model;
    int C = m->config.hidden_size;
    if (layer < 0)
        embed_rows(f, r0, nr);
    else
        layer_rows(f, &m->layers[layer], r0, nr, scratch);
    if (layer + 1 < m->config.num_hidden_layers) {
        const bert_layer *next = &m->layers[layer + 1];
        phrex_linear_forward(f->enc->qkv + (size_t)r0 * 3 * C, 3 * C, f->x + (size_t)r0 * C, C, nr, &next->qkv,
                             next->qkv_bias);
    }
}

// Long batches: blocks of rows spread over threads, each thread running the
// whole token-wise chain on its own blocks (so a block's activations stay in
// that core's caches, and threads meet only at the phase's end). Short
// batches: blocks in order, each linear layer split over the threads by
// weight panels, so each thread streams its share of the weights.
static void rows_phase(const fwd_pass *f, int layer) {
    const phrex_encoder *e = f->enc;
    int n = f->n_tokens, T = f->threads;
    if (T > 1 && n >= T * MIN_ROWS_PER_THREAD) {
        int block = (n + T - 1) / T; // at least one block per thread
        if (block > e->block_rows) block = e->block_rows;
        int n_blocks = (n + block - 1) / block;
#pragma omp parallel for schedule(dynamic, 1) num_threads(T)
        for (int b = 0; b < n_blocks; b++) {
            int r0 = b * block, nr = n - r0 < block ? n - r0 : block;
            rows_block(f, layer, r0, nr, slot(e, omp_get_thread_num()));
        }
    } else {
        for (int r0 = 0; r0 < n; r0 += e->block_rows) {
            int nr = n - r0 < e->block_rows ? n - r0 : e->block_rows;
            rows_block(f, layer, r0, nr, slot(e, 0));
        }
    }
}

// --- attention ----------------------------------------------------------------

// Scaled dot-product attention of one head over one sequence of L tokens,
// reading q, k, v in place from the rows of the fused projection.
// qkv: (L, 3C); ctx: (L, C), head h writes columns h·D..; scratch:
// attention_floats(L, D). Both products run on the linear kernel, with the
// head's keys and values as its "weights": q·kᵀ is a linear layer whose
// weight rows are the keys, p·v one whose weight rows are vᵀ's.
static void attend_head(const float *qkv, float *ctx, int L, int C, int D, int h, float *scratch) {
    const float *q = qkv + (size_t)h * D, *k = q + C, *v = q + 2 * C;
    float *scores = scratch;                                             // (L, L)
    float *kp = scores + phrex_arena_round((size_t)L * L * sizeof(float)) / sizeof(float);
    float *vp = kp + phrex_matrix_panels_floats(L, D);
    phrex_matrix keys = phrex_matrix_pack_panels(kp, k, L, D, 3 * C);     // (L, D)
    phrex_matrix values = phrex_matrix_pack_panels_t(vp, v, D, L, 3 * C); // (D, L)
    phrex_linear_forward(scores, L, q, 3 * C, L, &keys, NULL);            // q·kᵀ
    phrex_softmax_forward(scores, L, L, L, 1.0f / sqrtf((float)D));      // softmax(q·kᵀ / √D)
    phrex_linear_forward(ctx + (size_t)h * D, C, scores, L, L, &values, NULL); // ·v
}

// Every (sequence, head) pair is independent: they are the parallel tasks,
// handed out dynamically because sequences differ in length.
static void attention_phase(const fwd_pass *f) {
    const phrex_encoder *e = f->enc;
    int C = e->model->config.hidden_size, H = e->model->config.num_attention_heads, D = C / H;
    int tasks = f->n_seqs * H;
#pragma omp parallel for schedule(dynamic, 1) num_threads(f->threads) if (f->threads > 1)
    for (int task = 0; task < tasks; task++) {
        int s = task / H, h = task % H;
        int start = e->seq_start[s], L = e->seq_start[s + 1] - start;
        attend_head(e->qkv + (size_t)start * 3 * C, e->ctx + (size_t)start * C, L, C, D, h,
                    slot(e, omp_get_thread_num()));
    }
}

int phrex_encoder_forward(phrex_encoder *enc, const int32_t *ids, const int32_t *type_ids, const int32_t *seq_lens,
                          int n_seqs, float *out) {
    if (!enc || (n_seqs > 0 && (!ids || !seq_lens || !out)))
        return phrex_fail(PHREX_ERR_INPUT, "phrex_encoder_forward: NULL encoder, ids, seq_lens or out");
    int n_tokens = 0;
    int rc = phrex_bert_check_packed(&enc->model->config, "phrex_encoder_forward", ids, type_ids, seq_lens, n_seqs, 0,
                                     enc->model->config.max_position_embeddings, "max_position_embeddings",
                                     enc->max_tokens, &n_tokens);
    if (rc || n_seqs == 0) return rc;
    index_sequences(enc, seq_lens, n_seqs);
    int threads = omp_get_max_threads();
    fwd_pass f = {enc, ids, type_ids, n_tokens, n_seqs, threads < enc->n_slots ? threads : enc->n_slots, out};
    rows_phase(&f, -1);
    for (int l = 0; l < enc->model->config.num_hidden_layers; l++) {
        attention_phase(&f);
        rows_phase(&f, l);
    }
    return PHREX_OK;
}

// ============================================================================
// Pooling
// ============================================================================

void phrex_bert_mean_pool(const float *tokens, const int32_t *seq_lens, int n_seqs, int C, float *out) {
    const float *t = tokens;
    for (int s = 0; s < n_seqs; s++) {
        float *o = out + (size_t)s * C;
        memset(o, 0, (size_t)C * sizeof *o);
        for (int i = 0; i < seq_lens[s]; i++, t += C)
#pragma omp simd
            for (int j = 0; j < C; j++) o[j] += t[j];
        float inv = 1.0f / (float)seq_lens[s];
        for (int j = 0; j < C; j++) o[j] *= inv;
    }
}

void phrex_l2_normalize(float *v, int n, int C) {
    for (int i = 0; i < n; i++) {
        float *r = v + (size_t)i * C, sq = 0.0f;
#pragma omp simd reduction(+ : sq)
        for (int j = 0; j < C; j++) sq = fmaf(r[j], r[j], sq);
        float norm = sqrtf(sq);
        float inv = 1.0f / (norm > 1e-12f ? norm : 1e-12f);
        for (int j = 0; j < C; j++) r[j] *= inv;
    }
}
