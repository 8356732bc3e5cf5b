#include "qa.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "common/error.h"
#include "common/utf8.h"
#include "csv.h"
#include "jsonpos.h"
#include "lines.h"
#include "pylit.h"

static const char *const CSV_NAMES[] = {"question", "answers", "id"};

struct phrex_qa_reader {
    phrex_qa_options opts;
    phrex_qa_format format;
    char *path;
    size_t n_bad;
    int fatal; // an error skip_bad cannot step over

    // JSON lines
    phrex_lines *lines;
    cJSON *doc; // the current line's record

    // DPR qa.csv
    phrex_csv *csv;

    // SQuAD JSON
    char *file_buf;
    size_t file_len;
    cJSON *root;
    cJSON *item, *para, *qa; // the next of each to read
    int item_open, para_open;
    size_t item_line, item_column; // where the current "data" element starts
    const char *title, *context;
    size_t context_len, context_chars;
    phrex_jsonpos data_pos, qas_pos;

    // the record handed out
    phrex_strlist texts; // answers parsed from a Python literal
    phrex_qa_answer *answers;
    const char **answer_texts;
    size_t answers_cap;
    phrex_buf id;
    phrex_buf where_buf;
    const char *where; // "file:line[:column]" of the record being read, for messages
};

// --- formats ----------------------------------------------------------------

const char *phrex_qa_format_name(phrex_qa_format format) {
    switch (format) {
    case PHREX_QA_AUTO: return "auto";
    case PHREX_QA_JSONL: return "jsonl";
    case PHREX_QA_DPR_CSV: return "dpr-csv";
    case PHREX_QA_SQUAD_JSON: return "squad-json";
    }
    return "?";
}

int phrex_qa_parse_format(const char *name, phrex_qa_format *out) {
    for (int f = PHREX_QA_AUTO; f <= PHREX_QA_SQUAD_JSON; f++) {
        if (strcmp(name, phrex_qa_format_name((phrex_qa_format)f)) == 0) {
            *out = (phrex_qa_format)f;
            return PHREX_OK;
        }
    }
    return phrex_fail(PHREX_ERR_INPUT, "unknown QA format '%s' (expected auto, jsonl, dpr-csv, squad-json)", name);
}

