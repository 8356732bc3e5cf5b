#include "use_lite_train.h"

#include "common/arena.h"
#include "common/error.h"
#include "encoder/checkpoint.h"
#include "encoder/safetensors.h"
#include "encoder/train_kernels.h"
#include "encoder/train_rng.h"
#include "encoder/use_lite.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ============================================================================
// Parameters
// ============================================================================

#define N_LAYERS PHREX_USE_LITE_LAYERS
// Tensors before the first layer, and in each layer (layer 0 has 2 more).
#define HEAD_TENSORS 4
#define LAYER1_TENSORS 12
#define MAX_TENSORS (HEAD_TENSORS + 2 * LAYER1_TENSORS + 2)

// One layer's tensors inside a flat buffer (parameters or gradients).
typedef struct {
    float *ln_a_g, *ln_a_b; // (cin)
    float *qkv_w, *qkv_b;   // (3cin, cin), (3cin)
    float *out_w, *out_b;   // (C, cin), (C)
    float *res_w, *res_b;   // (C, cin), (C): layer 0 only, else NULL
    float *ln_f_g, *ln_f_b; // (C)
    float *fc1_w, *fc1_b;   // (F, C), (F)
    float *fc2_w, *fc2_b;   // (C, F), (C)
} layer_view;

typedef struct {
    float *inv_ts;          // (E/2)
    float *pool_w, *pool_b; // (C, C), (C)
    float *word;            // (V, E)
    layer_view layers[N_LAYERS];
} model_view;

struct phrex_use_lite_train {
    phrex_use_lite_shape shape;
    phrex_train_params buf;
    phrex_param_tensor tensors[MAX_TENSORS];
    int file_transposed[MAX_TENSORS]; // stored [in, out] in the file
    int n_tensors;
    model_view p; // into buf.params
    model_view g; // into buf.grads (frozen tensors NULL)
};

phrex_use_lite_shape phrex_use_lite_shape_default(void) {
    return (phrex_use_lite_shape){PHREX_USE_LITE_VOCAB, PHREX_USE_LITE_EMBED, PHREX_USE_LITE_DIM,
                                  PHREX_USE_LITE_FFN,   PHREX_USE_LITE_HEADS, PHREX_USE_LITE_EPS};
}

