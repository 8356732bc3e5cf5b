// BERT WordPiece tokenizer, equal to Hugging Face's BertTokenizerFast
// (tokenizers' BertNormalizer + BertPreTokenizer + WordPiece) on ids and on
// offsets, with offsets given as byte spans of the UTF-8 input.
//
// The pipeline, per original character:
//   clean:     drop NUL, U+FFFD and control/format/private-use characters;
//              whitespace becomes a word break
//   CJK:       a CJK ideograph is a word of its own
//   normalize: (lowercase models only) NFD, drop nonspacing marks, lowercase
//   split:     every punctuation character is a word of its own
//   WordPiece: greedy longest match first, "##" on continuations; a word with
//              no segmentation, or over 100 normalized characters, is [UNK]
// Each normalized character remembers the original character it came from,
// so a piece spans whole original characters: when 'İ' or a Hangul syllable
// decomposes into several pieces, each of them spans the whole syllable.
//
// Literal "[SEP]", "[MASK]" etc. in the text are plain text here (HF would
// turn them into the special tokens unless split_special_tokens=True): text
// from a corpus or a user can never inject a separator.
//
// The handle is immutable after init: concurrent encodes on one handle are
// safe, and encode allocates nothing beyond growing `out`.
#ifndef PHREX_WORDPIECE_H
#define PHREX_WORDPIECE_H

#include "encoder/tokens.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct phrex_wordpiece phrex_wordpiece;

// The special tokens every BERT vocab holds; init fails when one is missing.
typedef enum {
    PHREX_SPECIAL_CLS = 0, // "[CLS]"
    PHREX_SPECIAL_SEP,     // "[SEP]"
    PHREX_SPECIAL_PAD,     // "[PAD]"
    PHREX_SPECIAL_UNK,     // "[UNK]"
    PHREX_SPECIAL_MASK,    // "[MASK]"
    PHREX_SPECIAL_COUNT
} phrex_special;

// Loads a vocab.txt (one token per line, the id is the 0-based line number).
// `lowercase` = the model's do_lower_case: lowercase and strip accents (an
// uncased model) or keep the text as it is (a cased one).
// Errors: PHREX_ERR_IO (missing, unreadable), PHREX_ERR_FORMAT (empty line,
// invalid UTF-8, carriage return, duplicate token, missing special token;
// the message names the file and the line), PHREX_ERR_MEMORY.
int phrex_wordpiece_init(phrex_wordpiece **out, const char *vocab_path, int lowercase);
void phrex_wordpiece_free(phrex_wordpiece *wp);

// Appends the word pieces of text[0, len) to `out` (no [CLS]/[SEP]; nothing
// is cleared), each with its byte span [start, end) in `text`.
// Errors: PHREX_ERR_INPUT for invalid UTF-8 (the message gives the byte
// offset) or len over INT32_MAX; PHREX_ERR_MEMORY when `out` cannot grow.
// On error `out` holds what it held before the call.
int phrex_wordpiece_encode(const phrex_wordpiece *wp, const char *text, size_t len, phrex_tokens *out);

// The id of a piece spelled exactly so ("##ing" for a continuation), or -1.
int phrex_wordpiece_token_id(const phrex_wordpiece *wp, const char *piece, size_t len);
// The piece of an id (NUL-terminated, owned by wp), or NULL when out of range.
const char *phrex_wordpiece_piece(const phrex_wordpiece *wp, int id);
int phrex_wordpiece_vocab_size(const phrex_wordpiece *wp);
// The id of a special token (-1 for an invalid `which`).
int phrex_wordpiece_special(const phrex_wordpiece *wp, phrex_special which);

#ifdef __cplusplus
}
#endif

#endif
