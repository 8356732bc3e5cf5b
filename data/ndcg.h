// nDCG@k as trec_eval computes `-m ndcg_cut.k` (trec_eval 9.x, m_ndcg_cut.c),
// with linear gains:
//   DCG@k  = sum over ranks r = 1..k of grade(r) / log2(r + 1), grades <= 0
//            and unjudged documents contributing 0;
//   IDCG@k = the same over the query's judged grades sorted descending (all
//            judgments of the query in the qrels, not only retrieved ones);
//   nDCG@k = DCG@k / IDCG@k, 0 when IDCG@k is 0.
// Ranking: trec_eval ignores the run's rank column and sorts by score
// descending, ties broken by docno descending in strcmp order
// (form_res_rels.c, comp_sim_docno: `strcmp(ptr2->docno, ptr1->docno)`),
// scores compared as C floats (its `float sim`).
// A run's mean is over the queries that are both in the run and in the
// qrels (trec_eval without -c).
// Exponential gains (2^g - 1) give other numbers (BM25 DL19 0.4364 instead
// of 0.5058): this module does linear only, like trec_eval.
#ifndef PHREX_DATA_NDCG_H
#define PHREX_DATA_NDCG_H

#include <stddef.h>

#include "data/trec.h"

typedef struct phrex_qrels phrex_qrels;

// Reads a qrels file (data/trec.h). A (qid, pid) judged twice is an error.
int phrex_qrels_load(phrex_qrels **out, const char *path);
void phrex_qrels_free(phrex_qrels *q);
size_t phrex_qrels_count_queries(const phrex_qrels *q);
size_t phrex_qrels_count_judgments(const phrex_qrels *q);
int phrex_qrels_has_query(const phrex_qrels *q, const char *qid);
// The grade of pid for qid; 0 when not judged. *judged (may be NULL) tells.
int phrex_qrels_grade(const phrex_qrels *q, const char *qid, const char *pid, int *judged);

// nDCG@k of a list already in rank order (pids[0] ranked first). 0 for a
// query without judgments (check phrex_qrels_has_query to skip those).
double phrex_ndcg_ranked(const phrex_qrels *q, const char *qid, const char *const *pids, int n, int k);

// nDCG@k of one run query, its hits ranked in trec_eval's order (as
// phrex_trec_run_load leaves them).
double phrex_ndcg_query(const phrex_qrels *q, const phrex_trec_query *query, int k);

// Mean nDCG@k over the run's queries that have judgments; *n_queries gets
// their number (0: the mean is 0).
double phrex_ndcg_run(const phrex_qrels *q, const phrex_trec_run *run, int k, size_t *n_queries);

#endif
