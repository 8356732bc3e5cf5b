// The index stage of the builder (internal to index/): the spill file in,
// a FAISS index file out.
#ifndef PHREX_INDEX_BUILD_FAISS_H
#define PHREX_INDEX_BUILD_FAISS_H

#include <stdint.h>

typedef struct {
    const char *spill_path; // PHREX_DUMP_SPILL: header, then (n, dim) float32
    const char *index_path; // written atomically (a .tmp file renamed)
    const char *factory;    // resolved (not "auto")
    int metric_l2;          // else inner product
    int dim;
    int64_t n;              // rows in the spill
    int64_t train_size;     // 0: chosen from the factory
    int progress;
    int allow_empty;        // n == 0 is fine (a shard whose range has no kept
                            // token: an empty Flat index); else an error
} phrex_faiss_job;

// Trains (when the factory needs it) on a stratified random sample of the
// spill, adds every row in chunks with ids 0..n-1, builds the IVF direct
// map (so that reconstruct works), writes, fsyncs and renames. Sets
// *trained_on to the sample size (0 when nothing was trained), *bytes and
// *hash (phrex_hash64 with PHREX_DUMP_SEED_INDEX) of the file written.
int phrex_index_build_faiss(const phrex_faiss_job *job, int64_t *trained_on, uint64_t *bytes, uint64_t *hash);

// Checks that FAISS parses `factory` for dim-d vectors (and that it leaves
// ids to phrex), before hours of encoding rather than after.
int phrex_index_check_factory(const char *factory, int dim, int metric_l2);

// Hash and size of an index file as phrex_index_build_faiss computes them.
int phrex_index_hash_file(const char *path, uint64_t *bytes, uint64_t *hash);

#endif
