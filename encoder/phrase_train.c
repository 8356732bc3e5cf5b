#include "phrase_train.h"

#include "common/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct phrex_phrase_loss {
    phrex_phrase_loss_config cfg;
    int C, max_batch;
    // Ring of the last `pre_batches` batches' gold vectors: slot s holds
    // starts (max_batch, C) then ends (max_batch, C).
    float *cache;
    size_t slot_floats;
    int held, next;
    int32_t *sizes; // (pre_batches) examples in each slot
    // Scratch of a step, sized at init.
    int32_t *rows;        // (2, max_batch) rows of h holding the gold starts, then ends
    const float **cached; // (pre_batches · max_batch) the cached vectors of one side
};

int phrex_phrase_loss_init(phrex_phrase_loss **out, const phrex_phrase_loss_config *cfg, int C, int max_batch) {
    *out = NULL;
    if (C < 1 || max_batch < 1 || cfg->pre_batches < 0 || cfg->pre_batches > 64 || cfg->max_answer_len < 1 ||
        !(cfg->lambda_single >= 0) || !(cfg->lambda_neg >= 0) || cfg->pre_batch_warmup < 0)
        return phrex_fail(PHREX_ERR_INPUT,
                          "phrex_phrase_loss_init: bad config (C %d, max_batch %d, pre_batches %d, max_answer_len %d)",
                          C, max_batch, cfg->pre_batches, cfg->max_answer_len);
    phrex_phrase_loss *pl = calloc(1, sizeof *pl);
    if (!pl) return phrex_fail(PHREX_ERR_MEMORY, "phrex_phrase_loss_init: out of memory");
    pl->cfg = *cfg;
    pl->C = C;
    pl->max_batch = max_batch;
    pl->slot_floats = 2 * (size_t)max_batch * C;
    pl->cache = calloc(pl->slot_floats * (size_t)cfg->pre_batches + 1, sizeof *pl->cache);
    pl->sizes = calloc((size_t)cfg->pre_batches + 1, sizeof *pl->sizes);
    pl->rows = calloc(2 * (size_t)max_batch, sizeof *pl->rows);
    pl->cached = calloc((size_t)cfg->pre_batches * max_batch + 1, sizeof *pl->cached);
    if (!pl->cache || !pl->sizes || !pl->rows || !pl->cached) {
        phrex_phrase_loss_free(pl);
        return phrex_fail(PHREX_ERR_MEMORY, "phrex_phrase_loss_init: cannot allocate the pre-batch cache");
    }
    *out = pl;
    return PHREX_OK;
}

void phrex_phrase_loss_free(phrex_phrase_loss *pl) {
    if (!pl) return;
    free(pl->cache);
    free(pl->sizes);
    free(pl->rows);
    free(pl->cached);
    free(pl);
}

static double dot(const float *a, const float *b, int C) {
    double s = 0;
    for (int c = 0; c < C; c++) s += (double)a[c] * b[c];
    return s;
}

// y += a·x, (C).
static void axpy(float *y, double a, const float *x, int C) {
    for (int c = 0; c < C; c++) y[c] += (float)(a * x[c]);
}

// --- single passage ------------------------------------------------------------------

// Cross-entropy of `gold` among the L rows of h under q: the loss, with
// dh (rows of h) and dq accumulating scale·(softmax - onehot). Logits are
// recomputed in the second pass rather than stored: 2·L·C flops, no buffer.
static double passage_ce(const float *h, int L, int C, const float *q, int gold, double scale, float *dh, float *dq) {
    double max = -INFINITY, sum = 0;
    for (int i = 0; i < L; i++) max = fmax(max, dot(q, h + (size_t)i * C, C));
    for (int i = 0; i < L; i++) sum += exp(dot(q, h + (size_t)i * C, C) - max);
    double lse = max + log(sum);
    for (int i = 0; i < L; i++) {
        const float *hi = h + (size_t)i * C;
        double d = (exp(dot(q, hi, C) - lse) - (i == gold)) * scale;
        axpy(dh + (size_t)i * C, d, q, C);
        axpy(dq, d, hi, C);
    }
    return lse - dot(q, h + (size_t)gold * C, C);
}

// --- negatives ------------------------------------------------------------------------

