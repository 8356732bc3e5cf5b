#include "pylit.h"

#include <stdint.h>

#include "common/error.h"
#include "common/utf8.h"

typedef struct {
    const char *s;
    size_t n, i;
    phrex_strlist *out;
    const char *why;
    size_t err_at;
} parser;

static int fail_at(parser *p, size_t at, const char *why) {
    p->err_at = at;
    p->why = why;
    return PHREX_ERR_FORMAT;
}

static void skip_space(parser *p) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->i++;
    }
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int append_code_point(parser *p, uint32_t cp, size_t at) {
    if (cp == 0) return fail_at(p, at, "NUL character in a string");
    char utf8[4];
    size_t len = phrex_utf8_encode(cp, utf8);
    if (len == 0) return fail_at(p, at, "escape names a code point UTF-8 cannot hold (surrogate or > U+10FFFF)");
    return phrex_buf_append(&p->out->bytes, utf8, len) ? PHREX_ERR_MEMORY : PHREX_OK;
}

// Decodes the escape whose backslash is at p->i, moving past it.
static int escape(parser *p) {
    size_t at = p->i;
    if (at + 1 >= p->n) return fail_at(p, at, "backslash at the end of the field");
    char c = p->s[at + 1];
    p->i = at + 2;
    static const char simple_from[] = "\\'\"abfnrtv";
    static const char simple_to[] = "\\'\"\a\b\f\n\r\t\v";
    for (size_t k = 0; simple_from[k]; k++)
        if (c == simple_from[k]) return append_code_point(p, (unsigned char)simple_to[k], at);
    if (c == '\n') return PHREX_OK; // backslash-newline: a line continuation
    if (c == '\r') {
        if (p->i < p->n && p->s[p->i] == '\n') p->i++;
        return PHREX_OK;
    }
    if (c >= '0' && c <= '7') { // up to 3 octal digits
        uint32_t v = (uint32_t)(c - '0');
        for (int k = 0; k < 2 && p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '7'; k++)
            v = v * 8 + (uint32_t)(p->s[p->i++] - '0');
        return append_code_point(p, v, at);
    }
    int digits = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
    if (digits) {
        uint32_t v = 0;
        for (int k = 0; k < digits; k++) {
            int h = p->i < p->n ? hex_value(p->s[p->i]) : -1;
            if (h < 0) return fail_at(p, at, "truncated \\x, \\u or \\U escape");
            v = v * 16 + (uint32_t)h;
            p->i++;
        }
        return append_code_point(p, v, at);
    }
    if (c == 'N') return fail_at(p, at, "\\N{name} escapes are not supported");
    // Python keeps an unknown escape as it is (with a warning).
    p->i = at + 1;
    return phrex_buf_append(&p->out->bytes, "\\", 1) ? PHREX_ERR_MEMORY : PHREX_OK;
}

// Parses one literal (prefix, quotes, body) at p->i, appending its text to
// the string being built.
static int literal(parser *p) {
    size_t start = p->i;
    int raw = 0;
    while (p->i < p->n) { // prefix letters
        char c = p->s[p->i];
        if (c == 'r' || c == 'R') raw = 1;
        else if (c == 'b' || c == 'B') return fail_at(p, start, "bytes literal, expected str");
        else if (c == 'f' || c == 'F') return fail_at(p, start, "f-string, expected a plain literal");
        else if (c != 'u' && c != 'U') break;
        p->i++;
        if (p->i - start > 2) return fail_at(p, start, "bad string prefix");
    }
    if (p->i >= p->n || (p->s[p->i] != '\'' && p->s[p->i] != '"')) return fail_at(p, p->i, "expected a string");
    char q = p->s[p->i];
    int triple = p->i + 2 < p->n && p->s[p->i + 1] == q && p->s[p->i + 2] == q;
    p->i += triple ? 3 : 1;
    for (;;) {
        if (p->i >= p->n) return fail_at(p, start, "unterminated string");
        char c = p->s[p->i];
        if (c == q && (!triple || (p->i + 2 < p->n && p->s[p->i + 1] == q && p->s[p->i + 2] == q))) {
            p->i += triple ? 3 : 1;
            return PHREX_OK;
        }
        if ((c == '\n' || c == '\r') && !triple) return fail_at(p, p->i, "line break inside a string");
        if (c == '\\' && raw) { // kept as written, but it still protects the next character
            size_t take = p->i + 1 < p->n ? 2 : 1;
            if (phrex_buf_append(&p->out->bytes, p->s + p->i, take)) return PHREX_ERR_MEMORY;
            p->i += take;
            continue;
        }
        if (c == '\\') {
            int rc = escape(p);
            if (rc) return rc;
            continue;
        }
        if (c == '\0') return fail_at(p, p->i, "NUL character in a string");
        if (phrex_buf_append(&p->out->bytes, &c, 1)) return PHREX_ERR_MEMORY;
        p->i++;
    }
}

static int is_prefix_letter(char c) {
    return c == 'r' || c == 'R' || c == 'u' || c == 'U' || c == 'b' || c == 'B' || c == 'f' || c == 'F';
}

static int starts_literal(const parser *p) {
    size_t i = p->i;
    for (int k = 0; k < 2 && i < p->n && is_prefix_letter(p->s[i]); k++) i++;
    return i < p->n && (p->s[i] == '\'' || p->s[i] == '"');
}

int phrex_pylit_parse_list(const char *s, size_t n, phrex_strlist *out, size_t *err_at, const char **why) {
    parser p = {.s = s, .n = n, .out = out};
    int rc = PHREX_OK;
    skip_space(&p);
    if (p.i >= n || s[p.i] != '[') {
        rc = fail_at(&p, p.i, "expected '[' (a Python list)");
        goto done;
    }
    p.i++;
    for (;;) {
        skip_space(&p);
        if (p.i < n && s[p.i] == ']') break; // empty list, or after a trailing comma
        phrex_strlist_begin(out);
        do { // adjacent literals concatenate: 'a' "b" is 'ab'
            rc = literal(&p);
            if (rc) goto done;
            skip_space(&p);
        } while (starts_literal(&p));
        rc = phrex_strlist_end(out);
        if (rc) goto done;
        if (p.i < n && s[p.i] == ',') {
            p.i++;
            continue;
        }
        if (p.i < n && s[p.i] == ']') break;
        rc = fail_at(&p, p.i, p.i < n ? "expected ',' or ']'" : "unterminated list: expected ']'");
        goto done;
    }
    p.i++; // the ']'
    skip_space(&p);
    if (p.i < n) rc = fail_at(&p, p.i, "text after the closing ']'");
done:
    if (rc == PHREX_ERR_MEMORY) {
        p.why = "out of memory";
        p.err_at = p.i;
    }
    *err_at = p.err_at;
    *why = p.why;
    return rc;
}
