#include "lines.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

#define INITIAL_CAPACITY ((size_t)64 << 10)

struct phrex_lines {
    FILE *fp;
    char *path;
    char *buf;         // holds [start, end) unread bytes, plus 1 spare for a NUL
    size_t cap;
    size_t start, end;
    size_t scanned;    // bytes after `start` already known to hold no '\n'
    uint64_t buf_offset; // file offset of buf[0]
    size_t max_line;
    size_t line_no;
    int eof;
};

int phrex_lines_init(phrex_lines **out, const char *path, size_t max_line) {
    *out = NULL;
    phrex_lines *lr = calloc(1, sizeof *lr);
    if (!lr) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    lr->path = strdup(path);
    lr->cap = INITIAL_CAPACITY;
    lr->buf = malloc(lr->cap);
    lr->max_line = max_line ? max_line : PHREX_LINES_DEFAULT_MAX;
    if (!lr->path || !lr->buf) {
        phrex_lines_free(lr);
        return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    }
    lr->fp = fopen(path, "rb");
    if (!lr->fp) {
        int e = errno;
        phrex_lines_free(lr);
        return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    *out = lr;
    return PHREX_OK;
}

void phrex_lines_free(phrex_lines *lr) {
    if (!lr) return;
    if (lr->fp) fclose(lr->fp);
    free(lr->buf);
    free(lr->path);
    free(lr);
}

// Makes room after `end` by moving unread bytes to the front, then by
// doubling the buffer; fails once one line would exceed max_line.
static int make_room(phrex_lines *lr) {
    if (lr->start > 0) {
        memmove(lr->buf, lr->buf + lr->start, lr->end - lr->start);
        lr->buf_offset += lr->start;
        lr->end -= lr->start;
        lr->start = 0;
    }
    if (lr->end + 1 < lr->cap) return PHREX_OK;
    if (lr->end >= lr->max_line)
        return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: line longer than %zu bytes", lr->path, lr->line_no + 1,
                          lr->max_line);
    size_t cap = lr->cap * 2;
    if (cap > lr->max_line + 2) cap = lr->max_line + 2;
    char *grown = realloc(lr->buf, cap);
    if (!grown) return phrex_fail(PHREX_ERR_MEMORY, "%s:%zu: out of memory for a %zu-byte line", lr->path,
                                  lr->line_no + 1, cap);
    lr->buf = grown;
    lr->cap = cap;
    return PHREX_OK;
}

static int fill(phrex_lines *lr) {
    int rc = make_room(lr);
    if (rc) return rc;
    size_t n = fread(lr->buf + lr->end, 1, lr->cap - 1 - lr->end, lr->fp);
    if (n == 0) {
        if (ferror(lr->fp)) return phrex_fail(PHREX_ERR_IO, "%s:%zu: read error", lr->path, lr->line_no + 1);
        lr->eof = 1;
    }
    lr->end += n;
    return PHREX_OK;
}

int phrex_lines_next(phrex_lines *lr, char **line, size_t *len, int *has_line) {
    *has_line = 0;
    char *text = NULL, *stop = NULL;
    for (;;) {
        size_t from = lr->start + lr->scanned;
        char *nl = memchr(lr->buf + from, '\n', lr->end - from);
        if (nl) {
            text = lr->buf + lr->start;
            stop = nl;
            lr->start = (size_t)(nl - lr->buf) + 1;
            break;
        }
        lr->scanned = lr->end - lr->start;
        if (lr->eof) {
            if (lr->start == lr->end) return PHREX_OK;
            text = lr->buf + lr->start; // last line without '\n'; `end` < cap leaves room for the NUL
            stop = lr->buf + lr->end;
            lr->start = lr->end;
            break;
        }
        int rc = fill(lr);
        if (rc) return rc;
    }
    lr->scanned = 0;
    size_t n = (size_t)(stop - text);
    if (n > lr->max_line) // the buffer may hold more than the cap at once: check the line itself
        return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: line longer than %zu bytes", lr->path, lr->line_no + 1,
                          lr->max_line);
    if (n > 0 && text[n - 1] == '\r') n--;
    text[n] = '\0';
    lr->line_no++;
    if (lr->line_no == 1 && n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        n -= 3;
    }
    *line = text;
    *len = n;
    *has_line = 1;
    return PHREX_OK;
}

size_t phrex_lines_number(const phrex_lines *lr) { return lr->line_no; }

uint64_t phrex_lines_offset(const phrex_lines *lr) { return lr->buf_offset + lr->start; }

int phrex_lines_seek(phrex_lines *lr, uint64_t offset, size_t line_number) {
    if (fseeko(lr->fp, (off_t)offset, SEEK_SET) != 0)
        return phrex_fail(PHREX_ERR_IO, "%s: cannot seek to byte %llu: %s", lr->path, (unsigned long long)offset,
                          strerror(errno));
    lr->start = lr->end = lr->scanned = 0;
    lr->buf_offset = offset;
    lr->eof = 0;
    lr->line_no = line_number > 0 ? line_number - 1 : 0;
    return PHREX_OK;
}

const char *phrex_lines_path(const phrex_lines *lr) { return lr->path; }

int phrex_lines_peek_file(const char *path, char *buf, size_t cap, size_t *got) {
    *got = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    *got = fread(buf, 1, cap, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (bad) return phrex_fail(PHREX_ERR_IO, "%s: read error", path);
    return PHREX_OK;
}
