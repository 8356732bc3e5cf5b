#include "pyregex.h"

#include <locale.h>
#include <stdio.h>
#include <regex.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "common/error.h"
#include "pytext.h"

struct phrex_regex {
    regex_t re;
    int compiled;
    locale_t c_locale; // regcomp and regexec run under it: byte semantics everywhere
    char *posix;
};

// --- folding ----------------------------------------------------------------

// Lowercase (no final-sigma context: Σ, σ and ς all fold to σ), NFD, and
// non-ASCII spaces to ' '. Applied alike to texts and pattern literals.
static int fold_cps(const uint32_t *cps, size_t n, phrex_cpvec *lowered, phrex_cpvec *out) {
    lowered->len = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t low[2];
        size_t k = phrex_pytext_lower(&cps[i], 1, 0, low);
        for (size_t j = 0; j < k; j++) {
            int rc = phrex_cpvec_push(lowered, low[j] == 0x3C2 ? 0x3C3 : low[j]);
            if (rc) return rc;
        }
    }
    size_t first = out->len;
    int rc = phrex_pytext_nfd(lowered->data, lowered->len, out);
    if (rc) return rc;
    for (size_t i = first; i < out->len; i++)
        if (out->data[i] >= 0x80 && phrex_pytext_is_space(out->data[i])) out->data[i] = ' ';
    return PHREX_OK;
}

int phrex_regex_fold(const char *text, char **folded) {
    *folded = NULL;
    phrex_cpvec cps = {0}, lowered = {0}, out = {0};
    phrex_buf b = {0};
    int rc = phrex_pytext_decode(text, strlen(text), &cps);
    if (rc == PHREX_OK) rc = fold_cps(cps.data, cps.len, &lowered, &out);
    if (rc == PHREX_OK) rc = phrex_pytext_encode(out.data, out.len, &b);
    if (rc == PHREX_OK && !b.data) rc = phrex_buf_append(&b, "", 0);
    phrex_cpvec_free(&cps);
    phrex_cpvec_free(&lowered);
    phrex_cpvec_free(&out);
    if (rc) {
        phrex_buf_free(&b);
        return rc;
    }
    *folded = b.data;
    return PHREX_OK;
}

// --- translation ------------------------------------------------------------

typedef struct {
    const uint32_t *p; // the pattern's code points
    size_t n, i;
    phrex_buf out;
    phrex_cpvec lowered, folded; // scratch for fold_cps
    int can_repeat;            // the last item can take a quantifier
    int depth;                 // open groups
    const char *why;           // what was rejected, and where
    size_t at;
} translator;

static int reject(translator *t, size_t at, const char *why) {
    t->why = why;
    t->at = at;
    return PHREX_ERR_INPUT;
}

static int emit(translator *t, const char *s) { return phrex_buf_append(&t->out, s, strlen(s)); }

// A character ERE gives a meaning to outside brackets. ']' and '}' are
// literal there on their own and are left bare.
static int is_ere_special(uint32_t c) { return c < 0x80 && c && strchr(".[()*+?{|^$\\", (int)c) != NULL; }

// Emits the folded form of one literal code point. A literal that folds to
// several bytes is grouped, so that a quantifier after it repeats all of it.
static int emit_literal(translator *t, uint32_t cp, size_t at) {
    if (cp == 0) return reject(t, at, "NUL in a pattern");
    t->folded.len = 0;
    int rc = fold_cps(&cp, 1, &t->lowered, &t->folded);
    if (rc) return rc;
    int group = t->folded.len > 1 || t->folded.data[0] >= 0x80;
    if (group && (rc = emit(t, "("))) return rc;
    for (size_t k = 0; k < t->folded.len; k++) {
        uint32_t c = t->folded.data[k];
        if (is_ere_special(c) && (rc = emit(t, "\\"))) return rc;
        if ((rc = phrex_pytext_encode(&c, 1, &t->out))) return rc;
    }
    if (group && (rc = emit(t, ")"))) return rc;
    t->can_repeat = 1;
    return PHREX_OK;
}

