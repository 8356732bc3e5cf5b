#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/utf8.h"

int phrex_buf_reserve(phrex_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return PHREX_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *grown = realloc(b->data, cap);
    if (!grown) return phrex_fail(PHREX_ERR_MEMORY, "out of memory growing a buffer to %zu bytes", cap);
    b->data = grown;
    b->cap = cap;
    return PHREX_OK;
}

int phrex_buf_append(phrex_buf *b, const char *s, size_t n) {
    int rc = phrex_buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return PHREX_OK;
}

int phrex_buf_set(phrex_buf *b, const char *s, size_t n) {
    b->len = 0;
    return phrex_buf_append(b, s, n);
}

int phrex_buf_printf(phrex_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return phrex_fail(PHREX_ERR_INTERNAL, "vsnprintf failed");
    b->len = 0;
    int rc = phrex_buf_reserve(b, (size_t)n);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf(b->data, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len = (size_t)n;
    return PHREX_OK;
}

void phrex_buf_free(phrex_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int phrex_strlist_end(phrex_strlist *l) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        size_t *o = realloc(l->offsets, cap * sizeof *o);
        if (o) l->offsets = o;
        size_t *n = realloc(l->lens, cap * sizeof *n);
        if (n) l->lens = n;
        if (!o || !n) return phrex_fail(PHREX_ERR_MEMORY, "out of memory growing a string list to %zu", cap);
        l->cap = cap;
    }
    l->offsets[l->n] = l->open;
    l->lens[l->n] = l->bytes.len - l->open;
    l->n++;
    return phrex_buf_append(&l->bytes, "", 1); // the NUL; data[len] is another
}

int phrex_strlist_push(phrex_strlist *l, const char *s, size_t n) {
    phrex_strlist_begin(l);
    int rc = phrex_buf_append(&l->bytes, s, n);
    return rc ? rc : phrex_strlist_end(l);
}

void phrex_strlist_free(phrex_strlist *l) {
    phrex_buf_free(&l->bytes);
    free(l->offsets);
    free(l->lens);
    l->offsets = l->lens = NULL;
    l->n = l->cap = 0;
}

int phrex_data_check_field(const char *where, const char *field, const char *s, size_t n) {
    size_t bad = 0;
    if (!phrex_utf8_check(s, n, &bad))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s': invalid UTF-8 at byte %zu of the field", where, field, bad);
    const char *nul = memchr(s, '\0', n);
    if (nul)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s': NUL byte at byte %zu of the field", where, field,
                          (size_t)(nul - s));
    return PHREX_OK;
}

const char *phrex_data_format_where(phrex_buf *b, const char *file, size_t line, size_t column) {
    int rc = column ? phrex_buf_printf(b, "%s:%zu:%zu", file, line, column) : phrex_buf_printf(b, "%s:%zu", file, line);
    return rc ? file : b->data;
}

int phrex_data_read_file(const char *path, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    phrex_buf b = {0};
    char chunk[1 << 16];
    size_t n;
    int rc = PHREX_OK;
    while (rc == PHREX_OK && (n = fread(chunk, 1, sizeof chunk, fp)) > 0) rc = phrex_buf_append(&b, chunk, n);
    if (rc == PHREX_OK && ferror(fp)) rc = phrex_fail(PHREX_ERR_IO, "%s: read error", path);
    if (rc == PHREX_OK && !b.data) rc = phrex_buf_append(&b, "", 0); // empty file: still a valid string
    fclose(fp);
    if (rc) {
        phrex_buf_free(&b);
        return rc;
    }
    *out = b.data;
    *len = b.len;
    return PHREX_OK;
}

size_t phrex_data_find_line(const char *buf, size_t offset) {
    size_t line = 1;
    for (const char *p = buf; (p = memchr(p, '\n', (size_t)(buf + offset - p))) != NULL; p++) line++;
    return line;
}