// Appends a tensor of shape (d0[, d1]) to the table; `linear`: a weight
// matrix, (out, in) here and [in, out] in the file, with weight decay.
static void add_tensor(phrex_use_lite_train *m, size_t *at, int64_t d0, int64_t d1, int linear, int decay,
                       const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void add_tensor(phrex_use_lite_train *m, size_t *at, int64_t d0, int64_t d1, int linear, int decay,
                       const char *fmt, ...) {
    int i = m->n_tensors++;
    phrex_param_tensor *t = &m->tensors[i];
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
    m->file_transposed[i] = linear;
    *at += t->numel;
}

// The table in buffer order (see the header). Returns the total floats.
static size_t build_table(phrex_use_lite_train *m) {
    const phrex_use_lite_shape *s = &m->shape;
    int64_t E = s->embed, C = s->dim, F = s->ffn;
    size_t at = 0;
    m->n_tensors = 0;
    add_tensor(m, &at, 1, E / 2, 0, 0, "embeddings.timing_inv_timescales");
    add_tensor(m, &at, C, C, 1, 1, "pooler.tanh.weight");
    add_tensor(m, &at, C, 0, 0, 0, "pooler.tanh.bias");
    add_tensor(m, &at, s->vocab, E, 0, 1, "embeddings.word.weight");
    for (int l = 0; l < N_LAYERS; l++) {
        int64_t cin = l == 0 ? E : C;
        add_tensor(m, &at, cin, 0, 0, 0, "layer%d.attn_ln.weight", l);
        add_tensor(m, &at, cin, 0, 0, 0, "layer%d.attn_ln.bias", l);
        add_tensor(m, &at, 3 * cin, cin, 1, 1, "layer%d.attn.qkv.weight", l);
        add_tensor(m, &at, 3 * cin, 0, 0, 0, "layer%d.attn.qkv.bias", l);
        add_tensor(m, &at, C, cin, 1, 1, "layer%d.attn.out.weight", l);
        add_tensor(m, &at, C, 0, 0, 0, "layer%d.attn.out.bias", l);
        if (l == 0) {
            add_tensor(m, &at, C, cin, 1, 1, "layer%d.residual_proj.weight", l);
            add_tensor(m, &at, C, 0, 0, 0, "layer%d.residual_proj.bias", l);
        }
        add_tensor(m, &at, C, 0, 0, 0, "layer%d.ffn_ln.weight", l);
        add_tensor(m, &at, C, 0, 0, 0, "layer%d.ffn_ln.bias", l);
        add_tensor(m, &at, F, C, 1, 1, "layer%d.ffn.fc1.weight", l);
        add_tensor(m, &at, F, 0, 0, 0, "layer%d.ffn.fc1.bias", l);
        add_tensor(m, &at, C, F, 1, 1, "layer%d.ffn.fc2.weight", l);
        add_tensor(m, &at, C, 0, 0, 0, "layer%d.ffn.fc2.bias", l);
    }
    return at;
}

// Points a view into `base`, where buffer float `first` sits at base[0];
// tensors before `first` (frozen) get NULL.
static void bind_view(model_view *v, const phrex_use_lite_train *m, float *base, size_t first) {
    const phrex_param_tensor *t = m->tensors;
#define AT(i) (t[i].offset >= first ? base + (t[i].offset - first) : NULL)
    v->inv_ts = AT(0), v->pool_w = AT(1), v->pool_b = AT(2), v->word = AT(3);
    int k = HEAD_TENSORS;
    for (int l = 0; l < N_LAYERS; l++) {
        layer_view *w = &v->layers[l];
        w->ln_a_g = AT(k), w->ln_a_b = AT(k + 1), w->qkv_w = AT(k + 2), w->qkv_b = AT(k + 3);
        w->out_w = AT(k + 4), w->out_b = AT(k + 5);
        k += 6;
        w->res_w = w->res_b = NULL;
        if (l == 0) w->res_w = AT(k), w->res_b = AT(k + 1), k += 2;
        w->ln_f_g = AT(k), w->ln_f_b = AT(k + 1), w->fc1_w = AT(k + 2), w->fc1_b = AT(k + 3);
        w->fc2_w = AT(k + 4), w->fc2_b = AT(k + 5);
        k += 6;
    }
#undef AT
}

static int check_shape(const phrex_use_lite_shape *s, const char *who) {
    if (s->vocab < 1 || s->embed < 2 || s->embed % 2 || s->dim < 1 || s->ffn < 1 || s->heads < 1 ||
        s->embed % s->heads || s->dim % s->heads || !(s->eps > 0))
        return phrex_fail(PHREX_ERR_INPUT, "%s: bad shape (vocab %d, embed %d, dim %d, ffn %d, heads %d)", who,
                          s->vocab, s->embed, s->dim, s->ffn, s->heads);
    return PHREX_OK;
}

// Table, buffers (parameters uninitialised, gradients zero) and views.
static int alloc_model(phrex_use_lite_train *m, const phrex_use_lite_train_options *opts) {
    size_t n = build_table(m);
    int first_trainable = opts && opts->freeze_word_embeddings ? HEAD_TENSORS : HEAD_TENSORS - 1;
    for (int i = 0; i < first_trainable; i++) m->tensors[i].trainable = 0;
    size_t first = m->tensors[first_trainable].offset;
    m->buf = (phrex_train_params){NULL, n, NULL, n - first, first, m->tensors, m->n_tensors};
    void *p = NULL, *g = NULL;
    if (posix_memalign(&p, PHREX_ARENA_ALIGN, n * sizeof(float)) ||
        posix_memalign(&g, PHREX_ARENA_ALIGN, (n - first) * sizeof(float) + 1)) {
        free(p);
        return phrex_fail(PHREX_ERR_MEMORY, "USE-lite training model: cannot allocate %zu parameters", n);
    }
    m->buf.params = p;
    m->buf.grads = g;
    memset(g, 0, (n - first) * sizeof(float));
    bind_view(&m->p, m, m->buf.params, 0);
    bind_view(&m->g, m, m->buf.grads, first);
    return PHREX_OK;
}

void phrex_use_lite_train_free(phrex_use_lite_train *m) {
    if (!m) return;
    free(m->buf.params);
    free(m->buf.grads);
    free(m);
}

// Every tensor from the file: [in, out] matrices transposed to (out, in).
static int read_tensors(phrex_use_lite_train *m, const phrex_safetensors *st) {
    for (int i = 0; i < m->n_tensors; i++) {
        const phrex_param_tensor *t = &m->tensors[i];
        float *dst = m->buf.params + t->offset;
        if (!m->file_transposed[i]) {
            int rc = phrex_safetensors_read_f32(st, t->name, t->ndim, t->shape, dst);
            if (rc) return rc;
            continue;
        }
        int64_t out = t->shape[0], in = t->shape[1], file_shape[2] = {in, out};
        float *raw = malloc(t->numel * sizeof *raw);
        if (!raw) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory at %s", st->path, t->name);
        int rc = phrex_safetensors_read_f32(st, t->name, 2, file_shape, raw);
        for (int64_t r = 0; !rc && r < in; r++)
            for (int64_t o = 0; o < out; o++) dst[o * in + r] = raw[r * out + o];
        free(raw);
        if (rc) return rc;
    }
    return PHREX_OK;
}

int phrex_use_lite_train_init(phrex_use_lite_train **out, const char *safetensors_path,
                              const phrex_use_lite_train_options *opts) {
    *out = NULL;
    phrex_use_lite_train *m = calloc(1, sizeof *m);
    if (!m) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", safetensors_path);
    m->shape = phrex_use_lite_shape_default();
    int rc = alloc_model(m, opts);
    if (!rc) {
        phrex_safetensors st;
        rc = phrex_safetensors_init(&st, safetensors_path);
        if (!rc) rc = read_tensors(m, &st);
        phrex_safetensors_free(&st);
    }
    if (rc) {
        phrex_use_lite_train_free(m);
        return rc;
    }
    *out = m;
    return PHREX_OK;
}

int phrex_use_lite_train_init_random(phrex_use_lite_train **out, const phrex_use_lite_shape *shape, uint64_t seed,
                                     float scale, const phrex_use_lite_train_options *opts) {
    *out = NULL;
    int rc = check_shape(shape, "phrex_use_lite_train_init_random");
    if (rc) return rc;
    phrex_use_lite_train *m = calloc(1, sizeof *m);
    if (!m) return phrex_fail(PHREX_ERR_MEMORY, "USE-lite training model: out of memory");
    m->shape = *shape;
    rc = alloc_model(m, opts);
    if (rc) {
        phrex_use_lite_train_free(m);
        return rc;
    }
    phrex_rng rng = phrex_rng_init(seed);
    for (int i = 1; i < m->n_tensors; i++) {
        const phrex_param_tensor *t = &m->tensors[i];
        float *p = m->buf.params + t->offset;
        int ln_weight = strstr(t->name, "_ln.weight") != NULL, half = ln_weight || t->ndim == 1;
        for (size_t j = 0; j < t->numel; j++) {
            float u = phrex_rng_symmetric(&rng);
            p[j] = ln_weight ? 1.0f + 0.5f * scale * u : half ? 0.5f * scale * u : scale * u;
        }
    }
    int half = shape->embed / 2;
    for (int j = 0; j < half; j++) m->p.inv_ts[j] = (float)exp(-log(1e4) * j / (half > 1 ? half - 1 : 1));
    *out = m;
    return PHREX_OK;
}

const phrex_use_lite_shape *phrex_use_lite_train_shape(const phrex_use_lite_train *m) { return &m->shape; }

phrex_train_params phrex_use_lite_train_params(phrex_use_lite_train *m) { return m->buf; }

const phrex_param_tensor *phrex_use_lite_train_find(const phrex_use_lite_train *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

float *phrex_use_lite_train_grad_of(phrex_use_lite_train *m, const phrex_param_tensor *t) {
    if (!t->trainable) return NULL;
    return m->buf.grads + (t->offset - m->buf.grad_offset);
}

void phrex_use_lite_train_zero_grads(phrex_use_lite_train *m) {
    memset(m->buf.grads, 0, m->buf.n_grads * sizeof(float));
}

int phrex_use_lite_train_save(phrex_use_lite_train *m, const char *path, int dtype) {
    phrex_safetensors_entry entries[MAX_TENSORS];
    float *staged[MAX_TENSORS] = {0};
    int rc = PHREX_OK;
    for (int i = 0; i < m->n_tensors && !rc; i++) {
        const phrex_param_tensor *t = &m->tensors[i];
        const float *src = m->buf.params + t->offset;
        phrex_safetensors_entry *e = &entries[i];
        memset(e, 0, sizeof *e);
        e->name = t->name;
        e->ndim = t->ndim;
        e->shape[0] = t->shape[0];
        e->shape[1] = t->shape[1];
        e->data = src;
        if (!m->file_transposed[i]) continue;
        int64_t out = t->shape[0], in = t->shape[1];
        float *w = staged[i] = malloc(t->numel * sizeof *w);
        if (!w) {
            rc = phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory at %s", path, t->name);
            break;
        }
        for (int64_t o = 0; o < out; o++)
            for (int64_t r = 0; r < in; r++) w[r * out + o] = src[o * in + r];
        e->shape[0] = in, e->shape[1] = out, e->data = w;
    }
    static const char *const meta[] = {"layout", "weights stored [in,out] (x @ W + b), as in TF", "written_by",
                                       "phrex_use_lite_train_save"};
    if (!rc) rc = phrex_safetensors_write(path, entries, m->n_tensors, (phrex_dtype)dtype, meta, 2);
    for (int i = 0; i < m->n_tensors; i++) free(staged[i]);
    return rc;
}

// ============================================================================
// Workspace
// ============================================================================

// What the backward of one layer needs from its forward.
typedef struct {
    float *ln_a;              // (N, cin) attention LN output
    float *mean_a, *rstd_a;   // (N)
    float *qkv;               // (N, 3cin)
    float *probs;             // H · Σ L_s² attention weights
    float *ctx;               // (N, cin)
    float *r1;                // (N, C) after the attention sublayer and its residual
    float *ln_f;              // (N, C) FFN LN output
    float *mean_f, *rstd_f;   // (N)
    float *ff_pre, *ff_act;   // (N, F) before and after ReLU
} layer_acts;

struct phrex_use_lite_train_encoder {
    phrex_use_lite_train *model;
    int max_tokens, max_seq;
    phrex_arena arena;
    int n_tokens, n_seqs;
    int32_t *ids, *pos;       // (max_tokens)
    int32_t *seq_start;       // (max_tokens + 1)
    size_t *probs_start;      // (max_tokens)
    float *timing;            // (max_seq, E)
    float *x0;                // (N, E) layer 0's input (after its dropout)
    float *x[N_LAYERS];       // (N, C) each layer's output
    layer_acts acts[N_LAYERS];
    // Backward scratch.
    float *dres;              // (N, C) gradient of the residual stream
    float *dtmp;              // (N, C) a gradient through a dropout mask
    float *dln;               // (N, C) gradient at a LayerNorm output
    float *dctx;              // (N, C)
    float *dqkv;              // (N, 3C)
    float *dff;               // (N, F)
    float *dx0;               // (N, E)
    float *att_scratch;       // (n_slots, slot_floats)
    size_t slot_floats;
    int n_slots;
    float hidden_p, attn_p;
    uint64_t key, key_fwd;
};

enum { SITE_EMBED = 0, SITE_PROBS = 1, SITE_ATTN_OUT = 2, SITE_FFN_OUT = 3 };

static size_t carve(phrex_use_lite_train_encoder *e, phrex_arena *a) {
    const phrex_use_lite_shape *s = &e->model->shape;
    size_t N = (size_t)e->max_tokens, E = (size_t)s->embed, C = (size_t)s->dim, F = (size_t)s->ffn;
    size_t probs = (size_t)s->heads * N * (size_t)e->max_seq, bytes = 0;
#define TAKE(ptr, count, type)                                                        \
    do {                                                                              \
        bytes += phrex_arena_round((size_t)(count) * sizeof(type));                   \
        if (a) (ptr) = (type *)phrex_arena_alloc(a, (size_t)(count) * sizeof(type)); \
    } while (0)
    TAKE(e->ids, N, int32_t);
    TAKE(e->pos, N, int32_t);
    TAKE(e->seq_start, N + 1, int32_t);
    TAKE(e->probs_start, N, size_t);
    TAKE(e->timing, (size_t)e->max_seq * E, float);
    TAKE(e->x0, N * E, float);
    for (int l = 0; l < N_LAYERS; l++) {
        size_t cin = l == 0 ? E : C;
        layer_acts *la = &e->acts[l];
        TAKE(e->x[l], N * C, float);
        TAKE(la->ln_a, N * cin, float);
        TAKE(la->mean_a, N, float);
        TAKE(la->rstd_a, N, float);
        TAKE(la->qkv, N * 3 * cin, float);
        TAKE(la->probs, probs, float);
        TAKE(la->ctx, N * cin, float);
        TAKE(la->r1, N * C, float);
        TAKE(la->ln_f, N * C, float);
        TAKE(la->mean_f, N, float);
        TAKE(la->rstd_f, N, float);
        TAKE(la->ff_pre, N * F, float);
        TAKE(la->ff_act, N * F, float);
    }
    size_t W = C > E ? C : E; // widest attention
    TAKE(e->dres, N * C, float);
    TAKE(e->dtmp, N * C, float);
    TAKE(e->dln, N * W, float);
    TAKE(e->dctx, N * W, float);
    TAKE(e->dqkv, N * 3 * W, float);
    TAKE(e->dff, N * F, float);
    TAKE(e->dx0, N * E, float);
    TAKE(e->att_scratch, (size_t)e->n_slots * e->slot_floats, float);
#undef TAKE
    return bytes;
}

int phrex_use_lite_train_encoder_init(phrex_use_lite_train_encoder **out, phrex_use_lite_train *m, int max_tokens,
                                      int max_seq) {
    *out = NULL;
    if (max_tokens < 1 || max_tokens > (1 << 22))
        return phrex_fail(PHREX_ERR_INPUT, "phrex_use_lite_train_encoder_init: max_tokens is %d, expected 1..%d",
                          max_tokens, 1 << 22);
    int limit = max_tokens < PHREX_USE_LITE_MAX_SEQ ? max_tokens : PHREX_USE_LITE_MAX_SEQ;
    if (max_seq < 1 || max_seq > limit)
        return phrex_fail(PHREX_ERR_INPUT, "phrex_use_lite_train_encoder_init: max_seq is %d, expected 1..%d", max_seq,
                          limit);
    phrex_use_lite_train_encoder *e = calloc(1, sizeof *e);
    if (!e) return phrex_fail(PHREX_ERR_MEMORY, "phrex_use_lite_train_encoder_init: out of memory");
    e->model = m;
    e->max_tokens = max_tokens;
    e->max_seq = max_seq;
    e->n_slots = omp_get_num_procs() > omp_get_max_threads() ? omp_get_num_procs() : omp_get_max_threads();
    // Attention's backward takes two (L, L) blocks: dP and the dropped weights.
    e->slot_floats = phrex_arena_round(2 * (size_t)max_seq * max_seq * sizeof(float)) / sizeof(float);
    int rc = phrex_arena_init(&e->arena, carve(e, NULL));
    if (!rc) {
        carve(e, &e->arena);
        if (!e->att_scratch) rc = phrex_fail(PHREX_ERR_INTERNAL, "phrex_use_lite_train_encoder_init: arena too small");
    }
    if (rc) {
        phrex_use_lite_train_encoder_free(e);
        return phrex_fail_context(rc, "phrex_use_lite_train_encoder_init(max_tokens=%d, max_seq=%d)", max_tokens,
                                  max_seq);
    }
    *out = e;
    return PHREX_OK;
}

void phrex_use_lite_train_encoder_free(phrex_use_lite_train_encoder *e) {
    if (!e) return;
    phrex_arena_free(&e->arena);
    free(e);
}

size_t phrex_use_lite_train_encoder_bytes(const phrex_use_lite_train_encoder *e) { return e->arena.capacity; }

int phrex_use_lite_train_encoder_set_dropout(phrex_use_lite_train_encoder *e, float hidden_p, float attn_p,
                                             uint64_t key) {
    if (!(hidden_p >= 0 && hidden_p < 1) || !(attn_p >= 0 && attn_p < 1))
        return phrex_fail(PHREX_ERR_INPUT, "phrex_use_lite_train_encoder_set_dropout: probabilities %g, %g, expected [0, 1)",
                          hidden_p, attn_p);
    e->hidden_p = hidden_p, e->attn_p = attn_p, e->key = key;
    return PHREX_OK;
}

// ============================================================================
// Forward and backward
// ============================================================================

static int check_batch(const phrex_use_lite_train_encoder *e, const int32_t *ids, const int32_t *seq_lens,
                       int n_seqs, int *n_tokens) {
    return phrex_use_lite_check_batch("phrex_use_lite_train_encoder_forward", ids, seq_lens, n_seqs, e->max_seq,
                                      e->max_tokens, e->model->shape.vocab, n_tokens);
}

static phrex_train_packing keep_inputs(phrex_use_lite_train_encoder *e, const int32_t *ids, const int32_t *seq_lens,
                                       int n_seqs, int n_tokens) {
    memcpy(e->ids, ids, (size_t)n_tokens * sizeof *ids);
    int32_t start = 0;
    for (int s = 0; s < n_seqs; s++) {
        e->seq_start[s] = start;
        for (int32_t p = 0; p < seq_lens[s]; p++) e->pos[start + p] = p;
        start += seq_lens[s];
    }
    e->seq_start[n_seqs] = start;
    phrex_train_packing_index(e->probs_start, e->seq_start, n_seqs, e->model->shape.heads);
    e->n_tokens = n_tokens;
    e->n_seqs = n_seqs;
    return (phrex_train_packing){n_seqs, e->seq_start, e->probs_start};
}

static void add_inplace(float *x, const float *y, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= 32768)
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

// One pre-LN layer (cin = E in layer 0, C in layer 1):
//   r1 = drop(Attn(LN_a(x))·Woᵀ + bo) + (layer 0: x·Wrᵀ + br; layer 1: x)
//   y  = r1 + drop(relu(LN_f(r1)·W1ᵀ + b1)·W2ᵀ + b2)
// x: (N, cin); y: (N, C).
static void layer_forward(phrex_use_lite_train_encoder *e, int l, const float *x, float *y,
                          const phrex_train_packing *pk) {
    const phrex_use_lite_shape *s = &e->model->shape;
    const layer_view *w = &e->model->p.layers[l];
    layer_acts *a = &e->acts[l];
    int cin = l == 0 ? s->embed : s->dim, C = s->dim, F = s->ffn, N = e->n_tokens;
    uint64_t k = e->key_fwd;
    phrex_train_layernorm_forward(a->ln_a, a->mean_a, a->rstd_a, x, w->ln_a_g, w->ln_a_b, N, cin, s->eps);
    phrex_train_linear_forward(a->qkv, a->ln_a, w->qkv_w, w->qkv_b, N, cin, 3 * cin);
    phrex_train_attention_forward(a->ctx, a->probs, a->qkv, pk, cin, s->heads, e->attn_p,
                                  phrex_train_dropout_site(k, l, SITE_PROBS), e->att_scratch, e->slot_floats,
                                  e->n_slots);
    phrex_train_linear_forward(a->r1, a->ctx, w->out_w, w->out_b, N, cin, C);
    phrex_train_dropout(a->r1, (size_t)N * C, phrex_train_dropout_site(k, l, SITE_ATTN_OUT), 0, e->hidden_p);
    if (w->res_w) {
        phrex_train_linear_forward(y, x, w->res_w, w->res_b, N, cin, C); // y as scratch for the projection
        add_inplace(a->r1, y, (size_t)N * C);
    } else {
        add_inplace(a->r1, x, (size_t)N * C);
    }
    phrex_train_layernorm_forward(a->ln_f, a->mean_f, a->rstd_f, a->r1, w->ln_f_g, w->ln_f_b, N, C, s->eps);
    phrex_train_linear_forward(a->ff_pre, a->ln_f, w->fc1_w, w->fc1_b, N, C, F);
    phrex_train_relu_forward(a->ff_act, a->ff_pre, (size_t)N * F);
    phrex_train_linear_forward(y, a->ff_act, w->fc2_w, w->fc2_b, N, F, C);
    phrex_train_dropout(y, (size_t)N * C, phrex_train_dropout_site(k, l, SITE_FFN_OUT), 0, e->hidden_p);
    add_inplace(y, a->r1, (size_t)N * C);
}

// d ⊙ the dropout mask of (l, site) in dtmp, or d itself without dropout.
static const float *through_dropout(phrex_use_lite_train_encoder *e, const float *d, int l, int site) {
    if (!(e->hidden_p > 0)) return d;
    size_t n = (size_t)e->n_tokens * e->model->shape.dim;
    memcpy(e->dtmp, d, n * sizeof *d);
    phrex_train_dropout(e->dtmp, n, phrex_train_dropout_site(e->key_fwd, l, site), 0, e->hidden_p);
    return e->dtmp;
}

// The backward of layer_forward. e->dres holds dL/dy on entry; on exit it
// holds dL/dx for layer 1, and e->dx0 holds dL/dx for layer 0 (x is E wide).
static void layer_backward(phrex_use_lite_train_encoder *e, int l, const float *x, const phrex_train_packing *pk) {
    const phrex_use_lite_shape *s = &e->model->shape;
    const layer_view *w = &e->model->p.layers[l], *g = &e->model->g.layers[l];
    const layer_acts *a = &e->acts[l];
    int cin = l == 0 ? s->embed : s->dim, C = s->dim, F = s->ffn, N = e->n_tokens;
    float *d = e->dres; // (N, C): dy, then dr1
    // FFN branch: dr1 = dy + LN_f'ᵀ(W1ᵀ(relu'(W2ᵀ drop(dy)))).
    const float *dt = through_dropout(e, d, l, SITE_FFN_OUT);
    phrex_train_linear_backward(e->dff, g->fc2_w, g->fc2_b, dt, a->ff_act, w->fc2_w, N, F, C, 0);
    phrex_train_relu_backward(e->dff, e->dff, a->ff_pre, (size_t)N * F);
    phrex_train_linear_backward(e->dln, g->fc1_w, g->fc1_b, e->dff, a->ln_f, w->fc1_w, N, C, F, 0);
    phrex_train_layernorm_backward(e->dln, g->ln_f_g, g->ln_f_b, e->dln, a->r1, a->mean_f, a->rstd_f, w->ln_f_g, N,
                                   C);
    add_inplace(d, e->dln, (size_t)N * C);
    // Attention branch, from dr1.
    dt = through_dropout(e, d, l, SITE_ATTN_OUT);
    phrex_train_linear_backward(e->dctx, g->out_w, g->out_b, dt, a->ctx, w->out_w, N, cin, C, 0);
    phrex_train_attention_backward(e->dqkv, e->dctx, a->probs, a->qkv, pk, cin, s->heads, e->attn_p,
                                   phrex_train_dropout_site(e->key_fwd, l, SITE_PROBS), e->att_scratch,
                                   e->slot_floats, e->n_slots);
    phrex_train_linear_backward(e->dln, g->qkv_w, g->qkv_b, e->dqkv, a->ln_a, w->qkv_w, N, cin, 3 * cin, 0);
    phrex_train_layernorm_backward(e->dln, g->ln_a_g, g->ln_a_b, e->dln, x, a->mean_a, a->rstd_a, w->ln_a_g, N, cin);
    // The residual: dx = (projection or identity)ᵀ dr1 + the attention path.
    if (w->res_w) {
        phrex_train_linear_backward(e->dx0, g->res_w, g->res_b, d, x, w->res_w, N, cin, C, 0);
        add_inplace(e->dx0, e->dln, (size_t)N * cin);
    } else {
        add_inplace(d, e->dln, (size_t)N * C);
    }
}

int phrex_use_lite_train_encoder_forward(phrex_use_lite_train_encoder *e, const int32_t *ids, const int32_t *seq_lens,
                                         int n_seqs, const float **out) {
    if (!e || !ids || !seq_lens || !out)
        return phrex_fail(PHREX_ERR_INPUT, "phrex_use_lite_train_encoder_forward: NULL workspace, ids, seq_lens or out");
    int N = 0;
    int rc = check_batch(e, ids, seq_lens, n_seqs, &N);
    if (rc) return rc;
    const phrex_use_lite_train *m = e->model;
    int E = m->shape.embed;
    phrex_train_packing pk = keep_inputs(e, ids, seq_lens, n_seqs, N);
    e->key_fwd = e->key;
    // The timing table from the (frozen) inverse timescales; cheap next to a step.
    int longest = 0;
    for (int s = 0; s < n_seqs; s++) longest = seq_lens[s] > longest ? seq_lens[s] : longest;
    for (int p = 0; p < longest; p++) {
        float *t = e->timing + (size_t)p * E;
        for (int j = 0; j < E / 2; j++) {
            double a = (double)p * (double)m->p.inv_ts[j];
            t[j] = (float)sin(a), t[E / 2 + j] = (float)cos(a);
        }
    }
    // x0 = 2·emb[id] + timing(pos) (the TF graph adds the embedding twice).
#pragma omp parallel for schedule(static) if ((size_t)N * E >= 32768)
    for (int r = 0; r < N; r++) {
        const float *w = m->p.word + (size_t)e->ids[r] * E, *t = e->timing + (size_t)e->pos[r] * E;
        float *x = e->x0 + (size_t)r * E;
        for (int j = 0; j < E; j++) x[j] = 2.0f * w[j] + t[j];
    }
    phrex_train_dropout(e->x0, (size_t)N * E, phrex_train_dropout_site(e->key_fwd, -1, SITE_EMBED), 0, e->hidden_p);
    layer_forward(e, 0, e->x0, e->x[0], &pk);
    layer_forward(e, 1, e->x[0], e->x[1], &pk);
    *out = e->x[1];
    return PHREX_OK;
}

int phrex_use_lite_train_encoder_backward(phrex_use_lite_train_encoder *e, const float *dout) {
    if (!e || !dout) return phrex_fail(PHREX_ERR_INPUT, "phrex_use_lite_train_encoder_backward: NULL workspace or dout");
    if (e->n_tokens == 0)
        return phrex_fail(PHREX_ERR_INPUT, "phrex_use_lite_train_encoder_backward: no forward to take the backward of");
    phrex_use_lite_train *m = e->model;
    int E = m->shape.embed, C = m->shape.dim, N = e->n_tokens;
    phrex_train_packing pk = {e->n_seqs, e->seq_start, e->probs_start};
    memcpy(e->dres, dout, (size_t)N * C * sizeof *dout);
    layer_backward(e, 1, e->x[0], &pk);
    layer_backward(e, 0, e->x0, &pk);
    if (!m->g.word) return PHREX_OK; // frozen embeddings: nothing left to compute
    // Through x0's dropout and the factor 2, then scattered into the table.
    size_t n = (size_t)N * E;
    phrex_train_dropout(e->dx0, n, phrex_train_dropout_site(e->key_fwd, -1, SITE_EMBED), 0, e->hidden_p);
    for (size_t i = 0; i < n; i++) e->dx0[i] *= 2.0f;
    phrex_train_embed_backward(m->g.word, NULL, NULL, e->dx0, e->ids, e->pos, NULL, N, E);
    return PHREX_OK;
}
