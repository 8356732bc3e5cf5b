// The dump's on-disk layout, shared by the builder (index/build.c) and the
// reader (index/dump.c). Internal to index/: callers use index/dump.h.
//
// DUMP/
//   manifest.json  written last, atomically (rename): its presence marks a
//                  complete dump. Format name/version, model hash, tokenizer
//                  and window settings, factory, counts, the index file's
//                  size and hash, the LMDB content hash; its own checksum is
//                  its last field.
//   index.faiss    the FAISS index; vector ids are 0..kept-1 in corpus order
//                  (passage by passage, token by token), so the vector of a
//                  passage's k-th kept token is first_id + k.
//   meta.mdb       LMDB (MDB_NOSUBDIR), three named databases:
//     "passages"   key: passage number, u64 big-endian (corpus order over all
//                  --corpus files, from 0). Value: a passage record (below).
//     "kept"       key: first_id, u64 big-endian, for passages with at least
//                  one kept token; value: passage number, u64 little-endian.
//                  id -> passage is one MDB_SET_RANGE (+ MDB_PREV) lookup.
//     "info"       "build": the build state (below); "options": the build
//                  options fingerprint, text, so a resume with other options
//                  is refused naming what changed.
//   vectors.f32    the spill: a 64-byte header then (kept, dim) float32
//                  rows, the raw vectors the index is trained and filled
//                  from. Removed when the dump completes (--keep-vectors
//                  keeps it).
//
// Passage record, little-endian integers:
//   0  u8  record version (1)        1  u8 flags (bit 0: keep bitmap present)
//   2  u16 reserved (0)              4  u32 n_tokens (word pieces, no [CLS]/[SEP])
//   8  u32 n_kept                   12  u32 id_len
//  16  u32 title_len                20  u32 text_len
//  24  u64 first_id                 32  id NUL title NUL text NUL
//   then n_tokens x (i32 start, i32 end): byte offsets into text, [start, end)
//   then, with flag bit 0, ceil(n_tokens / 8) bytes: bit t%8 of byte t/8 set
//   when token t has a vector. Without the flag every token has one.
#ifndef PHREX_INDEX_DUMP_FORMAT_H
#define PHREX_INDEX_DUMP_FORMAT_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#define PHREX_DUMP_FORMAT_NAME "phrex-dump"
#define PHREX_DUMP_FORMAT_VERSION 1
#define PHREX_DUMP_MANIFEST "manifest.json"
#define PHREX_DUMP_INDEX "index.faiss"
#define PHREX_DUMP_LMDB "meta.mdb"
#define PHREX_DUMP_SPILL "vectors.f32"

#define PHREX_DUMP_RECORD_VERSION 1
#define PHREX_DUMP_RECORD_HEADER 32
#define PHREX_DUMP_RECORD_KEEP_BITMAP 1u

#define PHREX_DUMP_SPILL_MAGIC "PHRXSPIL"
#define PHREX_DUMP_SPILL_VERSION 1
#define PHREX_DUMP_SPILL_HEADER 64 // keeps rows 64-byte aligned in a mapping

#define PHREX_DUMP_STATE_MAGIC "PHRXBLD1"
#define PHREX_DUMP_STATE_VERSION 1
#define PHREX_DUMP_STATE_BYTES 96

// Seeds of the content hashes, so that a hash of one kind is never
// mistaken for another kind's.
#define PHREX_DUMP_SEED_MODEL 0x6d6f64656c763031ull   // "modelv01"
#define PHREX_DUMP_SEED_LMDB 0x6c6d646276303031ull    // "lmdbv001"
#define PHREX_DUMP_SEED_INDEX 0x696e646578763031ull   // "indexv01"
#define PHREX_DUMP_SEED_CONTENT 0x636f6e7465763031ull // "contev01"

typedef enum {
    PHREX_BUILD_ENCODING = 1, // passages are being encoded; spill grows
    PHREX_BUILD_ENCODED = 2,  // every passage stored; the index is next
    PHREX_BUILD_INDEXED = 3,  // index.faiss written and hashed; manifest next
} phrex_build_stage;

