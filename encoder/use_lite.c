#include "use_lite.h"

#include "common/arena.h"
#include "common/error.h"
#include "encoder/kernels.h"
#include "encoder/safetensors.h"
#include "encoder/spm_vocab.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ============================================================================
// Model
// ============================================================================

typedef struct {
    int cin;                  // attention width = input width (256, then 512)
    const float *ln_a_g, *ln_a_b; // (cin) attn_ln
    phrex_matrix qkv;         // (3cin, cin), rows [q | k | v], head h at h·D of each
    const float *qkv_b;       // (3cin)
    phrex_matrix out;         // (512, cin) attn.out
    const float *out_b;       // (512)
    phrex_matrix res;         // (512, cin) residual_proj; layer 0 only (data NULL in layer 1)
    const float *res_b;       // (512)
    const float *ln_f_g, *ln_f_b; // (512) ffn_ln
    phrex_matrix fc1;         // (1536, 512)
    const float *fc1_b;       // (1536)
    phrex_matrix fc2;         // (512, 1536)
    const float *fc2_b;       // (512)
} ul_layer;

struct phrex_use_lite {
    phrex_arena weights;
    const float *word;        // (8002, 256) embedding table
    const float *inv_ts;      // (128) timing inverse timescales
    ul_layer layers[PHREX_USE_LITE_LAYERS];
    phrex_matrix pool;        // (512, 512) pooler.tanh
    const float *pool_b;      // (512)
};

// One tensor of the file: a vector (or [1, d] row), the embedding table kept
// as stored, or a [in, out] matrix packed as (out, in) panels.
typedef enum { SPEC_VEC, SPEC_ROW, SPEC_TABLE, SPEC_MAT } spec_kind;

typedef struct {
    char name[48];
    spec_kind kind;
    int d0, d1;          // the file's shape (d1 unused for SPEC_VEC)
    const float **vec;   // destination of VEC, ROW, TABLE
    phrex_matrix *mat;   // destination of MAT
} spec;

#define MAX_SPECS 32

