#include "csv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "lines.h"

struct phrex_csv {
    phrex_lines *lines;
    char delim;
    size_t max_record;

    char *buf; // unescaped fields, each followed by a NUL
    size_t len, cap;
    size_t *starts, *lens; // per field
    size_t n_fields, fields_cap;

    int fatal;               // the line reader failed: no record boundary to resync to
    size_t record_line;      // line where the current record started
    uint64_t resume_offset;  // file offset of the line after it
    const char *const *names;
    size_t n_names;
};

int phrex_csv_init(phrex_csv **out, const char *path, char delimiter, size_t max_record) {
    *out = NULL;
    phrex_csv *csv = calloc(1, sizeof *csv);
    if (!csv) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    csv->delim = delimiter;
    csv->max_record = max_record ? max_record : PHREX_LINES_DEFAULT_MAX;
    int rc = phrex_lines_init(&csv->lines, path, csv->max_record);
    if (rc) {
        free(csv);
        return rc;
    }
    *out = csv;
    return PHREX_OK;
}

void phrex_csv_free(phrex_csv *csv) {
    if (!csv) return;
    phrex_lines_free(csv->lines);
    free(csv->buf);
    free(csv->starts);
    free(csv->lens);
    free(csv);
}

void phrex_csv_set_names(phrex_csv *csv, const char *const *names, size_t n) {
    csv->names = names;
    csv->n_names = n;
}

const char *phrex_csv_path(const phrex_csv *csv) { return phrex_lines_path(csv->lines); }
size_t phrex_csv_line(const phrex_csv *csv) { return csv->record_line; }
size_t phrex_csv_count_fields(const phrex_csv *csv) { return csv->n_fields; }

char *phrex_csv_field(const phrex_csv *csv, size_t i, size_t *len) {
    if (len) *len = csv->lens[i];
    return csv->buf + csv->starts[i];
}

const char *phrex_csv_field_label(const phrex_csv *csv, size_t i, char *buf, size_t cap) {
    if (i < csv->n_names) snprintf(buf, cap, "'%s'", csv->names[i]);
    else snprintf(buf, cap, "%zu", i + 1);
    return buf;
}

static int append(phrex_csv *csv, const char *s, size_t n) {
    if (csv->len + n + 1 > csv->cap) {
        if (csv->len + n > csv->max_record)
            return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: record longer than %zu bytes (a quote never closed?)",
                              phrex_csv_path(csv), csv->record_line, csv->max_record);
        size_t cap = csv->cap ? csv->cap : 4096;
        while (cap < csv->len + n + 1) cap *= 2;
        char *grown = realloc(csv->buf, cap);
        if (!grown) return phrex_fail(PHREX_ERR_MEMORY, "%s:%zu: out of memory", phrex_csv_path(csv),
                                      csv->record_line);
        csv->buf = grown;
        csv->cap = cap;
    }
    memcpy(csv->buf + csv->len, s, n);
    csv->len += n;
    return PHREX_OK;
}

// Closes the field being built (it started at starts[n_fields]).
static int end_field(phrex_csv *csv) {
    size_t i = csv->n_fields;
    csv->lens[i] = csv->len - csv->starts[i];
    int rc = append(csv, "", 1); // the NUL
    if (rc) return rc;
    csv->n_fields++;
    if (csv->n_fields == csv->fields_cap) {
        size_t cap = csv->fields_cap * 2;
        size_t *s = realloc(csv->starts, cap * sizeof *s);
        if (s) csv->starts = s;
        size_t *l = realloc(csv->lens, cap * sizeof *l);
        if (l) csv->lens = l;
        if (!s || !l) return phrex_fail(PHREX_ERR_MEMORY, "%s:%zu: out of memory", phrex_csv_path(csv),
                                        csv->record_line);
        csv->fields_cap = cap;
    }
    csv->starts[csv->n_fields] = csv->len;
    return PHREX_OK;
}

enum { FIELD_START, UNQUOTED, QUOTED, QUOTE_CLOSED };

