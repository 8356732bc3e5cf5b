#include "query_train.h"

#include <math.h>
#include <string.h>

// softmax p, P_G = sum of p over G; loss -log P_G; dL/dx_i = p_i - [i in G] p_i / P_G.
float phrex_query_train_mml(const float *x, const uint8_t *gold, int k, float *dx) {
    float mx = -INFINITY;
    for (int i = 0; i < k; i++) mx = x[i] > mx ? x[i] : mx;
    double z = 0, zg = 0;
    for (int i = 0; i < k; i++) {
        double e = exp((double)(x[i] - mx));
        z += e;
        if (gold[i]) zg += e;
    }
    double pg = zg / z;
    if (pg < PHREX_QUERY_TRAIN_MIN_PROB) {
        memset(dx, 0, (size_t)k * sizeof *dx); // clamped: constant, no gradient
        return -logf(PHREX_QUERY_TRAIN_MIN_PROB);
    }
    if (pg > 1) pg = 1;
    for (int i = 0; i < k; i++) {
        double p = exp((double)(x[i] - mx)) / z;
        dx[i] = (float)(gold[i] ? p - p / pg : p);
    }
    // log P_G computed from the sums directly: more exact than log(pg) when pg ~ 1.
    return (float)-(log(zg) - log(z));
}

static float dot(const float *x, const float *y, int C) {
    float acc = 0;
    for (int c = 0; c < C; c++) acc += x[c] * y[c];
    return acc;
}

int phrex_query_train_loss(const float *q_start, const float *q_end, const float *a, const float *b,
                           const uint8_t *gold, int k, int C, float scale, float *dq_start, float *dq_end,
                           float *scratch, phrex_query_train_loss_parts *parts) {
    memset(parts, 0, sizeof *parts);
    int any = 0;
    for (int i = 0; i < k; i++) any |= gold[i];
    if (!any || k <= 0) return -1;
    float *s = scratch, *e = scratch + k, *l = scratch + 2 * k, *d = scratch + 3 * k;
    int best = 0;
    for (int i = 0; i < k; i++) {
        s[i] = dot(q_start, a + (size_t)i * C, C);
        e[i] = dot(q_end, b + (size_t)i * C, C);
        l[i] = s[i] + e[i];
        if (l[i] > l[best]) best = i;
    }
    parts->top1_gold = gold[best] != 0;
    // l = s + e: the phrase term's gradient reaches both halves.
    parts->phrase = phrex_query_train_mml(l, gold, k, d);
    for (int i = 0; i < k; i++) {
        float g = scale * d[i];
        for (int c = 0; c < C; c++) dq_start[c] += g * a[(size_t)i * C + c];
        for (int c = 0; c < C; c++) dq_end[c] += g * b[(size_t)i * C + c];
    }
    parts->start = phrex_query_train_mml(s, gold, k, d);
    for (int i = 0; i < k; i++)
        for (int c = 0; c < C; c++) dq_start[c] += scale * d[i] * a[(size_t)i * C + c];
    parts->end = phrex_query_train_mml(e, gold, k, d);
    for (int i = 0; i < k; i++)
        for (int c = 0; c < C; c++) dq_end[c] += scale * d[i] * b[(size_t)i * C + c];
    parts->loss = parts->phrase + parts->start + parts->end;
    return 0;
}
