// CuratedTREC answers are Python `re` patterns ("Dionne\s+Warwick",
// "(?:Watson.*?Crick)|..."). phrex matches them with POSIX regcomp /
// regexec (REG_EXTENDED | REG_ICASE | REG_NEWLINE) after translating the
// Python-only syntax, run in the "C" locale (byte semantics, whatever the
// caller's locale) so that results never depend on the environment.
//
// Case and Unicode. Python matches with IGNORECASE | UNICODE. Byte-level
// REG_ICASE only folds ASCII, so instead both sides are folded before
// matching: the text and every literal character of the pattern are
// lowercased (simple mapping, final sigma folded to sigma), put in NFD (as
// DPR's has_answer does to both) and non-ASCII Unicode spaces become ' '
// (so \s still matches them).
//
// Translation (everything the 694 CuratedTREC test patterns use, and more):
//   \s \S \d \D \w \W   -> [[:space:]] [^[:space:]] [0-9] [^0-9] [[:alnum:]_] [^[:alnum:]_]
//   \b \B               -> \b \B (glibc extensions; word = ASCII alnum or _)
//   \. \, \- \( \á ...  -> the literal character (escaped where ERE needs it)
//   \n \t \xhh \uXXXX.. -> the literal character
//   (?:...) (?P<n>...)  -> (...)          (?i) (?m) (?u) -> dropped (always on)
//   *? +? ?? {m,n}?     -> * + ? {m,n}   (laziness never changes whether a
//                                         match exists, the only question asked)
//   [..é..]             -> ([..]|é)       (a non-ASCII member becomes an
//                                         alternative: brackets are bytes)
// Rejected (PHREX_ERR_INPUT; DPR counts a pattern Python cannot compile as
// no match, and these count the same): lookarounds, backreferences,
// conditionals, \A \Z, (?s) (?x) (?a), possessive quantifiers, repeats over
// 255, negated classes with non-ASCII members, non-ASCII ranges, and
// whatever Python itself rejects (nothing to repeat, bad escape,
// unbalanced parentheses).
// Known byte-level differences: '.' and [^..] consume one byte, so "a.b"
// does not match "aéb"; \w and \b see non-ASCII letters as non-word.
//
// PHREX_REGEX_NFD_SOURCE mirrors a quirk of DPR's has_answer, which runs
// unicodedata.normalize("NFD") over the pattern text itself before
// compiling it: an escaped accented letter "\é" turns into "\e" + U+0301
// (a bad escape, so the whole pattern fails and never matches), and a class
// "[eé]" into "[ee\u0301]" (which no longer matches "é" in NFD text).
// Among the 694 CuratedTREC test patterns this changes a handful of
// answers; without the flag patterns mean what their authors wrote.
#ifndef PHREX_DATA_PYREGEX_H
#define PHREX_DATA_PYREGEX_H

typedef struct phrex_regex phrex_regex;

enum { PHREX_REGEX_NFD_SOURCE = 1 };

// Translates and compiles a Python pattern; flags: 0 or PHREX_REGEX_NFD_SOURCE.
int phrex_regex_init(phrex_regex **out, const char *pattern, unsigned flags);
void phrex_regex_free(phrex_regex *re);

// DPR's regex_match (has_answer, match_type="regex"): re.search, a match
// anywhere in the text. *found = 1 or 0.
int phrex_regex_search(const phrex_regex *re, const char *text, int *found);

// DrQA's / DensePhrases' regex_match_score (CuratedTREC EM): re.match, a
// match that starts at the start of the text (it need not reach the end).
int phrex_regex_match(const phrex_regex *re, const char *text, int *found);

// The folding applied to texts (see above), as a malloc'd string, so that
// a caller trying many patterns on one text folds it once.
int phrex_regex_fold(const char *text, char **folded);
// search / match on a text already folded by phrex_regex_fold.
int phrex_regex_exec_folded(const phrex_regex *re, const char *folded, int anchored, int *found);

// The POSIX ERE a Python pattern translates to (malloc'd), for tests and
// debugging.
int phrex_regex_translate(const char *pattern, unsigned flags, char **posix);

// The ERE a compiled pattern was translated to.
const char *phrex_regex_posix(const phrex_regex *re);

#endif
