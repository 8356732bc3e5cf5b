// The DensePhrases training objective (Lee et al., ACL 2021) on top of the
// encoders' outputs, forward and backward.
//
// Phrase side: every passage token's last hidden state h_i serves as both a
// start and an end vector. Query side: q_start and q_end, the [CLS] outputs
// of the query encoder(s). A phrase (i, j) scores
//     score(i, j) = q_start·h_i + q_end·h_j,   i <= j < i + max_answer_len.
//
// Losses, for a batch of B (passage, question, gold span) examples:
// - single-passage: cross-entropy of the gold start over the passage's
//   tokens under q_start·h_i, and of the gold end under q_end·h_j, averaged
//   over the two and over the batch;
// - in-batch negatives: q_start of example b against the gold start vectors
//   of every example of the batch (target: its own), the same for ends;
// - pre-batch negatives: the gold start/end vectors of the previous
//   `pre_batches` batches join the in-batch candidates, as constants (no
//   gradient flows into them), once `pre_batch_warmup` steps have passed.
// total = lambda_single·single + lambda_neg·negatives.
//
// The cache of earlier batches' vectors is state of the run: save it with
// the training state (phrex_phrase_loss_cache) to resume bit-identically.
#ifndef PHREX_PHRASE_TRAIN_H
#define PHREX_PHRASE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float lambda_single;      // weight of the single-passage loss (1)
    float lambda_neg;         // weight of the in-batch + pre-batch negatives loss (1..4)
    int pre_batches;          // previous batches whose gold vectors are kept (DensePhrases: 2); 0: none
    int64_t pre_batch_warmup; // steps with in-batch negatives only, before pre-batch ones join
    int max_answer_len;       // longest phrase in tokens, for decoding (10)
} phrex_phrase_loss_config;

typedef struct {
    float total;
    float single;   // single-passage loss (start and end averaged)
    float negative; // in-batch (+ pre-batch) negatives loss
    int n_candidates; // candidates per query in the negatives loss: B + cached vectors
} phrex_phrase_loss_parts;

typedef struct phrex_phrase_loss phrex_phrase_loss;

// For hidden size C and batches of up to max_batch examples.
int phrex_phrase_loss_init(phrex_phrase_loss **out, const phrex_phrase_loss_config *cfg, int C, int max_batch);
void phrex_phrase_loss_free(phrex_phrase_loss *pl);

// One batch: the loss and its gradients, then (when pre_batches > 0) this
// batch's gold vectors pushed into the cache, evicting the oldest batch.
// h: (N, C) phrase encoder outputs of B packed passages, seq_lens (B);
// q_start, q_end: (B, C); gold_start, gold_end: (B) token indices within
// each passage (0 <= start <= end < len); step: the update number, for
// the warm-up. dh (N, C), dq_start, dq_end (B, C) are written.
int phrex_phrase_loss_step(phrex_phrase_loss *pl, const float *h, const int32_t *seq_lens, int B,
                           const float *q_start, const float *q_end, const int32_t *gold_start,
                           const int32_t *gold_end, int64_t step, float *dh, float *dq_start, float *dq_end,
                           phrex_phrase_loss_parts *parts);

// The best phrase of one passage: argmax of score(i, j) over
// i <= j < i + max_len. h: (L, C). Ties go to the earliest (i, j).
void phrex_phrase_best_span(const float *h, int L, int C, const float *q_start, const float *q_end, int max_len,
                            int *start, int *end, float *score);

// The pre-batch cache, for checkpoints: *floats values at the returned
// pointer plus *meta (batches held, next slot, and their sizes) in
// meta_out[0 .. 2 + pre_batches).
float *phrex_phrase_loss_cache(phrex_phrase_loss *pl, size_t *floats);
int phrex_phrase_loss_cache_meta(const phrex_phrase_loss *pl, int32_t *meta_out, int capacity);
int phrex_phrase_loss_set_cache_meta(phrex_phrase_loss *pl, const int32_t *meta, int n);

#endif