// "{" whose first key is "data" or "version" is one SQuAD-style document;
// any other "{" starts JSON lines; anything else is a DPR qa.csv.
static int detect_format(const char *path, phrex_qa_format *out) {
    char head[4096];
    size_t n;
    int rc = phrex_lines_peek_file(path, head, sizeof head - 1, &n);
    if (rc) return rc;
    head[n] = '\0';
    size_t i = (n >= 3 && memcmp(head, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\r' || head[i] == '\n')) i++;
    if (head[i] != '{') {
        *out = PHREX_QA_DPR_CSV;
        return PHREX_OK;
    }
    const char *q = strchr(head + i, '"');
    int squad = q && (strncmp(q, "\"data\"", 6) == 0 || strncmp(q, "\"version\"", 9) == 0);
    *out = squad ? PHREX_QA_SQUAD_JSON : PHREX_QA_JSONL;
    return PHREX_OK;
}

// --- init / free ------------------------------------------------------------

int phrex_qa_init(phrex_qa_reader **out, const char *path, const phrex_qa_options *opts) {
    *out = NULL;
    phrex_qa_reader *r = calloc(1, sizeof *r);
    if (!r) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    if (opts) r->opts = *opts;
    r->format = r->opts.format;
    r->path = strdup(path);
    int rc = r->path ? PHREX_OK : phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    if (rc == PHREX_OK && r->format == PHREX_QA_AUTO) rc = detect_format(path, &r->format);
    if (rc == PHREX_OK) {
        switch (r->format) {
        case PHREX_QA_JSONL: rc = phrex_lines_init(&r->lines, path, r->opts.max_record_bytes); break;
        case PHREX_QA_DPR_CSV:
            rc = phrex_csv_init(&r->csv, path, '\t', r->opts.max_record_bytes);
            if (rc == PHREX_OK) phrex_csv_set_names(r->csv, CSV_NAMES, 3);
            break;
        case PHREX_QA_SQUAD_JSON: {
            FILE *fp = fopen(path, "rb"); // fail at init, not at the first read, when the file is missing
            if (fp) fclose(fp);
            else rc = phrex_fail(PHREX_ERR_IO, "%s: cannot open", path);
            break;
        }
        default: rc = phrex_fail(PHREX_ERR_INPUT, "%s: bad QA format %d", path, (int)r->format); break;
        }
    }
    if (rc) {
        phrex_qa_free(r);
        return rc;
    }
    *out = r;
    return PHREX_OK;
}

void phrex_qa_free(phrex_qa_reader *r) {
    if (!r) return;
    phrex_lines_free(r->lines);
    cJSON_Delete(r->doc);
    phrex_csv_free(r->csv);
    cJSON_Delete(r->root);
    free(r->file_buf);
    phrex_strlist_free(&r->texts);
    free(r->answers);
    free(r->answer_texts);
    phrex_buf_free(&r->id);
    phrex_buf_free(&r->where_buf);
    free(r->path);
    free(r);
}

size_t phrex_qa_count_bad(const phrex_qa_reader *r) { return r->n_bad; }
phrex_qa_format phrex_qa_get_format(const phrex_qa_reader *r) { return r->format; }

// --- record assembly ----------------------------------------------------------

static int reserve_answers(phrex_qa_reader *r, size_t n) {
    if (n <= r->answers_cap) return PHREX_OK;
    size_t cap = r->answers_cap ? r->answers_cap : 8;
    while (cap < n) cap *= 2;
    phrex_qa_answer *a = realloc(r->answers, cap * sizeof *a);
    if (a) r->answers = a;
    const char **t = realloc(r->answer_texts, cap * sizeof *t);
    if (t) r->answer_texts = t;
    if (!a || !t) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory for %zu answers", r->path, n);
    r->answers_cap = cap;
    return PHREX_OK;
}

static void set_answer(phrex_qa_reader *r, size_t i, const char *text, size_t len, long start_char, long start_byte) {
    r->answers[i] = (phrex_qa_answer){.text = text, .len = len, .start_char = start_char, .start_byte = start_byte};
    r->answer_texts[i] = text;
}

static void set_record(phrex_qa *out, phrex_qa_reader *r, const char *question, size_t n_answers, size_t line,
                       size_t column) {
    memset(out, 0, sizeof *out);
    out->id = r->id.data ? r->id.data : "";
    out->id_len = r->id.len;
    out->question = question;
    out->question_len = strlen(question);
    out->n_answers = n_answers;
    out->answers = r->answers;
    out->answer_texts = r->answer_texts;
    out->file = r->path;
    out->line = line;
    out->column = column;
}

static void locate(phrex_qa_reader *r, size_t line, size_t column) {
    r->where = phrex_data_format_where(&r->where_buf, r->path, line, column);
}

static int field_error(const phrex_qa_reader *r, const char *field, const char *what) {
    return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' %s", r->where, field, what);
}

// A JSON id: strings as they are, integral numbers without a fraction.
static int take_id(phrex_qa_reader *r, const cJSON *id, int required) {
    phrex_buf_clear(&r->id);
    if (cJSON_IsString(id)) {
        size_t n = strlen(id->valuestring);
        int rc = phrex_data_check_field(r->where, "id", id->valuestring, n);
        return rc ? rc : phrex_buf_set(&r->id, id->valuestring, n);
    }
    if (cJSON_IsNumber(id)) {
        double v = id->valuedouble;
        return (v == floor(v) && fabs(v) < 1e15) ? phrex_buf_printf(&r->id, "%.0f", v)
                                                 : phrex_buf_printf(&r->id, "%.17g", v);
    }
    if (id || required) return field_error(r, "id", id ? "is not a string or number" : "missing");
    return phrex_buf_set(&r->id, "", 0);
}

static int take_string(const phrex_qa_reader *r, const cJSON *v, const char *field, const char **out) {
    if (!cJSON_IsString(v)) return field_error(r, field, v ? "is not a string" : "missing");
    int rc = phrex_data_check_field(r->where, field, v->valuestring, strlen(v->valuestring));
    if (rc) return rc;
    *out = v->valuestring;
    return PHREX_OK;
}

// --- JSON lines -------------------------------------------------------------

// 1 when the JSON text holds the escape \u0000: cJSON decodes it into a NUL
// that would silently cut the string short, so it is refused instead.
static int has_escaped_nul(const char *s, size_t n) {
    for (size_t i = 0; i + 6 <= n; i++) {
        if (s[i] != '\\' || memcmp(s + i + 1, "u0000", 5)) continue;
        size_t slashes = 0; // an escape only when an odd run of backslashes ends here
        for (size_t j = i + 1; j-- > 0 && s[j] == '\\';) slashes++;
        if (slashes % 2) return 1;
    }
    return 0;
}

static int jsonl_next(phrex_qa_reader *r, phrex_qa *out, int *has) {
    for (;;) {
        cJSON_Delete(r->doc);
        r->doc = NULL;
        char *line;
        size_t n;
        int has_line;
        int rc = phrex_lines_next(r->lines, &line, &n, &has_line);
        if (rc) {
            r->fatal = 1;
            return rc;
        }
        if (!has_line) return PHREX_OK;
        size_t span = strspn(line, " \t\r");
        if (span == n) continue; // blank line
        size_t line_no = phrex_lines_number(r->lines);
        locate(r, line_no, 0);
        rc = phrex_data_check_field(r->where, "record", line, n);
        if (rc) return rc;
        const char *end = NULL;
        r->doc = cJSON_ParseWithLengthOpts(line, n, &end, 0);
        if (!r->doc)
            return phrex_fail(PHREX_ERR_FORMAT, "%s: bad JSON near byte %zu", r->where, end ? (size_t)(end - line) : 0);
        if (!cJSON_IsObject(r->doc)) return field_error(r, "record", "is not a JSON object");
        if (has_escaped_nul(line, n)) return field_error(r, "record", "holds \\u0000, a NUL character");
        const char *question = NULL;
        rc = take_string(r, cJSON_GetObjectItemCaseSensitive(r->doc, "question"), "question", &question);
        if (rc) return rc;
        const char *key = "answer";
        const cJSON *answers = cJSON_GetObjectItemCaseSensitive(r->doc, key);
        if (!answers) answers = cJSON_GetObjectItemCaseSensitive(r->doc, key = "answers");
        if (!cJSON_IsArray(answers)) return field_error(r, "answer", answers ? "is not an array" : "missing");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(r->doc, "id");
        rc = take_id(r, id ? id : cJSON_GetObjectItemCaseSensitive(r->doc, "qid"), 0);
        if (rc) return rc;
        size_t count = (size_t)cJSON_GetArraySize(answers);
        rc = reserve_answers(r, count);
        if (rc) return rc;
        size_t i = 0;
        for (const cJSON *a = answers->child; a; a = a->next, i++) {
            char field[64];
            snprintf(field, sizeof field, "%s[%zu]", key, i);
            const char *text = NULL;
            rc = take_string(r, a, field, &text);
            if (rc) return rc;
            set_answer(r, i, text, strlen(text), -1, -1);
        }
        set_record(out, r, question, count, line_no, 0);
        *has = 1;
        return PHREX_OK;
    }
}

// --- DPR qa.csv ---------------------------------------------------------------

static int csv_next(phrex_qa_reader *r, phrex_qa *out, int *has) {
    int rec;
    int rc = phrex_csv_next(r->csv, &rec);
    if (rc || !rec) return rc;
    size_t line = phrex_csv_line(r->csv);
    locate(r, line, 0);
    size_t n = phrex_csv_count_fields(r->csv);
    if (n < 2) return phrex_fail(PHREX_ERR_FORMAT, "%s: field 'answers' missing (1 field, expected 2)", r->where);
    if (n > 3)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: %zu fields, expected 2 (question, answers) or 3 (.., id)", r->where, n);
    size_t qlen, alen;
    const char *question = phrex_csv_field(r->csv, 0, &qlen);
    const char *literal = phrex_csv_field(r->csv, 1, &alen);
    rc = phrex_data_check_field(r->where, "question", question, qlen);
    if (rc == PHREX_OK) rc = phrex_data_check_field(r->where, "answers", literal, alen);
    if (rc) return rc;
    phrex_buf_clear(&r->id);
    if (n == 3) {
        size_t idlen;
        const char *id = phrex_csv_field(r->csv, 2, &idlen);
        rc = phrex_data_check_field(r->where, "id", id, idlen);
        if (rc == PHREX_OK) rc = phrex_buf_set(&r->id, id, idlen);
        if (rc) return rc;
    }
    phrex_strlist_clear(&r->texts);
    size_t err_at = 0;
    const char *why = NULL;
    rc = phrex_pylit_parse_list(literal, alen, &r->texts, &err_at, &why);
    if (rc == PHREX_ERR_FORMAT)
        return phrex_fail(rc, "%s: field 'answers': bad Python list literal: %s at byte %zu of the field", r->where,
                          why, err_at);
    if (rc) return rc;
    rc = reserve_answers(r, r->texts.n);
    if (rc) return rc;
    for (size_t i = 0; i < r->texts.n; i++) {
        size_t len;
        const char *text = phrex_strlist_get(&r->texts, i, &len);
        if (memchr(text, '\0', len) != NULL || !phrex_utf8_check(text, len, NULL))
            return phrex_fail(PHREX_ERR_FORMAT, "%s: field 'answers': answer %zu is not valid UTF-8 text", r->where, i);
        set_answer(r, i, text, len, -1, -1);
    }
    set_record(out, r, question, r->texts.n, line, 0);
    *has = 1;
    return PHREX_OK;
}

// --- SQuAD JSON ---------------------------------------------------------------

static int squad_load(phrex_qa_reader *r) {
    r->fatal = 1; // until the document is known good, nothing can be skipped
    free(r->file_buf); // called again after a failed load: start over
    r->file_buf = NULL;
    int rc = phrex_data_read_file(r->path, &r->file_buf, &r->file_len);
    if (rc) return rc;
    const char *end = NULL;
    r->root = cJSON_ParseWithLengthOpts(r->file_buf, r->file_len, &end, 0);
    if (!r->root) {
        size_t at = end ? (size_t)(end - r->file_buf) : 0;
        return phrex_fail(PHREX_ERR_FORMAT, "%s:%zu: bad JSON near byte %zu", r->path,
                          phrex_data_find_line(r->file_buf, at), at);
    }
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(r->root, "data");
    locate(r, 1, 0);
    if (!cJSON_IsArray(data)) return field_error(r, "data", data ? "is not an array" : "missing");
    r->item = data->child;
    phrex_jsonpos_init(&r->data_pos, r->file_buf, r->file_len, "data");
    phrex_jsonpos_init(&r->qas_pos, r->file_buf, r->file_len, "qas");
    r->fatal = 0;
    return PHREX_OK;
}

// Reads answers: SQuAD objects {"text", "answer_start"} or plain strings.
static int squad_answers(phrex_qa_reader *r, const cJSON *answers, size_t *count) {
    if (!cJSON_IsArray(answers)) return field_error(r, "answers", answers ? "is not an array" : "missing");
    *count = (size_t)cJSON_GetArraySize(answers);
    int rc = reserve_answers(r, *count);
    if (rc) return rc;
    size_t i = 0;
    char field[80];
    for (const cJSON *a = answers->child; a; a = a->next, i++) {
        const char *text = NULL;
        long start_char = -1, start_byte = -1;
        if (cJSON_IsString(a)) {
            snprintf(field, sizeof field, "answers[%zu]", i);
            rc = take_string(r, a, field, &text);
            if (rc) return rc;
        } else {
            snprintf(field, sizeof field, "answers[%zu].text", i);
            rc = take_string(r, cJSON_GetObjectItemCaseSensitive(a, "text"), field, &text);
            if (rc) return rc;
            const cJSON *start = cJSON_GetObjectItemCaseSensitive(a, "answer_start");
            snprintf(field, sizeof field, "answers[%zu].answer_start", i);
            if (start && !cJSON_IsNumber(start)) return field_error(r, field, "is not a number");
            if (start) {
                double v = start->valuedouble;
                if (v < 0 || v != floor(v)) return field_error(r, field, "is not a non-negative integer");
                if (!r->context || v > (double)r->context_chars)
                    return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' = %.0f is past the end of the context (%zu code points)",
                                      r->where, field, v, r->context_chars);
                start_char = (long)v;
                size_t byte;
                rc = phrex_utf8_char_to_byte(r->context, r->context_len, (size_t)start_char, &byte);
                if (rc) return rc;
                start_byte = (long)byte;
            }
        }
        set_answer(r, i, text, strlen(text), start_char, start_byte);
    }
    return PHREX_OK;
}

// One question object (from "qas", or a flat "data" element).
static int squad_question(phrex_qa_reader *r, const cJSON *q, size_t line, size_t column, phrex_qa *out) {
    if (!cJSON_IsObject(q)) return field_error(r, "qas", "holds an element that is not an object");
    const char *question = NULL;
    int rc = take_string(r, cJSON_GetObjectItemCaseSensitive(q, "question"), "question", &question);
    if (rc == PHREX_OK) rc = take_id(r, cJSON_GetObjectItemCaseSensitive(q, "id"), 0);
    size_t count = 0;
    if (rc == PHREX_OK) rc = squad_answers(r, cJSON_GetObjectItemCaseSensitive(q, "answers"), &count);
    if (rc) return rc;
    set_record(out, r, question, count, line, column);
    if (r->context) {
        out->context = r->context;
        out->context_len = r->context_len;
        out->title = r->title;
        out->title_len = strlen(r->title);
    }
    return PHREX_OK;
}

// Opens the "data" element at r->item: an article, or a flat question
// (then *flat = 1). On error the element is skipped.
static int squad_open_item(phrex_qa_reader *r, int *flat) {
    cJSON *item = r->item;
    *flat = 0;
    if (!cJSON_IsObject(item)) {
        r->item = item->next;
        return field_error(r, "data", "holds an element that is not an object");
    }
    r->item_line = phrex_jsonpos_next(&r->data_pos);
    r->item_column = r->data_pos.column;
    locate(r, r->item_line, r->item_column);
    cJSON *paras = cJSON_GetObjectItemCaseSensitive(item, "paragraphs");
    if (!paras && cJSON_GetObjectItemCaseSensitive(item, "question")) {
        *flat = 1;
        return PHREX_OK;
    }
    int rc = PHREX_OK;
    if (!cJSON_IsArray(paras)) rc = field_error(r, "paragraphs", paras ? "is not an array" : "missing");
    if (rc == PHREX_OK) rc = take_string(r, cJSON_GetObjectItemCaseSensitive(item, "title"), "title", &r->title);
    if (rc) {
        phrex_jsonpos_skip(&r->qas_pos, phrex_jsonpos_count(item, "qas"));
        r->item = item->next;
        return rc;
    }
    r->para = paras->child;
    r->para_open = 0;
    r->item_open = 1;
    return PHREX_OK;
}

// Opens the paragraph at r->para; on error skips it.
static int squad_open_paragraph(phrex_qa_reader *r) {
    cJSON *p = r->para;
    int rc = PHREX_OK;
    const char *context = NULL;
    const cJSON *qas = NULL;
    locate(r, r->item_line, r->item_column);
    if (!cJSON_IsObject(p)) {
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: article '%s': a paragraph is not an object", r->where, r->title);
    } else {
        rc = take_string(r, cJSON_GetObjectItemCaseSensitive(p, "context"), "context", &context);
        qas = cJSON_GetObjectItemCaseSensitive(p, "qas");
        if (rc == PHREX_OK && qas && !cJSON_IsArray(qas)) rc = field_error(r, "qas", "is not an array");
    }
    if (rc) {
        phrex_jsonpos_skip(&r->qas_pos, phrex_jsonpos_count(p, "qas"));
        r->para = p->next;
        return rc;
    }
    r->context = context;
    r->context_len = strlen(context);
    r->context_chars = phrex_utf8_count(context, r->context_len);
    r->qa = qas ? qas->child : NULL; // DensePhrases' articles.json has no "qas"
    r->para_open = 1;
    return PHREX_OK;
}

static int squad_next(phrex_qa_reader *r, phrex_qa *out, int *has) {
    if (!r->root) {
        int rc = squad_load(r);
        if (rc) return rc;
    }
    for (;;) {
        if (!r->item) return PHREX_OK;
        if (!r->item_open) {
            int flat;
            int rc = squad_open_item(r, &flat);
            if (rc) return rc;
            if (flat) {
                cJSON *item = r->item;
                r->item = item->next;
                r->context = NULL;
                rc = squad_question(r, item, r->item_line, r->item_column, out);
                if (rc == PHREX_OK) *has = 1;
                return rc;
            }
        }
        if (!r->para) {
            r->item = r->item->next;
            r->item_open = 0;
            continue;
        }
        if (!r->para_open) {
            int rc = squad_open_paragraph(r);
            if (rc) return rc;
        }
        if (!r->qa) {
            r->para = r->para->next;
            r->para_open = 0;
            continue;
        }
        cJSON *q = r->qa;
        r->qa = q->next;
        size_t line = r->item_line, column = r->item_column;
        if (cJSON_IsObject(q)) {
            line = phrex_jsonpos_next(&r->qas_pos);
            column = r->qas_pos.column;
        }
        locate(r, line, column);
        int rc = squad_question(r, q, line, column, out);
        if (rc) return rc;
        *has = 1;
        return PHREX_OK;
    }
}

// --- the iterator -------------------------------------------------------------

int phrex_qa_next(phrex_qa_reader *r, phrex_qa *out, int *has_record) {
    *has_record = 0;
    for (;;) {
        int rc = PHREX_OK;
        switch (r->format) {
        case PHREX_QA_JSONL: rc = jsonl_next(r, out, has_record); break;
        case PHREX_QA_DPR_CSV: rc = csv_next(r, out, has_record); break;
        case PHREX_QA_SQUAD_JSON: rc = squad_next(r, out, has_record); break;
        default: rc = phrex_fail(PHREX_ERR_INTERNAL, "QA format not set"); break;
        }
        if (rc == PHREX_OK || rc != PHREX_ERR_FORMAT || !r->opts.skip_bad || r->fatal) return rc;
        // skip_bad: the readers are already past the bad record, except the
        // CSV reader, which goes back to the line after the record's first.
        if (r->csv) {
            int sync = phrex_csv_resync(r->csv);
            if (sync) return sync;
        }
        r->n_bad++;
    }
}
