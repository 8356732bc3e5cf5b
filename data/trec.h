// TREC-style retrieval files, as the TREC Deep Learning track and Anserini
// write them:
//   topics      `qid<TAB>query`
//   qrels       `qid 0|Q0 pid grade`          (whitespace-separated)
//   run         `qid Q0 pid rank score tag`   (whitespace-separated)
//   collection  `pid<TAB>passage`
//   rank_llm    `*.retrieve_results.json`: a JSON array of
//               {"query": str, "hits": [{"content","qid","docid","rank","score"}]}
//               (qid and docid may be numbers or strings)
// plus in-memory tables built from them for evaluation.
//
// The line files are streamed (phrex_trec_reader): one buffer as long as the
// longest line. A malformed line stops the reader with PHREX_ERR_FORMAT and
// a message "FILE:LINE: field 'NAME': what is wrong". Blank lines are
// skipped (they carry no record; trec_eval skips them too).
#ifndef PHREX_DATA_TREC_H
#define PHREX_DATA_TREC_H

#include <stddef.h>

typedef enum {
    PHREX_TREC_TOPICS = 0,
    PHREX_TREC_QRELS = 1,
    PHREX_TREC_RUN = 2,
    PHREX_TREC_COLLECTION = 3,
} phrex_trec_kind;

// One line's record. Strings are NUL-terminated, valid until the next call.
typedef struct {
    const char *qid;  // topics, qrels, run (NULL for collection)
    size_t qid_len;
    const char *pid;  // qrels, run, collection (NULL for topics)
    size_t pid_len;
    const char *text; // topics: the query; collection: the passage; run: the tag
    size_t text_len;
    int grade;        // qrels
    int rank;         // run (1-based, as written; trec_eval ignores it)
    double score;     // run
    size_t line;      // 1-based
} phrex_trec_record;

typedef struct phrex_trec_reader phrex_trec_reader;

int phrex_trec_reader_init(phrex_trec_reader **out, const char *path, phrex_trec_kind kind);
void phrex_trec_reader_free(phrex_trec_reader *r);
// *has = 0 at end of file.
int phrex_trec_reader_next(phrex_trec_reader *r, phrex_trec_record *rec, int *has);
const char *phrex_trec_kind_name(phrex_trec_kind kind); // "topics", "qrels", "run", "collection"

// --- tables ------------------------------------------------------------------

// Topics: qid -> query. Lookup by binary search (qids sorted bytewise).
typedef struct phrex_trec_topics phrex_trec_topics;
int phrex_trec_topics_load(phrex_trec_topics **out, const char *path);
void phrex_trec_topics_free(phrex_trec_topics *t);
size_t phrex_trec_topics_count(const phrex_trec_topics *t);
const char *phrex_trec_topics_find(const phrex_trec_topics *t, const char *qid); // NULL: absent

// Passage texts: pid -> text (collection.subset.tsv).
typedef struct phrex_trec_collection phrex_trec_collection;
int phrex_trec_collection_load(phrex_trec_collection **out, const char *path);
void phrex_trec_collection_free(phrex_trec_collection *c);
size_t phrex_trec_collection_count(const phrex_trec_collection *c);
const char *phrex_trec_collection_find(const phrex_trec_collection *c, const char *pid, size_t *len);

// A first-stage run: per query, its hits in trec_eval's order (score
// descending, then pid descending by strcmp; see data/ndcg.h). Queries keep
// the order in which their qid first appears. `text` is set for runs read
// from rank_llm JSON (else NULL until phrex_trec_run_attach_texts).
typedef struct {
    const char *pid;
    const char *text; // passage, or NULL
    size_t text_len;
    double score;
    int rank;         // as written in the file
} phrex_trec_hit;

typedef struct {
    const char *qid;
    const char *query; // rank_llm JSON carries it; NULL for TREC run files
    phrex_trec_hit *hits; // (n_hits)
    int n_hits;
} phrex_trec_query;

typedef struct phrex_trec_run phrex_trec_run;
// A TREC run file, or rank_llm JSON when the path ends in ".json".
// A pid listed twice for one query is an error (trec_eval rejects it too).
int phrex_trec_run_load(phrex_trec_run **out, const char *path);
void phrex_trec_run_free(phrex_trec_run *run);
size_t phrex_trec_run_count(const phrex_trec_run *run);
const phrex_trec_query *phrex_trec_run_query(const phrex_trec_run *run, size_t i);
// Fills every hit's text from the collection; PHREX_ERR_INPUT naming the
// first (qid, pid) whose passage is missing.
int phrex_trec_run_attach_texts(phrex_trec_run *run, const phrex_trec_collection *c);
// Fills every query's text from topics; PHREX_ERR_INPUT naming a missing qid.
int phrex_trec_run_attach_queries(phrex_trec_run *run, const phrex_trec_topics *t);

#endif
