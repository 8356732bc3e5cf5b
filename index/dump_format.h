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
//   shards/        only from `phrex build --mpi`: the shard dumps the ranks
//                  built (K-of-N), which rank 0 merged into this dump.
//   vectors.f32    the spill: a 64-byte header then (kept, dim) float32
//                  rows, the raw vectors the index is trained and filled
//                  from. Removed when the dump completes (--keep-vectors
//                  keeps it).
//
// Passage records: index/record.h (version 2, compact varints; dumps of
// format version 1 are refused with a message to rebuild them).
#ifndef PHREX_INDEX_DUMP_FORMAT_H
#define PHREX_INDEX_DUMP_FORMAT_H

#include "index/record.h"

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#define PHREX_DUMP_FORMAT_NAME "phrex-dump"
#define PHREX_DUMP_FORMAT_VERSION 2 // 2: compact records (index/record.h)
#define PHREX_DUMP_MANIFEST "manifest.json"
#define PHREX_DUMP_INDEX "index.faiss"
#define PHREX_DUMP_LMDB "meta.mdb"
#define PHREX_DUMP_SPILL "vectors.f32"
#define PHREX_DUMP_SHARDS "shards" // phrex build --mpi: the ranks' shards, shards/K-of-N


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
