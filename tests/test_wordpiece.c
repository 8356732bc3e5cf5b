// The WordPiece tokenizer against Hugging Face's BertTokenizerFast:
// (1) every case of tests/fixtures/wordpiece_cases.txt (real sentences and
//     questions read from ../shared at run time, plus edge cases stored
//     verbatim) must give HF's ids and byte offsets, lowercase and cased;
// (2) sweeps over every Unicode code point must hash like HF's tokens;
// (3) the same from several threads on one handle;
// (4) invalid UTF-8, empty text, the 100-character word limit, the lookup
//     API, and broken vocab files.
// The fixture is written by tools/make_wordpiece_fixture.py.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "tests/support/test_support.h"
#include "encoder/wordpiece.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIXTURE PHREX_SOURCE_DIR "/tests/fixtures/wordpiece_cases.txt"
#define VOCAB PHREX_BASE_MODEL_DIR "/vocab.txt"
#define DATA_DIR PHREX_SHARED_DIR "/data"

enum { MIN_DATA_CASES = 1000, N_THREADS = 4, MAX_FILES = 16 };

typedef struct {
    char name[32];
    char mode;         // 'L' lowercase (the model's setting) or 'C' cased
    uint64_t hash;     // FNV-1a 64 of the text
    char source[1024]; // "path:line field [b0,b1)" or "verbatim"
    char *text;        // owned
    size_t len;
    int n;                        // HF's tokens
    int32_t *ids, *start, *end;   // (n) owned
} fx_case;

typedef struct {
    int pattern;
    char mode;
    int32_t lo, hi;
    int n;
    uint64_t hash;
} fx_sweep;

static struct {
    phrex_wordpiece *lower, *cased;
    fx_case *cases;
    int n_cases, n_data_cases;
    fx_sweep *sweeps;
    int n_sweeps;
    uint64_t vocab_hash;
} g;

// --- helpers ------------------------------------------------------------------------

static uint64_t fnv1a64(const void *data, size_t len) { return test_hash_bytes(0xCBF29CE484222325ull, data, len); }

static int utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Undoes the fixture's escapes: \\, \xHH, \u{HEX}. Returns the byte count.
static size_t unescape(const char *s, char *out) {
    size_t n = 0;
    while (*s) {
        if (s[0] != '\\') {
            out[n++] = *s++;
        } else if (s[1] == '\\') {
            out[n++] = '\\', s += 2;
        } else if (s[1] == 'x') {
            char hex[3] = {s[2], s[3], 0};
            out[n++] = (char)strtoul(hex, NULL, 16), s += 4;
        } else {
            assert_true(s[1] == 'u' && s[2] == '{');
            char *close;
            uint32_t cp = (uint32_t)strtoul(s + 3, &close, 16);
            assert_true(*close == '}');
            n += (size_t)utf8_put(cp, out + n);
            s = close + 1;
        }
    }
    return n;
}

// --- reading the texts from ../shared -----------------------------------------------------

typedef struct {
    char path[512];
    char *data;
    size_t len;
    size_t *line_start; // (n_lines + 1)
    int n_lines;
} source_file;

static source_file files[MAX_FILES];
static int n_files;

static source_file *open_source(const char *rel) {
    for (int i = 0; i < n_files; i++)
        if (strcmp(files[i].path, rel) == 0) return &files[i];
    assert_true(n_files < MAX_FILES);
    source_file *f = &files[n_files++];
    snprintf(f->path, sizeof f->path, "%s", rel);
    char full[1024];
    snprintf(full, sizeof full, "%s/%s", DATA_DIR, rel);
    f->data = test_read_file(full, &f->len);
    if (!f->data) fail_msg("cannot read %s: the fixture's texts live in the shared data dir", full);
    int lines = 1;
    for (size_t i = 0; i < f->len; i++) lines += f->data[i] == '\n';
    f->line_start = malloc((size_t)(lines + 1) * sizeof *f->line_start);
    assert_non_null(f->line_start);
    f->line_start[0] = 0;
    f->n_lines = 0;
    for (size_t i = 0; i < f->len; i++)
        if (f->data[i] == '\n') f->line_start[++f->n_lines] = i + 1;
    if (f->line_start[f->n_lines] < f->len) f->line_start[++f->n_lines] = f->len + 1;
    return f;
}

