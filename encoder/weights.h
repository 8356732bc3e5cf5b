// Where an encoder folder's tensors come from: its own model.safetensors, or
// a base folder plus a compact delta.
//
// A *delta folder* holds config.json and the tokenizer files like any HF
// folder, but instead of model.safetensors:
//   phrex_delta.json   {"format": "phrex-delta", "version": 1,
//                       "base": "<folder, relative to this one or absolute>",
//                       "base_bytes": N, "base_hash": "<16 hex digits>"}
//   delta.safetensors  per tensor, one of
//     - absent: the base tensor unchanged (e.g. frozen word embeddings);
//     - I8 `name` + F32 `name.__scale` (one scale per row): a 2-D tensor is
//       base + q[r][c] * scale[r] (symmetric per-row int8 of the difference);
//     - F16/F32 `name`, present in the base: base + delta;
//     - F16/F32 `name`, absent from the base: the tensor itself (new heads).
// Fine-tuning moves weights by a small fraction of their size, so the int8
// rounding error of the difference is ~1/256 of that fraction: far below the
// differences training made (docs/training.md measures the EM/F1 cost).
// The base is checked by size and XXH64 hash before anything is read: a
// delta over another base would silently be a different model.
#ifndef PHREX_ENCODER_WEIGHTS_H
#define PHREX_ENCODER_WEIGHTS_H

#include <stdint.h>

#define PHREX_DELTA_JSON "phrex_delta.json"
#define PHREX_DELTA_FILE "delta.safetensors"
#define PHREX_DELTA_FORMAT "phrex-delta"
#define PHREX_DELTA_VERSION 1
#define PHREX_DELTA_SCALE_SUFFIX ".__scale"

typedef struct phrex_weights phrex_weights;

// Opens model_dir's tensors (either layout). Errors name the file: missing
// files (PHREX_ERR_IO), a malformed delta or base mismatch (FORMAT/MISMATCH).
int phrex_weights_open(phrex_weights **out, const char *model_dir);
void phrex_weights_close(phrex_weights *w);

// 1 when the delta folder layout is in use.
int phrex_weights_is_delta(const phrex_weights *w);
// The file messages should name (model.safetensors or delta.safetensors).
const char *phrex_weights_path(const phrex_weights *w);
// 1 when `name` exists (in the base or the delta).
int phrex_weights_has(const phrex_weights *w, const char *name);

// Reads `name`, checked to have shape (ndim dims), as f32 into dst (numel
// floats), applying the delta. PHREX_ERR_FORMAT when missing,
// PHREX_ERR_MISMATCH when mis-shaped.
int phrex_weights_read_f32(const phrex_weights *w, const char *name, int ndim, const int64_t *shape, float *dst);

// The files that define a folder's weights, for fingerprints such as the
// dump manifest's model hash: model.safetensors, or phrex_delta.json (which
// names the base's size and hash) and delta.safetensors.
typedef struct {
    const char *files[4]; // relative to model_dir; NULL-terminated
} phrex_weights_files;
int phrex_weights_list_files(const char *model_dir, phrex_weights_files *out);

// Writes model_dir as a delta of base_dir into out_dir (which must not
// exist or be empty): config.json and tokenizer files copied, every tensor
// of model_dir's model.safetensors compared with the base: equal ones
// omitted, 2-D ones stored as int8 (int8 = 1) or f16 differences, 1-D ones as
// f32 differences, new ones whole in f16. Also copies any other small
// regular files of model_dir (a reranker's json and head) unchanged.
// *max_err: the largest absolute difference between the delta's
// reconstruction and the original over all tensors (may be NULL).
int phrex_weights_write_delta(const char *model_dir, const char *base_dir, const char *out_dir, int int8,
                              double *max_err);

#endif
