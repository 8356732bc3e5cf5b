// Training the shallow cross-encoder: a backbone (any encoder with a
// training forward and backward, behind a small vtable) under a linear
// score head on [CLS], trained with gBCE (rerank/gbce.h) on groups of one
// positive and n negatives for a question.
//
// The backbone vtable is what a second encoder family (USE-lite,
// encoder/use_lite.h) implements to drop in: forward to (N, C) hidden
// states, backward of dL/dhidden, its parameter view for AdamW, and save.
// The built-in one is phrex_train_bert (encoder/train_bert.h) cut to its
// lower K layers.
#ifndef PHREX_RERANK_TRAIN_H
#define PHREX_RERANK_TRAIN_H

#include "encoder/adamw.h"
#include "encoder/train_bert.h"
#include "rerank/rerank_data.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name; // "bert", recorded in phrex_reranker.json
    int hidden_size;  // C
    int max_tokens;   // packed tokens one forward takes
    void *self;
    // Dropout for the following forwards (p = 0: eval mode); masks are a
    // function of key (see phrex_train_encoder_set_dropout).
    int (*set_dropout)(void *self, float p, uint64_t key);
    // out: (N, C) last hidden states of n packed sequences, valid until the
    // next forward. types may be NULL.
    int (*forward)(void *self, const int32_t *ids, const int32_t *types, const int32_t *lens, int n,
                   const float **out);
    // Adds the parameter gradients of dL/dout (N, C) of the last forward.
    int (*backward)(void *self, const float *dout);
    phrex_train_params (*params)(void *self);
    void (*zero_grads)(void *self);
    // Saves an encoder folder that rerank/reranker.c loads (HF layout);
    // dtype: PHREX_DTYPE_F32 or _F16; tokenizer files copied from tok_dir.
    int (*save)(void *self, const char *dir, int dtype, const char *tok_dir);
    // The phrex_train_bert behind it, for checkpoint files (NULL if none).
    phrex_train_bert *(*train_bert)(void *self);
    void (*free)(void *self);
} phrex_rerank_backbone;

// The lower `layers` layers (0: all) of the BERT in model_dir, with a
// workspace for max_tokens packed tokens in sequences of up to max_seq.
int phrex_rerank_backbone_bert(phrex_rerank_backbone *out, const char *model_dir, int layers, int max_tokens,
                               int max_seq, int freeze_word_embeddings);
// The same around a random model (tests).
int phrex_rerank_backbone_bert_random(phrex_rerank_backbone *out, const phrex_bert_config *cfg, uint64_t seed,
                                      float scale, int max_tokens, int max_seq);

typedef struct phrex_rerank_model phrex_rerank_model;

// Takes ownership of the backbone (freed by phrex_rerank_model_free, also
// on error). The head starts at w ~ U(±head_scale), b = 0.
int phrex_rerank_model_init(phrex_rerank_model **out, phrex_rerank_backbone *bb, uint64_t seed, float head_scale);
void phrex_rerank_model_free(phrex_rerank_model *m);

// The recipe for a fresh head (tools/cmd_train_rerank.c, tests/test_rerank_learn.c):
// its bias starts at the constant-score optimum log(β/n) (phrex_gbce_prior_score)
// and it learns PHREX_RERANK_HEAD_LR_MULT times faster than the backbone.
// From b = 0 with a small β every score first has to fall by ~3: that
// gradient has one sign for every pair, so for ~100 updates AdamW moved
// every backbone weight towards "score everything lower", sized its moments
// for it, and the model settled at the constant (docs/reranking.md).
#define PHREX_RERANK_HEAD_LR_MULT 10.0f
// Sets b = log(β/n_negatives); returns PHREX_ERR_INPUT for β <= 0 or n < 1.
int phrex_rerank_model_start_at_prior(phrex_rerank_model *m, float beta, int n_negatives);
phrex_rerank_backbone *phrex_rerank_model_backbone(phrex_rerank_model *m);

// What the head reads (rerank/rerank_data.h); PHREX_RERANK_POOL_CLS until set.
void phrex_rerank_model_set_pool(phrex_rerank_model *m, phrex_rerank_pool pool, int32_t mark_start, int32_t mark_end);

// The head as AdamW sees it: params w (C) then b, grads beside them.
phrex_train_params phrex_rerank_model_head_params(phrex_rerank_model *m);

// Scores of n packed sequences: scores (n) = w·pooled h + b. Keeps the
// activations for phrex_rerank_model_backward.
int phrex_rerank_model_forward(phrex_rerank_model *m, const int32_t *ids, const int32_t *types, const int32_t *lens,
                               int n, float *scores);
// Adds head and backbone gradients for dL/dscores (n) of the last forward.
int phrex_rerank_model_backward(phrex_rerank_model *m, const float *dscores);
void phrex_rerank_model_zero_grads(phrex_rerank_model *m);

// One batch: n_groups groups of sequences back to back, group g holding
// group_size[g] sequences, its first the positive. Forward, gBCE of each
// group with `beta`, the mean over groups, backward of grad_scale times
// that mean (1 / micro-batches when several calls make one update). *loss
// gets the mean; scores (may be NULL) every sequence's score. Gradients are
// added.
int phrex_rerank_model_step(phrex_rerank_model *m, const int32_t *ids, const int32_t *types, const int32_t *lens,
                            const int32_t *group_size, int n_groups, float beta, float grad_scale, float *loss,
                            float *scores);

#endif
