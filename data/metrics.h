// Answer metrics, each matching the Python its numbers are compared to.
//
// SQuAD v1.1 (the official evaluate-v1.1.py): normalise both strings
// (str.lower(); drop the 32 ASCII characters of string.punctuation and no
// other; replace the whole words a / an / the, delimited as re's \b
// delimits them, by a space; split on str.isspace() whitespace and join
// with single spaces), then
// - exact match: the normalised strings are equal;
// - F1: over whitespace tokens of the normalised strings, with the common
//   tokens counted as a multiset (Counter & Counter); 0 when nothing is
//   shared (so two empty strings score EM 1 but F1 0, as in v1.1).
//
// Open-domain answer recall, DPR's has_answer (dpr/data/qa_validation.py):
// - strings: text and answer are NFD-normalised and tokenised like DPR's
//   SimpleTokenizer (runs of letters, digits and marks; every other
//   non-space, non-control character alone), tokens lowercased; the text
//   has the answer when the answer's tokens occur contiguously in the
//   text's. As in DPR, an answer with no token matches every text.
// - regexes (CuratedTREC): re.search of the pattern in the text, ignoring
//   case, with DPR's NFD of the pattern source (PHREX_REGEX_NFD_SOURCE);
//   see data/pyregex.h for how Python patterns run on POSIX regex.
//
// CuratedTREC exact match of a predicted answer is DrQA's regex_match_score,
// which DensePhrases uses: re.match, i.e. the pattern must match at the
// start of the prediction (it need not consume all of it).
//
// Functions that allocate return -1 (with the thread's message set) only
// when memory runs out. A pattern that does not translate or compile
// counts as no match, as DPR counts a pattern Python cannot compile.
#ifndef PHREX_DATA_METRICS_H
#define PHREX_DATA_METRICS_H

#include <stddef.h>

// The SQuAD-normalised form of s, malloc'd (NULL when out of memory).
char *phrex_metric_normalize(const char *s);

int phrex_metric_exact_match(const char *prediction, const char *gold);   // 1 or 0
double phrex_metric_f1(const char *prediction, const char *gold);         // in [0, 1]

// The best score over several gold answers (0 when n is 0).
int phrex_metric_max_exact_match(const char *prediction, const char *const *golds, size_t n);
double phrex_metric_max_f1(const char *prediction, const char *const *golds, size_t n);

// DPR has_answer, match_type "string": 1 when any answer occurs in text.
int phrex_metric_has_answer(const char *text, const char *const *answers, size_t n);

// DPR has_answer, match_type "regex": 1 when any pattern is found in text.
int phrex_metric_has_answer_regex(const char *text, const char *const *patterns, size_t n);

// DrQA regex EM: 1 when any pattern matches at the start of prediction.
int phrex_metric_regex_match(const char *prediction, const char *const *patterns, size_t n);

#endif