// The candidates of the negatives loss for one side: the batch's gold
// vectors (rows gold_rows of h, which get gradients), then the cached ones
// (constants).
typedef struct {
    const float *h;
    int C;
    const int32_t *gold_rows; // (B)
    int B;
    const float *const *cached; // (n_cached) vectors
    int n_cached;
} candidates;

static const float *cand(const candidates *k, int i) {
    return i < k->B ? k->h + (size_t)k->gold_rows[i] * k->C : k->cached[i - k->B];
}

// Cross-entropy of candidate `target` for query q among all candidates.
static double negatives_ce(const candidates *k, int C, const float *q, int target, double scale, float *dh,
                           float *dq) {
    int n = k->B + k->n_cached;
    double max = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) max = fmax(max, dot(q, cand(k, i), C));
    for (int i = 0; i < n; i++) sum += exp(dot(q, cand(k, i), C) - max);
    double lse = max + log(sum);
    for (int i = 0; i < n; i++) {
        const float *v = cand(k, i);
        double d = (exp(dot(q, v, C) - lse) - (i == target)) * scale;
        axpy(dq, d, v, C);
        if (i < k->B) axpy(dh + (size_t)k->gold_rows[i] * C, d, q, C); // the cache gets no gradient
    }
    return lse - dot(q, cand(k, target), C);
}

// --- the step -------------------------------------------------------------------------

static int check_batch(const phrex_phrase_loss *pl, const int32_t *seq_lens, int B, const int32_t *gs,
                       const int32_t *ge) {
    if (B < 1 || B > pl->max_batch)
        return phrex_fail(PHREX_ERR_INPUT, "phrex_phrase_loss_step: batch of %d, expected 1..%d", B, pl->max_batch);
    for (int b = 0; b < B; b++)
        if (seq_lens[b] < 1 || gs[b] < 0 || gs[b] > ge[b] || ge[b] >= seq_lens[b])
            return phrex_fail(PHREX_ERR_INPUT,
                              "phrex_phrase_loss_step: example %d: gold span [%d, %d] in a passage of %d tokens", b,
                              gs[b], ge[b], seq_lens[b]);
    return PHREX_OK;
}

// This batch's gold vectors into the oldest slot.
static void push_cache(phrex_phrase_loss *pl, const float *h, const int32_t *rows_s, const int32_t *rows_e, int B) {
    if (pl->cfg.pre_batches == 0) return;
    int C = pl->C;
    float *slot = pl->cache + (size_t)pl->next * pl->slot_floats;
    for (int b = 0; b < B; b++) {
        memcpy(slot + (size_t)b * C, h + (size_t)rows_s[b] * C, (size_t)C * sizeof *h);
        memcpy(slot + (size_t)(pl->max_batch + b) * C, h + (size_t)rows_e[b] * C, (size_t)C * sizeof *h);
    }
    pl->sizes[pl->next] = B;
    pl->next = (pl->next + 1) % pl->cfg.pre_batches;
    if (pl->held < pl->cfg.pre_batches) pl->held++;
}

// Pointers to the cached vectors of one side (0: starts, 1: ends), oldest
// batch first. Returns how many.
static int gather_cache(const phrex_phrase_loss *pl, int side, const float **out) {
    int n = 0, P = pl->cfg.pre_batches;
    for (int k = 0; k < pl->held; k++) {
        int s = (pl->next - pl->held + k + P) % P;
        const float *slot = pl->cache + (size_t)s * pl->slot_floats + (size_t)side * pl->max_batch * pl->C;
        for (int b = 0; b < pl->sizes[s]; b++) out[n++] = slot + (size_t)b * pl->C;
    }
    return n;
}

