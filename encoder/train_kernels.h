// Kernels of BERT training: each layer's forward (which keeps what its
// backward needs) beside its backward, in the style of karpathy/llm.c.
// Row-major throughout; `n` rows (tokens) of `c` columns.
//
// Gradient conventions:
// - parameter gradients (dw, dbias, dgamma, ...) are *accumulated* (+=), so
//   a caller zeroes them once per step and may run several micro-batches;
// - input gradients are written, or accumulated when a kernel says so (the
//   residual stream sums two branches).
//
// Determinism: for a given thread count every result is bit-identical from
// run to run. Sums over tokens (bias, LayerNorm and embedding gradients) are
// split over threads by *columns*, each column summed over rows in order, so
// they do not even depend on the thread count; matmuls go to OpenBLAS sgemm,
// whose level-3 threading splits the output, never the summed dimension.
#ifndef PHREX_TRAIN_KERNELS_H
#define PHREX_TRAIN_KERNELS_H

#include "encoder/train_rng.h"

#include <stddef.h>
#include <stdint.h>

// --- linear: out = inp·Wᵀ + bias (nn.Linear layout, W is (oc, ic)) ---------

// out: (n, oc); inp: (n, ic); w: (oc, ic); bias: (oc) or NULL.
void phrex_train_linear_forward(float *out, const float *inp, const float *w, const float *bias, int n, int ic,
                                int oc);

// dinp (n, ic) = dout·W, added to dinp when `accumulate`, else written;
// dw (oc, ic) += doutᵀ·inp; dbias (oc) += Σ_rows dout. Any output may be NULL.
void phrex_train_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                                 const float *w, int n, int ic, int oc, int accumulate);

// --- LayerNorm over each row of c ---------------------------------------------

// out = (inp - mean)·rstd·gamma + beta. out, inp: (n, c) (out may be inp);
// mean, rstd: (n), kept for the backward.
void phrex_train_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                                   const float *beta, int n, int c, float eps);

// dinp (n, c) = the gradient w.r.t. the LayerNorm's input (written; may be
// dout, in place); dgamma, dbeta (c) += their gradients (NULL: skipped).
// inp, mean, rstd: what the forward saw and kept.
void phrex_train_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                                    const float *mean, const float *rstd, const float *gamma, int n, int c);

// --- GELU, exact: gelu(x) = x·Φ(x) = x/2·(1 + erf(x/√2)) ------------------------

// out, inp: (count); out may be inp.
void phrex_train_gelu_forward(float *out, const float *inp, size_t count);

// dinp = dout·gelu'(inp), gelu'(x) = Φ(x) + x·φ(x). dinp may be dout.
void phrex_train_gelu_backward(float *dinp, const float *dout, const float *inp, size_t count);

// --- ReLU: relu(x) = max(x, 0) (USE-lite's FFN) ---------------------------------

// out, inp: (count); out may be inp.
void phrex_train_relu_forward(float *out, const float *inp, size_t count);

// dinp = dout where inp > 0, else 0 (the subgradient 0 at 0). dinp may be dout.
void phrex_train_relu_backward(float *dinp, const float *dout, const float *inp, size_t count);

// --- embeddings: word[id] + position[pos] + type[type_id] ---------------------

// out: (n, c); ids, pos: (n); type_ids: (n) or NULL (all 0);
// wte: (V, c), wpe: (P, c), wtt: (T, c).
void phrex_train_embed_forward(float *out, const int32_t *ids, const int32_t *pos, const int32_t *type_ids,
                               const float *wte, const float *wpe, const float *wtt, int n, int c);

// Scatter-adds dout (n, c) into the rows of dwte, dwpe, dwtt that the
// forward read. Any table may be NULL (frozen).
void phrex_train_embed_backward(float *dwte, float *dwpe, float *dwtt, const float *dout, const int32_t *ids,
                                const int32_t *pos, const int32_t *type_ids, int n, int c);

// --- multi-head self-attention over packed sequences ---------------------------

// Where the sequences of a packed batch lie. seq_start: (n_seqs + 1), token
// offsets; probs_start: (n_seqs), where sequence s's attention weights
// begin in the probs buffer (H blocks of (L_s, L_s), head after head).
typedef struct {
    int n_seqs;
    const int32_t *seq_start;
    const size_t *probs_start;
} phrex_train_packing;

// Fills probs_start for seq_start and returns the probs floats needed:
// H · Σ L_s².
size_t phrex_train_packing_index(size_t *probs_start, const int32_t *seq_start, int n_seqs, int H);

// qkv: (N, 3C), row = [q | k | v], head h in columns h·D..(h+1)·D of each;
// ctx: (N, C), heads side by side; probs: as phrex_train_packing says.
// ctx_h = softmax(q_h·k_hᵀ/√D)·v_h per (sequence, head), the tasks
// spread over threads.
// attn_p > 0 applies dropout to the weights before they meet v (probs keeps
// them undropped, as the backward needs); the mask of weight k of the probs
// buffer is phrex_train_dropout_scale(site_key, k, attn_p). Then scratch
// (n_slots blocks of slot_floats >= L_max²) holds the dropped weights.
void phrex_train_attention_forward(float *ctx, float *probs, const float *qkv, const phrex_train_packing *pk, int C,
                                   int H, float attn_p, uint64_t site_key, float *scratch, size_t slot_floats,
                                   int n_slots);

// dqkv (N, 3C) is written (every element of every sequence's rows).
// attn_p, site_key: as the forward had them. scratch: n_slots blocks of
// slot_floats (>= 2·L_max² each), one per thread.
void phrex_train_attention_backward(float *dqkv, const float *dctx, const float *probs, const float *qkv,
                                    const phrex_train_packing *pk, int C, int H, float attn_p, uint64_t site_key,
                                    float *scratch, size_t slot_floats, int n_slots);

// --- dropout -------------------------------------------------------------------

// Inverted dropout as torch.nn.Dropout in training mode: each element is
// zeroed with probability p and the rest scaled by 1/(1 - p). Element i's
// fate is a pure function of (key, i), so the backward recomputes the mask
// instead of storing it, and threads need no shared RNG.

// The key of one dropout site (layer, site) of a step whose key is `key`.
static inline uint64_t phrex_train_dropout_site(uint64_t key, int layer, int site) {
    return phrex_rng_hash(key ^ phrex_rng_hash(((uint64_t)(uint32_t)layer << 8) | (uint32_t)site));
}

// 1/(1-p) when element `index` survives dropout p under `site_key`, else 0.
// One hash serves four consecutive elements, 16 bits each (hashing is most
// of dropout's cost on the attention weights): p is resolved to 1/65536,
// which biases the expected scale by < 2e-5.
static inline float phrex_train_dropout_scale(uint64_t site_key, uint64_t index, float p) {
    uint64_t r = phrex_rng_hash(site_key + (index >> 2) * 0xd1b54a32d192ed03ull);
    uint32_t u = (uint32_t)(r >> (16 * (index & 3))) & 0xffffu;
    return (float)u >= p * 65536.0f ? 1.0f / (1.0f - p) : 0.0f;
}

// x (count) *= its dropout scales, for elements first..first+count of the
// site: forward on activations and backward on their gradients alike.
void phrex_train_dropout(float *x, size_t count, uint64_t site_key, uint64_t first, float p);

// --- helpers -------------------------------------------------------------------

// acc (c) += Σ_rows x (n, c): the bias gradient, parallel over columns.
void phrex_train_sum_rows(float *acc, const float *x, int n, int c);

#endif
