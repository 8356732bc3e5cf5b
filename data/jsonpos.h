// Line numbers for records inside one big JSON document.
//
// cJSON keeps no positions, yet a message about a bad SQuAD question should
// say on which line it is. This cursor scans the raw text alongside the
// cJSON walk: each call finds the next object that is an element of an
// array stored under `key` (e.g. "qas" or "paragraphs"). Both walk the
// document in order, so the k-th call lines up with the k-th such object
// cJSON yields, as long as the text is valid JSON (cJSON parsed it).
#ifndef PHREX_DATA_JSONPOS_H
#define PHREX_DATA_JSONPOS_H

#include <stddef.h>

#define PHREX_JSONPOS_MAX_DEPTH 64

typedef struct {
    const char *buf;
    size_t len;
    size_t pos;
    size_t line;       // line of buf[pos]
    size_t line_start; // offset where that line starts
    size_t column;     // 1-based byte column of the last '{' returned
    const char *key;
    size_t key_len;
    int depth;
    int pending; // the last key read was `key`: a '[' now opens a target array
    unsigned char target[PHREX_JSONPOS_MAX_DEPTH]; // per open container: an array under `key`?
} phrex_jsonpos;

void phrex_jsonpos_init(phrex_jsonpos *jp, const char *buf, size_t len, const char *key);

// Line of the '{' that opens the next element object of an array under
// `key` (its column goes to jp->column), or 0 when there is none left.
size_t phrex_jsonpos_next(phrex_jsonpos *jp);

// How many objects the cursor would stop at inside the parsed subtree
// `node` (objects that are elements of arrays under `key`): a reader that
// skips a subtree advances the cursor by this much to stay in step.
struct cJSON;
size_t phrex_jsonpos_count(const struct cJSON *node, const char *key);
void phrex_jsonpos_skip(phrex_jsonpos *jp, size_t count);

#endif
