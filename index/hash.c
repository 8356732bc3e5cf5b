#include "hash.h"

#include "common/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// Little-endian loads through memcpy: input may be unaligned.
static inline uint64_t load64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint32_t load32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint64_t round64(uint64_t acc, uint64_t input) {
    acc += input * P2;
    return rotl(acc, 31) * P1;
}

static inline uint64_t merge64(uint64_t h, uint64_t v) {
    h ^= round64(0, v);
    return h * P1 + P4;
}

void phrex_hash64_init(phrex_hash64_state *s, uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->seed = seed;
    s->acc[0] = seed + P1 + P2;
    s->acc[1] = seed + P2;
    s->acc[2] = seed;
    s->acc[3] = seed - P1;
}

static void stripe(uint64_t acc[4], const unsigned char *p) {
    acc[0] = round64(acc[0], load64(p));
    acc[1] = round64(acc[1], load64(p + 8));
    acc[2] = round64(acc[2], load64(p + 16));
    acc[3] = round64(acc[3], load64(p + 24));
}

void phrex_hash64_update(phrex_hash64_state *s, const void *data, size_t len) {
    const unsigned char *p = data;
    s->total += len;
    if (s->buffered) {
        size_t take = 32 - s->buffered;
        if (take > len) take = len;
        memcpy(s->buf + s->buffered, p, take);
        s->buffered += (unsigned)take;
        p += take, len -= take;
        if (s->buffered < 32) return;
        stripe(s->acc, s->buf);
        s->buffered = 0;
    }
    for (; len >= 32; p += 32, len -= 32) stripe(s->acc, p);
    memcpy(s->buf, p, len);
    s->buffered = (unsigned)len;
}

uint64_t phrex_hash64_final(const phrex_hash64_state *s) {
    uint64_t h;
    if (s->total >= 32) {
        const uint64_t *a = s->acc;
        h = rotl(a[0], 1) + rotl(a[1], 7) + rotl(a[2], 12) + rotl(a[3], 18);
        for (int i = 0; i < 4; i++) h = merge64(h, a[i]);
    } else {
        h = s->seed + P5;
    }
    h += s->total;
    const unsigned char *p = s->buf;
    size_t left = s->buffered;
    for (; left >= 8; p += 8, left -= 8) {
        h ^= round64(0, load64(p));
        h = rotl(h, 27) * P1 + P4;
    }
    if (left >= 4) {
        h ^= (uint64_t)load32(p) * P1;
        h = rotl(h, 23) * P2 + P3;
        p += 4, left -= 4;
    }
    for (; left; p++, left--) {
        h ^= *p * P5;
        h = rotl(h, 11) * P1;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

uint64_t phrex_hash64(const void *data, size_t len, uint64_t seed) {
    phrex_hash64_state s;
    phrex_hash64_init(&s, seed);
    phrex_hash64_update(&s, data, len);
    return phrex_hash64_final(&s);
}

void phrex_hash64_update_u64(phrex_hash64_state *s, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    phrex_hash64_update(s, b, 8);
}

int phrex_hash64_update_file(phrex_hash64_state *s, const char *path, uint64_t *bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 20;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return phrex_fail(PHREX_ERR_MEMORY, "%s: cannot allocate a read buffer", path);
    }
    uint64_t total = 0;
    size_t got;
    while ((got = fread(buf, 1, cap, f)) > 0) {
        phrex_hash64_update(s, buf, got);
        total += got;
    }
    int failed = ferror(f);
    free(buf);
    fclose(f);
    if (failed) return phrex_fail(PHREX_ERR_IO, "%s: read error", path);
    if (bytes) *bytes = total;
    return PHREX_OK;
}

void phrex_hash64_hex(uint64_t h, char out[17]) { snprintf(out, 17, "%016llx", (unsigned long long)h); }

int phrex_hash64_parse_hex(const char *text, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = text[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint64_t)d;
    }
    if (text[16] != '\0') return -1;
    *out = v;
    return 0;
}
