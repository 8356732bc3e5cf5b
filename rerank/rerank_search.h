// Reranking a phrase search's results, shared by `phrex ask` and `phrex eval`.
//
// phrex_reranking (one per process) holds the reranker, the weight of the
// combine rule (rerank/combine.h) and k, the number of top results to
// rerank: fixed, or chosen from a latency budget (rerank/budget.h) by
// phrex_reranking_plan, which
//   1. runs probe questions through the search to measure the p95 of
//      encode + search at the thread count one question will use,
//   2. calibrates the reranker's cost on the probes' own candidates
//      (workload "dump"), reusing a saved calibration when its key matches,
//   3. picks the largest k that keeps the p95 total within the budget (a k
//      of 1 counts as 0: one candidate cannot be reordered).
// phrex_rerank_search (one per thread) holds a rerank worker and buffers for
// max_results results: phrex_rerank_search_apply scores the top k results
// of a phrex_search_output ([CLS] question [SEP] title : passage [SEP], the
// result's best phrase marked), and reorders them by
// retrieval + w * cross-encoder score; the rest follow unchanged. No
// allocation per question.
#ifndef PHREX_RERANK_RERANK_SEARCH_H
#define PHREX_RERANK_RERANK_SEARCH_H

#include <stddef.h>
#include <stdio.h>

#include "rerank/budget.h"
#include "rerank/reranker.h"
#include "search/search.h"

#define PHREX_RERANK_DEFAULT_DIR "models/reranker"

typedef struct {
    const char *dir;        // reranker folder
    int k;                  // > 0: rerank this many; 0: from budget_ms via plan
    double budget_ms;       // with k == 0: must be > 0
    int weight_set;         // 1: use `weight`; 0: the folder's rerank_weight, else the default
    float weight;
    int max_results;        // longest result list to reorder (the search's top_k)
    const char *calibration_path; // NULL: phrex_budget_default_path
} phrex_rerank_options;

typedef struct phrex_reranking phrex_reranking;
typedef struct phrex_rerank_search phrex_rerank_search;

// Loads the reranker and the weight. PHREX_ERR_INPUT for k < 0, for no k and
// a budget <= 0, or max_results < 1; reranker errors name the folder.
int phrex_reranking_init(phrex_reranking **out, const phrex_rerank_options *o);

// --- the command-line flags `phrex ask` and `phrex eval` share --------------------
// --reranker DIR, --no-rerank, --budget-ms MS, --rerank-k K, --rerank-weight W,
// --calibration FILE. Without --reranker the default folder is used when it
// exists ($PHREX_RERANKER, else models/reranker under the working
// directory), and reranking is off otherwise. Without --rerank-k, k comes
// from the budget (PHREX_RERANK_DEFAULT_BUDGET_MS without --budget-ms).
#define PHREX_RERANK_DEFAULT_BUDGET_MS 25.0

enum {
    PHREX_RERANK_OPT_RERANKER = 0x5200, // getopt codes above any character
    PHREX_RERANK_OPT_NO_RERANK,
    PHREX_RERANK_OPT_BUDGET,
    PHREX_RERANK_OPT_K,
    PHREX_RERANK_OPT_WEIGHT,
    PHREX_RERANK_OPT_CALIBRATION,
    PHREX_RERANK_OPT_LAST = PHREX_RERANK_OPT_CALIBRATION,
};

// Entries for a `struct option` array (the including file has getopt.h).
#define PHREX_RERANK_LONGOPTS                                                                            \
    {"reranker", required_argument, 0, PHREX_RERANK_OPT_RERANKER},                                       \
        {"no-rerank", no_argument, 0, PHREX_RERANK_OPT_NO_RERANK},                                       \
        {"budget-ms", required_argument, 0, PHREX_RERANK_OPT_BUDGET},                                    \
        {"rerank-k", required_argument, 0, PHREX_RERANK_OPT_K},                                          \
        {"rerank-weight", required_argument, 0, PHREX_RERANK_OPT_WEIGHT},                                \
        {"calibration", required_argument, 0, PHREX_RERANK_OPT_CALIBRATION}

typedef struct {
    const char *dir, *calibration;
    const char *default_dir; // used without --reranker when it exists (NULL: PHREX_RERANK_DEFAULT_DIR)
    int no_rerank, k, weight_set, budget_set;
    double budget_ms;
    float weight;
} phrex_rerank_flags;

static inline int phrex_rerank_is_opt(int opt) {
    return opt >= PHREX_RERANK_OPT_RERANKER && opt <= PHREX_RERANK_OPT_LAST;
}
// Parses one flag; on bad input prints "<cmd>: ..." and returns 2 (misuse),
// e.g. a budget <= 0.
int phrex_rerank_flags_parse(phrex_rerank_flags *f, int opt, const char *arg, const char *cmd);
// The flags' help lines.
void phrex_rerank_flags_help(FILE *out);
// The reranking the flags ask for; *out = NULL when reranking is off.
// max_results: the search's top_k. Errors name the reranker folder.
int phrex_reranking_from_flags(phrex_reranking **out, const phrex_rerank_flags *f, int max_results);
// One line for humans: "reranker DIR (L layers), k K (budget B ms, encode+search p95 P ms), weight W".
void phrex_reranking_describe(const phrex_reranking *r, char *buf, size_t cap);
void phrex_reranking_free(phrex_reranking *r);
const phrex_reranker *phrex_reranking_model(const phrex_reranking *r);
int phrex_reranking_k(const phrex_reranking *r);
float phrex_reranking_weight(const phrex_reranking *r);
void phrex_reranking_set_weight(phrex_reranking *r, float w);
// The encode + search p95 that plan measured (0 before).
double phrex_reranking_base_p95(const phrex_reranking *r);
// The budget k was chosen for (0 when k was fixed).
double phrex_reranking_budget_ms(const phrex_reranking *r);

// Chooses k from the budget (nothing to do when k was fixed). questions:
// (n) probes (lens NULL: NUL-terminated), searched with a handle of its own built on `s` with `so`;
// threads: the cores one question gets (the calibration's key). Prints
// nothing; the thread count is restored on return.
int phrex_reranking_plan(phrex_reranking *r, phrex_searcher *s, const phrex_search_options *so,
                         const char *const *questions, const size_t *lens, int n, int threads);

// Generic probe questions (for `phrex ask`, which has no question file).
extern const char *const phrex_rerank_probe_questions[];
extern const int phrex_rerank_n_probe_questions;

int phrex_rerank_search_init(phrex_rerank_search **out, const phrex_reranking *r);
void phrex_rerank_search_free(phrex_rerank_search *rs);

// Reranks out's top min(k, out->n) results in place: out->results then
// points into rs (valid until rs's next call and the search's next call);
// reranked results get score = combined score. *rerank_ms (may be NULL)
// gets the time spent.
int phrex_rerank_search_apply(phrex_rerank_search *rs, const char *question, size_t len, phrex_search_output *out,
                              double *rerank_ms);

// The last apply's candidates in retrieval order, for weight tuning:
// their number, retrieval and cross-encoder scores ((n) each), and where
// each landed (order[i]: retrieval index of the i-th result).
int phrex_rerank_search_last(const phrex_rerank_search *rs, const float **retrieval, const float **ce,
                             const int **order);

#endif
