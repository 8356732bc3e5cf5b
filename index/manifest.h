// DUMP/manifest.json: what a dump is and how to check it. Internal to
// index/. JSON so that a person can read what a dump holds; it ends with
// "checksum", the hash of the whole text with that field's 16 hex digits
// written as zeros, so that a hand edit or a torn write is caught.
//
// {
//   "format": "phrex-dump", "version": 1,
//   "model": {"hash": "<hex>", "dir": "...", "hidden_size": 384, "vocab_size": 30522},
//   "windows": {"max_seq_len": 384, "doc_stride": 128},
//   "filter": "none",
//   "index": {"file": "index.faiss", "factory": "Flat", "metric": "inner_product",
//             "bytes": N, "hash": "<hex>", "ntotal": N, "trained_on": N},
//   "lmdb": {"file": "meta.mdb", "hash": "<hex>", "entries": N},
//   "counts": {"passages": N, "tokens": N, "kept": N, "empty": N, "windows": N},
//   "corpus": ["path", ...],
//   "checksum": "<hex>"
// }
#ifndef PHREX_INDEX_MANIFEST_H
#define PHREX_INDEX_MANIFEST_H

#include <stdint.h>

typedef struct {
    int version;
    uint64_t model_hash;
    char model_dir[512];
    int hidden_size, vocab_size;
    int max_seq_len, doc_stride;
    char filter[64];
    char factory[128];
    char metric[16];
    uint64_t index_bytes, index_hash;
    int64_t ntotal, trained_on;
    uint64_t lmdb_hash, lmdb_entries;
    int64_t passages, tokens, kept, empty, windows;
} phrex_manifest;

// Writes dir/manifest.json atomically: a temporary file, fsync, rename,
// fsync of the directory.
int phrex_manifest_write(const char *dir, const phrex_manifest *m, const char *const *corpus, int n_corpus);

// Reads and checks path (checksum, format, version, every field present and
// in range). PHREX_ERR_FORMAT naming the field.
int phrex_manifest_read(const char *path, phrex_manifest *m);

// fsync of a directory, so that a rename in it is durable.
int phrex_manifest_sync_dir(const char *dir);

#endif
