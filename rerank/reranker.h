// Shallow cross-encoder reranker (Petrov et al., ECIR 2024): a BERT-family
// encoder of 1, 2, 4 or 6 layers over
//   [CLS] question [SEP] title : passage-with-the-candidate-span-marked [SEP]
// and a linear score head on [CLS] (or on the mean of [CLS] and the two
// marker tokens: "pool" in phrex_reranker.json). The answer span is marked
// by two marker tokens around it; a passage-level candidate (span -1, -1)
// has no marks.
//
// Two handles, like the encoder's: phrex_reranker holds the weights (shared,
// read-only, one per process); phrex_rerank_worker holds every buffer one
// thread needs for up to max_pairs pairs (no allocation per call).
#ifndef PHREX_RERANK_RERANKER_H
#define PHREX_RERANK_RERANKER_H

#include <stddef.h>
#include <stdint.h>

#define PHREX_RERANKER_JSON "phrex_reranker.json"

typedef struct phrex_reranker phrex_reranker;
typedef struct phrex_rerank_worker phrex_rerank_worker;

typedef struct {
    const char *title; // may be NULL
    size_t title_len;
    const char *text; // passage text, UTF-8
    size_t text_len;
    int32_t span_start, span_end; // candidate answer, byte offsets in text, [start, end); -1, -1: whole passage
} phrex_rerank_candidate;

// dir: phrex_reranker.json (format "phrex-reranker", version, layers,
// max_seq_len, marker token ids) next to an encoder folder in HF or delta
// layout. PHREX_ERR_IO when missing, PHREX_ERR_FORMAT when malformed,
// PHREX_ERR_MISMATCH when its parts disagree.
int phrex_reranker_init(phrex_reranker **out, const char *dir);
void phrex_reranker_free(phrex_reranker *r);
int phrex_reranker_layers(const phrex_reranker *r);
int phrex_reranker_max_seq_len(const phrex_reranker *r);
// A stable hash of the weights and settings (keys saved latency calibrations).
uint64_t phrex_reranker_hash(const phrex_reranker *r);

int phrex_rerank_worker_init(phrex_rerank_worker **out, const phrex_reranker *r, int max_pairs);
void phrex_rerank_worker_free(phrex_rerank_worker *w);

// Scores n <= max_pairs candidates for one question, packed into one
// forward pass. Each pair is cut to max_seq_len tokens: the question to at
// most 64, then the passage to a window that keeps the span.
// scores: (n) logits, higher = more likely correct. Uses phrex_get_threads().
int phrex_rerank_score(phrex_rerank_worker *w, const char *question, size_t question_len,
                       const phrex_rerank_candidate *cands, int n, float *scores);

// --- additions (h1): the folder's parts, for training and tests ---------------

#define PHREX_RERANKER_FORMAT "phrex-reranker"
#define PHREX_RERANKER_VERSION 1
#define PHREX_RERANKER_HEAD_WEIGHT "score.weight" // (1, C)
#define PHREX_RERANKER_HEAD_BIAS "score.bias"     // (1)

// What phrex_reranker.json records. Paths are relative to the folder.
typedef struct {
    const char *encoder;  // encoder folder ("encoder")
    const char *head;     // head safetensors file ("head.safetensors")
    const char *backbone; // "bert"
    int layers, hidden_size, max_seq_len, max_query_len;
    int32_t mark_start, mark_end; // vocabulary ids of [unused0] and [unused1]
    int pool;                     // a phrex_rerank_pool (rerank/rerank_data.h); "pool" in the JSON, "cls" when absent
} phrex_reranker_meta;

// Writes dir/phrex_reranker.json; extra_json (may be NULL) is a JSON object
// body ("\"steps\": 10, ...") appended to the object for provenance.
int phrex_reranker_write_json(const char *dir, const phrex_reranker_meta *m, const char *extra_json);
// Writes the score head: w (C) as "score.weight" (1, C), b as "score.bias" (1),
// f32 or f16 (dtype is a phrex_dtype from encoder/safetensors.h).
int phrex_reranker_write_head(const char *path, const float *w, float b, int C, int dtype);
// The head as loaded: w (C), and *b.
const float *phrex_reranker_head(const phrex_reranker *r, float *b);
int phrex_reranker_hidden_size(const phrex_reranker *r);
int32_t phrex_reranker_marker(const phrex_reranker *r, int which); // 0: start, 1: end
int phrex_reranker_pool(const phrex_reranker *r);                  // a phrex_rerank_pool
// The number of tokens pair i of the last phrex_rerank_score call had
// (tests and latency accounting); -1 when out of range.
int phrex_rerank_worker_pair_len(const phrex_rerank_worker *w, int i);

#endif
