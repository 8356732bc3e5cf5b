// The latency budget: how many candidates the reranker may score so that a
// whole answer (encode + search + rerank) stays within B milliseconds at p95.
//
// 1. Calibration: the reranker's cost for k pairs is measured on this
//    machine at the thread count in use, for k on the grid of Petrov et al.
//    (1, 2, 3, 4, 6, 10, 16, 25, 40, 63, 100, 158, 251, 398, 631, 1000 —
//    powers of 10^0.2, rounded) up to the largest k needed, stopping once a
//    k costs more than a ceiling (larger k cannot fit a sane budget).
//    Each k: one warm-up call, then timed calls (at least 5, until 100 ms
//    have gone, at most 20); the mean and the p95 are kept.
// 2. The calibration is saved as JSON and reused while its key matches:
//    reranker hash, threads, max_seq_len, CPU model name and a workload tag
//    (what kind of passages were measured: their length drives the cost).
//    A missing, corrupt, other-version or other-key file is re-measured
//    and overwritten.
// 3. Choice: predicted p95(k) is interpolated linearly between grid points
//    over the running maximum of the measured p95s (so it never decreases
//    in k, and the chosen k never decreases with the budget); the chosen k
//    is the largest k <= max_k with base_p95 + p95(k) <= budget, where
//    base_p95 is the measured p95 of encode + search. 0 means no reranking
//    fits. Adding the two p95s over-estimates the p95 of their sum: on the
//    safe side.
#ifndef PHREX_RERANK_BUDGET_H
#define PHREX_RERANK_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#define PHREX_BUDGET_FORMAT "phrex-rerank-calibration"
#define PHREX_BUDGET_VERSION 1
#define PHREX_BUDGET_GRID_LEN 16
#define PHREX_BUDGET_DEFAULT_STOP_MS 1000.0

extern const int phrex_budget_grid[PHREX_BUDGET_GRID_LEN];

typedef struct {
    uint64_t reranker_hash;
    int threads, max_seq_len;
    char cpu[128];     // /proc/cpuinfo "model name" ("unknown" when absent)
    char workload[64]; // e.g. "trec-dl", "dump"
} phrex_budget_key;

typedef struct {
    phrex_budget_key key;
    int n;                            // grid points measured, k[0..n)
    int k[PHREX_BUDGET_GRID_LEN];
    double mean_ms[PHREX_BUDGET_GRID_LEN], p95_ms[PHREX_BUDGET_GRID_LEN];
    int max_k;                        // the largest k asked for when measured
} phrex_budget_calibration;

// One timed call: score k pairs, return the elapsed milliseconds in *ms.
typedef int (*phrex_budget_measure_fn)(void *ctx, int k, double *ms);

// Fills the key, reading the CPU model from /proc/cpuinfo.
void phrex_budget_key_fill(phrex_budget_key *key, uint64_t reranker_hash, int threads, int max_seq_len,
                           const char *workload);
int phrex_budget_key_equal(const phrex_budget_key *a, const phrex_budget_key *b);

// Measures grid points k <= max_k (stopping after the first whose mean
// exceeds stop_ms; <= 0: PHREX_BUDGET_DEFAULT_STOP_MS).
int phrex_budget_measure(phrex_budget_calibration *out, const phrex_budget_key *key, phrex_budget_measure_fn fn,
                         void *ctx, int max_k, double stop_ms);

int phrex_budget_save(const char *path, const phrex_budget_calibration *c);
// PHREX_ERR_IO when missing, PHREX_ERR_FORMAT when malformed or its
// checksum is wrong, PHREX_ERR_MISMATCH for another format version.
int phrex_budget_load(const char *path, phrex_budget_calibration *c);

// Loads `path` when it holds a calibration for `key` covering max_k (or
// stopping below it because the ceiling was hit); otherwise measures and
// saves (creating the folder). *measured tells which (may be NULL). A file
// that cannot be written is a warning on stderr, not an error.
int phrex_budget_calibrate(const char *path, const phrex_budget_key *key, phrex_budget_measure_fn fn, void *ctx,
                           int max_k, phrex_budget_calibration *out, int *measured);

// Default calibration file: $PHREX_CALIBRATION_DIR, else
// $XDG_CACHE_HOME/phrex, else $HOME/.cache/phrex, then
// "rerank-<hash>-t<threads>-<workload>.json". PHREX_ERR_INPUT if no folder.
int phrex_budget_default_path(char *out, size_t cap, const phrex_budget_key *key);

// Predicted p95 for k pairs (0 for k <= 0; beyond the last grid point
// measured: extrapolated linearly from the last two points).
double phrex_budget_predict_p95(const phrex_budget_calibration *c, int k);

// The largest k in [0, max_k] whose base_p95_ms + predicted p95 fits in
// budget_ms. PHREX_ERR_INPUT for a budget <= 0 (or not finite), a negative
// base, or an empty calibration.
int phrex_budget_choose_k(const phrex_budget_calibration *c, double budget_ms, double base_p95_ms, int max_k,
                          int *k);

// Percentile p (0..100) of n values sorted ascending, linear between
// closest ranks (numpy's default); 0 when n is 0.
double phrex_budget_percentile(const double *sorted, int n, double p);

#endif
