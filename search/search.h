// Answering questions over a phrase dump, as DensePhrases does:
//   1. the question becomes q_start and q_end (search/query.h);
//   2. one FAISS search per half (both halves in one call), search_k hits each;
//   3. each hit id maps to (passage, token);
//   4. a start hit at token i is completed by every kept token j in
//      [i, i + L) of its passage, scored with q_end against j's vector as
//      reconstructed from the index; an end hit at j by every kept i in
//      (j - L, j] with q_start. A phrase scores start + end. Spans with
//      j < i, j >= i + L or across a passage boundary never arise, and
//      tokens the phrase filter dropped (no vector) are neither starts nor
//      ends;
//   5. phrases are ranked and de-duplicated for the unit asked for.
// Answer text: DensePhrases cuts the passage at token offsets. A start or
// end token may be a "##" piece inside a word ("Skinner" = "skin ##ner"),
// so phrex widens the byte span to whole words: a span starting or ending
// between two word characters (letters, marks, digits) is moved out to the
// word's edge. Scores and token spans are those of the tokens found.
//
// De-duplication, by unit:
//   phrase    (passage, byte span), then (normalised text, title)
//   sentence  (passage, sentence span), then (sentence text)
//   passage   passage number, then passage text
//   document  title
// A unit's score is its best phrase's; every result also carries that
// phrase (answer_*).
//
// Threads: a phrex_searcher (dump + query model) is shared; each thread
// searches through its own phrex_search. FAISS search and reconstruct are
// read-only and run concurrently; each phrex_search reads LMDB through its
// own phrex_dump_reader (a read transaction open for the handle's life), so
// no lock is taken anywhere on the query path. Passage text is not copied:
// results point into the LMDB map (see phrex_search_result for lifetimes).
#ifndef PHREX_SEARCH_SEARCH_H
#define PHREX_SEARCH_SEARCH_H

#include "index/dump.h"
#include "search/query.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PHREX_UNIT_PHRASE = 0,
    PHREX_UNIT_SENTENCE = 1,
    PHREX_UNIT_PASSAGE = 2,
    PHREX_UNIT_DOCUMENT = 3,
} phrex_search_unit;

const char *phrex_search_unit_name(phrex_search_unit u); // "phrase", ...
int phrex_search_parse_unit(const char *name, phrex_search_unit *out);

#define PHREX_SEARCH_DEFAULT_NPROBE 256
#define PHREX_SEARCH_DEFAULT_MAX_ANSWER_LEN 10
#define PHREX_SEARCH_DEFAULT_TOP_K 10
#define PHREX_SEARCH_PASSAGE_SEARCH_K 200 // DensePhrases' top_k when passages are the unit

typedef struct {
    const char *dump_dir;
    const char *model_dir;       // the phrase model the dump was built with (checked)
    const char *query_model_dir; // NULL: model_dir (see search/query.h for layouts)
    phrex_query_pool pool;       // for the built-in BERT query encoder
    int nprobe;                  // 0: PHREX_SEARCH_DEFAULT_NPROBE on IVF dumps, nothing on Flat
    unsigned open_flags;         // phrex_dump_open_ex flags (PHREX_DUMP_OPEN_QUICK)
} phrex_searcher_options;

typedef struct {
    phrex_search_unit unit;
    int top_k;          // results returned (10)
    int search_k;       // FAISS hits per query half; 0: top_k for phrases, at least
                        // PHREX_SEARCH_PASSAGE_SEARCH_K (and 2 top_k) for the other units
    int max_answer_len; // L, tokens (10)
} phrex_search_options;

void phrex_searcher_options_default(phrex_searcher_options *o);
void phrex_search_options_default(phrex_search_options *o);

typedef struct phrex_searcher phrex_searcher; // shared by threads
typedef struct phrex_search phrex_search;     // one per thread

// Opens and checks the dump against model_dir, loads the query model,
// checks that their dimensions agree and sets nprobe. Errors name the
// dump file or model at fault (PHREX_ERR_IO, _FORMAT, _MISMATCH).
int phrex_searcher_init(phrex_searcher **out, const phrex_searcher_options *o);
// Same with a query model the caller built (any backend); the searcher
// takes ownership of `qm` (freed by phrex_searcher_free, even on error).
int phrex_searcher_init_with_model(phrex_searcher **out, const phrex_searcher_options *o, phrex_query_model *qm);
void phrex_searcher_free(phrex_searcher *s);
const phrex_dump_info *phrex_searcher_info(const phrex_searcher *s);
const phrex_query_model *phrex_searcher_query_model(const phrex_searcher *s);
// Changes nprobe on the shared index: not while any thread searches.
// PHREX_ERR_INPUT on a dump without inverted lists (Flat).
int phrex_searcher_set_nprobe(phrex_searcher *s, int nprobe);
int phrex_searcher_is_ivf(const phrex_searcher *s);
// The opened dump, for tools that read passages besides searching (through
// its built-in reader: one thread, not shared with any phrex_search).
phrex_dump *phrex_searcher_dump(phrex_searcher *s);
// The stored vector of id (as searched: quantized on compressed indexes);
// out: (dim). Thread-safe: FAISS reconstruction only reads the index.
int phrex_searcher_reconstruct(const phrex_searcher *s, int64_t id, float *out);

// One result. Strings are NUL-terminated. Lifetimes: `answer` and a
// sentence `text` live in the phrex_search's pool, valid until its next
// search; `passage_id`, `title`, `context` and a passage `text` point into
// the dump's LMDB map through the handle's read transaction, valid until
// phrex_search_free (copy them to keep them longer). Never write to them:
// the map is read-only.
typedef struct {
    float score;                 // the unit's score: its best phrase's start + end
    float start_score, end_score;
    const char *text;            // the unit: phrase, sentence, or the passage text
    size_t text_len;
    int32_t start, end;          // byte span of `text` in the passage text, [start, end)
    const char *answer;          // the best phrase (equal to text for phrases)
    size_t answer_len;
    int32_t answer_start, answer_end;     // its byte span in the passage text
    int32_t start_token, end_token;       // its word pieces, [start_token, end_token] inclusive
    int64_t start_id, end_id;             // their vector ids (phrex_searcher_reconstruct)
    int64_t passage;             // passage number in the dump
    const char *passage_id, *title;
    const char *context;         // the passage text
    size_t context_len;
} phrex_search_result;

typedef struct {
    const phrex_search_result *results; // (n), best first
    int n;
    int truncated;      // the question was cut to PHREX_QUERY_MAX_LEN tokens
    int candidates;     // scored spans before de-duplication
    double encode_ms, search_ms;
} phrex_search_output;

// A worker for one thread, with every per-query buffer allocated here.
int phrex_search_init(phrex_search **out, phrex_searcher *s, const phrex_search_options *o);
void phrex_search_free(phrex_search *h);
const phrex_search_options *phrex_search_get_options(const phrex_search *h);

// Encodes and answers. PHREX_ERR_INPUT for a bad question (search/query.h).
int phrex_search_question(phrex_search *h, const char *question, size_t len, phrex_search_output *out);
// Answers already encoded query vectors, q_start and q_end: (dim) each.
int phrex_search_vectors(phrex_search *h, const float *q_start, const float *q_end, phrex_search_output *out);

#endif