// Column `col` of a csv-quoted TSV line (as Python's csv writes it: a field
// holding '"' is quoted, inner quotes doubled; no field holds a TAB).
static char *tsv_field(const char *line, size_t len, int col) {
    size_t at = 0;
    for (int c = 0; c < col; c++) {
        while (at < len && line[at] != '\t') at++;
        assert_true(at < len);
        at++;
    }
    size_t end = at;
    while (end < len && line[end] != '\t') end++;
    char *out = malloc(end - at + 1);
    assert_non_null(out);
    size_t n = 0;
    if (at < end && line[at] == '"') {
        for (size_t i = at + 1; i < end - 1; i++) {
            out[n++] = line[i];
            if (line[i] == '"') i++; // "" -> "
        }
    } else {
        memcpy(out, line + at, end - at);
        n = end - at;
    }
    out[n] = '\0';
    return out;
}

static char *json_field(const char *line, size_t len, const char *key) {
    cJSON *root = cJSON_ParseWithLength(line, len);
    assert_non_null(root);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    assert_true(cJSON_IsString(item));
    char *out = strdup(item->valuestring);
    cJSON_Delete(root);
    return out;
}

// The text of a data case: bytes [b0, b1) of the field on that line.
static void load_data_text(fx_case *c, const char *rel, int line, const char *field, int b0, int b1) {
    source_file *f = open_source(rel);
    assert_true(line >= 1 && line <= f->n_lines);
    const char *p = f->data + f->line_start[line - 1];
    size_t len = f->line_start[line] - 1 - f->line_start[line - 1];
    char *value = NULL;
    if (strncmp(field, "tsv:", 4) == 0) value = tsv_field(p, len, atoi(field + 4));
    else if (strncmp(field, "json:", 5) == 0) value = json_field(p, len, field + 5);
    else fail_msg("fixture: unknown field kind %s", field);
    size_t vlen = strlen(value);
    if (b0 < 0 || b1 < b0 || (size_t)b1 > vlen) fail_msg("%s: byte range [%d,%d) outside a field of %zu bytes", c->source, b0, b1, vlen);
    c->len = (size_t)(b1 - b0);
    c->text = malloc(c->len + 1);
    assert_non_null(c->text);
    memcpy(c->text, value + b0, c->len);
    c->text[c->len] = '\0';
    free(value);
}

// --- the fixture ------------------------------------------------------------------

static void parse_tokens(fx_case *c, char *line) {
    if (strncmp(line, "tok", 3) != 0) fail_msg("fixture: case %s: a tok line must follow", c->source);
    c->ids = malloc((size_t)(c->n + 1) * sizeof *c->ids);
    c->start = malloc((size_t)(c->n + 1) * sizeof *c->start);
    c->end = malloc((size_t)(c->n + 1) * sizeof *c->end);
    assert_true(c->ids && c->start && c->end);
    char *p = line + 3;
    long prev = 0;
    for (int i = 0; i < c->n; i++) {
        long id = strtol(p, &p, 10);
        assert_true(*p == ',');
        long gap = strtol(p + 1, &p, 10);
        assert_true(*p == ',');
        long width = strtol(p + 1, &p, 10);
        c->ids[i] = (int32_t)id;
        c->start[i] = (int32_t)(prev + gap);
        c->end[i] = (int32_t)(prev + gap + width);
        prev = c->end[i];
    }
    while (*p == ' ' || *p == '\n') p++;
    if (*p) fail_msg("fixture: case %s: more tokens than the %d announced", c->source, c->n);
}

