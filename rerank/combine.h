// How the reranker's score joins the retrieval score:
//   final = retrieval_score + w * cross_encoder_score
// over the reranked head of a result list; the tail (not reranked) keeps its
// order after the head, whatever its scores, so that reranking only ever
// reorders the top k. The weight w comes from `--rerank-weight`, else from
// "rerank_weight" in the reranker folder's phrex_reranker.json, else
// PHREX_COMBINE_DEFAULT_WEIGHT; it is tuned by a grid search over questions
// of a validation split (phrex_combine_tune).
#ifndef PHREX_RERANK_COMBINE_H
#define PHREX_RERANK_COMBINE_H

#include <stddef.h>

#define PHREX_COMBINE_DEFAULT_WEIGHT 1.0f
#define PHREX_COMBINE_GRID_LEN 12

// 0 (retrieval only) .. 64 (the cross-encoder decides all but ties).
extern const float phrex_combine_grid[PHREX_COMBINE_GRID_LEN];

static inline float phrex_combine_score(float retrieval, float ce, float w) { return retrieval + w * ce; }

// Reads "rerank_weight" (a finite number >= 0) from DIR/phrex_reranker.json.
// *found = 0 and PHREX_OK when the key is absent; PHREX_ERR_IO when the file
// is missing, PHREX_ERR_FORMAT when it or the value is malformed.
int phrex_combine_read_weight(const char *reranker_dir, float *w, int *found);

// order: (k) indexes 0..k-1 sorted by combined score, best first; equal
// scores keep retrieval order (stable).
void phrex_combine_rank(const float *retrieval, const float *ce, int k, float w, int *order);

// Per-question candidates for tuning: question q owns candidates
// [offsets[q], offsets[q + 1]) in retrieval order, each with its retrieval
// and cross-encoder scores and whether its answer is right (0/1).
typedef struct {
    const float *retrieval, *ce;
    const unsigned char *correct;
    const size_t *offsets; // (n_questions + 1)
    size_t n_questions;
} phrex_combine_set;

// Accuracy (fraction of questions whose top candidate is right) at weight w.
double phrex_combine_accuracy(const phrex_combine_set *s, float w);

// Best weight over grid[0..n) (ties: the smaller weight); its accuracy in
// *best_acc (may be NULL). PHREX_ERR_INPUT for an empty grid or set.
int phrex_combine_tune(const phrex_combine_set *s, const float *grid, int n, float *best_w, double *best_acc);

#endif
