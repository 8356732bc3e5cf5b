// SQuAD questions as DensePhrases trains on them: each paragraph tokenized
// once with WordPiece (byte offsets), cut into windows of at most
// max_seq_len tokens including [CLS] and [SEP], advancing doc_stride pieces
// at a time (HF run_squad / DensePhrases' doc_stride), and each question's
// first answer mapped to a token span inside the window that holds it best.
//
// Answer mapping (HF's rule): the answer's bytes are
// [start_byte, start_byte + len) of the context (data/qa.h already turned
// answer_start's code points into bytes); its first token is the first piece
// ending after start_byte, its last the last piece starting before the end.
// A question is skipped, and counted, when the context does not hold the
// answer's text at that offset (mismatch), when the span covers no piece
// (whitespace only), or when no window holds the whole span (outside). Of
// the windows that hold it, the most central one is kept: the largest
// min(pieces left of the span, pieces right of it), as HF's
// _check_is_max_context scores a token.
//
// Articles are selected by title (a title list file, one per line); a title
// the file does not have is an error, so a typo cannot silently empty a split.
#ifndef PHREX_DATA_SQUAD_WINDOWS_H
#define PHREX_DATA_SQUAD_WINDOWS_H

#include "encoder/wordpiece.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int max_seq_len;   // tokens per window including [CLS] and [SEP] (384)
    int doc_stride;    // pieces between window starts (128)
    int max_query_len; // question tokens including [CLS] and [SEP] (64)
} phrex_squad_window_options;

typedef struct {
    const char *context; // NUL-terminated UTF-8
    size_t context_len;
    int first_piece;     // into the set's piece arrays
    int n_pieces;
    int first_window;    // into the set's windows
    int n_windows;
    int article;         // index into the selected titles
} phrex_squad_paragraph;

typedef struct {
    int paragraph;
    int piece_start; // first piece of the paragraph in this window
    int n_pieces;    // the window is [CLS] pieces[piece_start, +n_pieces) [SEP]
} phrex_squad_window;

typedef struct {
    int paragraph;
    int window;             // the window that holds the gold span best
    int32_t gold_start;     // token index in the window's sequence ([CLS] = 0)
    int32_t gold_end;       // inclusive
    int query_offset;       // into the set's query ids: [CLS] question pieces [SEP]
    int query_len;
    const char *id;
    const char *const *answers; // every gold answer text
    size_t n_answers;
} phrex_squad_example;

typedef struct {
    size_t articles;
    size_t paragraphs;
    size_t windows;
    size_t questions; // in the selected articles
    size_t kept;
    size_t mismatch;  // context text at answer_start differs from the answer
    size_t empty;     // the answer covers no piece
    size_t outside;   // no window holds the whole span
    size_t no_answer; // no answer or no answer_start
} phrex_squad_window_stats;

typedef struct phrex_squad_windows phrex_squad_windows;

// Reads a title list: one title per line, no empty lines, no duplicates.
// *titles is one malloc'd block (array and strings): free(*titles).
int phrex_squad_read_titles(const char *path, char ***titles, int *n);

// The questions of the articles named in titles[0, n_titles) (titles NULL:
// every article) of a SQuAD JSON file. opts NULL: 384 / 128 / 64.
// Errors name the file and line (bad records), or the unknown title.
int phrex_squad_windows_init(phrex_squad_windows **out, const char *squad_path, const phrex_wordpiece *wp,
                             const char *const *titles, int n_titles, const phrex_squad_window_options *opts);
void phrex_squad_windows_free(phrex_squad_windows *s);

const phrex_squad_window_stats *phrex_squad_windows_stats(const phrex_squad_windows *s);
int phrex_squad_windows_count(const phrex_squad_windows *s); // kept examples
const phrex_squad_example *phrex_squad_windows_example(const phrex_squad_windows *s, int i);
const phrex_squad_paragraph *phrex_squad_windows_paragraph(const phrex_squad_windows *s, int i);
const phrex_squad_window *phrex_squad_windows_window(const phrex_squad_windows *s, int i);
const int32_t *phrex_squad_windows_query(const phrex_squad_windows *s, const phrex_squad_example *e);

// The token sequence of window w: [CLS] pieces [SEP] into ids (room for
// max_seq_len), byte spans into off_s/off_e (may be NULL; -1 for the
// special tokens). Returns the length.
int phrex_squad_windows_fill(const phrex_squad_windows *s, int w, int32_t *ids, int32_t *off_s, int32_t *off_e);

#endif