static void load_fixture(void) {
    FILE *f = fopen(FIXTURE, "r");
    if (!f) fail_msg("cannot open %s", FIXTURE);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int cap_cases = 0, cap_sweeps = 0, number = 0;
    fx_case *pending = NULL; // a case whose tok line comes next
    while ((got = getline(&line, &cap, f)) > 0) {
        number++;
        if (line[got - 1] == '\n') line[--got] = '\0';
        if (pending) {
            parse_tokens(pending, line);
            pending = NULL;
        } else if (number == 1) {
            assert_string_equal(line, "phrex-wordpiece-fixture 1");
        } else if (line[0] == '#') {
            continue;
        } else if (strncmp(line, "vocab ", 6) == 0) {
            g.vocab_hash = strtoull(line + 6, NULL, 16);
        } else if (strncmp(line, "case ", 5) == 0) {
            if (g.n_cases == cap_cases) {
                cap_cases = cap_cases ? 2 * cap_cases : 1024;
                g.cases = realloc(g.cases, (size_t)cap_cases * sizeof *g.cases);
                assert_non_null(g.cases);
            }
            fx_case *c = &g.cases[g.n_cases++];
            memset(c, 0, sizeof *c);
            char kind[8];
            int used = 0;
            unsigned long long hash;
            int k = sscanf(line, "case %31s %c %llx %d %7s%n", c->name, &c->mode, &hash, &c->n, kind, &used);
            if (k != 5 || line[used] != ' ') fail_msg("%s:%d: bad case line", FIXTURE, number);
            used++; // one space: a verbatim text may begin with blanks
            c->hash = hash;
            if (strcmp(kind, "data") == 0) {
                char rel[512], field[64];
                int ln, b0, b1;
                if (sscanf(line + used, "%511s %d %63s %d %d", rel, &ln, field, &b0, &b1) != 5)
                    fail_msg("%s:%d: bad data case", FIXTURE, number);
                snprintf(c->source, sizeof c->source, "%s:%d %s [%d,%d)", rel, ln, field, b0, b1);
                load_data_text(c, rel, ln, field, b0, b1);
                g.n_data_cases += c->mode == 'L';
            } else {
                const char *escaped = line + used;
                snprintf(c->source, sizeof c->source, "verbatim \"%.100s\"", escaped);
                c->text = malloc(strlen(escaped) + 1);
                assert_non_null(c->text);
                c->len = unescape(escaped, c->text);
            }
            pending = c;
        } else if (strncmp(line, "sweep ", 6) == 0) {
            if (g.n_sweeps == cap_sweeps) {
                cap_sweeps = cap_sweeps ? 2 * cap_sweeps : 1024;
                g.sweeps = realloc(g.sweeps, (size_t)cap_sweeps * sizeof *g.sweeps);
                assert_non_null(g.sweeps);
            }
            fx_sweep *s = &g.sweeps[g.n_sweeps++];
            unsigned long long hash;
            if (sscanf(line, "sweep %d %c %x %x %d %llx", &s->pattern, &s->mode, (unsigned *)&s->lo, (unsigned *)&s->hi, &s->n, &hash) != 6)
                fail_msg("%s:%d: bad sweep line", FIXTURE, number);
            s->hash = hash;
        } else {
            fail_msg("%s:%d: unknown record", FIXTURE, number);
        }
    }
    free(line);
    fclose(f);
    assert_null(pending);
}

static const phrex_wordpiece *tokenizer_for(char mode) { return mode == 'C' ? g.cased : g.lower; }

// --- setup ------------------------------------------------------------------------

static int setup(void **state) {
    (void)state;
    if (phrex_wordpiece_init(&g.lower, VOCAB, 1) || phrex_wordpiece_init(&g.cased, VOCAB, 0)) {
        fprintf(stderr, "init: %s\n", phrex_last_error());
        return -1;
    }
    load_fixture();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    phrex_wordpiece_free(g.lower);
    phrex_wordpiece_free(g.cased);
    for (int i = 0; i < g.n_cases; i++) {
        free(g.cases[i].text);
        free(g.cases[i].ids);
        free(g.cases[i].start);
        free(g.cases[i].end);
    }
    free(g.cases);
    free(g.sweeps);
    for (int i = 0; i < n_files; i++) free(files[i].data), free(files[i].line_start);
    return 0;
}

