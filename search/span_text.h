// Text helpers of span scoring, internal to search/: widening a byte span
// to whole words, the sentence around a span, and a hash of the
// SQuAD-normalised form of a string for de-duplication without allocating.
// Every text is valid UTF-8 (the dump checked it when it was built).
#ifndef PHREX_SEARCH_SPAN_TEXT_H
#define PHREX_SEARCH_SPAN_TEXT_H

#include <stddef.h>
#include <stdint.h>

// Moves *start left and *end right while they cut between two word
// characters (letters, marks and digits; a CJK ideograph is a word of its
// own, as BERT splits them), so that a span never begins or ends mid-word.
void phrex_span_widen_to_words(const char *text, size_t len, int32_t *start, int32_t *end);

// The sentence holding [start, end): from just after the last ". ", "! "
// or "? " (punctuation then whitespace, or a newline) before `start`, to
// the first such end at or after `end` (the punctuation included), leading
// and trailing whitespace trimmed. A heuristic splitter: "Mr. X" splits.
void phrex_span_sentence(const char *text, size_t len, int32_t start, int32_t end, int32_t *s_start,
                         int32_t *s_end);

// 64-bit FNV-1a of the SQuAD-style normal form of s[0, len): lowercase,
// ASCII punctuation dropped, the words a / an / the dropped, whitespace
// runs as one space. Equal normal forms hash equal.
uint64_t phrex_span_normal_hash(const char *s, size_t len);

// FNV-1a of raw bytes, seeded (so that hashes of different fields differ).
uint64_t phrex_span_hash_bytes(uint64_t seed, const char *s, size_t len);

#endif
