// The output of every tokenizer: token ids with the byte span of the input
// each token came from. Answer spans are mapped through these offsets, so
// they must be exact: [start, end) bytes into the UTF-8 text that was given
// to the tokenizer. Special tokens added by a caller have start = end = -1.
#ifndef PHREX_TOKENS_H
#define PHREX_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t *ids;   // (n)
    int32_t *start; // (n) first byte of the token's source text
    int32_t *end;   // (n) one past its last byte
    int n;          // tokens held
    int capacity;   // tokens the three arrays can hold
} phrex_tokens;

// Buffers grow on demand and are reused across calls, so a caller that keeps
// one phrex_tokens allocates only until it has seen its longest input.
int phrex_tokens_init(phrex_tokens *t, int capacity);
void phrex_tokens_free(phrex_tokens *t);
static inline void phrex_tokens_clear(phrex_tokens *t) { t->n = 0; }
// Appends one token, growing the arrays when full. PHREX_OK or PHREX_ERR_MEMORY.
int phrex_tokens_push(phrex_tokens *t, int32_t id, int32_t start, int32_t end);

#ifdef __cplusplus
}
#endif

#endif
