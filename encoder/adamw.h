// AdamW (Loshchilov & Hutter: decoupled weight decay) over the flat
// gradient buffer of a phrex_train_params, as torch.optim.AdamW computes it,
// with global-norm gradient clipping (torch.nn.utils.clip_grad_norm_) and a
// linear warm-up then linear decay schedule. Weight decay applies only to
// the tensors the table marks `decay` (not biases, not LayerNorm weights,
// as BERT fine-tuning recipes and DensePhrases do).
//
// Every step is bit-identical for a given input: element-wise updates, and
// a gradient norm summed in double over fixed chunks in a fixed order,
// whatever the thread count.
#ifndef PHREX_ADAMW_H
#define PHREX_ADAMW_H

#include "encoder/train_bert.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float lr;            // peak learning rate
    float beta1, beta2;  // 0.9, 0.999
    float eps;           // 1e-8 (torch), 1e-6 (HF BERT recipes)
    float weight_decay;  // e.g. 0.01
    int64_t warmup_steps; // lr rises linearly over updates 1..warmup_steps
    int64_t total_steps;  // then falls linearly to 0 at total_steps (0: stays at lr)
    float max_grad_norm;  // clip the global L2 norm to this (0: no clipping)
} phrex_adamw_config;

typedef struct phrex_adamw phrex_adamw;

// Moments for the trainable part of `params` (n_grads floats each, zeroed).
int phrex_adamw_init(phrex_adamw **out, const phrex_adamw_config *cfg, const phrex_train_params *params);
void phrex_adamw_free(phrex_adamw *opt);

// The learning rate of update number t (1-based):
//   warm-up  (t <= W): lr · t / W
//   decay    (t >  W): lr · max(0, (T - t) / (T - W))   (T = total_steps > W)
float phrex_adamw_lr_at(const phrex_adamw_config *cfg, int64_t t);

// ‖grads‖₂, summed in double over fixed 64 Ki-float chunks (deterministic).
double phrex_adamw_grad_norm(phrex_adamw *opt, const float *grads);

// One update of params[grad_offset ..] from grads: clips grads in place when
// max_grad_norm > 0 (scale max/(norm + 1e-6) when the norm is above max, as
// torch does), then for each element, with t the update number:
//   p -= lr_t · wd · p                       (decayed tensors only)
//   m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²
//   p -= (lr_t / (1-β1^t)) · m / (√v / √(1-β2^t) + eps)
// *grad_norm (may be NULL) gets the norm before clipping. A non-finite
// norm fails with PHREX_ERR_INPUT and changes nothing.
int phrex_adamw_step(phrex_adamw *opt, phrex_train_params *params, float *grad_norm);

// Clipping over models trained together (DensePhrases clips its phrase
// and query encoders as one model): the joint norm of the n optimisers'
// gradients grads[i] (phrex_train_params.grads of each), and every gradient
// scaled by max_norm/(norm + 1e-6) when the norm is above max_norm. Give
// those optimisers max_grad_norm = 0 so they do not clip again.
double phrex_adamw_clip_joint(phrex_adamw *const *opts, float *const *grads, int n, float max_norm);

// Updates done so far (t of the last update).
int64_t phrex_adamw_steps(const phrex_adamw *opt);
const phrex_adamw_config *phrex_adamw_get_config(const phrex_adamw *opt);

// The optimiser's state, for checkpoints: the moments (n floats each) and
// the update count.
size_t phrex_adamw_size(const phrex_adamw *opt);
float *phrex_adamw_m(phrex_adamw *opt);
float *phrex_adamw_v(phrex_adamw *opt);
void phrex_adamw_set_steps(phrex_adamw *opt, int64_t steps);

#endif