// Where a build stands, stored at every checkpoint in the same LMDB
// transaction as the passages it counts.
typedef struct {
    uint32_t stage;       // phrex_build_stage
    uint64_t passages;    // passages stored (the next passage number)
    uint64_t tokens;      // word pieces of those passages
    uint64_t kept;        // vectors in the spill (the next vector id)
    uint64_t empty;       // passages with no token
    uint64_t windows;     // encoder windows run
    uint64_t spill_bytes; // valid bytes of the spill, header included
    uint64_t index_bytes; // index.faiss size (stage INDEXED)
    uint64_t index_hash;  // index.faiss hash (stage INDEXED)
    uint64_t trained_on;  // vectors the index was trained on (stage INDEXED)
} phrex_build_state;

// A decoded passage record; pointers point into the record bytes.
typedef struct {
    uint32_t n_tokens, n_kept;
    uint64_t first_id;
    const char *id, *title, *text; // NUL-terminated
    uint32_t id_len, title_len, text_len;
    const unsigned char *offsets; // (n_tokens, 2) little-endian i32, unaligned
    const unsigned char *keep;    // bitmap, or NULL when every token is kept
} phrex_dump_record;

// Bytes of a record with these sizes.
size_t phrex_dump_record_size(uint32_t id_len, uint32_t title_len, uint32_t text_len, uint32_t n_tokens, int bitmap);

// Writes a record into out[0, phrex_dump_record_size(..)). `keep` (n_tokens
// flags, 0/1) may be NULL when every token is kept; a bitmap is written
// only when some token is not.
void phrex_dump_record_encode(unsigned char *out, const char *id, uint32_t id_len, const char *title,
                              uint32_t title_len, const char *text, uint32_t text_len, uint32_t n_tokens,
                              const int32_t *start, const int32_t *end, const uint8_t *keep, uint32_t n_kept,
                              uint64_t first_id);

// Parses and checks a record (sizes, NULs, offsets inside the text, the
// keep count). PHREX_ERR_FORMAT naming `what` (e.g. "meta.mdb passage 12").
int phrex_dump_record_decode(const void *data, size_t len, const char *what, phrex_dump_record *out);

static inline void phrex_dump_record_span(const phrex_dump_record *r, uint32_t t, int32_t *start, int32_t *end) {
    const unsigned char *p = r->offsets + 8 * (size_t)t;
    *start = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    *end = (int32_t)((uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24);
}

static inline int phrex_dump_record_kept(const phrex_dump_record *r, uint32_t t) {
    return !r->keep || (r->keep[t >> 3] >> (t & 7) & 1);
}

void phrex_dump_state_encode(const phrex_build_state *s, unsigned char out[PHREX_DUMP_STATE_BYTES]);
int phrex_dump_state_decode(const void *data, size_t len, const char *what, phrex_build_state *s);

// Keys: big-endian so that LMDB's byte order is numeric order (MDB_APPEND).
void phrex_dump_put_be64(unsigned char out[8], uint64_t v);
uint64_t phrex_dump_get_be64(const unsigned char in[8]);
void phrex_dump_put_le64(unsigned char out[8], uint64_t v);
uint64_t phrex_dump_get_le64(const unsigned char in[8]);

// Turns an LMDB return code into a phrex error naming the file and what was
// being done. MDB_CORRUPTED, MDB_INVALID, MDB_VERSION_MISMATCH and
// MDB_PAGE_NOTFOUND are PHREX_ERR_FORMAT; the rest PHREX_ERR_INTERNAL.
int phrex_dump_lmdb_fail(int mdb_rc, const char *path, const char *what);

// Hash of the logical content of the "passages" and "kept" databases: every
// key and value in key order, framed by lengths; independent of LMDB's page
// layout, so two builds of the same corpus hash the same. *entries counts
// the key/value pairs.
int phrex_dump_hash_lmdb(MDB_txn *txn, MDB_dbi passages, MDB_dbi kept, const char *path, uint64_t *hash,
                         uint64_t *entries);

// Hash of a model directory: config.json, model.safetensors, vocab.txt and
// tokenizer_config.json (which decides lowercasing; hashed as absent when
// missing), each framed by name and size.
int phrex_dump_hash_model(const char *model_dir, uint64_t *hash);

// Writes path + "/" + name into out[cap]; PHREX_ERR_INPUT when too long.
int phrex_dump_path(char *out, size_t cap, const char *dir, const char *name);

#endif
