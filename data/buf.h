// Small helpers the data readers share: a growable byte buffer (the
// readers' only memory: each grows to the longest record it ever holds) and
// the validation every text field goes through.
#ifndef PHREX_DATA_BUF_H
#define PHREX_DATA_BUF_H

#include <stddef.h>

typedef struct {
    char *data; // NUL-terminated after every phrex_buf_* call that succeeds
    size_t len;
    size_t cap;
} phrex_buf;

// Ensures room for `extra` more bytes plus a NUL.
int phrex_buf_reserve(phrex_buf *b, size_t extra);
int phrex_buf_append(phrex_buf *b, const char *s, size_t n);
int phrex_buf_set(phrex_buf *b, const char *s, size_t n);
int phrex_buf_printf(phrex_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void phrex_buf_clear(phrex_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}
void phrex_buf_free(phrex_buf *b);

// A list of strings packed in one buffer: what a record's answers live in.
// Build a string with _begin, phrex_buf_append(&list->bytes, ..), _end.
typedef struct {
    phrex_buf bytes;      // the strings, each followed by a NUL
    size_t *offsets, *lens;
    size_t n, cap;
    size_t open;          // offset where the string being built starts
} phrex_strlist;

static inline void phrex_strlist_clear(phrex_strlist *l) {
    phrex_buf_clear(&l->bytes);
    l->n = 0;
}
static inline void phrex_strlist_begin(phrex_strlist *l) { l->open = l->bytes.len; }
int phrex_strlist_end(phrex_strlist *l);
int phrex_strlist_push(phrex_strlist *l, const char *s, size_t n);
static inline const char *phrex_strlist_get(const phrex_strlist *l, size_t i, size_t *len) {
    if (len) *len = l->lens[i];
    return l->bytes.data + l->offsets[i];
}
void phrex_strlist_free(phrex_strlist *l);

// Checks that a text field is valid UTF-8 without NUL bytes. On failure
// returns PHREX_ERR_FORMAT with "WHERE: field 'FIELD': invalid UTF-8 at
// byte N of the field", WHERE being "file:line" (see phrex_data_format_where).
int phrex_data_check_field(const char *where, const char *field, const char *s, size_t n);

// "file:line", or "file:line:column" when column > 0 (JSON documents that
// sit on one line need the column), into b; returns b->data, or `file`
// when out of memory.
const char *phrex_data_format_where(phrex_buf *b, const char *file, size_t line, size_t column);

// Reads a whole file into a malloc'd, NUL-terminated buffer.
int phrex_data_read_file(const char *path, char **out, size_t *len);

// Line number (1-based) of byte `offset` in buf.
size_t phrex_data_find_line(const char *buf, size_t offset);

#endif
