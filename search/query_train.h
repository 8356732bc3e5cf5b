// Query-side fine-tuning (DensePhrases' train_query, Lee et al. 2021, §4.3;
// princeton-nlp/DensePhrases densephrases/encoder.py `train_query`): the
// phrase vectors of a built dump stay fixed, and the two query encoders
// learn to score the retrieved phrases that match a gold answer highest.
//
// For one question with k retrieved phrases, start vectors a_i and end
// vectors b_i (reconstructed from the dump), the logits are
//   s_i = q_start . a_i,   e_i = q_end . b_i,   l_i = s_i + e_i
// and with G the phrases whose text matches a gold answer (SQuAD EM),
//   loss = MML(l) + MML(s) + MML(e)
//   MML(x) = -log clamp(sum_{i in G} softmax(x)_i, 1e-7, 1)
// the marginal likelihood of the gold candidates among the retrieved ones,
// over phrase, start and end logits, as DensePhrases sums them (its
// passage-level term L_doc is not used here). Below the clamp the term
// is constant and passes no gradient, as torch's clamp does.
#ifndef PHREX_SEARCH_QUERY_TRAIN_H
#define PHREX_SEARCH_QUERY_TRAIN_H

#include <stdint.h>

#define PHREX_QUERY_TRAIN_MIN_PROB 1e-7f

typedef struct {
    float loss;       // the sum of the three terms
    float phrase, start, end;
    int top1_gold;    // the best phrase by l is a gold one
} phrex_query_train_loss_parts;

// One question. a, b: (k, C) start and end vectors; gold: (k) 1 = matches;
// q_start, q_end: (C). Adds dLoss/dq_start and dLoss/dq_end, scaled by
// `scale` (e.g. 1/batch), into dq_start, dq_end: (C). scratch: (4k) floats.
// Returns -1 when no candidate is gold (nothing added), else 0.
int phrex_query_train_loss(const float *q_start, const float *q_end, const float *a, const float *b,
                           const uint8_t *gold, int k, int C, float scale, float *dq_start, float *dq_end,
                           float *scratch, phrex_query_train_loss_parts *parts);

// MML(x) for one logit vector: returns the term and writes dMML/dx (k).
float phrex_query_train_mml(const float *x, const uint8_t *gold, int k, float *dx);

#endif
