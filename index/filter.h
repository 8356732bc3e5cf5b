// The phrase filter (DensePhrases' filter_threshold): two logistic
// regressions on the frozen phrase encoder's token vectors, one scoring how
// likely a token starts an answer, one how likely it ends one. At build
// time a token keeps its vector when either logit exceeds the threshold;
// the others keep their offsets but get no vector (index/build.h).
//
// File format (little-endian), written by `phrex train-filter`:
//   0   8 bytes magic "PHRXFILT"
//   8   u32 version (1)
//   12  u32 dim (the encoder's hidden size)
//   16  u64 model hash (phrex_dump_model_hash of the phrase encoder it was
//       trained on: a filter is refused with another encoder)
//   24  f32 w_start[dim], f32 b_start, f32 w_end[dim], f32 b_end
//   then u64 hash of every byte before it (phrex_hash64, seed 0)
#ifndef PHREX_INDEX_FILTER_H
#define PHREX_INDEX_FILTER_H

#include <stddef.h>
#include <stdint.h>

#define PHREX_FILTER_MAGIC "PHRXFILT"
#define PHREX_FILTER_VERSION 1

typedef struct {
    int dim;
    uint64_t model_hash;
    uint64_t file_hash; // the file's checksum field: names the filter in manifests
    float *w_start, *w_end; // (dim) each, one allocation
    float b_start, b_end;
} phrex_filter;

// A zero filter of dim weights (every logit 0).
int phrex_filter_init(phrex_filter *f, int dim, uint64_t model_hash);
void phrex_filter_free(phrex_filter *f);

// Reads and checks a filter file: magic, version, size, checksum, finite
// weights. PHREX_ERR_IO (missing), PHREX_ERR_FORMAT naming the file and what
// is wrong.
int phrex_filter_load(phrex_filter *f, const char *path);
// Writes path atomically (temporary file, fsync, rename); sets f->file_hash.
int phrex_filter_save(phrex_filter *f, const char *path);

// Logits of n vectors (n, dim): start[i], end[i] (either may be NULL).
void phrex_filter_logits(const phrex_filter *f, const float *x, int n, float *start, float *end);

// The build hook: ctx is a phrex_filter_hook. Keeps token i when its start
// or end logit exceeds the threshold. Matches phrex_phrase_filter_fn.
typedef struct {
    const phrex_filter *filter;
    float threshold;
} phrex_filter_hook;
int phrex_filter_keep(void *ctx, const float *vectors, int n, int dim, uint8_t *keep);

// "logreg-<16 hex of the file hash>@<threshold>": what the manifest and the
// resume fingerprint record.
void phrex_filter_name(const phrex_filter *f, float threshold, char *out, size_t cap);

// Training data: n vectors x (n, dim) with 0/1 labels for start and end and
// a weight per row (negatives subsampled at rate r weigh 1/r, so the
// logits stay calibrated).
typedef struct {
    int epochs;       // passes over the rows (default 4)
    int batch;        // rows per Adam step (default 256)
    float lr;         // Adam step size (default 1e-2)
    float l2;         // weight decay on w (default 1e-4)
    uint64_t seed;    // row order
} phrex_filter_train_options;
void phrex_filter_train_options_default(phrex_filter_train_options *o);

// Trains f (initialised to zero weights and the prior's bias) in place with
// Adam on the weighted binary cross-entropy of both heads. *loss gets the
// last epoch's mean loss (may be NULL).
int phrex_filter_train(phrex_filter *f, const float *x, const uint8_t *is_start, const uint8_t *is_end,
                       const float *weight, int64_t n, const phrex_filter_train_options *o, double *loss);

#endif
