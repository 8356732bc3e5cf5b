// Builds a SentencePiece UNIGRAM model (a serialized ModelProto) from a
// vocabulary shipped as JSON, `[[piece, log-probability], ...]` with the
// token id equal to the list index, as USE-lite ships its tokenizer
// (shared/models/use-lite/vocab_spm_unigram.json). There are no protobuf
// headers for ModelProto here, so the few fields needed are written by hand.
//
// The model gets the settings that reproduce the USE-lite golden token ids:
// - normalizer "identity" (no Unicode rewriting), dummy prefix on, extra
//   whitespace removed, whitespace escaped to U+2581 "▁";
// - id 0 UNKNOWN, ids 1-2 CONTROL, ids 3-5 USER_DEFINED, the rest NORMAL
//   with the JSON score.
// Two repairs keep SentencePiece from refusing the upstream vocabulary:
// - a piece seen before keeps its id but is renamed to the placeholder
//   PHREX_SPM_DUPLICATE_PREFIX + its id + ">" (e.g. "<phrex:dup:4464>") with
//   type UNUSED, so the encoder never emits it and the first id wins; every
//   id stays aligned with the JSON. USE-lite has "”5" three times, at ids 230,
//   238 and 4464 (its README names only the last two), so 238 and 4464
//   become placeholders. (The TF.js tokenizer's trie kept the *last* copy,
//   4464; no golden sentence contains "”5".)
// - a null score becomes 0 (what JavaScript's `null + x` made of it in the
//   TF.js tokenizer USE-lite shipped with), counted in the report.
#ifndef PHREX_SPM_VOCAB_H
#define PHREX_SPM_VOCAB_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PHREX_SPM_DUPLICATE_PREFIX "<phrex:dup:"

// What the conversion had to repair; ids are list indices in the JSON.
typedef struct {
    int pieces;               // entries converted (= vocabulary size)
    int null_scores;          // entries whose score was null, stored as 0
    int first_null_score_id;  // -1 when none
    int duplicates;           // entries renamed to a placeholder
    int first_duplicate_id;   // -1 when none
} phrex_spm_vocab_report;

// Reads `json_path` and returns a malloc'd serialized ModelProto in
// *proto_out (free() it) and its size in *len_out. `report` may be NULL.
// PHREX_ERR_IO (unreadable), PHREX_ERR_FORMAT (malformed JSON, or an entry
// that is not [non-empty string, number|null]; the message names the file
// and the entry index), PHREX_ERR_MEMORY.
int phrex_spm_proto_from_vocab_json_report(const char *json_path, unsigned char **proto_out,
                                           size_t *len_out, phrex_spm_vocab_report *report);

// The same without a report.
int phrex_spm_proto_from_vocab_json(const char *json_path, unsigned char **proto_out,
                                    size_t *len_out);

// Writes a serialized ModelProto to `model_path` (a SentencePiece `.model`
// file) through a temporary file and a rename, so a reader never sees half
// a model. PHREX_ERR_IO naming the path on failure.
int phrex_spm_proto_write(const char *model_path, const unsigned char *proto, size_t len);

// Convenience: JSON vocabulary in, `.model` file out. `report` may be NULL.
int phrex_spm_model_from_vocab_json(const char *json_path, const char *model_path,
                                    phrex_spm_vocab_report *report);

#ifdef __cplusplus
}
#endif

#endif
