#include "combine.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "data/buf.h"
#include "rerank/reranker.h"

const float phrex_combine_grid[PHREX_COMBINE_GRID_LEN] = {0.0f, 0.125f, 0.25f, 0.5f, 1.0f, 2.0f,
                                                          4.0f, 8.0f,   16.0f, 32.0f, 64.0f, 128.0f};

int phrex_combine_read_weight(const char *reranker_dir, float *w, int *found) {
    *found = 0;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", reranker_dir, PHREX_RERANKER_JSON) >= (int)sizeof path)
        return phrex_fail(PHREX_ERR_INPUT, "%s: path too long", reranker_dir);
    char *text;
    size_t len;
    int rc = phrex_data_read_file(path, &text, &len);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return phrex_fail(PHREX_ERR_FORMAT, "%s: not a JSON object", path);
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "rerank_weight");
    if (v && (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0)) rc = PHREX_ERR_FORMAT;
    else if (v) {
        *w = (float)v->valuedouble;
        *found = 1;
    }
    cJSON_Delete(root);
    if (rc) return phrex_fail(rc, "%s: field 'rerank_weight': expected a finite number >= 0", path);
    return PHREX_OK;
}

void phrex_combine_rank(const float *retrieval, const float *ce, int k, float w, int *order) {
    // Insertion sort: k is at most a few hundred and the input is nearly
    // sorted (retrieval order); stable, no allocation.
    for (int i = 0; i < k; i++) {
        float s = phrex_combine_score(retrieval[i], ce[i], w);
        int j = i;
        while (j > 0 && phrex_combine_score(retrieval[order[j - 1]], ce[order[j - 1]], w) < s) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

double phrex_combine_accuracy(const phrex_combine_set *s, float w) {
    if (s->n_questions == 0) return 0;
    size_t right = 0;
    for (size_t q = 0; q < s->n_questions; q++) {
        size_t a = s->offsets[q], b = s->offsets[q + 1];
        if (a == b) continue;
        size_t best = a; // first best wins: ties keep retrieval order, as phrex_combine_rank
        float best_s = phrex_combine_score(s->retrieval[a], s->ce[a], w);
        for (size_t i = a + 1; i < b; i++) {
            float v = phrex_combine_score(s->retrieval[i], s->ce[i], w);
            if (v > best_s) best_s = v, best = i;
        }
        right += s->correct[best] != 0;
    }
    return (double)right / (double)s->n_questions;
}

int phrex_combine_tune(const phrex_combine_set *s, const float *grid, int n, float *best_w, double *best_acc) {
    if (n <= 0 || s->n_questions == 0)
        return phrex_fail(PHREX_ERR_INPUT, "weight tuning needs a grid and questions (%d weights, %zu questions)", n,
                          s->n_questions);
    double best = -1;
    for (int i = 0; i < n; i++) {
        double acc = phrex_combine_accuracy(s, grid[i]);
        if (acc > best) best = acc, *best_w = grid[i];
    }
    if (best_acc) *best_acc = best;
    return PHREX_OK;
}
