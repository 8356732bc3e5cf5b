// USE-lite for training (the architecture of encoder/use_lite.h), in the
// style of encoder/train_bert.h: every parameter in one flat f32 buffer,
// every gradient in one flat buffer beside it, a table naming each tensor;
// a training forward that keeps the activations its backward needs, on
// packed batches (sequences back to back, each attending only to itself,
// positions restarting at 0), computing the same function as
// phrex_use_lite_forward's token states to float rounding.
//
// Names are the file's (use_lite.safetensors) but matrices are held in the
// (out, in) layout of the training kernels (y = x·Wᵀ + b), i.e. transposed
// from the file's [in, out]; phrex_use_lite_train_save writes them back in
// the file's layout.
//
// Buffer layout (the table's order): the frozen head, then the trainable tail:
//   embeddings.timing_inv_timescales (1, E/2)   never trained (a constant)
//   pooler.tanh.weight (C, C), pooler.tanh.bias (C)
//                                 not used by the token-state forward: kept
//                                 (and saved) as loaded, never trained
//   embeddings.word.weight (V, E) trained unless freeze_word_embeddings
//   per layer: attn_ln.{weight,bias}, attn.qkv.{weight,bias},
//     attn.out.{weight,bias}, [layer 0: residual_proj.{weight,bias}],
//     ffn_ln.{weight,bias}, ffn.fc1.{weight,bias}, ffn.fc2.{weight,bias}
// grads[i] is the gradient of params[grad_offset + i] (phrex_train_params),
// so encoder/adamw.h updates exactly the trainable tail.
#ifndef PHREX_USE_LITE_TRAIN_H
#define PHREX_USE_LITE_TRAIN_H

#include "encoder/train_bert.h" // phrex_train_params, phrex_param_tensor

#include <stddef.h>
#include <stdint.h>

// The sizes of a USE-lite-shaped model (tests use tiny ones).
typedef struct {
    int vocab; // embedding rows (8002)
    int embed; // E: embedding width = layer 0's attention width (256); even
    int dim;   // C: hidden width after layer 0 (512)
    int ffn;   // F: FFN inner width (1536)
    int heads; // per layer (4); must divide E and C
    float eps; // LayerNorm epsilon (1e-6)
} phrex_use_lite_shape;

// The real model's shape.
phrex_use_lite_shape phrex_use_lite_shape_default(void);

typedef struct {
    int freeze_word_embeddings; // no gradient for embeddings.word.weight
} phrex_use_lite_train_options;

typedef struct phrex_use_lite_train phrex_use_lite_train;

// Loads use_lite.safetensors (or a file phrex_use_lite_train_save wrote).
// opts may be NULL (nothing frozen beyond the head). Gradients start at 0.
int phrex_use_lite_train_init(phrex_use_lite_train **out, const char *safetensors_path,
                              const phrex_use_lite_train_options *opts);

// Random weights of `shape`: matrices, embeddings and biases uniform in
// [-scale, scale), LayerNorm weights 1 ± scale/2, biases ± scale/2; the
// inverse timescales as the transformer's (10⁴^(-j/(E/2 - 1))).
int phrex_use_lite_train_init_random(phrex_use_lite_train **out, const phrex_use_lite_shape *shape, uint64_t seed,
                                     float scale, const phrex_use_lite_train_options *opts);
void phrex_use_lite_train_free(phrex_use_lite_train *m);

const phrex_use_lite_shape *phrex_use_lite_train_shape(const phrex_use_lite_train *m);
phrex_train_params phrex_use_lite_train_params(phrex_use_lite_train *m);
// The tensor called `name`, or NULL.
const phrex_param_tensor *phrex_use_lite_train_find(const phrex_use_lite_train *m, const char *name);
// Its gradient (numel floats), or NULL when frozen.
float *phrex_use_lite_train_grad_of(phrex_use_lite_train *m, const phrex_param_tensor *t);
void phrex_use_lite_train_zero_grads(phrex_use_lite_train *m);

// Writes every tensor in the file's layout ([in, out] matrices) to `path`
// (a temporary file, then a rename) as `dtype`, PHREX_DTYPE_F32 or
// PHREX_DTYPE_F16 (a phrex_dtype; F16 halves the 28 MB):
// phrex_use_lite_init and phrex_use_lite_train_init read either back.
int phrex_use_lite_train_save(phrex_use_lite_train *m, const char *path, int dtype);

// --- training workspace ----------------------------------------------------------

typedef struct phrex_use_lite_train_encoder phrex_use_lite_train_encoder;

// Activations for up to max_tokens packed tokens in sequences of up to
// max_seq tokens (1..min(max_tokens, PHREX_USE_LITE_MAX_SEQ)); the kept
// attention weights take H · max_tokens · max_seq floats per layer.
// `m` must outlive it.
int phrex_use_lite_train_encoder_init(phrex_use_lite_train_encoder **out, phrex_use_lite_train *m, int max_tokens,
                                      int max_seq);
void phrex_use_lite_train_encoder_free(phrex_use_lite_train_encoder *e);
size_t phrex_use_lite_train_encoder_bytes(const phrex_use_lite_train_encoder *e);

// Dropout in training mode: hidden_p on the embedding input and on both
// sublayers' outputs before their residual adds, attn_p on the attention
// weights; masks are a pure function of (key, layer, site, element) as in
// encoder/train_kernels.h. 0, 0 (the default) is eval mode.
int phrex_use_lite_train_encoder_set_dropout(phrex_use_lite_train_encoder *e, float hidden_p, float attn_p,
                                             uint64_t key);

// The training forward. ids: (N) in 0..vocab-1; seq_lens: (n_seqs), each
// 1..max_seq, N <= max_tokens. *out points at the last layer's token states
// (N, C) in the workspace, valid until the next forward.
int phrex_use_lite_train_encoder_forward(phrex_use_lite_train_encoder *e, const int32_t *ids, const int32_t *seq_lens,
                                         int n_seqs, const float **out);

// The backward of the last forward: dout (N, C) = dLoss/d(token states).
// *Adds* into the model's gradients (zero them per step), so micro-batches
// accumulate.
int phrex_use_lite_train_encoder_backward(phrex_use_lite_train_encoder *e, const float *dout);

#endif
