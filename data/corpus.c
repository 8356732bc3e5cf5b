#include "corpus.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "common/error.h"
#include "common/utf8.h"
#include "csv.h"
#include "jsonpos.h"
#include "lines.h"

enum { COL_ID, COL_TEXT, COL_TITLE, N_COLS };
static const char *const COL_NAMES[N_COLS] = {"id", "text", "title"};

struct phrex_corpus {
    phrex_corpus_options opts;
    phrex_corpus_format format;      // of the corpus (after detection)
    phrex_corpus_format file_format; // of the file being read (a directory may mix both WikiExtractor flavours)
    size_t n_bad, n_docs;
    int fatal; // an error that skip_bad cannot step over (I/O, a line over the cap, a broken JSON document)
    int detect_each; // a directory read with format AUTO: detect each file's flavour

    char **files; // what to read, in order
    size_t n_files, next_file;
    const char *file; // files[next_file - 1]

    // DPR TSV
    phrex_csv *csv;
    int header_checked;
    size_t col_of[N_COLS];            // file column of id, text, title
    const char *file_names[N_COLS];   // column names in file order, for messages

    // WikiExtractor, both flavours
    phrex_lines *lines;
    int in_doc, skipping_doc, title_line_pending;
    size_t doc_line, para_i;
    phrex_buf doc_id, doc_title, id, replay;
    int has_replay;        // `replay` holds a "<doc" line still to be read
    cJSON *json_doc;       // the --json document being split into paragraphs
    char *json_next;       // its next paragraph inside the text value (NULL when done)

    // SQuAD JSON
    char *file_buf;
    size_t file_len;
    cJSON *root;
    cJSON *article, *para;
    int article_open;
    size_t article_line, article_column;
    phrex_jsonpos article_pos, para_pos;

    phrex_buf where_buf;
    const char *where; // "file:line[:column]" of the record being read, for messages
};

// --- formats ----------------------------------------------------------------

const char *phrex_corpus_format_name(phrex_corpus_format format) {
    switch (format) {
    case PHREX_CORPUS_AUTO: return "auto";
    case PHREX_CORPUS_DPR_TSV: return "dpr-tsv";
    case PHREX_CORPUS_WIKIEXTRACTOR: return "wikiextractor";
    case PHREX_CORPUS_WIKIEXTRACTOR_JSON: return "wikiextractor-json";
    case PHREX_CORPUS_SQUAD_JSON: return "squad-json";
    }
    return "?";
}

int phrex_corpus_parse_format(const char *name, phrex_corpus_format *out) {
    for (int f = PHREX_CORPUS_AUTO; f <= PHREX_CORPUS_SQUAD_JSON; f++) {
        if (strcmp(name, phrex_corpus_format_name((phrex_corpus_format)f)) == 0) {
            *out = (phrex_corpus_format)f;
            return PHREX_OK;
        }
    }
    return phrex_fail(PHREX_ERR_INPUT,
                      "unknown corpus format '%s' (expected auto, dpr-tsv, wikiextractor, wikiextractor-json, squad-json)",
                      name);
}