// --- (1) the fixture cases --------------------------------------------------------------

static void print_token(const char *label, const fx_case *c, int32_t id, int32_t s, int32_t e) {
    const char *piece = phrex_wordpiece_piece(tokenizer_for(c->mode), id);
    int ok = s >= 0 && e >= s && (size_t)e <= c->len;
    print_error("    %s %6d %-12s [%d,%d) \"%.*s\"\n", label, id, piece ? piece : "?", s, e, ok ? e - s : 0, ok ? c->text + s : "");
}

// Returns 1 when the case matches HF; else prints the first difference.
static int check_case(const fx_case *c, phrex_tokens *t, int report) {
    phrex_tokens_clear(t);
    int rc = phrex_wordpiece_encode(tokenizer_for(c->mode), c->text, c->len, t);
    if (rc) {
        if (report) print_error("%s (%s, mode %c): encode failed: %s\n", c->name, c->source, c->mode, phrex_last_error());
        return 0;
    }
    int i = 0;
    while (i < c->n && i < t->n && c->ids[i] == t->ids[i] && c->start[i] == t->start[i] && c->end[i] == t->end[i]) i++;
    if (i == c->n && i == t->n) return 1;
    if (report) {
        print_error("%s (%s, mode %c): token %d of %d differs from HF (phrex made %d)\n", c->name, c->source, c->mode, i, c->n, t->n);
        int from = i >= 2 ? i - 2 : 0;
        for (int k = from; k < i + 3; k++) {
            if (k < c->n) print_token(k == i ? "HF  >" : "HF   ", c, c->ids[k], c->start[k], c->end[k]);
            if (k < t->n) print_token(k == i ? "C   >" : "C    ", c, t->ids[k], t->start[k], t->end[k]);
        }
        int32_t at = i < c->n ? c->start[i] : (i < t->n ? t->start[i] : 0);
        int32_t lo = at > 60 ? at - 60 : 0, hi = at + 60 < (int32_t)c->len ? at + 60 : (int32_t)c->len;
        print_error("    text near byte %d: \"%.*s\"\n", at, hi - lo, c->text + lo);
    }
    return 0;
}

static void test_fixture_matches_hf(void **state) {
    (void)state;
    size_t vocab_len;
    char *vocab = test_read_file(VOCAB, &vocab_len);
    assert_non_null(vocab);
    uint64_t vocab_hash = fnv1a64(vocab, vocab_len);
    free(vocab);
    if (vocab_hash != g.vocab_hash)
        fail_msg("%s changed since the fixture was made: regenerate it with tools/make_wordpiece_fixture.py", VOCAB);
    assert_true(g.n_data_cases >= MIN_DATA_CASES);

    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 64), PHREX_OK);
    int changed = 0, bad = 0, lower = 0, cased = 0;
    for (int i = 0; i < g.n_cases; i++) {
        const fx_case *c = &g.cases[i];
        if (fnv1a64(c->text, c->len) != c->hash) {
            if (changed++ < 3) print_error("%s: the text changed since the fixture was made (hash)\n", c->source);
            continue;
        }
        if (!check_case(c, &t, bad < 3)) bad++;
        lower += c->mode == 'L', cased += c->mode == 'C';
    }
    phrex_tokens_free(&t);
    print_message("%d cases (%d of real text, lowercase), %d lowercase + %d cased checked\n", g.n_cases, g.n_data_cases, lower, cased);
    if (changed) fail_msg("%d fixture texts changed in ../shared", changed);
    if (bad) fail_msg("%d of %d cases differ from HF", bad, g.n_cases);
}

