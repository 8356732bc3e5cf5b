// A thin C interface to libsentencepiece (0.1.97): load a model, encode text
// to ids with byte offsets, decode ids, train a model. The C++ library stays
// behind this header; no exception crosses it, and every failure is a phrex
// error code with a message naming the model (file path or the name given).
//
// A loaded handle is read-only: encode/decode may run on many threads at once.
// Encoding allocates inside libsentencepiece (its lattice and result proto)
// on every call; only the caller's phrex_tokens is reused.
#ifndef PHREX_SPM_H
#define PHREX_SPM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Inside the C linkage block: tokens.h has no extern "C" guard of its own.
#include "encoder/tokens.h"

typedef struct phrex_spm phrex_spm;

// Loads a SentencePiece `.model` file (a serialized ModelProto).
// PHREX_ERR_IO (missing/unreadable), PHREX_ERR_FORMAT (not a valid model).
int phrex_spm_init(phrex_spm **out, const char *model_path);

// Loads a serialized ModelProto held in memory (copied; `proto` may be freed
// afterwards). `name_for_errors` labels messages (NULL: "<memory>").
int phrex_spm_init_from_bytes(phrex_spm **out, const void *proto, size_t len, const char *name_for_errors);

void phrex_spm_free(phrex_spm *spm);

// Encodes `len` bytes of UTF-8 `text` (need not be NUL-terminated) into
// `out` (cleared first, grown as needed): one id per piece with the byte span
// [start, end) of `text` it came from. Spans never overlap and increase; a
// piece's span includes the whitespace its leading "▁" stands for, when that
// whitespace is in the input (the dummy prefix of the first piece is not, and
// a lone "▁" piece made of it has an empty span). With byte fallback, the
// <0xNN> pieces of one character have empty spans at its first byte except the
// last, which spans the whole character.
// Invalid UTF-8 -> PHREX_ERR_INPUT naming the byte; text over 2^31-1 bytes ->
// PHREX_ERR_INPUT.
int phrex_spm_encode(const phrex_spm *spm, const char *text, size_t len, phrex_tokens *out);

// Decodes `n` ids into `buf` (NUL-terminated when it fits) and sets *len_out
// to the decoded length without the NUL. When `cap` < length + 1 nothing is
// written, *len_out still says the length, and PHREX_ERR_INPUT is returned:
// call again with a buffer of *len_out + 1. Ids out of range -> PHREX_ERR_INPUT.
// Control ids decode to nothing; the unknown id decodes to " ⁇ ".
int phrex_spm_decode(const phrex_spm *spm, const int32_t *ids, int n, char *buf, size_t cap, size_t *len_out);

// Number of pieces (ids are 0 .. size-1).
int phrex_spm_vocab_size(const phrex_spm *spm);

// Id of the NUL-terminated `piece` (with "▁" for a word start), or -1 when it
// is not in the vocabulary (SentencePiece itself would answer the unknown id).
int phrex_spm_piece_to_id(const phrex_spm *spm, const char *piece);

// The piece text of `id`, owned by the handle; NULL when out of range.
const char *phrex_spm_id_to_piece(const phrex_spm *spm, int id);

// Training ------------------------------------------------------------------

typedef struct {
    int num_threads;         // 0: the online CPUs, at most 16
    int input_sentence_size; // lines sampled (shuffled) from the input; 0: no cap
    int byte_fallback;       // 1: characters outside the alphabet become <0xNN> byte pieces, never <unk>
    const char *normalization; // SentencePiece rule name ("identity", "nmt_nfkc", "nfkc", ...)
} phrex_spm_train_options;

// The defaults phrex_spm_train uses: all CPUs, no cap, byte fallback on,
// "identity" normalisation. Identity keeps decode(encode(x)) == x up to
// whitespace and matches the USE-lite model; byte fallback makes every
// character encodable, which a retrieval index wants more than <unk>.
phrex_spm_train_options phrex_spm_train_defaults(void);

// Trains a model on `input_path` (plain text, one sentence per line) and
// writes `<model_prefix>.model` and `<model_prefix>.vocab`. `model_type` is
// "unigram" or "bpe". Ids: 0 <unk>, 1 <s>, 2 </s>. SentencePiece's INFO log
// is silenced (this sets its process-wide log level to warnings and above);
// its progress would otherwise be hundreds of lines on stderr.
// PHREX_ERR_INPUT (bad arguments), PHREX_ERR_IO (input unreadable, model not
// written), PHREX_ERR_INTERNAL (SentencePiece refused, e.g. vocab_size too
// large for the corpus: the message is SentencePiece's).
int phrex_spm_train(const char *input_path, const char *model_prefix, int vocab_size, const char *model_type);
int phrex_spm_train_with(const char *input_path, const char *model_prefix, int vocab_size, const char *model_type,
                         const phrex_spm_train_options *options);

#ifdef __cplusplus
}
#endif

#endif
