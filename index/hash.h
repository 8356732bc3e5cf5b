// A fast 64-bit checksum for dump files and model fingerprints: the XXH64
// algorithm (about 10 GB/s here), fast enough to verify a whole index file
// on open, and good enough to catch truncation, bit flips and a different
// model. It is not a cryptographic hash: it guards against accidents, not
// against an adversary crafting a dump.
#ifndef PHREX_INDEX_HASH_H
#define PHREX_INDEX_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t total;      // bytes fed so far
    uint64_t acc[4];     // the four lanes
    unsigned char buf[32]; // bytes waiting for a full 32-byte stripe
    unsigned buffered;
    uint64_t seed;
} phrex_hash64_state;

void phrex_hash64_init(phrex_hash64_state *s, uint64_t seed);
void phrex_hash64_update(phrex_hash64_state *s, const void *data, size_t len);
uint64_t phrex_hash64_final(const phrex_hash64_state *s);

// One-shot hash of data[0, len).
uint64_t phrex_hash64(const void *data, size_t len, uint64_t seed);

// Feeds a little-endian u64 (for hashing counts and lengths as framing, so
// that "ab"+"c" and "a"+"bc" differ).
void phrex_hash64_update_u64(phrex_hash64_state *s, uint64_t v);

// Hashes the whole file at `path` into `s` (streamed in 1 MiB reads) and
// sets *bytes (may be NULL) to its size. PHREX_ERR_IO naming the file.
int phrex_hash64_update_file(phrex_hash64_state *s, const char *path, uint64_t *bytes);

// "0123456789abcdef": 16 lowercase hex digits and a NUL into out[17].
void phrex_hash64_hex(uint64_t h, char out[17]);
// Parses 16 hex digits; 0 on success, -1 otherwise.
int phrex_hash64_parse_hex(const char *text, uint64_t *out);

#endif