static void add_spec(spec *s, int *n, spec_kind kind, int d0, int d1, const float **vec, phrex_matrix *mat,
                     const char *name) {
    spec *t = &s[(*n)++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind, t->d0 = d0, t->d1 = d1, t->vec = vec, t->mat = mat;
}

// Every tensor of use_lite.safetensors (30) with its expected shape.
static int list_specs(phrex_use_lite *m, spec *s) {
    int n = 0, E = PHREX_USE_LITE_EMBED, C = PHREX_USE_LITE_DIM, F = PHREX_USE_LITE_FFN;
    char nm[48];
    add_spec(s, &n, SPEC_TABLE, PHREX_USE_LITE_VOCAB, E, &m->word, NULL, "embeddings.word.weight");
    add_spec(s, &n, SPEC_ROW, 1, PHREX_USE_LITE_TIMING, &m->inv_ts, NULL, "embeddings.timing_inv_timescales");
    for (int l = 0; l < PHREX_USE_LITE_LAYERS; l++) {
        ul_layer *w = &m->layers[l];
        int cin = l == 0 ? E : C;
        w->cin = cin;
#define NAME(suffix) (snprintf(nm, sizeof nm, "layer%d.%s", l, suffix), nm)
        add_spec(s, &n, SPEC_VEC, cin, 0, &w->ln_a_g, NULL, NAME("attn_ln.weight"));
        add_spec(s, &n, SPEC_VEC, cin, 0, &w->ln_a_b, NULL, NAME("attn_ln.bias"));
        add_spec(s, &n, SPEC_MAT, cin, 3 * cin, NULL, &w->qkv, NAME("attn.qkv.weight"));
        add_spec(s, &n, SPEC_VEC, 3 * cin, 0, &w->qkv_b, NULL, NAME("attn.qkv.bias"));
        add_spec(s, &n, SPEC_MAT, cin, C, NULL, &w->out, NAME("attn.out.weight"));
        add_spec(s, &n, SPEC_VEC, C, 0, &w->out_b, NULL, NAME("attn.out.bias"));
        if (l == 0) {
            add_spec(s, &n, SPEC_MAT, cin, C, NULL, &w->res, NAME("residual_proj.weight"));
            add_spec(s, &n, SPEC_VEC, C, 0, &w->res_b, NULL, NAME("residual_proj.bias"));
        }
        add_spec(s, &n, SPEC_VEC, C, 0, &w->ln_f_g, NULL, NAME("ffn_ln.weight"));
        add_spec(s, &n, SPEC_VEC, C, 0, &w->ln_f_b, NULL, NAME("ffn_ln.bias"));
        add_spec(s, &n, SPEC_MAT, C, F, NULL, &w->fc1, NAME("ffn.fc1.weight"));
        add_spec(s, &n, SPEC_VEC, F, 0, &w->fc1_b, NULL, NAME("ffn.fc1.bias"));
        add_spec(s, &n, SPEC_MAT, F, C, NULL, &w->fc2, NAME("ffn.fc2.weight"));
        add_spec(s, &n, SPEC_VEC, C, 0, &w->fc2_b, NULL, NAME("ffn.fc2.bias"));
#undef NAME
    }
    add_spec(s, &n, SPEC_MAT, C, C, NULL, &m->pool, "pooler.tanh.weight");
    add_spec(s, &n, SPEC_VEC, C, 0, &m->pool_b, NULL, "pooler.tanh.bias");
    return n;
}

// Arena floats of one spec (panels for matrices, padding included).
static size_t spec_bytes(const spec *t) {
    size_t f = sizeof(float);
    switch (t->kind) {
    case SPEC_VEC: return phrex_arena_round((size_t)t->d0 * f);
    case SPEC_ROW:
    case SPEC_TABLE: return phrex_arena_round((size_t)t->d0 * t->d1 * f);
    case SPEC_MAT: return phrex_arena_round(phrex_matrix_panels_floats(t->d1, t->d0) * f);
    }
    return 0;
}

// Reads a [in, out] matrix, transposes it to (out, in) and packs it.
static int load_matrix(phrex_use_lite *m, const phrex_safetensors *st, const spec *t) {
    int in = t->d0, out = t->d1;
    float *raw = malloc((size_t)in * out * sizeof *raw), *wt = malloc((size_t)in * out * sizeof *wt);
    float *dst = phrex_arena_alloc_floats(&m->weights, phrex_matrix_panels_floats(out, in));
    int rc = !raw || !wt || !dst ? phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory at %s", st->path, t->name) : 0;
    int64_t shape[2] = {in, out};
    if (!rc) rc = phrex_safetensors_read_f32(st, t->name, 2, shape, raw);
    if (!rc) {
        for (int i = 0; i < in; i++)
            for (int o = 0; o < out; o++) wt[(size_t)o * in + i] = raw[(size_t)i * out + o];
        *t->mat = phrex_matrix_pack_panels(dst, wt, out, in, in);
    }
    free(raw);
    free(wt);
    return rc;
}

static int load_spec(phrex_use_lite *m, const phrex_safetensors *st, const spec *t) {
    if (t->kind == SPEC_MAT) return load_matrix(m, st, t);
    size_t count = (size_t)t->d0 * (size_t)(t->kind == SPEC_VEC ? 1 : t->d1);
    float *dst = phrex_arena_alloc_floats(&m->weights, count);
    if (!dst) return phrex_fail(PHREX_ERR_MEMORY, "%s: weight arena full at %s", st->path, t->name);
    int64_t shape[2] = {t->d0, t->d1};
    *t->vec = dst;
    return phrex_safetensors_read_f32(st, t->name, t->kind == SPEC_VEC ? 1 : 2, shape, dst);
}

int phrex_use_lite_init(phrex_use_lite **out, const char *safetensors_path) {
    *out = NULL;
    phrex_use_lite *m = calloc(1, sizeof *m);
    if (!m) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", safetensors_path);
    spec specs[MAX_SPECS];
    int n = list_specs(m, specs);
    size_t bytes = 0;
    for (int i = 0; i < n; i++) bytes += spec_bytes(&specs[i]);
    phrex_safetensors st;
    int rc = phrex_safetensors_init(&st, safetensors_path);
    if (!rc) {
        rc = phrex_arena_init(&m->weights, bytes);
        for (int i = 0; i < n && !rc; i++) rc = load_spec(m, &st, &specs[i]);
        phrex_safetensors_free(&st); // everything was copied
    }
    if (rc) {
        phrex_use_lite_free(m);
        return rc;
    }
    *out = m;
    return PHREX_OK;
}

void phrex_use_lite_free(phrex_use_lite *m) {
    if (!m) return;
    phrex_arena_free(&m->weights);
    free(m);
}

void phrex_use_lite_timing(float *out, const float *inv_timescales, int pos) {
    for (int j = 0; j < PHREX_USE_LITE_TIMING; j++) {
        double a = (double)pos * (double)inv_timescales[j];
        out[j] = (float)sin(a);
        out[PHREX_USE_LITE_TIMING + j] = (float)cos(a);
    }
}

// ============================================================================
// Workspace
// ============================================================================

// Rows per FFN block: bounds the (rows, 1536) intermediate.
#define FFN_ROWS 256

struct phrex_use_lite_encoder {
    const phrex_use_lite *model;
    int max_tokens, max_seq, n_slots;
    size_t slot_floats;
    phrex_arena arena;
    float *timing;      // (max_seq, 256) timing signal per position
    float *x0;          // (max_tokens, 256) layer 0's input
    float *ln;          // (max_tokens, 512) LayerNorm outputs; the pooler's mean
    float *qkv;         // (max_tokens, 1536)
    float *ctx;         // (max_tokens, 512)
    float *h;           // (FFN_ROWS, 1536)
    float *slots;       // (n_slots, slot_floats) attention scratch, one per thread
    int32_t *seq_start; // (max_tokens + 1)
};

// Scratch of one attention task: the (L, L) scores, then the head's keys
// (L, D) and values (D, L) packed as panels for the linear kernel.
static size_t attention_floats(int L, int D) {
    return phrex_arena_round((size_t)L * L * sizeof(float)) / sizeof(float) + phrex_matrix_panels_floats(L, D) +
           phrex_matrix_panels_floats(D, L);
}

// Every allocation in order; with `a` NULL only counts bytes, so sizing and
// carving cannot drift apart.
static size_t carve(phrex_use_lite_encoder *e, phrex_arena *a) {
    size_t N = (size_t)e->max_tokens, bytes = 0;
#define TAKE(ptr, count, type)                                                        \
    do {                                                                              \
        bytes += phrex_arena_round((size_t)(count) * sizeof(type));                   \
        if (a) (ptr) = (type *)phrex_arena_alloc(a, (size_t)(count) * sizeof(type)); \
    } while (0)
    TAKE(e->timing, (size_t)e->max_seq * PHREX_USE_LITE_EMBED, float);
    TAKE(e->x0, N * PHREX_USE_LITE_EMBED, float);
    TAKE(e->ln, N * PHREX_USE_LITE_DIM, float);
    TAKE(e->qkv, N * 3 * PHREX_USE_LITE_DIM, float);
    TAKE(e->ctx, N * PHREX_USE_LITE_DIM, float);
    TAKE(e->h, (size_t)FFN_ROWS * PHREX_USE_LITE_FFN, float);
    TAKE(e->slots, (size_t)e->n_slots * e->slot_floats, float);
    TAKE(e->seq_start, N + 1, int32_t);
#undef TAKE
    return bytes;
}

int phrex_use_lite_encoder_init(phrex_use_lite_encoder **out, const phrex_use_lite *m, int max_tokens, int max_seq) {
    *out = NULL;
    if (max_tokens < 1 || max_tokens > (1 << 22))
        return phrex_fail(PHREX_ERR_INPUT, "phrex_use_lite_encoder_init: max_tokens is %d, expected 1..%d",
                          max_tokens, 1 << 22);
    if (max_seq < 1 || max_seq > PHREX_USE_LITE_MAX_SEQ || max_seq > max_tokens)
        return phrex_fail(PHREX_ERR_INPUT, "phrex_use_lite_encoder_init: max_seq is %d, expected 1..%d (and <= %d)",
                          max_seq, PHREX_USE_LITE_MAX_SEQ, max_tokens);
    phrex_use_lite_encoder *e = calloc(1, sizeof *e);
    if (!e) return phrex_fail(PHREX_ERR_MEMORY, "phrex_use_lite_encoder_init: out of memory");
    e->model = m;
    e->max_tokens = max_tokens;
    e->max_seq = max_seq;
    // One scratch slot for every thread count the caller may run us with.
    e->n_slots = omp_get_num_procs() > omp_get_max_threads() ? omp_get_num_procs() : omp_get_max_threads();
    e->slot_floats = attention_floats(max_seq, PHREX_USE_LITE_DIM / PHREX_USE_LITE_HEADS);
    int rc = phrex_arena_init(&e->arena, carve(e, NULL));
    if (!rc) {
        carve(e, &e->arena);
        if (!e->seq_start) rc = phrex_fail(PHREX_ERR_INTERNAL, "phrex_use_lite_encoder_init: arena sized too small");
    }
    if (rc) {
        phrex_use_lite_encoder_free(e);
        return phrex_fail_context(rc, "phrex_use_lite_encoder_init(max_tokens=%d, max_seq=%d)", max_tokens, max_seq);
    }
    for (int p = 0; p < max_seq; p++) phrex_use_lite_timing(e->timing + (size_t)p * PHREX_USE_LITE_EMBED, m->inv_ts, p);
    *out = e;
    return PHREX_OK;
}

void phrex_use_lite_encoder_free(phrex_use_lite_encoder *e) {
    if (!e) return;
    phrex_arena_free(&e->arena);
    free(e);
}

// ============================================================================
// Forward
// ============================================================================

int phrex_use_lite_check_batch(const char *who, const int32_t *ids, const int32_t *seq_lens, int n_seqs, int max_seq,
                               int max_tokens, int vocab, int *n_tokens) {
    if (n_seqs < 1) return phrex_fail(PHREX_ERR_INPUT, "%s: %d sequences, expected at least 1", who, n_seqs);
    long total = 0;
    for (int s = 0; s < n_seqs; s++) {
        if (seq_lens[s] < 1 || seq_lens[s] > max_seq)
            return phrex_fail(PHREX_ERR_INPUT, "%s: sequence %d has %d tokens, expected 1..%d (the workspace's max_seq)",
                              who, s, seq_lens[s], max_seq);
        total += seq_lens[s];
        if (total > max_tokens)
            return phrex_fail(PHREX_ERR_INPUT, "%s: more than %d tokens (the workspace's max_tokens) by sequence %d",
                              who, max_tokens, s);
    }
    for (long i = 0; ids && i < total; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return phrex_fail(PHREX_ERR_INPUT, "%s: token %ld has id %d, expected 0..%d", who, i, ids[i], vocab - 1);
    *n_tokens = (int)total;
    return PHREX_OK;
}

static int check_batch(const phrex_use_lite_encoder *e, const char *who, const int32_t *ids, const int32_t *seq_lens,
                       int n_seqs, int *n_tokens) {
    return phrex_use_lite_check_batch(who, ids, seq_lens, n_seqs, e->max_seq, e->max_tokens, PHREX_USE_LITE_VOCAB,
                                      n_tokens);
}

// x (n, d) += bias (d).
static void add_bias(float *x, const float *bias, int n, int d) {
    for (int r = 0; r < n; r++) {
        float *row = x + (size_t)r * d;
#pragma omp simd
        for (int j = 0; j < d; j++) row[j] += bias[j];
    }
}

// One head over one sequence of L tokens; q, k, v read in place from the
// fused projection. qkv: (L, 3C); ctx: (L, C), head h at columns h·D.
static void attend_head(const float *qkv, float *ctx, int L, int C, int D, int h, float *scratch) {
    const float *q = qkv + (size_t)h * D, *k = q + C, *v = q + 2 * C;
    float *scores = scratch; // (L, L)
    float *kp = scores + phrex_arena_round((size_t)L * L * sizeof(float)) / sizeof(float);
    float *vp = kp + phrex_matrix_panels_floats(L, D);
    phrex_matrix keys = phrex_matrix_pack_panels(kp, k, L, D, 3 * C);     // (L, D)
    phrex_matrix values = phrex_matrix_pack_panels_t(vp, v, D, L, 3 * C); // (D, L)
    phrex_linear_forward(scores, L, q, 3 * C, L, &keys, NULL);
    phrex_softmax_forward(scores, L, L, L, 1.0f / sqrtf((float)D));
    phrex_linear_forward(ctx + (size_t)h * D, C, scores, L, L, &values, NULL);
}

// ctx (N, C) = attention of qkv (N, 3C); (sequence, head) pairs are the tasks.
static void attention(phrex_use_lite_encoder *e, int n_seqs, int C) {
    int H = PHREX_USE_LITE_HEADS, D = C / H, tasks = n_seqs * H;
    int threads = omp_get_max_threads() < e->n_slots ? omp_get_max_threads() : e->n_slots;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1 && tasks > 1)
    for (int task = 0; task < tasks; task++) {
        int s = task / H, h = task % H, start = e->seq_start[s], L = e->seq_start[s + 1] - start;
        attend_head(e->qkv + (size_t)start * 3 * C, e->ctx + (size_t)start * C, L, C, D, h,
                    e->slots + (size_t)omp_get_thread_num() * e->slot_floats);
    }
}

// x (N, 512) += FFN(LN(x)), in blocks of FFN_ROWS rows.
static void ffn(phrex_use_lite_encoder *e, const ul_layer *w, float *x, int N) {
    int C = PHREX_USE_LITE_DIM, F = PHREX_USE_LITE_FFN;
    phrex_add_layernorm_forward(e->ln, x, NULL, w->ln_f_g, w->ln_f_b, N, C, PHREX_USE_LITE_EPS, NULL, NULL);
    for (int r0 = 0; r0 < N; r0 += FFN_ROWS) {
        int nr = N - r0 < FFN_ROWS ? N - r0 : FFN_ROWS;
        phrex_linear_forward(e->h, F, e->ln + (size_t)r0 * C, C, nr, &w->fc1, w->fc1_b);
        float *h = e->h;
        size_t count = (size_t)nr * F;
#pragma omp simd
        for (size_t i = 0; i < count; i++) h[i] = h[i] > 0.0f ? h[i] : 0.0f;
        phrex_linear_forward_acc(x + (size_t)r0 * C, C, e->h, F, nr, &w->fc2);
    }
    add_bias(x, w->fc2_b, N, C);
}

// One layer: x_out (N, 512) from x_in (N, cin); x_in == x_out in layer 1.
static void layer_forward(phrex_use_lite_encoder *e, const ul_layer *w, const float *x_in, float *x_out, int N,
                          int n_seqs) {
    int cin = w->cin, C = PHREX_USE_LITE_DIM;
    phrex_add_layernorm_forward(e->ln, x_in, NULL, w->ln_a_g, w->ln_a_b, N, cin, PHREX_USE_LITE_EPS, NULL, NULL);
    phrex_linear_forward(e->qkv, 3 * cin, e->ln, cin, N, &w->qkv, w->qkv_b);
    attention(e, n_seqs, cin);
    if (w->res.data) {
        // x_out = ctx·Woᵀ + bo + x_in·Wrᵀ + br: the residual through a projection
        phrex_linear_forward(x_out, C, e->ctx, cin, N, &w->out, w->out_b);
        phrex_linear_forward_acc(x_out, C, x_in, cin, N, &w->res);
        add_bias(x_out, w->res_b, N, C);
    } else {
        phrex_linear_forward_acc(x_out, C, e->ctx, cin, N, &w->out);
        add_bias(x_out, w->out_b, N, C);
    }
    ffn(e, w, x_out, N);
}

int phrex_use_lite_forward(phrex_use_lite_encoder *e, const int32_t *ids, const int32_t *seq_lens, int n_seqs,
                           float *tokens, float *sentences) {
    static const char who[] = "phrex_use_lite_forward";
    if (!e || !ids || !seq_lens || !tokens)
        return phrex_fail(PHREX_ERR_INPUT, "%s: NULL workspace, ids, seq_lens or tokens", who);
    int N = 0;
    int rc = check_batch(e, who, ids, seq_lens, n_seqs, &N);
    if (rc) return rc;
    const phrex_use_lite *m = e->model;
    int E = PHREX_USE_LITE_EMBED;
    // x0 = 2·emb[id] + timing(pos), positions restarting in each sequence.
    for (int s = 0, r = 0; s < n_seqs; s++) {
        e->seq_start[s] = r;
        for (int p = 0; p < seq_lens[s]; p++, r++) {
            const float *w = m->word + (size_t)ids[r] * E, *t = e->timing + (size_t)p * E;
            float *x = e->x0 + (size_t)r * E;
#pragma omp simd
            for (int j = 0; j < E; j++) x[j] = 2.0f * w[j] + t[j];
        }
    }
    e->seq_start[n_seqs] = N;
    layer_forward(e, &m->layers[0], e->x0, tokens, N, n_seqs);
    layer_forward(e, &m->layers[1], tokens, tokens, N, n_seqs);
    return sentences ? phrex_use_lite_pool(e, tokens, seq_lens, n_seqs, sentences) : PHREX_OK;
}

int phrex_use_lite_pool(phrex_use_lite_encoder *e, const float *tokens, const int32_t *seq_lens, int n_seqs,
                        float *sentences) {
    static const char who[] = "phrex_use_lite_pool";
    if (!e || !tokens || !seq_lens || !sentences)
        return phrex_fail(PHREX_ERR_INPUT, "%s: NULL workspace, tokens, seq_lens or sentences", who);
    int N = 0, C = PHREX_USE_LITE_DIM;
    int rc = check_batch(e, who, NULL, seq_lens, n_seqs, &N);
    if (rc) return rc;
    float *mean = e->ln; // (n_seqs, C): n_seqs <= N <= max_tokens rows
    const float *t = tokens;
    for (int s = 0; s < n_seqs; s++) {
        float *o = mean + (size_t)s * C;
        memset(o, 0, (size_t)C * sizeof *o);
        for (int i = 0; i < seq_lens[s]; i++, t += C)
#pragma omp simd
            for (int j = 0; j < C; j++) o[j] += t[j];
        float inv = 1.0f / (float)seq_lens[s];
        for (int j = 0; j < C; j++) o[j] *= inv;
    }
    phrex_linear_forward(sentences, C, mean, C, n_seqs, &e->model->pool, e->model->pool_b);
    for (int s = 0; s < n_seqs; s++) {
        float *o = sentences + (size_t)s * C;
        double sq = 0;
        for (int j = 0; j < C; j++) {
            o[j] = tanhf(o[j]);
            sq += (double)o[j] * o[j];
        }
        float inv = (float)(1.0 / (sqrt(sq) > 1e-12 ? sqrt(sq) : 1e-12));
        for (int j = 0; j < C; j++) o[j] *= inv;
    }
    return PHREX_OK;
}

// ============================================================================
// Tokenizer and cross-encoder input
// ============================================================================

int phrex_use_lite_tokenizer_init(phrex_spm **out, const char *vocab_json_path) {
    *out = NULL;
    unsigned char *proto = NULL;
    size_t len = 0;
    int rc = phrex_spm_proto_from_vocab_json(vocab_json_path, &proto, &len);
    if (!rc) rc = phrex_spm_init_from_bytes(out, proto, len, vocab_json_path);
    free(proto);
    return rc;
}

phrex_use_lite_pair_limits phrex_use_lite_pair_defaults(void) {
    return (phrex_use_lite_pair_limits){PHREX_USE_LITE_TRAINED_LEN, 64, 16};
}

// The passage window [*w0, *w1) of at most `budget` tokens out of n, keeping
// tokens a..b (the span, -1 when none) whole and centred when it fits.
static void pick_window(int n, int budget, int a, int b, int *w0, int *w1) {
    if (n <= budget) {
        *w0 = 0, *w1 = n;
        return;
    }
    int start = 0;
    if (a >= 0) {
        int len = b - a + 1;
        start = len >= budget ? a : a - (budget - len) / 2;
        if (start < 0) start = 0;
        if (start + budget > n) start = n - budget;
        if (start > a) start = a; // a span longer than the window keeps its start
    }
    *w0 = start, *w1 = start + budget;
}

int phrex_use_lite_pair_tokens(const phrex_spm *spm, const phrex_use_lite_pair_limits *limits, const char *question,
                               size_t question_len, const char *title, size_t title_len, const char *text,
                               size_t text_len, int32_t span_start, int32_t span_end, phrex_tokens *scratch,
                               int32_t *ids, int *n_out) {
    static const char who[] = "phrex_use_lite_pair_tokens";
    *n_out = 0;
    const phrex_use_lite_pair_limits *lim = limits;
    if (!spm || !lim || !scratch || !ids || (!question && question_len) || (!text && text_len))
        return phrex_fail(PHREX_ERR_INPUT, "%s: NULL tokenizer, limits, scratch, ids or text", who);
    if (lim->max_len > PHREX_USE_LITE_MAX_SEQ || lim->max_question < 1 || lim->max_title < 0 ||
        lim->max_question + lim->max_title + 8 > lim->max_len)
        return phrex_fail(PHREX_ERR_INPUT,
                          "%s: limits max_len %d, max_question %d, max_title %d: need max_question >= 1, "
                          "max_title >= 0, max_question + max_title + 8 <= max_len <= %d",
                          who, lim->max_len, lim->max_question, lim->max_title, PHREX_USE_LITE_MAX_SEQ);
    int has_span = !(span_start == -1 && span_end == -1);
    if (has_span && !(span_start >= 0 && span_start < span_end && (size_t)span_end <= text_len))
        return phrex_fail(PHREX_ERR_INPUT, "%s: span [%d, %d) is not inside the %zu-byte passage (or -1, -1)", who,
                          span_start, span_end, text_len);
    int n = 0;
    ids[n++] = PHREX_USE_LITE_ID_BOS;
    int rc = phrex_spm_encode(spm, question ? question : "", question_len, scratch);
    if (rc) return phrex_fail_context(rc, "%s: question", who);
    for (int i = 0; i < scratch->n && i < lim->max_question; i++) ids[n++] = scratch->ids[i];
    ids[n++] = PHREX_USE_LITE_ID_EOS;
    if (title && title_len > 0) {
        rc = phrex_spm_encode(spm, title, title_len, scratch);
        if (rc) return phrex_fail_context(rc, "%s: title", who);
        for (int i = 0; i < scratch->n && i < lim->max_title; i++) ids[n++] = scratch->ids[i];
        ids[n++] = PHREX_USE_LITE_ID_TITLE_SEP;
    }
    rc = phrex_spm_encode(spm, text ? text : "", text_len, scratch);
    if (rc) return phrex_fail_context(rc, "%s: passage", who);
    // Span tokens: those whose non-empty byte range meets [span_start, span_end).
    int a = -1, b = -1;
    for (int i = 0; has_span && i < scratch->n; i++)
        if (scratch->start[i] < scratch->end[i] && scratch->end[i] > span_start && scratch->start[i] < span_end) {
            if (a < 0) a = i;
            b = i;
        }
    if (has_span && a < 0)
        return phrex_fail(PHREX_ERR_INPUT, "%s: span [%d, %d) covers no token of the passage", who, span_start,
                          span_end);
    int budget = lim->max_len - n - 1 - (has_span ? 2 : 0), w0, w1;
    pick_window(scratch->n, budget, a, b, &w0, &w1);
    for (int i = w0; i < w1; i++) {
        if (i == a) ids[n++] = PHREX_USE_LITE_ID_SPAN_START;
        ids[n++] = scratch->ids[i];
        if (i == b || (a >= 0 && i == w1 - 1 && b >= w1)) ids[n++] = PHREX_USE_LITE_ID_SPAN_END;
    }
    ids[n++] = PHREX_USE_LITE_ID_EOS;
    *n_out = n;
    return PHREX_OK;
}
