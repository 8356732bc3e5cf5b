// BERT encoder forward pass (post-LayerNorm, absolute positions, exact GELU),
// as Hugging Face's BertModel computes last_hidden_state, for f32 weights
// read from a model directory in HF layout (config.json, model.safetensors).
//
// Two handles: phrex_bert holds the weights (one arena, read-only once
// loaded, shareable between threads); phrex_encoder is a workspace sized once
// for a token budget, used by one caller at a time. A batch is *packed*:
// sequences back to back with no padding, each attending only to itself,
// which is BERT with a padding mask minus the wasted padded positions.
#ifndef PHREX_BERT_H
#define PHREX_BERT_H

#include "bert_config.h"

#include <stdint.h>

typedef struct phrex_bert phrex_bert;
typedef struct phrex_encoder phrex_encoder;

// Loads model_dir/config.json and model_dir/model.safetensors (F32, F16 or
// BF16 tensors, converted to f32). Query, key and value weights are fused
// into one (3C, C) matrix so a layer needs one sgemm for all three.
int phrex_bert_init(phrex_bert **out, const char *model_dir);
void phrex_bert_free(phrex_bert *model);
const phrex_bert_config *phrex_bert_get_config(const phrex_bert *model);

// A workspace for batches of up to max_tokens packed tokens. `model` must
// outlive it. All activation memory is reserved here, none per call.
int phrex_encoder_init(phrex_encoder **out, const phrex_bert *model, int max_tokens);
void phrex_encoder_free(phrex_encoder *enc);
int phrex_encoder_max_tokens(const phrex_encoder *enc);

// Last hidden states of n_seqs packed sequences.
// ids, type_ids: (N) with N = sum(seq_lens) <= max_tokens; type_ids NULL
//   means all zeros; seq_lens: (n_seqs), each 1..max_position_embeddings.
// out: (N, C). Positions restart at 0 in every sequence.
// Uses phrex_get_threads() threads. Inputs are checked before any work.
int phrex_encoder_forward(phrex_encoder *enc, const int32_t *ids, const int32_t *type_ids, const int32_t *seq_lens,
                          int n_seqs, float *out);

// Tuning knobs for benchmarks: tokens per block of the token-wise phase
// (rows per sgemm call; default 1024) and FFN intermediate features per
// slice (the slice of a block, rows x chunk floats, should stay in L2;
// default 384). 0 keeps a value. Clamped to max_tokens and F. Rebuilds the
// workspace.
int phrex_encoder_set_blocking(phrex_encoder *enc, int rows, int ffn_chunk);

// Mean of each sequence's token vectors.
// tokens: (N, C) packed as for phrex_encoder_forward; out: (n_seqs, C).
void phrex_bert_mean_pool(const float *tokens, const int32_t *seq_lens, int n_seqs, int C, float *out);

// Each of the n rows of v (n, C) divided by its L2 norm (rows of norm below
// 1e-12 are divided by 1e-12, as torch's F.normalize does).
void phrex_l2_normalize(float *v, int n, int C);

#endif
