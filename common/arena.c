#include "arena.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

int phrex_arena_init(phrex_arena *arena, size_t capacity) {
    memset(arena, 0, sizeof *arena);
    capacity = phrex_arena_round(capacity ? capacity : PHREX_ARENA_ALIGN);
    void *p = NULL;
    if (posix_memalign(&p, PHREX_ARENA_ALIGN, capacity) != 0)
        return phrex_fail(PHREX_ERR_MEMORY, "cannot reserve an arena of %zu bytes", capacity);
    arena->base = p;
    arena->capacity = capacity;
    return PHREX_OK;
}

void phrex_arena_free(phrex_arena *arena) {
    free(arena->base);
    memset(arena, 0, sizeof *arena);
}

void *phrex_arena_alloc(phrex_arena *arena, size_t bytes) {
    size_t need = phrex_arena_round(bytes);
    if (need < bytes || need > arena->capacity - arena->used) return NULL;
    void *p = arena->base + arena->used;
    arena->used += need;
    if (arena->used > arena->peak) arena->peak = arena->used;
    return p;
}

float *phrex_arena_alloc_floats(phrex_arena *arena, size_t count) {
    if (count > ((size_t)-1) / sizeof(float)) return NULL;
    return phrex_arena_alloc(arena, count * sizeof(float));
}
