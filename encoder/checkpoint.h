// Checkpoints of training:
// - a safetensors writer (F32 or F16), the format encoder/safetensors.h reads;
// - a model directory in Hugging Face layout (config.json,
//   model.safetensors, the tokenizer files copied), which phrex_bert_init,
//   phrex_embedder_init and transformers' BertModel.from_pretrained all load;
// - a training-state file: parameters (f32, exact), AdamW moments and
//   update count, and the caller's progress (RNG state, data position), so
//   that a run killed at any point resumes from its last state file
//   bit-identically.
// Every file is written to "<path>.tmp", fsynced, then renamed over <path>
// (and the directory fsynced): a crash leaves the old file or the new one,
// never a torn one.
#ifndef PHREX_CHECKPOINT_H
#define PHREX_CHECKPOINT_H

#include "encoder/adamw.h"
#include "encoder/safetensors.h"
#include "encoder/train_bert.h"

#include <stddef.h>
#include <stdint.h>

// One tensor to write: `data` holds numel(shape) f32 values, written in the
// call's dtype; or, when `i8` is set, numel int8 values written as I8 as
// they are (data unused); or, when keep_f32 is 1, F32 whatever the call's
// dtype (e.g. int8 scales next to f16 tensors).
typedef struct {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[PHREX_SAFETENSORS_MAX_DIMS];
    const int8_t *i8;
    int keep_f32;
} phrex_safetensors_entry;

// Writes the tensors in order, converted to `dtype` (PHREX_DTYPE_F32 or
// PHREX_DTYPE_F16, round to nearest even; out-of-range values become ±inf),
// with "__metadata__" holding the n_meta (key, value) string pairs
// meta[2i], meta[2i+1] (e.g. {"format", "pt"}). Names must be unique.
int phrex_safetensors_write(const char *path, const phrex_safetensors_entry *tensors, int n, phrex_dtype dtype,
                            const char *const *meta, int n_meta);

// f32 -> f16 bits, round to nearest even (exposed for tests).
uint16_t phrex_f32_to_f16(float f);

// Writes dir/config.json (from the model's config) and dir/model.safetensors
// (every tensor of the table under its HF name, in `dtype`), and copies
// vocab.txt, tokenizer_config.json, special_tokens_map.json and
// tokenizer.json from tokenizer_dir when they exist there (tokenizer_dir
// may be NULL). Creates dir if needed.
int phrex_checkpoint_save_model(const char *dir, phrex_train_bert *m, phrex_dtype dtype, const char *tokenizer_dir);

// The caller's position in its run, saved with the state.
typedef struct {
    int64_t step;        // updates done (mirrors the optimiser's count)
    uint64_t rng_state;  // phrex_rng.state
    uint64_t data_epoch; // passes over the data done
    uint64_t data_pos;   // next example in this pass
    uint64_t user[4];    // anything else the caller needs restored
} phrex_train_progress;

// One model under training with its optimiser.
typedef struct {
    phrex_train_bert *model;
    phrex_adamw *opt;
} phrex_train_slot;

// Saves, in one file, the parameters, moments and update count of n models
// (a phrase encoder and its query encoders train together), the progress,
// and extra_bytes of the caller's state (e.g. the phrase loss's pre-batch
// cache; may be 0). A u64 checksum of everything closes the file.
int phrex_checkpoint_save_states(const char *path, const phrex_train_slot *slots, int n,
                                 const phrex_train_progress *progress, const void *extra, size_t extra_bytes);

// Restores what save_states wrote into n models and optimisers of the same
// layouts (same configs, same frozen tensors) and an extra buffer of the
// same size: otherwise PHREX_ERR_MISMATCH. A bad magic, version, size or
// checksum is PHREX_ERR_FORMAT. The whole file is verified before anything
// is overwritten, so a failed load leaves the models as they were.
int phrex_checkpoint_load_states(const char *path, const phrex_train_slot *slots, int n,
                                 phrex_train_progress *progress, void *extra, size_t extra_bytes);

// The same for one model and no extra state.
int phrex_checkpoint_save_state(const char *path, phrex_train_bert *m, phrex_adamw *opt,
                                const phrex_train_progress *progress);
int phrex_checkpoint_load_state(const char *path, phrex_train_bert *m, phrex_adamw *opt,
                                phrex_train_progress *progress);

#endif
