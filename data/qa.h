// One streaming iterator over question/answers records, with the file and
// line of each, from the QA formats of open-domain QA and reading
// comprehension:
// - JSON lines: {"question": str, "answer": [str, ...]} per line ("answers"
//   is accepted too; an "id" or "qid" string or number is passed on). NQ-open,
//   the uniform odqa-qa-lists/jsonl files, CuratedTREC (answers are regexes:
//   see data/metrics.h), WebQuestions.
// - DPR qa.csv: `question<TAB>answers` where answers is a Python list
//   literal (data/pylit.h), CSV-quoted as Python's csv module writes it, so
//   a record may span lines (data/csv.h). An optional third field is taken
//   as the id.
// - SQuAD JSON: {"data":[{"title","paragraphs":[{"context","qas":[{"id",
//   "question","answers":[{"text","answer_start"}]}]}]}]}, with the context
//   and title of each question for training and reading comprehension.
//   `answer_start` counts code points (a Python string index); the reader
//   also gives it as a byte offset. DensePhrases' questions.json, a flat
//   {"data":[{"id","question","answers":[str]}]}, reads through the same
//   path. As for the corpus reader, cJSON holds the whole (small) file.
#ifndef PHREX_DATA_QA_H
#define PHREX_DATA_QA_H

#include <stddef.h>

typedef enum {
    PHREX_QA_AUTO = 0,
    PHREX_QA_JSONL,
    PHREX_QA_DPR_CSV,
    PHREX_QA_SQUAD_JSON,
} phrex_qa_format;

typedef struct {
    phrex_qa_format format;  // AUTO: detected from the first bytes
    int skip_bad;            // skip malformed records and count them instead of failing
    size_t max_record_bytes; // 0: 64 MiB
} phrex_qa_options;

typedef struct {
    const char *text;
    size_t len;
    long start_char; // SQuAD answer_start: code point offset into the context; -1 when the format has none
    long start_byte; // the same offset in bytes; -1 when none
} phrex_qa_answer;

// Strings are NUL-terminated, validated UTF-8, valid until the next call.
typedef struct {
    const char *id; // "" when the format has none
    size_t id_len;
    const char *question;
    size_t question_len;
    size_t n_answers;
    const phrex_qa_answer *answers;
    const char *const *answer_texts; // answers[i].text, as the array phrex_metric_* take
    const char *context;             // SQuAD: the paragraph; NULL otherwise
    size_t context_len;
    const char *title;               // SQuAD: the article title; NULL otherwise
    size_t title_len;
    const char *file;
    size_t line;   // 1-based line where the record starts
    size_t column; // JSON documents: 1-based byte column of the record's '{' (SQuAD files are often one line); else 0
} phrex_qa;

typedef struct phrex_qa_reader phrex_qa_reader;

// opts may be NULL (auto-detect, strict).
int phrex_qa_init(phrex_qa_reader **out, const char *path, const phrex_qa_options *opts);
void phrex_qa_free(phrex_qa_reader *reader);

// Fills *out and sets *has_record, or *has_record = 0 at the end. A bad
// record returns PHREX_ERR_FORMAT naming file, line and field (or, with
// skip_bad, is counted and skipped).
int phrex_qa_next(phrex_qa_reader *reader, phrex_qa *out, int *has_record);

size_t phrex_qa_count_bad(const phrex_qa_reader *reader);
phrex_qa_format phrex_qa_get_format(const phrex_qa_reader *reader);

// "jsonl", "dpr-csv", "squad-json", "auto".
const char *phrex_qa_format_name(phrex_qa_format format);
int phrex_qa_parse_format(const char *name, phrex_qa_format *out);

#endif
