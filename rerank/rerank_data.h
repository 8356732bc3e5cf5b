// The reranker's input, shared by inference (rerank/reranker.c) and
// training (rerank/rerank_train.c) so both see exactly the same tokens:
//
//   [CLS] question [SEP] title : p p [m0] a a a [m1] p p [SEP]
//   type 0 ............. type 1 ...............................
//
// The question keeps at most max_query_len tokens with [CLS] and [SEP]
// (64, as the retriever's query; at most half the sequence), the title at
// most 16 pieces (max_seq_len / 8 when smaller). The passage gets what is
// left: a window of its word pieces that keeps the answer span in its
// middle (the most context on both sides), or its start for a passage-level
// candidate (span -1, -1), which has no markers.
//
// The span [span_start, span_end) is in bytes; its pieces are those whose
// bytes overlap it (first piece ending after span_start to last piece
// starting before span_end), as the SQuAD reader maps answers. m0 goes
// before the first, m1 after the last; a span over no piece (whitespace)
// gets both markers side by side where it lies.
#ifndef PHREX_RERANK_DATA_H
#define PHREX_RERANK_DATA_H

#include "encoder/tokens.h"
#include "encoder/wordpiece.h"
#include "rerank/reranker.h"

#include <stddef.h>
#include <stdint.h>

#define PHREX_RERANK_MAX_QUERY_LEN 64
#define PHREX_RERANK_MAX_TITLE_PIECES 16
#define PHREX_RERANK_MIN_SEQ_LEN 32
#define PHREX_RERANK_MARK_START "[unused0]"
#define PHREX_RERANK_MARK_END "[unused1]"

typedef struct {
    const phrex_wordpiece *wp; // not owned
    int max_seq_len, max_query_len;
    int32_t cls, sep, colon, mark_start, mark_end;
    phrex_tokens question, title, passage; // scratch, grown to the longest input
    int question_set;
} phrex_rerank_tokenizer;

// Where the parts of one built pair lie (token indices into its sequence).
typedef struct {
    int len;                      // tokens, <= max_seq_len
    int question_tokens;          // [CLS] question [SEP]
    int question_truncated;       // the question lost pieces
    int passage_at;               // index of the passage's first token (after "title :")
    int first_piece, n_pieces;    // the window: passage pieces [first, first + n)
    int passage_pieces;           // pieces of the whole passage
    int mark_start_at, mark_end_at; // indices of m0 and m1; -1 for a passage candidate
    int span_cut;                 // the span was longer than the window and lost pieces
} phrex_rerank_pair_info;

// marks: the ids of m0 and m1 (e.g. [unused0], [unused1] of the vocab);
// max_seq_len in PHREX_RERANK_MIN_SEQ_LEN..; max_query_len 0 means 64.
int phrex_rerank_tokenizer_init(phrex_rerank_tokenizer *t, const phrex_wordpiece *wp, int max_seq_len,
                                int max_query_len, int32_t mark_start, int32_t mark_end);
void phrex_rerank_tokenizer_free(phrex_rerank_tokenizer *t);

// Tokenizes the question that the following pairs share. PHREX_ERR_INPUT for
// invalid UTF-8 or a question with no word piece.
int phrex_rerank_tokenizer_set_question(phrex_rerank_tokenizer *t, const char *question, size_t len);

// Builds one pair into ids and type_ids (room for max_seq_len each);
// off_start/off_end (may be NULL) get each token's byte span in the passage
// text (-1 for every token that is not a passage piece). info may be NULL.
// PHREX_ERR_INPUT for a span outside the text, start >= end, or only one of
// the two -1, and for invalid UTF-8 in title or text.
int phrex_rerank_tokenizer_pair(phrex_rerank_tokenizer *t, const phrex_rerank_candidate *c, int32_t *ids,
                                int32_t *type_ids, int32_t *off_start, int32_t *off_end,
                                phrex_rerank_pair_info *info);