static int hex_digit(uint32_t c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

static int is_octal(uint32_t c) { return c >= '0' && c <= '7'; }

// After "\x", "\u" or "\U" (t->i at the first digit): the code point.
static int read_hex(translator *t, int digits, size_t at, uint32_t *cp) {
    uint32_t v = 0;
    for (int k = 0; k < digits; k++) {
        int h = t->i < t->n ? hex_digit(t->p[t->i]) : -1;
        if (h < 0) return reject(t, at, "incomplete \\x, \\u or \\U escape");
        v = v * 16 + (uint32_t)h;
        t->i++;
    }
    if (v > 0x10FFFF) return reject(t, at, "escape beyond U+10FFFF");
    *cp = v;
    return PHREX_OK;
}

// The escapes that mean one character, inside or outside a class: sets
// *cp, or *cp = UINT32_MAX when `c` is not one of them.
static int char_escape(translator *t, uint32_t c, size_t at, int in_class, uint32_t *cp) {
    static const char from[] = "ntrfva";
    static const char to[] = "\n\t\r\f\v\a";
    *cp = UINT32_MAX;
    for (int k = 0; from[k]; k++)
        if (c == (uint32_t)from[k]) *cp = (uint32_t)(unsigned char)to[k];
    if (in_class && c == 'b') *cp = '\b'; // backspace inside a class
    if (*cp != UINT32_MAX) return PHREX_OK;
    if (c == 'x') return read_hex(t, 2, at, cp);
    if (c == 'u') return read_hex(t, 4, at, cp);
    if (c == 'U') return read_hex(t, 8, at, cp);
    if (c == 'N') return reject(t, at, "\\N{name} escapes are not supported");
    if (is_octal(c) && (c == '0' || in_class || (t->i + 1 < t->n && is_octal(t->p[t->i]) && is_octal(t->p[t->i + 1])))) {
        uint32_t v = c - '0';
        for (int k = 0; k < 2 && t->i < t->n && is_octal(t->p[t->i]); k++) v = v * 8 + (t->p[t->i++] - '0');
        *cp = v;
        return PHREX_OK;
    }
    if (c >= '1' && c <= '9') return reject(t, at, "backreferences are not supported");
    if (c < 0x80 && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
        return reject(t, at, "bad escape (Python rejects it too) or unsupported (\\A, \\Z)");
    *cp = c; // an escaped symbol or non-ASCII character is itself
    return PHREX_OK;
}

// --- character classes --------------------------------------------------------

typedef struct {
    uint8_t bits[16];   // ASCII members
    int negated_escape; // a lone \S \D or \W: 's', 'd', 'w'
    int items;
    phrex_strlist alts; // non-ASCII members, folded, as alternatives
} char_class;

static void set_bit(char_class *c, uint32_t cp) { c->bits[cp >> 3] |= (uint8_t)(1u << (cp & 7)); }
static int has_bit(const char_class *c, uint32_t cp) { return (c->bits[cp >> 3] >> (cp & 7)) & 1; }

// Python's \d \s \w as ASCII sets (non-ASCII spaces are folded to ' ').
static void add_class_escape(char_class *c, uint32_t kind) {
    for (uint32_t cp = 1; cp < 0x80; cp++) {
        int in = 0;
        if (kind == 'd') in = cp >= '0' && cp <= '9';
        if (kind == 's') in = (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
        if (kind == 'w') in = phrex_pytext_is_word(cp);
        if (in) set_bit(c, cp);
    }
}

static int add_member(translator *t, char_class *c, uint32_t cp, size_t at) {
    if (cp == 0) return reject(t, at, "NUL in a pattern");
    t->folded.len = 0;
    int rc = fold_cps(&cp, 1, &t->lowered, &t->folded);
    if (rc) return rc;
    if (t->folded.len == 1 && t->folded.data[0] < 0x80) {
        set_bit(c, cp < 0x80 ? cp : t->folded.data[0]);
        set_bit(c, t->folded.data[0]); // 'A' also puts 'a': texts are folded to lowercase
        return PHREX_OK;
    }
    phrex_strlist_begin(&c->alts);
    rc = phrex_pytext_encode(t->folded.data, t->folded.len, &c->alts.bytes);
    return rc ? rc : phrex_strlist_end(&c->alts);
}

// One member at t->i: a character (*is_char = 1, *cp) or a class escape.
static int class_atom(translator *t, char_class *c, uint32_t *cp, int *is_char) {
    size_t at = t->i;
    uint32_t ch = t->p[t->i++];
    *is_char = 1;
    *cp = ch;
    if (ch != '\\') return PHREX_OK;
    if (t->i >= t->n) return reject(t, at, "pattern ends with a backslash");
    uint32_t e = t->p[t->i++];
    if (e == 'd' || e == 's' || e == 'w') {
        add_class_escape(c, e);
        *is_char = 0;
        return PHREX_OK;
    }
    if (e == 'D' || e == 'S' || e == 'W') {
        c->negated_escape = (int)(e + 32);
        *is_char = 0;
        return PHREX_OK;
    }
    return char_escape(t, e, at, 1, cp);
}

// Writes the ASCII part of a class as a bracket expression, ordering the
// members ERE is picky about: ']' first, '^' not first, '-' last.
static int emit_bracket(translator *t, const char_class *c, int negated) {
    char s[160];
    size_t k = 0;
    s[k++] = '[';
    if (negated) s[k++] = '^';
    size_t body = k;
    if (has_bit(c, ']')) s[k++] = ']';
    for (uint32_t cp = 1; cp < 0x80; cp++)
        if (has_bit(c, cp) && cp != ']' && cp != '^' && cp != '-') s[k++] = (char)cp;
    int caret = has_bit(c, '^'), dash = has_bit(c, '-');
    if (caret && k == body) { // '^' would come first and read as negation
        if (!dash) return emit(t, "\\^"); // the only member
        s[k++] = '-';
        dash = 0;
    }
    if (caret) s[k++] = '^';
    if (dash) s[k++] = '-';
    s[k++] = ']';
    s[k] = '\0';
    return emit(t, s);
}

static int emit_escaped(translator *t, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int rc = is_ere_special((unsigned char)s[i]) ? emit(t, "\\") : PHREX_OK;
        if (rc == PHREX_OK) rc = phrex_buf_append(&t->out, &s[i], 1);
        if (rc) return rc;
    }
    return PHREX_OK;
}

static int emit_class(translator *t, const char_class *c, int negated, size_t at) {
    int any_bits = 0;
    for (int k = 0; k < 16; k++) any_bits |= c->bits[k];
    if (c->negated_escape) {
        if (c->items != 1 || negated) return reject(t, at, "\\S, \\D or \\W inside a class with other members");
        char_class only = {0};
        add_class_escape(&only, (uint32_t)c->negated_escape);
        return emit_bracket(t, &only, 1);
    }
    if (negated && c->alts.n) return reject(t, at, "negated class with a non-ASCII member");
    if (!c->alts.n) return emit_bracket(t, c, negated);
    int rc = emit(t, "(");
    if (rc == PHREX_OK && any_bits) rc = emit_bracket(t, c, 0);
    for (size_t i = 0; rc == PHREX_OK && i < c->alts.n; i++) {
        size_t len;
        const char *alt = phrex_strlist_get(&c->alts, i, &len);
        if ((i > 0 || any_bits) && (rc = emit(t, "|"))) break;
        rc = emit_escaped(t, alt, len);
    }
    return rc ? rc : emit(t, ")");
}

// [...] at t->i.
static int parse_class(translator *t) {
    size_t open = t->i++;
    int negated = 0;
    if (t->i < t->n && t->p[t->i] == '^') {
        negated = 1;
        t->i++;
    }
    char_class c = {0};
    int rc = PHREX_OK;
    for (int first = 1;; first = 0) {
        if (t->i >= t->n) {
            rc = reject(t, open, "unterminated character set");
            break;
        }
        if (t->p[t->i] == ']' && !first) {
            t->i++;
            break;
        }
        size_t at = t->i;
        uint32_t lo, hi;
        int lo_char, hi_char;
        if ((rc = class_atom(t, &c, &lo, &lo_char))) break;
        c.items++;
        if (lo_char && t->i + 1 < t->n && t->p[t->i] == '-' && t->p[t->i + 1] != ']') {
            t->i++;
            if ((rc = class_atom(t, &c, &hi, &hi_char))) break;
            if (!hi_char || hi < lo) {
                rc = reject(t, at, "bad character range");
                break;
            }
            if (hi >= 0x80) {
                rc = reject(t, at, "non-ASCII range in a class");
                break;
            }
            for (uint32_t cp = lo; cp <= hi && rc == PHREX_OK; cp++) rc = add_member(t, &c, cp, at);
            c.items++;
        } else if (lo_char) {
            rc = add_member(t, &c, lo, at);
        }
        if (rc) break;
    }
    if (rc == PHREX_OK) rc = emit_class(t, &c, negated, open);
    phrex_strlist_free(&c.alts);
    t->can_repeat = 1;
    return rc;
}

// --- groups, quantifiers, escapes -----------------------------------------------

// "(" at t->i, with Python's (?...) forms.
static int parse_group_open(translator *t) {
    size_t at = t->i++;
    if (t->i < t->n && t->p[t->i] == '?') {
        t->i++;
        uint32_t c = t->i < t->n ? t->p[t->i] : 0;
        if (c == ':') {
            t->i++;
        } else if (c == 'P' && t->i + 1 < t->n && t->p[t->i + 1] == '<') { // (?P<name>
            while (t->i < t->n && t->p[t->i] != '>') t->i++;
            if (t->i >= t->n) return reject(t, at, "unterminated group name");
            t->i++;
        } else if (c == '#') { // a comment
            while (t->i < t->n && t->p[t->i] != ')') t->i++;
            if (t->i >= t->n) return reject(t, at, "unterminated comment");
            t->i++;
            return PHREX_OK;
        } else {
            // Flags: i, m and u are what phrex always does; s, x, a, L change meaning.
            size_t f = t->i;
            while (f < t->n && t->p[f] < 0x80 && strchr("imu", (int)t->p[f]) && t->p[f]) f++;
            if (f == t->i || f >= t->n || (t->p[f] != ')' && t->p[f] != ':'))
                return reject(t, at, "unsupported group: lookaround, conditional, backreference or flag");
            t->i = f + 1;
            if (t->p[f] == ')') { // global flags: nothing to emit
                t->can_repeat = 0;
                return PHREX_OK;
            }
        }
    }
    t->depth++;
    t->can_repeat = 0;
    return emit(t, "(");
}

// "{" at t->i: Python's {m}, {m,}, {,n}, {m,n}, or a literal '{'.
static int parse_brace(translator *t, int *quantifier_out) {
    size_t at = t->i, j = t->i + 1;
    long lo = -1, hi = -1;
    int comma = 0;
    for (; j < t->n && t->p[j] >= '0' && t->p[j] <= '9'; j++) lo = (lo < 0 ? 0 : lo) * 10 + (long)(t->p[j] - '0');
    if (j < t->n && t->p[j] == ',') {
        comma = 1;
        for (j++; j < t->n && t->p[j] >= '0' && t->p[j] <= '9'; j++) hi = (hi < 0 ? 0 : hi) * 10 + (long)(t->p[j] - '0');
    }
    int quantifier = j < t->n && t->p[j] == '}' && (lo >= 0 || comma);
    *quantifier_out = quantifier;
    if (!quantifier) {
        t->i++;
        t->can_repeat = 1;
        return emit(t, "\\{");
    }
    if (!t->can_repeat) return reject(t, at, "nothing to repeat");
    long min = lo < 0 ? 0 : lo, max = comma ? hi : min;
    if ((max >= 0 && max < min)) return reject(t, at, "min repeat greater than max repeat");
    if (min > RE_DUP_MAX || max > RE_DUP_MAX) return reject(t, at, "repeat count too large for POSIX");
    char q[64];
    if (!comma) snprintf(q, sizeof q, "{%ld}", min);
    else if (max < 0) snprintf(q, sizeof q, "{%ld,}", min);
    else snprintf(q, sizeof q, "{%ld,%ld}", min, max);
    t->i = j + 1;
    return emit(t, q);
}

// After a quantifier: a lazy '?' is dropped, a possessive '+' rejected.
static int quantifier_suffix(translator *t) {
    t->can_repeat = 0;
    if (t->i < t->n && t->p[t->i] == '?') t->i++;
    else if (t->i < t->n && t->p[t->i] == '+') return reject(t, t->i, "possessive quantifiers are not supported");
    if (t->i < t->n && t->p[t->i] < 0x80 && strchr("*+?", (int)t->p[t->i]) && t->p[t->i])
        return reject(t, t->i, "multiple repeat");
    return PHREX_OK;
}

static int parse_escape(translator *t) {
    size_t at = t->i++;
    if (t->i >= t->n) return reject(t, at, "pattern ends with a backslash");
    uint32_t e = t->p[t->i++];
    static const struct { char escape; const char *ere; } classes[] = {
        {'d', "[0-9]"}, {'D', "[^0-9]"}, {'w', "[[:alnum:]_]"}, {'W', "[^[:alnum:]_]"}};
    for (size_t k = 0; k < sizeof classes / sizeof *classes; k++)
        if (e == (uint32_t)classes[k].escape) {
            t->can_repeat = 1;
            return emit(t, classes[k].ere);
        }
    if (e == 's' || e == 'S') { // Python's \s also has \x1c..\x1f, which [:space:] lacks
        char_class c = {0};
        add_class_escape(&c, 's');
        t->can_repeat = 1;
        return emit_bracket(t, &c, e == 'S');
    }
    if (e == 'b' || e == 'B') {
        t->can_repeat = 0;
        return emit(t, e == 'b' ? "\\b" : "\\B");
    }
    uint32_t cp;
    int rc = char_escape(t, e, at, 0, &cp);
    return rc ? rc : emit_literal(t, cp, at);
}

static int translate_cps(translator *t) {
    int rc = PHREX_OK;
    while (rc == PHREX_OK && t->i < t->n) {
        uint32_t c = t->p[t->i];
        size_t at = t->i;
        switch (c) {
        case '\\': rc = parse_escape(t); break;
        case '[': rc = parse_class(t); break;
        case '(': rc = parse_group_open(t); break;
        case ')':
            if (t->depth == 0) return reject(t, at, "unbalanced parenthesis");
            t->depth--;
            t->i++;
            t->can_repeat = 1;
            rc = emit(t, ")");
            break;
        case '|':
        case '^':
        case '$':
            t->i++;
            t->can_repeat = 0;
            rc = phrex_buf_append(&t->out, (const char[]){(char)c}, 1);
            break;
        case '.':
            t->i++;
            t->can_repeat = 1;
            rc = emit(t, ".");
            break;
        case '*':
        case '+':
        case '?':
            if (!t->can_repeat) return reject(t, at, "nothing to repeat");
            t->i++;
            rc = phrex_buf_append(&t->out, (const char[]){(char)c}, 1);
            if (rc == PHREX_OK) rc = quantifier_suffix(t);
            break;
        case '{': {
            int quantifier = 0;
            rc = parse_brace(t, &quantifier);
            if (rc == PHREX_OK && quantifier) rc = quantifier_suffix(t);
            break;
        }
        default:
            t->i++;
            rc = emit_literal(t, c, at);
            break;
        }
    }
    if (rc == PHREX_OK && t->depth > 0) rc = reject(t, t->n, "missing ), unterminated subpattern");
    return rc;
}

int phrex_regex_translate(const char *pattern, unsigned flags, char **posix) {
    *posix = NULL;
    phrex_cpvec cps = {0}, nfd = {0};
    translator t = {0};
    int rc = phrex_pytext_decode(pattern, strlen(pattern), &cps);
    if (rc == PHREX_OK && (flags & PHREX_REGEX_NFD_SOURCE)) {
        rc = phrex_pytext_nfd(cps.data, cps.len, &nfd);
        phrex_cpvec swap = cps;
        cps = nfd;
        nfd = swap;
    }
    if (rc == PHREX_OK) {
        t.p = cps.data;
        t.n = cps.len;
        rc = phrex_buf_append(&t.out, "", 0);
    }
    if (rc == PHREX_OK) rc = translate_cps(&t);
    if (rc == PHREX_ERR_INPUT)
        phrex_fail(rc, "regex '%s': %s at character %zu", pattern, t.why ? t.why : "?", t.at);
    phrex_cpvec_free(&cps);
    phrex_cpvec_free(&nfd);
    phrex_cpvec_free(&t.lowered);
    phrex_cpvec_free(&t.folded);
    if (rc) {
        phrex_buf_free(&t.out);
        return rc;
    }
    *posix = t.out.data;
    return PHREX_OK;
}

// --- compile and run ------------------------------------------------------------

int phrex_regex_init(phrex_regex **out, const char *pattern, unsigned flags) {
    *out = NULL;
    phrex_regex *re = calloc(1, sizeof *re);
    if (!re) return phrex_fail(PHREX_ERR_MEMORY, "out of memory compiling a regex");
    int rc = phrex_regex_translate(pattern, flags, &re->posix);
    if (rc == PHREX_OK) {
        re->c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
        if (re->c_locale == (locale_t)0) rc = phrex_fail(PHREX_ERR_INTERNAL, "newlocale(\"C\") failed");
    }
    if (rc == PHREX_OK) {
        locale_t previous = uselocale(re->c_locale);
        int err = regcomp(&re->re, re->posix, REG_EXTENDED | REG_ICASE | REG_NEWLINE);
        uselocale(previous);
        if (err) {
            char msg[256];
            regerror(err, &re->re, msg, sizeof msg);
            rc = phrex_fail(PHREX_ERR_INPUT, "regex '%s' (POSIX '%s'): %s", pattern, re->posix, msg);
        } else {
            re->compiled = 1;
        }
    }
    if (rc) {
        phrex_regex_free(re);
        return rc;
    }
    *out = re;
    return PHREX_OK;
}

void phrex_regex_free(phrex_regex *re) {
    if (!re) return;
    if (re->compiled) regfree(&re->re);
    if (re->c_locale) freelocale(re->c_locale);
    free(re->posix);
    free(re);
}

const char *phrex_regex_posix(const phrex_regex *re) { return re->posix; }

int phrex_regex_exec_folded(const phrex_regex *re, const char *folded, int anchored, int *found) {
    regmatch_t m;
    locale_t previous = uselocale(re->c_locale);
    int err = regexec(&re->re, folded, 1, &m, 0);
    uselocale(previous);
    if (err == REG_NOMATCH) {
        *found = 0;
        return PHREX_OK;
    }
    if (err) return phrex_fail(PHREX_ERR_INTERNAL, "regexec failed (%d) for POSIX regex '%s'", err, re->posix);
    // POSIX reports the leftmost match: one starts at 0 exactly when some match can.
    *found = anchored ? m.rm_so == 0 : 1;
    return PHREX_OK;
}

static int exec_text(const phrex_regex *re, const char *text, int anchored, int *found) {
    *found = 0;
    char *folded;
    int rc = phrex_regex_fold(text, &folded);
    if (rc) return rc;
    rc = phrex_regex_exec_folded(re, folded, anchored, found);
    free(folded);
    return rc;
}

int phrex_regex_search(const phrex_regex *re, const char *text, int *found) { return exec_text(re, text, 0, found); }
int phrex_regex_match(const phrex_regex *re, const char *text, int *found) { return exec_text(re, text, 1, found); }
