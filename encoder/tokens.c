#include "tokens.h"

#include "common/error.h"

#include <stdlib.h>
#include <string.h>

int phrex_tokens_init(phrex_tokens *t, int capacity) {
    memset(t, 0, sizeof *t);
    if (capacity < 16) capacity = 16;
    t->ids = malloc((size_t)capacity * sizeof *t->ids);
    t->start = malloc((size_t)capacity * sizeof *t->start);
    t->end = malloc((size_t)capacity * sizeof *t->end);
    if (!t->ids || !t->start || !t->end) {
        phrex_tokens_free(t);
        return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate a token buffer of %d", capacity);
    }
    t->capacity = capacity;
    return PHREX_OK;
}

void phrex_tokens_free(phrex_tokens *t) {
    free(t->ids);
    free(t->start);
    free(t->end);
    memset(t, 0, sizeof *t);
}

static int grow(int32_t **array, int capacity) {
    int32_t *p = realloc(*array, (size_t)capacity * sizeof **array);
    if (!p) return PHREX_ERR_MEMORY;
    *array = p;
    return PHREX_OK;
}

int phrex_tokens_push(phrex_tokens *t, int32_t id, int32_t start, int32_t end) {
    if (t->n == t->capacity) {
        if (t->capacity > (1 << 29)) return phrex_fail(PHREX_ERR_MEMORY, "token buffer over 2^29 tokens");
        int capacity = t->capacity ? 2 * t->capacity : 16;
        if (grow(&t->ids, capacity) || grow(&t->start, capacity) || grow(&t->end, capacity))
            return phrex_fail(PHREX_ERR_MEMORY, "cannot grow a token buffer to %d", capacity);
        t->capacity = capacity;
    }
    t->ids[t->n] = id;
    t->start[t->n] = start;
    t->end[t->n] = end;
    t->n++;
    return PHREX_OK;
}