// --- (2) sweeps over all code points -------------------------------------------------

// Must equal SWEEP_PATTERNS of tools/make_wordpiece_fixture.py.
static const char *sweep_prefix[3] = {"a", "a\xCC\x81", "\xE3\x80\xAE"};                           // a, a U+0301, U+302E
static const char *sweep_suffix[3] = {"b", "\xCC\xB4" "b", "\xCC\xA7\xF0\x9D\x85\xA5" "x"};          // b, U+0334 b, U+0327 U+1D165 x

static size_t sweep_text(const fx_sweep *s, char *out) {
    size_t n = 0;
    for (int32_t cp = s->lo; cp <= s->hi; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        if (n) out[n++] = ' ';
        size_t a = strlen(sweep_prefix[s->pattern]), b = strlen(sweep_suffix[s->pattern]);
        memcpy(out + n, sweep_prefix[s->pattern], a), n += a;
        n += (size_t)utf8_put((uint32_t)cp, out + n);
        memcpy(out + n, sweep_suffix[s->pattern], b), n += b;
    }
    return n;
}

static uint64_t tokens_hash(const phrex_tokens *t) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (int i = 0; i < t->n; i++) {
        uint32_t v[3] = {(uint32_t)t->ids[i], (uint32_t)t->start[i], (uint32_t)t->end[i]};
        for (int k = 0; k < 3; k++) h = (h ^ v[k]) * 0x100000001B3ull;
    }
    return h;
}

static void test_sweeps_match_hf(void **state) {
    (void)state;
    assert_true(g.n_sweeps > 0);
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 1 << 14), PHREX_OK);
    int bad = 0;
    int32_t covered[3][2] = {{0}};
    for (int i = 0; i < g.n_sweeps; i++) {
        const fx_sweep *s = &g.sweeps[i];
        assert_true(s->pattern >= 0 && s->pattern < 3 && s->hi >= s->lo);
        char *text = malloc((size_t)(s->hi - s->lo + 1) * 16); // <= 3 + 4 + 7 + 1 bytes a code point
        assert_non_null(text);
        size_t len = sweep_text(s, text);
        phrex_tokens_clear(&t);
        assert_int_equal(phrex_wordpiece_encode(tokenizer_for(s->mode), text, len, &t), PHREX_OK);
        if (t.n != s->n || tokens_hash(&t) != s->hash) {
            if (bad++ < 5)
                print_error("sweep %d (mode %c) of U+%04X..U+%04X: %d tokens, hash %016llx; HF: %d tokens, hash %016llx\n",
                            s->pattern, s->mode, s->lo, s->hi, t.n, (unsigned long long)tokens_hash(&t), s->n, (unsigned long long)s->hash);
        }
        covered[s->pattern][s->mode == 'C'] += s->hi - s->lo + 1;
        free(text);
    }
    phrex_tokens_free(&t);
    for (int p = 0; p < 3; p++)
        for (int m = 0; m < 2; m++) assert_int_equal(covered[p][m], 0x110000);
    if (bad) fail_msg("%d of %d code point sweeps differ from HF", bad, g.n_sweeps);
}

// --- (3) threads ----------------------------------------------------------------------

static void *thread_main(void *arg) {
    int *bad = arg;
    phrex_tokens t;
    if (phrex_tokens_init(&t, 64)) return NULL;
    for (int i = 0; i < g.n_cases; i++)
        if (!check_case(&g.cases[i], &t, 0)) (*bad)++;
    phrex_tokens_free(&t);
    return NULL;
}

static void test_concurrent_encodes(void **state) {
    (void)state;
    pthread_t threads[N_THREADS];
    int bad[N_THREADS] = {0};
    for (int i = 0; i < N_THREADS; i++) assert_int_equal(pthread_create(&threads[i], NULL, thread_main, &bad[i]), 0);
    for (int i = 0; i < N_THREADS; i++) assert_int_equal(pthread_join(threads[i], NULL), 0);
    for (int i = 0; i < N_THREADS; i++) assert_int_equal(bad[i], 0);
}