// The marker ids of a vocabulary: PHREX_ERR_FORMAT naming the token when
// it is missing.
int phrex_rerank_marker_ids(const phrex_wordpiece *wp, int32_t *mark_start, int32_t *mark_end);

// What the score head reads (phrex_reranker.json "pool"):
//   CLS:   h[CLS], as a sentence-pair classifier;
//   MARKS: the mean of h[CLS], h[m0] and h[m1] (h[CLS] alone for a passage
//          candidate, which has no marks). The marker rows see the span's
//          own context, as a BERT reader's start/end logits do; trained from
//          MiniLM with hard negatives, the [CLS] head stayed at the constant
//          optimum where this one learns (docs/reranking.md).
typedef enum { PHREX_RERANK_POOL_CLS = 0, PHREX_RERANK_POOL_MARKS = 1 } phrex_rerank_pool;
#define PHREX_RERANK_POOL_MAX_ROWS 3
// The rows (token indices in one sequence of len tokens, the first being
// [CLS]) the head averages; returns how many (1 or 3).
int phrex_rerank_pool_rows(const int32_t *ids, int len, phrex_rerank_pool pool, int32_t mark_start, int32_t mark_end,
                           int rows[PHREX_RERANK_POOL_MAX_ROWS]);
// "cls" / "marks" and back; parse returns PHREX_ERR_FORMAT for another name.
const char *phrex_rerank_pool_name(phrex_rerank_pool pool);
int phrex_rerank_pool_parse(const char *name, phrex_rerank_pool *pool);

// --- mined candidates -----------------------------------------------------------
//
// A candidates file (JSON lines, written once by `phrex train-rerank --mine`
// and read by every training run, so ablations share the same negatives):
//   line 1: {"format": "phrex-rerank-candidates", "version": 1,
//            "squad": PATH, "titles": [TITLE, ...], "dump": DIR, "k": K}
//   then one question per line:
//            {"id", "question", "answers": [str, ...],
//             "gold": [PARAGRAPH_ID, start, end],
//             "phrases": [[PARAGRAPH_ID, start, end, score, match], ...]}
// Paragraph ids are the corpus reader's "TITLE:N"; spans are bytes into the
// paragraph; match is 1 when the phrase equals a gold answer after SQuAD
// normalisation (those are never used as negatives). Phrases are in the
// retriever's order, best first.

#define PHREX_RERANK_CANDIDATES_FORMAT "phrex-rerank-candidates"
#define PHREX_RERANK_CANDIDATES_VERSION 1

typedef struct {
    int32_t par, start, end;
    float score;
    int match;
} phrex_rerank_span;

typedef struct {
    const char *id, *question;
    size_t question_len;
    const char *const *answers;
    int n_answers;
    int32_t gold_par, gold_start, gold_end;
    int first_span, n_spans; // into the set's spans
} phrex_rerank_question;

typedef struct {
    const char *id, *title, *text;
    size_t title_len, text_len;
} phrex_rerank_paragraph;

typedef struct phrex_rerank_set phrex_rerank_set;

// Reads a candidates file and the paragraphs of its articles from its
// SQuAD file (squad_path overrides the header's when not NULL). Errors name
// the file, line and field (PHREX_ERR_FORMAT), or the paragraph id that
// the SQuAD file lacks (PHREX_ERR_MISMATCH).
int phrex_rerank_set_load(phrex_rerank_set **out, const char *path, const char *squad_path);
void phrex_rerank_set_free(phrex_rerank_set *s);
int phrex_rerank_set_questions(const phrex_rerank_set *s);
int phrex_rerank_set_paragraphs(const phrex_rerank_set *s);
int phrex_rerank_set_k(const phrex_rerank_set *s); // phrases mined per question
const phrex_rerank_question *phrex_rerank_set_question(const phrex_rerank_set *s, int i);
const phrex_rerank_paragraph *phrex_rerank_set_paragraph(const phrex_rerank_set *s, int i);
const phrex_rerank_span *phrex_rerank_set_spans(const phrex_rerank_set *s); // all, questions index into it

#endif
