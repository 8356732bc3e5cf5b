// One streaming iterator over passages {id, title, text} from the corpus
// formats phrex indexes. Every passage carries the file and line it came
// from, so a bad passage found anywhere downstream can be traced back.
//
// Formats:
// - DPR TSV (psgs_w100.tsv): `id<TAB>text<TAB>title` after a header line,
//   quoted as Python's csv module writes it (see data/csv.h). The header
//   may order the three columns differently; without a header the order
//   is id, text, title.
// - WikiExtractor: `<doc id=".." url=".." title="..">` ... `</doc>` blocks
//   whose first body line repeats the title, then one paragraph per line.
//   Also WikiExtractor's --json flavour, one {"id","url","title","text"}
//   per line. One passage per non-blank paragraph line, id "DOCID:N" with
//   N counting paragraphs from 0 within the document (the title line is not
//   a paragraph). The path may be a directory: every file named wiki_*
//   below it is read, in byte order of the path (AA/wiki_00, AA/wiki_01, ..).
// - SQuAD-style JSON ({"data":[{"title","paragraphs":[{"context"}]}]}, also
//   DensePhrases' articles.json): one passage per paragraph, id "TITLE:N"
//   with N counting from 0 within the article. This one reader is not
//   streaming: cJSON parses the whole file, which is fine for the small
//   reading-comprehension files that use this format (a few MB).
//
// Memory for the streaming formats is a few buffers that grow to the
// longest record (capped by max_record_bytes).
#ifndef PHREX_DATA_CORPUS_H
#define PHREX_DATA_CORPUS_H

#include <stddef.h>

typedef enum {
    PHREX_CORPUS_AUTO = 0,
    PHREX_CORPUS_DPR_TSV,
    PHREX_CORPUS_WIKIEXTRACTOR,      // <doc> blocks
    PHREX_CORPUS_WIKIEXTRACTOR_JSON, // JSON lines
    PHREX_CORPUS_SQUAD_JSON,
} phrex_corpus_format;

typedef struct {
    phrex_corpus_format format; // AUTO: detected from the path and the first bytes
    int skip_bad;               // skip malformed records and count them instead of failing
    size_t max_record_bytes;    // 0: 64 MiB
} phrex_corpus_options;

// Strings are NUL-terminated UTF-8 (validated) and stay valid until the
// next call to phrex_corpus_next. Lengths exclude the NUL.
typedef struct {
    const char *id;
    size_t id_len;
    const char *title;
    size_t title_len;
    const char *text;
    size_t text_len;
    const char *file; // the file the passage came from
    size_t line;      // 1-based line where its record starts
    size_t column;    // SQuAD JSON: 1-based byte column of the paragraph's '{' (such files are often one line); else 0
} phrex_passage;

typedef struct phrex_corpus phrex_corpus;

// opts may be NULL (auto-detect, strict).
int phrex_corpus_init(phrex_corpus **out, const char *path, const phrex_corpus_options *opts);
void phrex_corpus_free(phrex_corpus *corpus);

// Fills *out with the next passage and sets *has_passage, or sets
// *has_passage = 0 at the end. A malformed record returns PHREX_ERR_FORMAT
// with a message naming file, line and field; without skip_bad the reader
// should not be used further after an error.
int phrex_corpus_next(phrex_corpus *corpus, phrex_passage *out, int *has_passage);

// Records skipped as malformed (skip_bad), so far.
size_t phrex_corpus_count_bad(const phrex_corpus *corpus);

// Documents seen so far: TSV rows, WikiExtractor documents (also those
// with no paragraph), SQuAD articles.
size_t phrex_corpus_count_docs(const phrex_corpus *corpus);

// The format in use (after detection).
phrex_corpus_format phrex_corpus_get_format(const phrex_corpus *corpus);

// "dpr-tsv", "wikiextractor", "wikiextractor-json", "squad-json", "auto".
const char *phrex_corpus_format_name(phrex_corpus_format format);
int phrex_corpus_parse_format(const char *name, phrex_corpus_format *out);

#endif