// Parses one physical line into the current record; *state carries a quoted
// field over to the next line.
static int parse_line(phrex_csv *csv, const char *line, size_t n, int *state) {
    char label[64];
    size_t i = 0;
    int rc = PHREX_OK;
    while (i < n && rc == PHREX_OK) {
        char c = line[i];
        switch (*state) {
        case FIELD_START:
            if (c == csv->delim) {
                rc = end_field(csv);
                i++;
            } else if (c == '"') {
                *state = QUOTED;
                i++;
            } else {
                *state = UNQUOTED;
            }
            break;
        case UNQUOTED: { // copy up to the next delimiter in one go
            const char *d = memchr(line + i, csv->delim, n - i);
            size_t stop = d ? (size_t)(d - line) : n;
            rc = append(csv, line + i, stop - i);
            i = stop;
            if (d && rc == PHREX_OK) {
                rc = end_field(csv);
                *state = FIELD_START;
                i++;
            }
            break;
        }
        case QUOTED: { // copy up to the next quote in one go
            const char *q = memchr(line + i, '"', n - i);
            size_t stop = q ? (size_t)(q - line) : n;
            rc = append(csv, line + i, stop - i);
            i = stop;
            if (q && rc == PHREX_OK) {
                if (i + 1 < n && line[i + 1] == '"') {
                    rc = append(csv, "\"", 1);
                    i += 2;
                } else {
                    *state = QUOTE_CLOSED;
                    i++;
                }
            }
            break;
        }
        case QUOTE_CLOSED:
            if (c != csv->delim)
                return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: field %s: unexpected character '%c' after closing quote",
                                  phrex_csv_path(csv), phrex_lines_number(csv->lines),
                                  phrex_csv_field_label(csv, csv->n_fields, label, sizeof label),
                                  (c >= 32 && c < 127) ? c : '?');
            rc = end_field(csv);
            *state = FIELD_START;
            i++;
            break;
        }
    }
    return rc;
}

int phrex_csv_next(phrex_csv *csv, int *has_record) {
    *has_record = 0;
    char *line;
    size_t n;
    int has;
    do { // blank lines between records carry nothing
        int rc = phrex_lines_next(csv->lines, &line, &n, &has);
        if (rc) return csv->fatal = rc;
        if (!has) return PHREX_OK;
    } while (n == 0);

    csv->record_line = phrex_lines_number(csv->lines);
    csv->resume_offset = phrex_lines_offset(csv->lines);
    csv->len = 0;
    csv->n_fields = 0;
    if (!csv->starts) {
        csv->fields_cap = 8;
        csv->starts = malloc(csv->fields_cap * sizeof *csv->starts);
        csv->lens = malloc(csv->fields_cap * sizeof *csv->lens);
        if (!csv->starts || !csv->lens) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", phrex_csv_path(csv));
    }
    csv->starts[0] = 0;

    int state = FIELD_START;
    for (;;) {
        int rc = parse_line(csv, line, n, &state);
        if (rc) return rc;
        if (state != QUOTED) break;
        // The quoted field goes on: the line end is part of it.
        rc = append(csv, "\n", 1);
        if (rc) return rc;
        rc = phrex_lines_next(csv->lines, &line, &n, &has);
        if (rc) return csv->fatal = rc;
        if (!has) {
            char label[64];
            return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: field %s: unterminated quote (end of file reached)",
                              phrex_csv_path(csv), csv->record_line,
                              phrex_csv_field_label(csv, csv->n_fields, label, sizeof label));
        }
    }
    int rc = end_field(csv);
    if (rc) return rc;
    *has_record = 1;
    return PHREX_OK;
}

int phrex_csv_resync(phrex_csv *csv) {
    if (csv->fatal) return csv->fatal; // the message of the original failure stands
    if (csv->record_line == 0) return PHREX_OK;
    return phrex_lines_seek(csv->lines, csv->resume_offset, csv->record_line + 1);
}
