// Text primitives that behave like the Python the reference metrics are
// written in (SQuAD's evaluate script, DPR's has_answer, DrQA's regex
// match), on top of utf8proc's Unicode tables: str.lower(), str.isspace(),
// re's \w, unicodedata.normalize("NFD").
//
// Inputs may be any bytes: an ill-formed UTF-8 sequence decodes as one
// U+FFFD per byte (a metric never fails on a stray byte).
#ifndef PHREX_DATA_PYTEXT_H
#define PHREX_DATA_PYTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct {
    uint32_t *data;
    size_t len, cap;
} phrex_cpvec;

int phrex_cpvec_push(phrex_cpvec *v, uint32_t cp);
void phrex_cpvec_free(phrex_cpvec *v);

// Appends the code points of s[0, n).
int phrex_pytext_decode(const char *s, size_t n, phrex_cpvec *out);

// Appends cps[0, n) as UTF-8 (U+FFFD for what UTF-8 cannot hold).
int phrex_pytext_encode(const uint32_t *cps, size_t n, phrex_buf *out);

// Appends the canonical decomposition (NFD) of cps[0, n): each code point
// fully decomposed, then combining marks put in canonical order.
int phrex_pytext_nfd(const uint32_t *cps, size_t n, phrex_cpvec *out);

// str.lower() of cps[i] inside the string cps[0, n): writes 1 or 2 code
// points to out and returns how many. Beyond the simple mapping this does
// what Python's full mapping does: U+0130 becomes "i" + U+0307, and a
// capital sigma at the end of a word becomes final sigma (U+03C2).
size_t phrex_pytext_lower(const uint32_t *cps, size_t n, size_t i, uint32_t out[2]);

// str.isspace(): the separators str.split() splits on.
int phrex_pytext_is_space(uint32_t cp);

// re's \w for str patterns: str.isalnum() or '_' (letters L*, numbers N*).
int phrex_pytext_is_word(uint32_t cp);

#endif
