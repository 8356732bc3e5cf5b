// BERT for training, in the style of karpathy/llm.c: every parameter lives
// in one flat f32 buffer, every gradient in one flat buffer beside it, and a
// table names each tensor of the buffer with its Hugging Face name and
// shape. The training forward keeps every activation its backward needs in
// a workspace sized once for a token budget; forward and backward work on
// packed batches exactly as phrex_encoder_forward does (sequences back to
// back, each attending only to itself, positions restarting at 0), and
// compute the same function as it to float rounding.
//
// Buffer layout (the table's order): word, position and token-type
// embeddings, the embedding LayerNorm, then per layer: query, key and value
// weights (three (C, C) blocks, i.e. one (3C, C) matrix so one sgemm
// projects all three), their biases, attention.output.dense, its
// LayerNorm, intermediate.dense, output.dense, its LayerNorm.
//
// Gradients cover the *trainable* tail of the buffer: grads[i] is the
// gradient of params[grad_offset + i]. The word embeddings come first so
// that freezing them (no gradient, no optimiser state: 2 x 47 MB of AdamW
// moments and a 47 MB gradient for MiniLM's 30522 x 384 table) just moves
// grad_offset past them.
#ifndef PHREX_TRAIN_BERT_H
#define PHREX_TRAIN_BERT_H

#include "encoder/bert_config.h"

#include <stddef.h>
#include <stdint.h>

#define PHREX_PARAM_NAME_MAX 96

typedef struct {
    char name[PHREX_PARAM_NAME_MAX]; // HF name, e.g. "encoder.layer.0.attention.self.query.weight"
    int ndim;                        // 1 or 2
    int64_t shape[2];
    size_t offset;                   // floats into the parameter buffer
    size_t numel;
    int decay;                       // AdamW weight decay applies (not to biases and LayerNorm weights)
    int trainable;                   // has a gradient (0: frozen)
} phrex_param_tensor;

// A view of the buffers, valid for the model's lifetime.
typedef struct {
    float *params;       // (n_params)
    size_t n_params;
    float *grads;        // (n_grads): the gradients of params[grad_offset, n_params)
    size_t n_grads;
    size_t grad_offset;
    const phrex_param_tensor *tensors; // (n_tensors), in buffer order
    int n_tensors;
} phrex_train_params;

typedef struct {
    int num_layers;             // 0: as many as the source; K: its lower K layers (K <= the source's)
    int freeze_word_embeddings; // keep no gradient for embeddings.word_embeddings.weight
} phrex_train_bert_options;

typedef struct phrex_train_bert phrex_train_bert;

// Loads model_dir/config.json and model_dir/model.safetensors (F32, F16 or
// BF16; tensors may carry a "bert." prefix). opts may be NULL (all layers,
// nothing frozen). Gradients start at zero.
int phrex_train_bert_init(phrex_train_bert **out, const char *model_dir, const phrex_train_bert_options *opts);

// A model of config `cfg` with random weights: matrices, embeddings and
// biases uniform in [-scale, scale), LayerNorm weights 1 ± scale/2 and
// biases in ±scale/2 (not the usual 1 and 0, so tests see every path).
int phrex_train_bert_init_random(phrex_train_bert **out, const phrex_bert_config *cfg, uint64_t seed, float scale,
                                 const phrex_train_bert_options *opts);
void phrex_train_bert_free(phrex_train_bert *m);

const phrex_bert_config *phrex_train_bert_config(const phrex_train_bert *m);
phrex_train_params phrex_train_bert_params(phrex_train_bert *m);
// The tensor called `name`, or NULL.
const phrex_param_tensor *phrex_train_bert_find(const phrex_train_bert *m, const char *name);
// Its gradient (numel floats), or NULL when frozen.
float *phrex_train_bert_grad_of(phrex_train_bert *m, const phrex_param_tensor *t);
void phrex_train_bert_zero_grads(phrex_train_bert *m);

// --- training workspace ----------------------------------------------------------

typedef struct phrex_train_encoder phrex_train_encoder;

// Activations for batches of up to max_tokens packed tokens in sequences of
// up to max_seq tokens (0: min(max_position_embeddings, max_tokens)); the
// attention weights kept for the backward take H · max_tokens · max_seq
// floats per layer, so a tight max_seq matters. `m` must outlive it.
int phrex_train_encoder_init(phrex_train_encoder **out, phrex_train_bert *m, int max_tokens, int max_seq);
void phrex_train_encoder_free(phrex_train_encoder *e);
// Bytes of activation and scratch memory reserved.
size_t phrex_train_encoder_bytes(const phrex_train_encoder *e);

// Dropout as BertModel has it in training mode: hidden_p after the
// embeddings' LayerNorm and on both sublayers' outputs before their
// residual adds (HF hidden_dropout_prob), attn_p on the attention weights
// (attention_probs_dropout_prob); 0.1 and 0.1 for BERT and MiniLM. Both 0,
// the default, is eval mode. Masks are a pure function of (key, layer,
// site, element): give each forward a new key (e.g. phrex_rng_hash of the
// run's seed and step) and a resumed run draws the same masks again.
int phrex_train_encoder_set_dropout(phrex_train_encoder *e, float hidden_p, float attn_p, uint64_t key);

// The training forward: last hidden states of n_seqs packed sequences.
// ids, type_ids: (N), type_ids NULL = all 0; seq_lens: (n_seqs), each
// 1..max_seq; N <= max_tokens. *out points at (N, C) in the workspace,
// valid until the next forward. Keeps the ids and every activation.
int phrex_train_encoder_forward(phrex_train_encoder *e, const int32_t *ids, const int32_t *type_ids,
                                const int32_t *seq_lens, int n_seqs, const float **out);

// The backward of the last forward: dout (N, C) = dLoss/d(last hidden
// states). *Adds* the parameter gradients into the model's grads (zero them
// per step with phrex_train_bert_zero_grads), so micro-batches accumulate.
int phrex_train_encoder_backward(phrex_train_encoder *e, const float *dout);

#endif
