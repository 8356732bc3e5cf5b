// Passage records of the dump's "passages" database (index/dump_format.h),
// encoded by the builder (index/build.c) and decoded by the reader
// (index/dump.c). Internal to index/.
//
// Record version 2 (compact; version 1 spent 8 bytes per token on offsets
// and a 32-byte header, about 19 bytes per corpus token in LMDB):
//   u8  record version (2)
//   u8  flags (bit 0: keep bitmap present)
//   varints (LEB128, 7 bits a byte, low first): n_tokens, n_kept, id_len,
//       title_len, text_len, codes_len, first_id
//   id NUL title NUL text NUL      (raw UTF-8: readers point into the map,
//                                   and short passages compress poorly)
//   codes_len bytes of token offset codes (below)
//   with flag bit 0, ceil(n_tokens / 8) bytes: bit t%8 of byte t/8 set when
//       token t has a vector; without it every token has one.
//
// Offset codes: token t is [start, end) in bytes of text. With prev_end the
// previous token's end (0 before the first), gap = start - prev_end and
// len = end - start, one varint v = len << 2 | g, where g = gap for a gap
// of 0, 1 or 2 (no space, one space, two bytes) and g = 3 for any other
// gap, which follows as a zigzag varint (negative for pieces sharing one
// character). Word pieces under 32 bytes with a gap of at most 2 take one
// byte: about 1.05 bytes per token on English Wikipedia.
#ifndef PHREX_INDEX_RECORD_H
#define PHREX_INDEX_RECORD_H

#include <stddef.h>
#include <stdint.h>

#define PHREX_DUMP_RECORD_VERSION 2
#define PHREX_DUMP_RECORD_KEEP_BITMAP 1u

// A decoded passage record; pointers point into the record bytes.
typedef struct {
    uint32_t n_tokens, n_kept;
    uint64_t first_id;
    const char *id, *title, *text; // NUL-terminated
    uint32_t id_len, title_len, text_len;
    const unsigned char *codes;   // offset codes (codes_len bytes), see above
    uint32_t codes_len;
    const unsigned char *keep;    // bitmap, or NULL when every token is kept
} phrex_dump_record;

// An upper bound of the bytes a record with these sizes takes.
size_t phrex_dump_record_bound(uint32_t id_len, uint32_t title_len, uint32_t text_len, uint32_t n_tokens);

// Writes a record into out (phrex_dump_record_bound bytes available) and
// returns its length. start/end: (n_tokens) byte offsets into text, start
// non-decreasing, start <= end <= text_len. `keep` (n_tokens flags, 0/1)
// may be NULL when every token is kept; a bitmap is written only when some
// token is not.
size_t phrex_dump_record_encode(unsigned char *out, const char *id, uint32_t id_len, const char *title,
                                uint32_t title_len, const char *text, uint32_t text_len, uint32_t n_tokens,
                                const int32_t *start, const int32_t *end, const uint8_t *keep, uint32_t n_kept,
                                uint64_t first_id);

// Parses and checks a record's structure (version, sizes, NULs, the keep
// count); the offsets are checked by phrex_dump_record_offsets. A record of
// another version is PHREX_ERR_FORMAT saying so (rebuild the dump). Errors
// name `what` (e.g. "meta.mdb: passage 12").
int phrex_dump_record_decode(const void *data, size_t len, const char *what, phrex_dump_record *out);

// Decodes the token offsets into start/end (n_tokens each), checking that
// every span lies inside the text, in order: what span reconstruction
// relies on. start/end may be NULL to check only.
int phrex_dump_record_offsets(const phrex_dump_record *r, const char *what, int32_t *start, int32_t *end);

static inline int phrex_dump_record_kept(const phrex_dump_record *r, uint32_t t) {
    return !r->keep || (r->keep[t >> 3] >> (t & 7) & 1);
}

#endif
