#include "span_text.h"

#include "common/utf8.h"

#include <string.h>
#include <utf8proc.h>

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static int is_cjk(uint32_t cp) {
    // BERT's _is_chinese_char ranges: ideographs, each a word of its own.
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static int is_word_cp(uint32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z');
    if (is_cjk(cp)) return 0;
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_NO);
}

// The code point starting at byte i (0 on a bad sequence: not a word char).
static uint32_t cp_at(const char *text, size_t len, size_t i, size_t *n) {
    uint32_t cp = 0;
    *n = phrex_utf8_decode(text + i, len - i, &cp);
    if (!*n) *n = 1;
    return cp;
}

// Start of the code point that ends just before byte i (i > 0).
static size_t prev_start(const char *text, size_t i) {
    size_t p = i - 1;
    while (p > 0 && ((unsigned char)text[p] & 0xC0) == 0x80) p--;
    return p;
}

static int word_before(const char *text, size_t len, size_t i, size_t *at) {
    if (i == 0) return 0;
    size_t n;
    *at = prev_start(text, i);
    return is_word_cp(cp_at(text, len, *at, &n));
}

static int word_at(const char *text, size_t len, size_t i, size_t *n) {
    if (i >= len) return 0;
    return is_word_cp(cp_at(text, len, i, n));
}

void phrex_span_widen_to_words(const char *text, size_t len, int32_t *start, int32_t *end) {
    size_t a = (size_t)*start, b = (size_t)*end, at, n;
    while (word_at(text, len, a, &n) && word_before(text, len, a, &at)) a = at;
    while (word_before(text, len, b, &at) && word_at(text, len, b, &n)) b += n;
    *start = (int32_t)a;
    *end = (int32_t)b;
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// 1 when a sentence ends just after byte i.
static int ends_sentence(const char *text, size_t len, size_t i) {
    if (text[i] == '\n') return 1;
    if (text[i] != '.' && text[i] != '!' && text[i] != '?') return 0;
    return i + 1 == len || is_space((unsigned char)text[i + 1]);
}

void phrex_span_sentence(const char *text, size_t len, int32_t start, int32_t end, int32_t *s_start,
                         int32_t *s_end) {
    size_t a = 0, b = len;
    for (size_t i = 0; i < (size_t)start; i++)
        if (ends_sentence(text, len, i)) a = i + 1;
    // The span's own last byte may be a full stop ("U.S."), hence end - 1.
    for (size_t i = end > start ? (size_t)end - 1 : (size_t)start; i < len; i++)
        if (ends_sentence(text, len, i)) {
            b = i + 1;
            break;
        }
    while (a < (size_t)start && is_space((unsigned char)text[a])) a++;
    while (b > (size_t)end && is_space((unsigned char)text[b - 1])) b--;
    *s_start = (int32_t)a;
    *s_end = (int32_t)b;
}

uint64_t phrex_span_hash_bytes(uint64_t seed, const char *s, size_t len) {
    uint64_t h = FNV_OFFSET ^ seed;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * FNV_PRIME;
    return h;
}

static int is_ascii_punct(uint32_t cp) { return cp < 0x80 && cp > 0x20 && cp != 0x7F && !is_word_cp(cp); }

// A word's normal-form bytes are held back until they cannot be an
// article: at most 3 bytes ("the"), then streamed.
typedef struct {
    uint64_t h;
    char held[4];
    int n_held, streamed, words;
} norm_state;

static void put_byte(norm_state *st, unsigned char c) { st->h = (st->h ^ c) * FNV_PRIME; }

static void flush_held(norm_state *st) {
    if (!st->streamed && st->words++) put_byte(st, ' ');
    for (int i = 0; i < st->n_held; i++) put_byte(st, (unsigned char)st->held[i]);
    st->n_held = 0;
    st->streamed = 1;
}

static void add_bytes(norm_state *st, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (st->streamed) put_byte(st, (unsigned char)b[i]);
        else if (st->n_held < 3) st->held[st->n_held++] = b[i];
        else {
            flush_held(st);
            put_byte(st, (unsigned char)b[i]);
        }
    }
}

static int held_is_article(const norm_state *st) {
    return (st->n_held == 1 && st->held[0] == 'a') || (st->n_held == 2 && !memcmp(st->held, "an", 2)) ||
           (st->n_held == 3 && !memcmp(st->held, "the", 3));
}

static void end_word(norm_state *st) {
    if (!st->streamed && st->n_held && !held_is_article(st)) flush_held(st);
    st->n_held = 0;
    st->streamed = 0;
}

uint64_t phrex_span_normal_hash(const char *s, size_t len) {
    norm_state st = {FNV_OFFSET, {0}, 0, 0, 0};
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        size_t n = phrex_utf8_decode(s + i, len - i, &cp);
        if (!n) n = 1, cp = 0xFFFD;
        i += n;
        if (cp < 0x80 && is_space((unsigned char)cp)) {
            end_word(&st);
            continue;
        }
        if (is_ascii_punct(cp)) continue;
        char out[4];
        size_t m = phrex_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), out);
        add_bytes(&st, out, m);
    }
    end_word(&st);
    return st.h;
}