// Guesses a file's format from its first bytes: "<doc" is WikiExtractor;
// "{" is WikiExtractor JSON when the first key is one of its keys (a
// WikiExtractor line is a whole article, often too long to parse from a
// peek), else SQuAD JSON; anything else is DPR TSV.
static int detect_format(const char *path, phrex_corpus_format *out) {
    char head[4096];
    size_t n;
    int rc = phrex_lines_peek_file(path, head, sizeof head - 1, &n);
    if (rc) return rc;
    head[n] = '\0';
    size_t i = (n >= 3 && memcmp(head, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\r' || head[i] == '\n')) i++;
    if (strncmp(head + i, "<doc", 4) == 0 || i == n) {
        *out = PHREX_CORPUS_WIKIEXTRACTOR;
    } else if (head[i] == '{') {
        const char *q = strchr(head + i, '"');
        static const char *const wiki_keys[] = {"\"id\"", "\"url\"", "\"title\"", "\"text\"", "\"revid\""};
        *out = PHREX_CORPUS_SQUAD_JSON;
        for (size_t k = 0; q && k < sizeof wiki_keys / sizeof *wiki_keys; k++)
            if (strncmp(q, wiki_keys[k], strlen(wiki_keys[k])) == 0) *out = PHREX_CORPUS_WIKIEXTRACTOR_JSON;
    } else {
        *out = PHREX_CORPUS_DPR_TSV;
    }
    return PHREX_OK;
}

// --- file list --------------------------------------------------------------

static int add_file(phrex_corpus *c, const char *path, size_t *cap) {
    if (c->n_files == *cap) {
        size_t grown_cap = *cap ? *cap * 2 : 16;
        char **grown = realloc(c->files, grown_cap * sizeof *grown);
        if (!grown) return phrex_fail(PHREX_ERR_MEMORY, "out of memory listing files");
        c->files = grown;
        *cap = grown_cap;
    }
    c->files[c->n_files] = strdup(path);
    if (!c->files[c->n_files]) return phrex_fail(PHREX_ERR_MEMORY, "out of memory listing files");
    c->n_files++;
    return PHREX_OK;
}

// Every regular file named wiki_* below dir, as WikiExtractor lays them out.
static int collect_wiki_files(phrex_corpus *c, const char *dir, size_t *cap) {
    DIR *d = opendir(dir);
    if (!d) return phrex_fail(PHREX_ERR_IO, "%s: cannot open directory", dir);
    int rc = PHREX_OK;
    phrex_buf path = {0};
    struct dirent *e;
    while (rc == PHREX_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; // ".", ".." and hidden files
        rc = phrex_buf_printf(&path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (rc || stat(path.data, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) rc = collect_wiki_files(c, path.data, cap);
        else if (S_ISREG(st.st_mode) && strncmp(e->d_name, "wiki_", 5) == 0) rc = add_file(c, path.data, cap);
    }
    closedir(d);
    phrex_buf_free(&path);
    return rc;
}

static int compare_paths(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// --- init / free ------------------------------------------------------------

int phrex_corpus_init(phrex_corpus **out, const char *path, const phrex_corpus_options *opts) {
    *out = NULL;
    phrex_corpus *c = calloc(1, sizeof *c);
    if (!c) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    if (opts) c->opts = *opts;
    c->format = c->opts.format;
    for (int k = 0; k < N_COLS; k++) {
        c->col_of[k] = (size_t)k;
        c->file_names[k] = COL_NAMES[k];
    }

    struct stat st;
    int rc = PHREX_OK;
    size_t cap = 0;
    if (stat(path, &st) != 0) {
        rc = phrex_fail(PHREX_ERR_IO, "%s: no such file or directory", path);
    } else if (S_ISDIR(st.st_mode)) {
        if (c->format == PHREX_CORPUS_DPR_TSV || c->format == PHREX_CORPUS_SQUAD_JSON)
            rc = phrex_fail(PHREX_ERR_INPUT, "%s: a directory, but format %s reads one file", path,
                            phrex_corpus_format_name(c->format));
        if (rc == PHREX_OK) rc = collect_wiki_files(c, path, &cap);
        if (rc == PHREX_OK && c->n_files == 0) rc = phrex_fail(PHREX_ERR_INPUT, "%s: no wiki_* files below it", path);
        if (rc == PHREX_OK) qsort(c->files, c->n_files, sizeof *c->files, compare_paths);
        if (c->format == PHREX_CORPUS_AUTO) {
            c->format = PHREX_CORPUS_WIKIEXTRACTOR;
            c->detect_each = 1;
        }
    } else {
        rc = add_file(c, path, &cap);
        if (rc == PHREX_OK && c->format == PHREX_CORPUS_AUTO) rc = detect_format(path, &c->format);
    }
    if (rc) {
        phrex_corpus_free(c);
        return rc;
    }
    *out = c;
    return PHREX_OK;
}

static void close_file(phrex_corpus *c) {
    phrex_csv_free(c->csv);
    c->csv = NULL;
    phrex_lines_free(c->lines);
    c->lines = NULL;
    cJSON_Delete(c->json_doc);
    c->json_doc = NULL;
    c->json_next = NULL;
    cJSON_Delete(c->root);
    c->root = NULL;
    free(c->file_buf);
    c->file_buf = NULL;
    c->in_doc = c->skipping_doc = c->has_replay = 0;
}

void phrex_corpus_free(phrex_corpus *c) {
    if (!c) return;
    close_file(c);
    for (size_t i = 0; i < c->n_files; i++) free(c->files[i]);
    free(c->files);
    phrex_buf_free(&c->doc_id);
    phrex_buf_free(&c->doc_title);
    phrex_buf_free(&c->id);
    phrex_buf_free(&c->replay);
    phrex_buf_free(&c->where_buf);
    free(c);
}

size_t phrex_corpus_count_bad(const phrex_corpus *c) { return c->n_bad; }
size_t phrex_corpus_count_docs(const phrex_corpus *c) { return c->n_docs; }
phrex_corpus_format phrex_corpus_get_format(const phrex_corpus *c) { return c->format; }

// Opens the next file of the list; *opened = 0 when none is left.
static int open_next_file(phrex_corpus *c, int *opened) {
    *opened = 0;
    close_file(c);
    if (c->next_file == c->n_files) return PHREX_OK;
    c->file = c->files[c->next_file++];
    c->file_format = c->format;
    int rc = PHREX_OK;
    if (c->detect_each) rc = detect_format(c->file, &c->file_format);
    if (rc == PHREX_OK && c->detect_each && c->file_format != PHREX_CORPUS_WIKIEXTRACTOR &&
        c->file_format != PHREX_CORPUS_WIKIEXTRACTOR_JSON)
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: not WikiExtractor output", c->file);
    if (rc == PHREX_OK) {
        switch (c->file_format) {
        case PHREX_CORPUS_DPR_TSV:
            c->header_checked = 0;
            rc = phrex_csv_init(&c->csv, c->file, '\t', c->opts.max_record_bytes);
            break;
        case PHREX_CORPUS_WIKIEXTRACTOR:
        case PHREX_CORPUS_WIKIEXTRACTOR_JSON:
            rc = phrex_lines_init(&c->lines, c->file, c->opts.max_record_bytes);
            break;
        default: break; // SQuAD JSON loads on first read
        }
    }
    if (rc) {
        c->fatal = 1;
        return rc;
    }
    *opened = 1;
    return PHREX_OK;
}

static void locate(phrex_corpus *c, size_t line, size_t column) {
    c->where = phrex_data_format_where(&c->where_buf, c->file, line, column);
}

static void set_passage(phrex_passage *out, const phrex_corpus *c, const char *id, size_t id_len, const char *title,
                        size_t title_len, const char *text, size_t text_len, size_t line, size_t column) {
    out->id = id;
    out->id_len = id_len;
    out->title = title;
    out->title_len = title_len;
    out->text = text;
    out->text_len = text_len;
    out->file = c->file;
    out->line = line;
    out->column = column;
}

// --- DPR TSV ----------------------------------------------------------------

// A first row naming exactly id, text and title (any order) is the header.
static int tsv_take_header(phrex_corpus *c) {
    if (phrex_csv_count_fields(c->csv) != N_COLS) return 0;
    size_t col_of[N_COLS] = {0, 1, 2};
    int seen = 0;
    for (size_t f = 0; f < N_COLS; f++) {
        const char *name = phrex_csv_field(c->csv, f, NULL);
        for (int k = 0; k < N_COLS; k++)
            if (strcmp(name, COL_NAMES[k]) == 0 && !(seen & (1 << k))) {
                col_of[k] = f;
                seen |= 1 << k;
            }
    }
    if (seen != (1 << N_COLS) - 1) return 0;
    for (int k = 0; k < N_COLS; k++) {
        c->col_of[k] = col_of[k];
        c->file_names[col_of[k]] = COL_NAMES[k];
    }
    return 1;
}

static int tsv_next(phrex_corpus *c, phrex_passage *out, int *has) {
    for (;;) {
        int rec;
        phrex_csv_set_names(c->csv, c->file_names, N_COLS);
        int rc = phrex_csv_next(c->csv, &rec);
        if (rc) return rc;
        if (!rec) return PHREX_OK;
        if (!c->header_checked) {
            c->header_checked = 1;
            if (tsv_take_header(c)) continue;
        }
        size_t line = phrex_csv_line(c->csv);
        locate(c, line, 0);
        size_t n = phrex_csv_count_fields(c->csv);
        if (n < N_COLS)
            return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' missing (%zu field%s, expected %d)", c->where,
                              c->file_names[n], n, n == 1 ? "" : "s", N_COLS);
        if (n > N_COLS)
            return phrex_fail(PHREX_ERR_FORMAT, "%s: %zu fields, expected %d (%s, %s, %s)", c->where, n, N_COLS,
                              c->file_names[0], c->file_names[1], c->file_names[2]);
        const char *v[N_COLS];
        size_t len[N_COLS];
        for (int k = 0; k < N_COLS; k++) {
            v[k] = phrex_csv_field(c->csv, c->col_of[k], &len[k]);
            rc = phrex_data_check_field(c->where, COL_NAMES[k], v[k], len[k]);
            if (rc) return rc;
        }
        if (len[COL_ID] == 0) return phrex_fail(PHREX_ERR_FORMAT, "%s: field 'id' empty", c->where);
        c->n_docs++;
        set_passage(out, c, v[COL_ID], len[COL_ID], v[COL_TITLE], len[COL_TITLE], v[COL_TEXT], len[COL_TEXT], line, 0);
        *has = 1;
        return PHREX_OK;
    }
}

// --- WikiExtractor <doc> blocks ---------------------------------------------

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

// Appends s[0, n) to b with the XML entities WikiExtractor writes in
// attributes (&amp; &quot; &lt; &gt; &apos; &#N; &#xN;) decoded; anything
// else is kept as it is.
static int append_unescaped(phrex_buf *b, const char *s, size_t n) {
    static const struct { const char *name; char ch; } named[] = {
        {"amp;", '&'}, {"quot;", '"'}, {"lt;", '<'}, {"gt;", '>'}, {"apos;", '\''}};
    size_t i = 0;
    while (i < n) {
        const char *amp = memchr(s + i, '&', n - i);
        size_t stop = amp ? (size_t)(amp - s) : n;
        int rc = phrex_buf_append(b, s + i, stop - i);
        if (rc) return rc;
        i = stop;
        if (!amp) break;
        size_t used = 0;
        char decoded[4];
        size_t dlen = 0;
        for (size_t k = 0; k < sizeof named / sizeof *named && !used; k++) {
            size_t l = strlen(named[k].name);
            if (n - i - 1 >= l && memcmp(s + i + 1, named[k].name, l) == 0) {
                decoded[0] = named[k].ch;
                dlen = 1;
                used = l + 1;
            }
        }
        if (!used && i + 2 < n && s[i + 1] == '#') {
            int hex = s[i + 2] == 'x' || s[i + 2] == 'X';
            size_t j = i + 2 + (size_t)hex;
            uint32_t cp = 0;
            size_t digits = 0;
            for (; j < n && digits < 8; j++, digits++) {
                char ch = s[j];
                int d = (ch >= '0' && ch <= '9') ? ch - '0'
                        : (hex && ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
                        : (hex && ch >= 'A' && ch <= 'F') ? ch - 'A' + 10 : -1;
                if (d < 0) break;
                cp = cp * (hex ? 16 : 10) + (uint32_t)d;
            }
            if (digits > 0 && j < n && s[j] == ';') {
                dlen = phrex_utf8_encode(cp, decoded);
                if (dlen) used = j + 1 - i;
            }
        }
        if (!used) { // not an entity we know: keep the '&'
            decoded[0] = '&';
            dlen = 1;
            used = 1;
        }
        rc = phrex_buf_append(b, decoded, dlen);
        if (rc) return rc;
        i += used;
    }
    return PHREX_OK;
}

// Parses `<doc id=".." url=".." title="..">` into doc_id and doc_title.
static int parse_doc_header(phrex_corpus *c, const char *line, size_t n, size_t line_no) {
    locate(c, line_no, 0);
    int rc = phrex_data_check_field(c->where, "<doc>", line, n);
    if (rc) return rc;
    int have_id = 0, have_title = 0;
    size_t i = 4; // after "<doc"
    for (;;) {
        while (i < n && line[i] == ' ') i++;
        if (i < n && line[i] == '>') break;
        size_t name = i;
        while (i < n && line[i] != '=' && line[i] != ' ' && line[i] != '>') i++;
        size_t name_len = i - name;
        if (name_len == 0 || i + 1 >= n || line[i] != '=' || line[i + 1] != '"')
            return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: malformed <doc> header at byte %zu", c->file, line_no, i);
        size_t value = i + 2;
        const char *close = memchr(line + value, '"', n - value);
        if (!close)
            return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: malformed <doc> header: unterminated attribute value",
                              c->file, line_no);
        size_t value_len = (size_t)(close - line) - value;
        if (name_len == 2 && memcmp(line + name, "id", 2) == 0) {
            phrex_buf_clear(&c->doc_id);
            rc = append_unescaped(&c->doc_id, line + value, value_len);
            have_id = 1;
        } else if (name_len == 5 && memcmp(line + name, "title", 5) == 0) {
            phrex_buf_clear(&c->doc_title);
            rc = append_unescaped(&c->doc_title, line + value, value_len);
            have_title = 1;
        }
        if (rc) return rc;
        i = (size_t)(close - line) + 1;
    }
    if (!have_id || c->doc_id.len == 0)
        return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: field 'id' missing in <doc> header", c->file, line_no);
    if (!have_title)
        return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: field 'title' missing in <doc> header", c->file, line_no);
    return PHREX_OK;
}

static int starts_with(const char *s, size_t n, const char *prefix) {
    size_t l = strlen(prefix);
    return n >= l && memcmp(s, prefix, l) == 0;
}

// Starts a document at a "<doc" line. On a bad header the rest of the
// document is skipped (skip_bad), since its paragraphs have no id.
static int open_doc(phrex_corpus *c, const char *line, size_t n, size_t line_no) {
    c->in_doc = 1;
    c->doc_line = line_no;
    c->para_i = 0;
    c->title_line_pending = 1;
    c->skipping_doc = 0;
    int rc = parse_doc_header(c, line, n, line_no);
    if (rc) c->skipping_doc = 1;
    return rc;
}

static int wiki_next(phrex_corpus *c, phrex_passage *out, int *has) {
    for (;;) {
        char *line;
        size_t n;
        int has_line;
        if (c->has_replay) {
            c->has_replay = 0;
            line = c->replay.data;
            n = c->replay.len;
            has_line = 1;
        } else {
            int rc = phrex_lines_next(c->lines, &line, &n, &has_line);
            if (rc) {
                c->fatal = 1;
                return rc;
            }
        }
        if (!has_line) {
            if (c->in_doc) {
                c->in_doc = 0;
                return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: document '%s' never closed (no '</doc>' before end of file)",
                                  c->file, c->doc_line, c->doc_id.data ? c->doc_id.data : "");
            }
            return PHREX_OK; // this file is done
        }
        size_t line_no = phrex_lines_number(c->lines);
        if (!c->in_doc) {
            if (is_blank(line, n)) continue;
            if (starts_with(line, n, "<doc ") || starts_with(line, n, "<doc>")) {
                int rc = open_doc(c, line, n, line_no);
                if (rc) return rc;
                continue;
            }
            return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: text outside a <doc> block", c->file, line_no);
        }
        if (strcmp(line, "</doc>") == 0) {
            c->in_doc = 0;
            if (!c->skipping_doc) c->n_docs++;
            continue;
        }
        if (starts_with(line, n, "<doc ")) { // the previous document lost its "</doc>"
            int rc = phrex_buf_set(&c->replay, line, n);
            if (rc) return rc;
            c->has_replay = 1;
            c->in_doc = 0;
            return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: '<doc>' inside document '%s' opened at line %zu (missing '</doc>')",
                              c->file, line_no, c->doc_id.data, c->doc_line);
        }
        if (c->skipping_doc) continue;
        if (c->title_line_pending) { // WikiExtractor repeats the title as the first body line
            c->title_line_pending = 0;
            continue;
        }
        if (is_blank(line, n)) continue;
        size_t j = c->para_i++; // a bad paragraph keeps its number: the ids after it stay the same
        locate(c, line_no, 0);
        int rc = phrex_data_check_field(c->where, "text", line, n);
        if (rc) return rc;
        rc = phrex_buf_printf(&c->id, "%s:%zu", c->doc_id.data, j);
        if (rc) return rc;
        set_passage(out, c, c->id.data, c->id.len, c->doc_title.data, c->doc_title.len, line, n, line_no, 0);
        *has = 1;
        return PHREX_OK;
    }
}

// --- WikiExtractor JSON lines -----------------------------------------------

// Next paragraph of the current JSON document, or 0 when it has no more.
static int json_doc_paragraph(phrex_corpus *c, phrex_passage *out) {
    while (c->json_next) {
        char *p = c->json_next;
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        c->json_next = nl ? nl + 1 : NULL;
        if (n > 0 && p[n - 1] == '\r') n--;
        p[n] = '\0';
        int first = c->title_line_pending;
        c->title_line_pending = 0;
        // Some WikiExtractor versions start "text" with the title line.
        if (first && n == c->doc_title.len && memcmp(p, c->doc_title.data, n) == 0) continue;
        if (is_blank(p, n)) continue;
        if (phrex_buf_printf(&c->id, "%s:%zu", c->doc_id.data, c->para_i++)) return -1;
        set_passage(out, c, c->id.data, c->id.len, c->doc_title.data, c->doc_title.len, p, n, c->doc_line, 0);
        return 1;
    }
    return 0;
}

static int json_field_error(const phrex_corpus *c, const char *field, const char *want) {
    return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' %s", c->where, field, want);
}

static int wiki_json_next(phrex_corpus *c, phrex_passage *out, int *has) {
    for (;;) {
        if (c->json_doc) {
            int got = json_doc_paragraph(c, out);
            if (got < 0) return PHREX_ERR_MEMORY;
            if (got) {
                *has = 1;
                return PHREX_OK;
            }
            cJSON_Delete(c->json_doc);
            c->json_doc = NULL;
            c->n_docs++;
        }
        char *line;
        size_t n;
        int has_line;
        int rc = phrex_lines_next(c->lines, &line, &n, &has_line);
        if (rc) {
            c->fatal = 1;
            return rc;
        }
        if (!has_line) return PHREX_OK;
        if (is_blank(line, n)) continue;
        size_t line_no = phrex_lines_number(c->lines);
        locate(c, line_no, 0);
        rc = phrex_data_check_field(c->where, "record", line, n);
        if (rc) return rc;
        const char *end = NULL;
        cJSON *doc = cJSON_ParseWithLengthOpts(line, n, &end, 0);
        if (!doc)
            return phrex_fail(PHREX_ERR_FORMAT, "%s: bad JSON near byte %zu", c->where, end ? (size_t)(end - line) : 0);
        if (!cJSON_IsObject(doc)) {
            cJSON_Delete(doc);
            return json_field_error(c, "record", "is not a JSON object");
        }
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
        const cJSON *title = cJSON_GetObjectItemCaseSensitive(doc, "title");
        cJSON *text = cJSON_GetObjectItemCaseSensitive(doc, "text");
        if (cJSON_IsString(id)) rc = phrex_buf_set(&c->doc_id, id->valuestring, strlen(id->valuestring));
        else if (cJSON_IsNumber(id)) rc = phrex_buf_printf(&c->doc_id, "%.0f", id->valuedouble);
        else rc = json_field_error(c, "id", id ? "is not a string or number" : "missing");
        if (rc == PHREX_OK && !cJSON_IsString(title))
            rc = json_field_error(c, "title", title ? "is not a string" : "missing");
        if (rc == PHREX_OK && !cJSON_IsString(text))
            rc = json_field_error(c, "text", text ? "is not a string" : "missing");
        if (rc == PHREX_OK) rc = phrex_buf_set(&c->doc_title, title->valuestring, strlen(title->valuestring));
        if (rc) {
            cJSON_Delete(doc);
            return rc;
        }
        c->json_doc = doc; // freed after its last paragraph, or at close
        c->json_next = text->valuestring;
        c->doc_line = line_no;
        c->para_i = 0;
        c->title_line_pending = 1;
    }
}

// --- SQuAD JSON -------------------------------------------------------------

static int squad_load(phrex_corpus *c) {
    int rc = phrex_data_read_file(c->file, &c->file_buf, &c->file_len);
    if (rc) {
        c->fatal = 1;
        return rc;
    }
    const char *end = NULL;
    c->root = cJSON_ParseWithLengthOpts(c->file_buf, c->file_len, &end, 0);
    c->fatal = 1; // nothing in a document that does not parse can be skipped
    if (!c->root) {
        size_t at = end ? (size_t)(end - c->file_buf) : 0;
        return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: bad JSON near byte %zu", c->file,
                          phrex_data_find_line(c->file_buf, at), at);
    }
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(c->root, "data");
    if (!cJSON_IsArray(data))
        return phrex_fail(PHREX_ERR_FORMAT, "%s:1: field 'data' %s", c->file, data ? "is not an array" : "missing");
    c->fatal = 0;
    c->article = data->child;
    c->article_open = 0;
    phrex_jsonpos_init(&c->article_pos, c->file_buf, c->file_len, "data");
    phrex_jsonpos_init(&c->para_pos, c->file_buf, c->file_len, "paragraphs");
    return PHREX_OK;
}

// Keeps the paragraph cursor in step when an article's paragraphs are skipped.
static void squad_skip_paragraphs(phrex_corpus *c, const cJSON *paras) {
    for (const cJSON *p = paras ? paras->child : NULL; p; p = p->next)
        if (cJSON_IsObject(p)) phrex_jsonpos_next(&c->para_pos);
}

// Validates the article at c->article; on error moves past it.
static int squad_open_article(phrex_corpus *c) {
    cJSON *a = c->article;
    if (cJSON_IsObject(a)) {
        c->article_line = phrex_jsonpos_next(&c->article_pos);
        c->article_column = c->article_pos.column;
    }
    locate(c, c->article_line, c->article_column);
    if (!cJSON_IsObject(a)) {
        c->article = a->next;
        return phrex_fail(PHREX_ERR_FORMAT, "%s: article %zu is not an object", c->where, c->n_docs);
    }
    const cJSON *title = cJSON_GetObjectItemCaseSensitive(a, "title");
    cJSON *paras = cJSON_GetObjectItemCaseSensitive(a, "paragraphs");
    int rc = PHREX_OK;
    if (!cJSON_IsString(title))
        rc = json_field_error(c, "title", title ? "is not a string" : "missing");
    else if (!cJSON_IsArray(paras))
        rc = json_field_error(c, "paragraphs", paras ? "is not an array" : "missing");
    else
        rc = phrex_data_check_field(c->where, "title", title->valuestring, strlen(title->valuestring));
    if (rc) {
        squad_skip_paragraphs(c, cJSON_IsArray(paras) ? paras : NULL);
        c->article = a->next;
        return rc;
    }
    c->n_docs++;
    c->para = paras->child;
    c->para_i = 0;
    c->article_open = 1;
    return PHREX_OK;
}

static int squad_next(phrex_corpus *c, phrex_passage *out, int *has) {
    if (!c->root) {
        int rc = squad_load(c);
        if (rc) return rc;
    }
    for (;;) {
        if (!c->article) return PHREX_OK;
        if (!c->article_open) {
            int rc = squad_open_article(c);
            if (rc) return rc;
        }
        if (!c->para) {
            c->article = c->article->next;
            c->article_open = 0;
            continue;
        }
        cJSON *p = c->para;
        c->para = p->next;
        size_t j = c->para_i++;
        const char *title = cJSON_GetObjectItemCaseSensitive(c->article, "title")->valuestring;
        if (!cJSON_IsObject(p)) {
            locate(c, c->article_line, c->article_column);
            return phrex_fail(PHREX_ERR_FORMAT, "%s: article '%s': paragraph %zu is not an object", c->where, title, j);
        }
        size_t line = phrex_jsonpos_next(&c->para_pos), column = c->para_pos.column;
        locate(c, line, column);
        const cJSON *context = cJSON_GetObjectItemCaseSensitive(p, "context");
        if (!cJSON_IsString(context))
            return json_field_error(c, "context", context ? "is not a string" : "missing");
        size_t len = strlen(context->valuestring);
        int rc = phrex_data_check_field(c->where, "context", context->valuestring, len);
        if (rc) return rc;
        rc = phrex_buf_printf(&c->id, "%s:%zu", title, j);
        if (rc) return rc;
        set_passage(out, c, c->id.data, c->id.len, title, strlen(title), context->valuestring, len, line, column);
        *has = 1;
        return PHREX_OK;
    }
}

// --- the iterator -------------------------------------------------------------

static int read_one(phrex_corpus *c, phrex_passage *out, int *has) {
    for (;;) {
        if (!c->csv && !c->lines && !c->root) {
            int opened;
            int rc = open_next_file(c, &opened);
            if (rc) return rc;
            if (!opened) return PHREX_OK;
        }
        int rc = PHREX_OK;
        switch (c->file_format) {
        case PHREX_CORPUS_DPR_TSV: rc = tsv_next(c, out, has); break;
        case PHREX_CORPUS_WIKIEXTRACTOR: rc = wiki_next(c, out, has); break;
        case PHREX_CORPUS_WIKIEXTRACTOR_JSON: rc = wiki_json_next(c, out, has); break;
        case PHREX_CORPUS_SQUAD_JSON: rc = squad_next(c, out, has); break;
        default: rc = phrex_fail(PHREX_ERR_INTERNAL, "corpus format not set"); break;
        }
        if (rc || *has) return rc;
        close_file(c); // this file is done: the next loop opens the next one
    }
}

int phrex_corpus_next(phrex_corpus *c, phrex_passage *out, int *has_passage) {
    *has_passage = 0;
    memset(out, 0, sizeof *out);
    for (;;) {
        int rc = read_one(c, out, has_passage);
        if (rc == PHREX_OK || rc != PHREX_ERR_FORMAT || !c->opts.skip_bad || c->fatal) return rc;
        // skip_bad: step over the bad record. The readers have already moved
        // past it, except the CSV reader, which goes back to the line after
        // the one where the bad record started.
        if (c->csv) {
            int sync = phrex_csv_resync(c->csv);
            if (sync) return sync;
        }
        c->n_bad++;
    }
}
