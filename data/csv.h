// A streaming reader for delimiter-separated records as Python's csv module
// writes them (the DPR psgs_w100.tsv and qa.csv files): a field that starts
// with '"' is quoted, "" inside it is one quote, and a quoted field may hold
// the delimiter and newlines, so one record may span several lines.
//
// Deliberate differences from Python's reader (strict=False):
// - text after a closing quote other than the delimiter (`"ab"c`) is an
//   error here, not silently glued on; Python's writer never produces it;
// - a newline inside a quoted field comes back as "\n" even when the file
//   used "\r\n";
// - blank lines between records are skipped (Python returns an empty row);
// - only "\n" and "\r\n" end a line: a bare "\r" is data (Python's reader,
//   on a file opened with newline='', also ends a line there).
#ifndef PHREX_DATA_CSV_H
#define PHREX_DATA_CSV_H

#include <stddef.h>

typedef struct phrex_csv phrex_csv;

// max_record bounds one record (0: PHREX_LINES_DEFAULT_MAX), so that an
// unterminated quote fails instead of reading the whole file into memory.
int phrex_csv_init(phrex_csv **out, const char *path, char delimiter, size_t max_record);
void phrex_csv_free(phrex_csv *csv);

// Names the fields for error messages ("field 'title'" instead of
// "field 3"). `names` must outlive the reader.
void phrex_csv_set_names(phrex_csv *csv, const char *const *names, size_t n);

// Reads the next record; *has_record = 0 at end of file. On error the
// message names the file, the line and the field; phrex_csv_resync then
// skips the bad record.
int phrex_csv_next(phrex_csv *csv, int *has_record);

// After an error: continue at the line after the one where the bad record
// started (a stray quote must not swallow the records that follow it).
// Returns the original error code, message untouched, when the failure
// leaves no record boundary to go back to (I/O error, line over the cap).
int phrex_csv_resync(phrex_csv *csv);

size_t phrex_csv_count_fields(const phrex_csv *csv);

// Field i of the last record, NUL-terminated, writable, valid until the
// next call. Embedded NULs are possible: trust *len, not strlen.
char *phrex_csv_field(const phrex_csv *csv, size_t i, size_t *len);

// 1-based line where the last record (or the failed one) started.
size_t phrex_csv_line(const phrex_csv *csv);

const char *phrex_csv_path(const phrex_csv *csv);

// "'title'" for a named field, else "3" (1-based), into buf: for messages.
const char *phrex_csv_field_label(const phrex_csv *csv, size_t i, char *buf, size_t cap);

#endif
