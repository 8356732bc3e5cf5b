#include "pytext.h"

#include <stdlib.h>
#include <utf8proc.h>

#include "common/error.h"
#include "common/utf8.h"

int phrex_cpvec_push(phrex_cpvec *v, uint32_t cp) {
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        uint32_t *grown = realloc(v->data, cap * sizeof *grown);
        if (!grown) return phrex_fail(PHREX_ERR_MEMORY, "out of memory for %zu code points", cap);
        v->data = grown;
        v->cap = cap;
    }
    v->data[v->len++] = cp;
    return PHREX_OK;
}

void phrex_cpvec_free(phrex_cpvec *v) {
    free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}

int phrex_pytext_decode(const char *s, size_t n, phrex_cpvec *out) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t step = phrex_utf8_decode(s + i, n - i, &cp);
        if (step == 0) { // one replacement per bad byte
            cp = 0xFFFD;
            step = 1;
        }
        int rc = phrex_cpvec_push(out, cp);
        if (rc) return rc;
        i += step;
    }
    return PHREX_OK;
}

int phrex_pytext_encode(const uint32_t *cps, size_t n, phrex_buf *out) {
    int rc = phrex_buf_reserve(out, n * 4);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        size_t len = phrex_utf8_encode(cps[i], out->data + out->len);
        if (len == 0) len = phrex_utf8_encode(0xFFFD, out->data + out->len);
        out->len += len;
    }
    out->data[out->len] = '\0';
    return PHREX_OK;
}

static int combining_class(uint32_t cp) { return utf8proc_get_property((utf8proc_int32_t)cp)->combining_class; }

int phrex_pytext_nfd(const uint32_t *cps, size_t n, phrex_cpvec *out) {
    size_t first = out->len;
    for (size_t i = 0; i < n; i++) {
        utf8proc_int32_t parts[32];
        int boundclass = UTF8PROC_BOUNDCLASS_START;
        utf8proc_ssize_t k = (cps[i] > 0x10FFFF) ? -1
                             : utf8proc_decompose_char((utf8proc_int32_t)cps[i], parts, 32, UTF8PROC_DECOMPOSE, &boundclass);
        if (k < 0 || k > 32) { // not a code point utf8proc knows how to decompose: keep it
            parts[0] = (utf8proc_int32_t)cps[i];
            k = 1;
        }
        for (utf8proc_ssize_t j = 0; j < k; j++) {
            int rc = phrex_cpvec_push(out, (uint32_t)parts[j]);
            if (rc) return rc;
        }
    }
    // Canonical ordering: within each run of combining marks, a stable sort
    // by combining class (runs are short, insertion sort is right).
    uint32_t *d = out->data;
    for (size_t i = first + 1; i < out->len; i++) {
        int cc = combining_class(d[i]);
        if (cc == 0) continue;
        size_t j = i;
        while (j > first && combining_class(d[j - 1]) > cc) {
            uint32_t t = d[j - 1];
            d[j - 1] = d[j];
            d[j] = t;
            j--;
        }
    }
    return PHREX_OK;
}

static int is_cased(uint32_t cp) {
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT) return 1;
    return utf8proc_tolower((utf8proc_int32_t)cp) != (utf8proc_int32_t)cp ||
           utf8proc_toupper((utf8proc_int32_t)cp) != (utf8proc_int32_t)cp;
}

// Unicode's Case_Ignorable: marks, format characters, modifiers, and the
// word-internal punctuation of UAX #29 (MidLetter, MidNumLet, Single_Quote).
static int is_case_ignorable(uint32_t cp) {
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK: return 1;
    default: break;
    }
    static const uint32_t mid[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,  0x5F4,  0x2018, 0x2019,
                                   0x2024, 0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
    for (size_t k = 0; k < sizeof mid / sizeof *mid; k++)
        if (cp == mid[k]) return 1;
    return 0;
}

// Python's rule (unicodeobject.c, handle_capital_sigma): final when a cased
// letter precedes and none follows, skipping case-ignorable characters.
static int is_final_sigma(const uint32_t *cps, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && is_case_ignorable(cps[j - 1])) j--;
    if (j == 0 || !is_cased(cps[j - 1])) return 0;
    j = i + 1;
    while (j < n && is_case_ignorable(cps[j])) j++;
    return j == n || !is_cased(cps[j]);
}

size_t phrex_pytext_lower(const uint32_t *cps, size_t n, size_t i, uint32_t out[2]) {
    uint32_t cp = cps[i];
    if (cp < 0x80) {
        out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        return 1;
    }
    if (cp == 0x130) { // the one unconditional multi-character lowercase mapping
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    if (cp == 0x3A3) {
        out[0] = is_final_sigma(cps, n, i) ? 0x3C2 : 0x3C3;
        return 1;
    }
    out[0] = cp > 0x10FFFF ? cp : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
    return 1;
}

int phrex_pytext_is_space(uint32_t cp) {
    if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
    switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000: return 1;
    default: return cp >= 0x2000 && cp <= 0x200A;
    }
}

int phrex_pytext_is_word(uint32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    if (cp > 0x10FFFF) return 0;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return 1;
    default: return 0;
    }
}
