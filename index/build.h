// The offline indexer: a corpus in, a phrase dump out (one vector per
// passage word piece in FAISS, the passages and token offsets in LMDB; the
// layout is described in index/dump_format.h).
//
// Stages, each resumable after a crash or kill -9 at any moment:
//   encode  passages are read in corpus order, tokenized, cut into windows
//           (max_seq_len / doc_stride), packed into batches and encoded;
//           each token takes its vector from the window where it is most
//           central. Vectors of kept tokens are appended to the spill file
//           and, after every batch, the spill is fsync'ed and the batch's
//           passage records are committed in one LMDB transaction together
//           with the spill length. A rerun truncates the spill to the last
//           committed length and carries on after the last stored passage.
//           Batches always start at a passage, so the batches after a
//           resume are the ones an uninterrupted run would have formed,
//           and the vectors are bit-identical.
//   index   the FAISS index is trained on a uniform sample of the spill (a
//           seeded random subset of rows, drawn once encoding is done: the
//           whole corpus is represented, unlike the first K passages, and
//           nothing needs checkpointing, unlike a reservoir), filled from
//           the spill in chunks, written to a temporary file, fsync'ed and
//           renamed. Redone from the spill if interrupted.
//   finish  the manifest (hashes of the index file and of the LMDB content)
//           is written to a temporary file and renamed: it marks the dump
//           complete. Then the spill is deleted (unless keep_vectors).
// Memory is constant in the corpus size apart from the FAISS index itself:
// one batch of activations, the training sample, one chunk of vectors.
#ifndef PHREX_INDEX_BUILD_H
#define PHREX_INDEX_BUILD_H

#include "data/corpus.h"
#include "index/dump.h"

#include <stddef.h>
#include <stdint.h>

// A phrase filter: sets keep[i] to 1 for each of the n token vectors
// (n, dim) that should go into the index, 0 for the others. Called with
// consecutive tokens of one or more passages, in corpus order. Returns
// PHREX_OK or an error code (with phrex_fail). Tokens it drops keep their
// offsets in LMDB but get no vector id.
typedef int (*phrex_phrase_filter_fn)(void *ctx, const float *vectors, int n, int dim, uint8_t *keep);

typedef struct {
    const char *const *corpus_paths; // read in this order; passage numbers run across them
    int n_corpus;
    phrex_corpus_format format; // for every corpus path; AUTO detects each
    int skip_bad;               // skip malformed records (counted) instead of failing
    const char *model_dir;
    const char *out_dir;        // created if missing (its parent must exist)
    const char *index_factory;  // FAISS factory string; NULL or "auto": see phrex_index_auto_factory
    int max_seq_len;            // tokens per window with [CLS] and [SEP] (384)
    int doc_stride;             // step between window starts, in word pieces (128)
    int batch_tokens;           // packed tokens per forward pass (8192), >= max_seq_len
    int threads;                // <= 0: all cores
    int64_t train_size;         // vectors to train the index on; 0: chosen from the factory
    phrex_metric metric;        // inner product (default) or L2
    int keep_vectors;           // keep the spill (raw float vectors) in the dump
    int shard, n_shards;        // n_shards > 1: build shard `shard` of n_shards equal
                                // passage ranges (see phrex_index_merge_dumps)
    size_t map_size;            // initial LMDB map size; 0: 64 MiB + 4x the corpus
                                // bytes. Doubles whenever a batch does not fit.
    int progress;               // draw progress lines on a terminal
    phrex_phrase_filter_fn filter; // NULL: keep every token
    void *filter_ctx;
    const char *filter_name;    // identifies the filter and its threshold in the
                                // resume fingerprint and the manifest ("none")
} phrex_build_options;

typedef struct {
    int64_t passages, tokens, kept, empty, bad, windows;
    int64_t run_tokens;        // tokens encoded by this run (less than tokens after a resume)
    int64_t trained_on;        // vectors the index was trained on
    uint64_t index_bytes, lmdb_bytes, corpus_bytes;
    double encode_s, index_s, total_s; // this run only
    int resumed;               // 1: continued an interrupted build; 2: already complete
    char factory[128];         // the factory string used (auto resolved)
} phrex_build_stats;

// Defaults: AUTO format, strict, factory "auto", 384 / 128, 8192 tokens,
// all cores, progress on, no filter.
void phrex_build_options_default(phrex_build_options *o);

// Builds (or resumes, or confirms) the dump in o->out_dir. A directory
// holding something other than a phrex dump is refused, as is a resume with
// different options, model or corpus files (the message names the
// difference). stats may be NULL.
int phrex_index_build_dump(const phrex_build_options *o, phrex_build_stats *stats);

// Merges finished dumps ("shards": parts of one corpus, each built with
// keep_vectors, the same model, windows and filter) into one dump, as if
// their corpora had been one file read in shard order: passages and vector
// ids renumbered, records byte-identical to a single build's, and one index
// trained on a sample of all the vectors (shards trained apart would have
// incompatible IVF centroids). Resumable like a build. o->corpus_paths are
// the shard folders; windows and filter come from the shards; the index
// options, model_dir (checked against the shards), out_dir, threads,
// keep_vectors and progress apply. The shards are left as they were.
int phrex_index_merge_dumps(const phrex_build_options *o, phrex_build_stats *stats);

// The factory "auto" stands for, for n vectors: "Flat" up to 20,000, else
// "IVF<nlist>,SQ8" with nlist the power of two nearest 4*sqrt(n) (at least
// 256, at most 65,536). Writes into out[cap].
void phrex_index_auto_factory(int64_t n, char *out, size_t cap);

#endif