int phrex_phrase_loss_step(phrex_phrase_loss *pl, const float *h, const int32_t *seq_lens, int B,
                           const float *q_start, const float *q_end, const int32_t *gold_start,
                           const int32_t *gold_end, int64_t step, float *dh, float *dq_start, float *dq_end,
                           phrex_phrase_loss_parts *parts) {
    int rc = check_batch(pl, seq_lens, B, gold_start, gold_end);
    if (rc) return rc;
    int C = pl->C, N = 0;
    for (int b = 0; b < B; b++) N += seq_lens[b];
    memset(dh, 0, (size_t)N * C * sizeof *dh);
    memset(dq_start, 0, (size_t)B * C * sizeof *dq_start);
    memset(dq_end, 0, (size_t)B * C * sizeof *dq_end);
    int32_t *rows_s = pl->rows, *rows_e = pl->rows + pl->max_batch;
    double single = 0, negative = 0;
    double s_scale = pl->cfg.lambda_single / (2.0 * B), n_scale = pl->cfg.lambda_neg / (2.0 * B);
    for (int b = 0, start = 0; b < B; start += seq_lens[b], b++) {
        const float *hb = h + (size_t)start * C;
        float *dhb = dh + (size_t)start * C;
        single += passage_ce(hb, seq_lens[b], C, q_start + (size_t)b * C, gold_start[b], s_scale, dhb,
                             dq_start + (size_t)b * C);
        single += passage_ce(hb, seq_lens[b], C, q_end + (size_t)b * C, gold_end[b], s_scale, dhb,
                             dq_end + (size_t)b * C);
        rows_s[b] = start + gold_start[b];
        rows_e[b] = start + gold_end[b];
    }
    int use_cache = pl->cfg.pre_batches > 0 && step >= pl->cfg.pre_batch_warmup;
    int n_candidates = B;
    for (int side = 0; side < 2; side++) {
        candidates k = {h, C, side ? rows_e : rows_s, B, pl->cached, use_cache ? gather_cache(pl, side, pl->cached) : 0};
        n_candidates = B + k.n_cached;
        const float *q = side ? q_end : q_start;
        float *dq = side ? dq_end : dq_start;
        for (int b = 0; b < B; b++)
            negative += negatives_ce(&k, C, q + (size_t)b * C, b, n_scale, dh, dq + (size_t)b * C);
    }
    single /= 2.0 * B;
    negative /= 2.0 * B;
    push_cache(pl, h, rows_s, rows_e, B);
    if (parts)
        *parts = (phrex_phrase_loss_parts){(float)(pl->cfg.lambda_single * single + pl->cfg.lambda_neg * negative),
                                           (float)single, (float)negative, n_candidates};
    return PHREX_OK;
}

void phrex_phrase_best_span(const float *h, int L, int C, const float *q_start, const float *q_end, int max_len,
                            int *start, int *end, float *score) {
    double best = -INFINITY;
    *start = *end = 0;
    for (int i = 0; i < L; i++) {
        double a = dot(q_start, h + (size_t)i * C, C);
        for (int j = i; j < L && j < i + max_len; j++) {
            double s = a + dot(q_end, h + (size_t)j * C, C);
            if (s > best) best = s, *start = i, *end = j;
        }
    }
    *score = (float)best;
}

float *phrex_phrase_loss_cache(phrex_phrase_loss *pl, size_t *floats) {
    *floats = pl->slot_floats * (size_t)pl->cfg.pre_batches;
    return pl->cache;
}

int phrex_phrase_loss_cache_meta(const phrex_phrase_loss *pl, int32_t *meta_out, int capacity) {
    int n = 2 + pl->cfg.pre_batches;
    if (capacity < n) return phrex_fail(PHREX_ERR_INPUT, "phrex_phrase_loss_cache_meta: needs %d slots", n);
    meta_out[0] = pl->held;
    meta_out[1] = pl->next;
    for (int s = 0; s < pl->cfg.pre_batches; s++) meta_out[2 + s] = pl->sizes[s];
    return PHREX_OK;
}

int phrex_phrase_loss_set_cache_meta(phrex_phrase_loss *pl, const int32_t *meta, int n) {
    int P = pl->cfg.pre_batches;
    if (n != 2 + P || meta[0] < 0 || meta[0] > P || meta[1] < 0 || (P > 0 && meta[1] >= P) || (P == 0 && meta[1]))
        return phrex_fail(PHREX_ERR_FORMAT, "phrex_phrase_loss_set_cache_meta: inconsistent cache state");
    for (int s = 0; s < P; s++)
        if (meta[2 + s] < 0 || meta[2 + s] > pl->max_batch)
            return phrex_fail(PHREX_ERR_FORMAT, "phrex_phrase_loss_set_cache_meta: slot %d holds %d examples", s,
                              meta[2 + s]);
    pl->held = meta[0];
    pl->next = meta[1];
    for (int s = 0; s < P; s++) pl->sizes[s] = meta[2 + s];
    return PHREX_OK;
}