// --- (4) the rest ---------------------------------------------------------------------------

static void test_invalid_utf8_rejected(void **state) {
    (void)state;
    static const struct {
        const char *text;
        size_t len, bad_at;
    } cases[] = {
        {"ok \x80", 4, 3},                       // a stray continuation byte
        {"ab\xC0\x80", 4, 2},                    // an overlong NUL
        {"\xE0\x80\x80", 3, 0},                  // an overlong 3-byte form
        {"x\xED\xA0\x80y", 5, 1},                // a UTF-16 surrogate
        {"\xF4\x90\x80\x80", 4, 0},              // above U+10FFFF
        {"caf\xC3", 4, 3},                       // cut short at the end
        {"\xE2\x82 euro", 7, 0},                 // cut short before a space
        {"text \xFF text", 11, 5},               // a byte that never appears
        {"na\xC3\xAFve \xF5\x80\x80\x80", 11, 7}, // a 5.. lead byte
    };
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 4), PHREX_OK);
    assert_int_equal(phrex_wordpiece_encode(g.lower, "kept", 4, &t), PHREX_OK);
    int kept = t.n;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(phrex_wordpiece_encode(g.lower, cases[i].text, cases[i].len, &t), PHREX_ERR_INPUT);
        char want[64];
        snprintf(want, sizeof want, "at byte %zu ", cases[i].bad_at);
        if (!strstr(phrex_last_error(), want)) fail_msg("case %zu: \"%s\" lacks \"%s\"", i, phrex_last_error(), want);
        assert_int_equal(t.n, kept); // nothing appended on error
        assert_int_equal(phrex_wordpiece_encode(g.cased, cases[i].text, cases[i].len, &t), PHREX_ERR_INPUT);
    }
    phrex_tokens_free(&t);
}

static void test_empty_and_blank_text(void **state) {
    (void)state;
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 4), PHREX_OK);
    assert_int_equal(phrex_wordpiece_encode(g.lower, "", 0, &t), PHREX_OK);
    assert_int_equal(t.n, 0);
    assert_int_equal(phrex_wordpiece_encode(g.lower, NULL, 0, &t), PHREX_OK);
    assert_int_equal(t.n, 0);
    static const char blank[] = " \t\n\r\x0b\x0c \xC2\xA0\xE2\x80\x8B\xEF\xBB\xBF\xCC\x81\x00\x7f";
    assert_int_equal(phrex_wordpiece_encode(g.lower, blank, sizeof blank - 1, &t), PHREX_OK);
    assert_int_equal(t.n, 0);
    // Appends, never clears.
    assert_int_equal(phrex_wordpiece_encode(g.lower, "a b", 3, &t), PHREX_OK);
    assert_int_equal(phrex_wordpiece_encode(g.lower, "c", 1, &t), PHREX_OK);
    assert_int_equal(t.n, 3);
    assert_int_equal(t.start[2], 0);
    phrex_tokens_free(&t);
}

