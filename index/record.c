#include "record.h"

#include "common/error.h"

#include <string.h>

// --- varints ----------------------------------------------------------------

static unsigned char *put_varint(unsigned char *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

// Reads a varint from [*p, end); 0 when it runs past end or past 64 bits.
static int get_varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        unsigned char b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

static uint64_t zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static int64_t unzigzag(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }

#define VARINT_MAX 10
#define HEADER_MAX (2 + 7 * VARINT_MAX)

// --- encoding ---------------------------------------------------------------

size_t phrex_dump_record_bound(uint32_t id_len, uint32_t title_len, uint32_t text_len, uint32_t n_tokens) {
    return HEADER_MAX + (size_t)id_len + title_len + text_len + 3 + 2 * VARINT_MAX * (size_t)n_tokens +
           ((size_t)n_tokens + 7) / 8;
}

// The offset codes of n tokens into p; returns the end.
static unsigned char *put_codes(unsigned char *p, uint32_t n, const int32_t *start, const int32_t *end) {
    int64_t prev_end = 0;
    for (uint32_t t = 0; t < n; t++) {
        int64_t gap = (int64_t)start[t] - prev_end, len = (int64_t)end[t] - start[t];
        uint64_t g = gap >= 0 && gap <= 2 ? (uint64_t)gap : 3;
        p = put_varint(p, (uint64_t)len << 2 | g);
        if (g == 3) p = put_varint(p, zigzag(gap));
        prev_end = end[t];
    }
    return p;
}

static size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) v >>= 7, n++;
    return n;
}

// Bytes put_codes writes for these tokens.
static uint64_t codes_size(uint32_t n, const int32_t *start, const int32_t *end) {
    uint64_t bytes = 0;
    int64_t prev_end = 0;
    for (uint32_t t = 0; t < n; t++) {
        int64_t gap = (int64_t)start[t] - prev_end, len = (int64_t)end[t] - start[t];
        uint64_t g = gap >= 0 && gap <= 2 ? (uint64_t)gap : 3;
        bytes += varint_size((uint64_t)len << 2 | g) + (g == 3 ? varint_size(zigzag(gap)) : 0);
        prev_end = end[t];
    }
    return bytes;
}

size_t phrex_dump_record_encode(unsigned char *out, const char *id, uint32_t id_len, const char *title,
                                uint32_t title_len, const char *text, uint32_t text_len, uint32_t n_tokens,
                                const int32_t *start, const int32_t *end, const uint8_t *keep, uint32_t n_kept,
                                uint64_t first_id) {
    int bitmap = keep && n_kept != n_tokens;
    unsigned char *p = out;
    *p++ = PHREX_DUMP_RECORD_VERSION;
    *p++ = bitmap ? PHREX_DUMP_RECORD_KEEP_BITMAP : 0;
    uint64_t codes_len = codes_size(n_tokens, start, end); // its length goes before the strings
    const uint64_t fields[7] = {n_tokens, n_kept, id_len, title_len, text_len, codes_len, first_id};
    for (int i = 0; i < 7; i++) p = put_varint(p, fields[i]);
    memcpy(p, id, id_len), p += id_len, *p++ = 0;
    memcpy(p, title, title_len), p += title_len, *p++ = 0;
    memcpy(p, text, text_len), p += text_len, *p++ = 0;
    p = put_codes(p, n_tokens, start, end);
    if (bitmap) {
        memset(p, 0, ((size_t)n_tokens + 7) / 8);
        for (uint32_t t = 0; t < n_tokens; t++)
            if (keep[t]) p[t >> 3] |= (unsigned char)(1u << (t & 7));
        p += ((size_t)n_tokens + 7) / 8;
    }
    return (size_t)(p - out);
}

// --- decoding ---------------------------------------------------------------

static uint32_t count_bits(const unsigned char *bits, uint32_t n) {
    uint32_t c = 0;
    for (uint32_t t = 0; t < n; t++) c += bits[t >> 3] >> (t & 7) & 1;
    return c;
}

// Takes a NUL-terminated string of len bytes at *p.
static int take_string(const unsigned char **p, const unsigned char *end, uint64_t len, const char **s,
                       const char *what, const char *field) {
    if ((uint64_t)(end - *p) <= len || (*p)[len])
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' is truncated or not NUL-terminated", what, field);
    *s = (const char *)*p;
    *p += len + 1;
    return PHREX_OK;
}

