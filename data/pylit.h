// Python list-of-str literals, as DPR's qa.csv stores answers:
// ['Wilhelm Conrad Röntgen', "O'Neil", 'caf\xe9'].
//
// DPR reads that field with eval(); this parser accepts what
// ast.literal_eval accepts for a list of str: single, double and triple
// quotes, u/r prefixes, adjacent literals concatenated, a trailing comma,
// and the escapes \\ \' \" \a \b \f \n \r \t \v \ooo \xhh \uXXXX \UXXXXXXXX
// and backslash-newline; an unknown escape keeps its backslash, as Python
// does. Not accepted: \N{name}, bytes and f-strings, code points that UTF-8
// cannot hold (lone surrogates) and NUL.
#ifndef PHREX_DATA_PYLIT_H
#define PHREX_DATA_PYLIT_H

#include <stddef.h>

#include "buf.h"

// Appends the strings of the list literal s[0, n) to *out (UTF-8). On
// failure returns PHREX_ERR_FORMAT without setting the thread's message:
// *why says what is wrong and *err_at at which byte of s, for the caller to
// wrap with file, line and field.
int phrex_pylit_parse_list(const char *s, size_t n, phrex_strlist *out, size_t *err_at, const char **why);

#endif