// A word of 100 normalized characters is split; one of 101 is a single
// [UNK] over the whole word. Characters count after normalization.
static void test_word_length_limit(void **state) {
    (void)state;
    int unk = phrex_wordpiece_special(g.lower, PHREX_SPECIAL_UNK);
    char text[1024];
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 4), PHREX_OK);
    static const struct {
        const char *unit; // repeated
        int repeat, is_unk;
        int tail; // bytes of the last unit after the last kept character
    } cases[] = {
        {"a", 100, 0, 0}, {"a", 101, 1, 0},
        {"\xC3\xA9", 100, 0, 0}, {"\xC3\xA9", 101, 1, 0},                 // é: 2 bytes, 1 character
        {"e\xCC\x81", 100, 0, 2}, {"e\xCC\x81", 101, 1, 2},               // e + U+0301: the mark is stripped
        {"a\xE2\x80\x8B", 100, 0, 3}, {"a\xE2\x80\x8B", 101, 1, 3},       // a + U+200B: dropped
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t u = strlen(cases[i].unit), len = 0;
        for (int k = 0; k < cases[i].repeat; k++) memcpy(text + len, cases[i].unit, u), len += u;
        phrex_tokens_clear(&t);
        assert_int_equal(phrex_wordpiece_encode(g.lower, text, len, &t), PHREX_OK);
        if (cases[i].is_unk) {
            assert_int_equal(t.n, 1);
            assert_int_equal(t.ids[0], unk);
            assert_int_equal(t.start[0], 0);
            // The span ends with the last kept character, as HF's does.
            assert_int_equal(t.end[0], (int)len - cases[i].tail);
        } else {
            assert_true(t.n > 1);
            for (int k = 0; k < t.n; k++) assert_int_not_equal(t.ids[k], unk);
            assert_int_equal(t.start[0], 0);
            // In order, disjoint; a stripped mark or dropped character at a
            // piece boundary belongs to neither piece (as in HF).
            for (int k = 1; k < t.n; k++) assert_true(t.start[k] >= t.end[k - 1] && t.start[k] <= t.end[k - 1] + 3);
            assert_int_equal(t.end[t.n - 1], (int)len - cases[i].tail);
        }
    }
    // The cased tokenizer does not strip the mark: 100 "e\u0301" are 200 characters.
    size_t len = 0;
    for (int k = 0; k < 100; k++) memcpy(text + len, "e\xCC\x81", 3), len += 3;
    phrex_tokens_clear(&t);
    assert_int_equal(phrex_wordpiece_encode(g.cased, text, len, &t), PHREX_OK);
    assert_int_equal(t.n, 1);
    assert_int_equal(t.ids[0], unk);
    phrex_tokens_free(&t);
}

static void test_lookup_api(void **state) {
    (void)state;
    const phrex_wordpiece *wp = g.lower;
    assert_int_equal(phrex_wordpiece_vocab_size(wp), 30522);
    assert_int_equal(phrex_wordpiece_special(wp, PHREX_SPECIAL_PAD), 0);
    assert_int_equal(phrex_wordpiece_special(wp, PHREX_SPECIAL_UNK), 100);
    assert_int_equal(phrex_wordpiece_special(wp, PHREX_SPECIAL_CLS), 101);
    assert_int_equal(phrex_wordpiece_special(wp, PHREX_SPECIAL_SEP), 102);
    assert_int_equal(phrex_wordpiece_special(wp, PHREX_SPECIAL_MASK), 103);
    assert_int_equal(phrex_wordpiece_special(wp, PHREX_SPECIAL_COUNT), -1);
    assert_string_equal(phrex_wordpiece_piece(wp, 101), "[CLS]");
    assert_string_equal(phrex_wordpiece_piece(wp, 30521), "##～");
    assert_null(phrex_wordpiece_piece(wp, -1));
    assert_null(phrex_wordpiece_piece(wp, 30522));
    for (int id = 0; id < phrex_wordpiece_vocab_size(wp); id++) {
        const char *piece = phrex_wordpiece_piece(wp, id);
        assert_int_equal(phrex_wordpiece_token_id(wp, piece, strlen(piece)), id);
    }
    assert_int_equal(phrex_wordpiece_token_id(wp, "the", 3), 1996);
    assert_int_equal(phrex_wordpiece_token_id(wp, "##ing", 5), 2075);
    assert_int_equal(phrex_wordpiece_token_id(wp, "thex", 3), 1996); // length counts, not NUL
    assert_int_equal(phrex_wordpiece_token_id(wp, "##", 2), -1);
    assert_int_equal(phrex_wordpiece_token_id(wp, "", 0), -1);
    assert_int_equal(phrex_wordpiece_token_id(wp, "zzzzzzzzq", 9), -1);

    // Special tokens in the text are text.
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 4), PHREX_OK);
    assert_int_equal(phrex_wordpiece_encode(wp, "[SEP]", 5, &t), PHREX_OK);
    assert_int_equal(t.n, 3);
    assert_int_equal(t.ids[0], phrex_wordpiece_token_id(wp, "[", 1));
    assert_int_equal(t.ids[1], phrex_wordpiece_token_id(wp, "sep", 3));
    assert_int_equal(t.ids[2], phrex_wordpiece_token_id(wp, "]", 1));
    phrex_tokens_free(&t);
}

