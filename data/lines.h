// A buffered line reader with line numbers and file offsets: the one place
// where data readers touch stdio. Memory is one buffer that grows to the
// longest line (capped), so reading a 13 GB corpus takes as much memory as
// its longest record.
#ifndef PHREX_DATA_LINES_H
#define PHREX_DATA_LINES_H

#include <stddef.h>
#include <stdint.h>

typedef struct phrex_lines phrex_lines;

// Default cap on one line: far above any real record, low enough that a
// binary file or a runaway quote fails instead of eating memory.
#define PHREX_LINES_DEFAULT_MAX ((size_t)64 << 20)

// Opens `path` for reading. max_line = 0 means PHREX_LINES_DEFAULT_MAX.
int phrex_lines_init(phrex_lines **out, const char *path, size_t max_line);
void phrex_lines_free(phrex_lines *lr);

// Next line, without its "\n" or "\r\n", NUL-terminated in place. The bytes
// are writable and stay valid until the next call. A UTF-8 byte order mark
// at the start of the file is dropped. *has_line = 0 at end of file.
int phrex_lines_next(phrex_lines *lr, char **line, size_t *len, int *has_line);

// 1-based number of the line last returned (0 before the first).
size_t phrex_lines_number(const phrex_lines *lr);

// File offset just past the line last returned (where the next line starts).
uint64_t phrex_lines_offset(const phrex_lines *lr);

// Moves to file offset `offset`, which must be the start of line number
// `line_number` (as remembered from phrex_lines_offset / _number): used to
// resume after a bad multi-line record.
int phrex_lines_seek(phrex_lines *lr, uint64_t offset, size_t line_number);

// The path given to init.
const char *phrex_lines_path(const phrex_lines *lr);

// Reads up to cap bytes from the start of `path` (for format detection).
// Returns the number read in *got.
int phrex_lines_peek_file(const char *path, char *buf, size_t cap, size_t *got);

#endif