int phrex_dump_record_decode(const void *data, size_t len, const char *what, phrex_dump_record *r) {
    const unsigned char *p = data, *end = p + len;
    if (len < 2) return phrex_fail(PHREX_ERR_FORMAT, "%s: record of %zu bytes is truncated", what, len);
    if (p[0] != PHREX_DUMP_RECORD_VERSION)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: record version %u, this phrex reads version %d: rebuild the dump",
                          what, p[0], PHREX_DUMP_RECORD_VERSION);
    if (p[1] & ~PHREX_DUMP_RECORD_KEEP_BITMAP)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: unknown record flags 0x%02x", what, p[1]);
    int bitmap = p[1] & PHREX_DUMP_RECORD_KEEP_BITMAP;
    p += 2;
    static const char *const names[7] = {"n_tokens", "n_kept", "id_len", "title_len", "text_len", "codes_len",
                                         "first_id"};
    uint64_t f[7];
    for (int i = 0; i < 7; i++) {
        if (!get_varint(&p, end, &f[i]))
            return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' is truncated", what, names[i]);
        if (i < 6 && f[i] > UINT32_MAX)
            return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' is %llu, too large", what, names[i],
                              (unsigned long long)f[i]);
    }
    memset(r, 0, sizeof *r);
    r->n_tokens = (uint32_t)f[0];
    r->n_kept = (uint32_t)f[1];
    r->id_len = (uint32_t)f[2];
    r->title_len = (uint32_t)f[3];
    r->text_len = (uint32_t)f[4];
    r->codes_len = (uint32_t)f[5];
    r->first_id = f[6];
    if (r->n_kept > r->n_tokens || (!bitmap && r->n_kept != r->n_tokens))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: %u kept tokens of %u", what, r->n_kept, r->n_tokens);
    int rc;
    if ((rc = take_string(&p, end, r->id_len, &r->id, what, "id")) ||
        (rc = take_string(&p, end, r->title_len, &r->title, what, "title")) ||
        (rc = take_string(&p, end, r->text_len, &r->text, what, "text")))
        return rc;
    // Every token takes at least one code byte.
    size_t bits = bitmap ? ((size_t)r->n_tokens + 7) / 8 : 0, left = (size_t)(end - p);
    if (r->codes_len < r->n_tokens || left != (size_t)r->codes_len + bits)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: record is %zu bytes, its header says %zu", what, len,
                          len - left + (size_t)r->codes_len + bits);
    r->codes = p;
    r->keep = bitmap ? p + r->codes_len : NULL;
    if (r->keep && count_bits(r->keep, r->n_tokens) != r->n_kept)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: keep bitmap disagrees with n_kept %u", what, r->n_kept);
    return PHREX_OK;
}

int phrex_dump_record_offsets(const phrex_dump_record *r, const char *what, int32_t *start, int32_t *end) {
    const unsigned char *p = r->codes, *stop = p + r->codes_len;
    int64_t prev_start = 0, prev_end = 0;
    for (uint32_t t = 0; t < r->n_tokens; t++) {
        uint64_t v, z;
        if (!get_varint(&p, stop, &v))
            return phrex_fail(PHREX_ERR_FORMAT, "%s: offsets of token %u are truncated", what, t);
        int64_t gap = (int64_t)(v & 3);
        if (gap == 3) {
            if (!get_varint(&p, stop, &z))
                return phrex_fail(PHREX_ERR_FORMAT, "%s: offsets of token %u are truncated", what, t);
            gap = unzigzag(z);
        }
        uint64_t len = v >> 2;
        int64_t s = prev_end + gap, e = s + (int64_t)(len > UINT32_MAX ? UINT32_MAX : len);
        if (s < prev_start || e > (int64_t)r->text_len)
            return phrex_fail(PHREX_ERR_FORMAT,
                              "%s: token %u has offsets [%lld, %lld) outside the %u-byte text or out of order", what,
                              t, (long long)s, (long long)e, r->text_len);
        if (start) start[t] = (int32_t)s;
        if (end) end[t] = (int32_t)e;
        prev_start = s;
        prev_end = e;
    }
    if (p != stop) return phrex_fail(PHREX_ERR_FORMAT, "%s: %td bytes after the last token's offsets", what, stop - p);
    return PHREX_OK;
}