static void expect_vocab_error(const char *dir, const char *name, const char *content, int code, const char *want) {
    char path[512], want_full[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (content) test_write_string(path, content);
    phrex_wordpiece *wp = (phrex_wordpiece *)&wp; // must come back NULL
    assert_int_equal(phrex_wordpiece_init(&wp, path, 1), code);
    assert_null(wp);
    snprintf(want_full, sizeof want_full, "%s%s", path, want);
    if (!strstr(phrex_last_error(), want_full)) fail_msg("vocab %s: \"%s\" lacks \"%s\"", name, phrex_last_error(), want_full);
    if (content) unlink(path);
}

static void test_vocab_errors(void **state) {
    (void)state;
    char dir[] = "/tmp/phrex-test-wordpiece-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *specials = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
    expect_vocab_error(dir, "missing.txt", NULL, PHREX_ERR_IO, ": cannot open");
    expect_vocab_error(dir, "empty.txt", "", PHREX_ERR_FORMAT, ": empty vocab");
    expect_vocab_error(dir, "blank.txt", "[PAD]\n[UNK]\n\n[CLS]\n", PHREX_ERR_FORMAT, ":3: empty line");
    expect_vocab_error(dir, "utf8.txt", "[PAD]\nna\xC3ve\n", PHREX_ERR_FORMAT, ":2: invalid UTF-8 at byte 2");
    expect_vocab_error(dir, "dup.txt", "[PAD]\n[UNK]\nfoo\n##s\nfoo\n", PHREX_ERR_FORMAT, ":5: token \"foo\" repeats line 3");
    expect_vocab_error(dir, "crlf.txt", "[PAD]\r\n[UNK]\r\n", PHREX_ERR_FORMAT, ":1: carriage return");
    expect_vocab_error(dir, "nomask.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", PHREX_ERR_FORMAT, ": no \"[MASK]\" token");

    // A small valid vocab, its last line without '\n'.
    char path[512], content[256];
    snprintf(path, sizeof path, "%s/small.txt", dir);
    snprintf(content, sizeof content, "%shello\n##s\n,", specials);
    test_write_string(path, content);
    phrex_wordpiece *wp;
    assert_int_equal(phrex_wordpiece_init(&wp, path, 1), PHREX_OK);
    assert_int_equal(phrex_wordpiece_vocab_size(wp), 8);
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 4), PHREX_OK);
    assert_int_equal(phrex_wordpiece_encode(wp, "Hellos, HELLO hi", 16, &t), PHREX_OK);
    int32_t want_ids[] = {5, 6, 7, 5, 1}, want_start[] = {0, 5, 6, 8, 14}, want_end[] = {5, 6, 7, 13, 16};
    assert_int_equal(t.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(t.ids[i], want_ids[i]);
        assert_int_equal(t.start[i], want_start[i]);
        assert_int_equal(t.end[i], want_end[i]);
    }
    phrex_tokens_free(&t);
    phrex_wordpiece_free(wp);
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_matches_hf),
        cmocka_unit_test(test_sweeps_match_hf),
        cmocka_unit_test(test_concurrent_encodes),
        cmocka_unit_test(test_invalid_utf8_rejected),
        cmocka_unit_test(test_empty_and_blank_text),
        cmocka_unit_test(test_word_length_limit),
        cmocka_unit_test(test_lookup_api),
        cmocka_unit_test(test_vocab_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
