// A bump allocator: one aligned block, allocations carved from it in order,
// released all at once (reset) or back to a mark. Weights live in one arena
// for the model's lifetime; activations live in a per-encoder arena that is
// reset on every call, so the hot path never calls malloc.
#ifndef PHREX_ARENA_H
#define PHREX_ARENA_H

#include <stddef.h>

typedef struct {
    unsigned char *base;
    size_t capacity; // bytes
    size_t used;     // bytes, always a multiple of PHREX_ARENA_ALIGN
    size_t peak;     // high-water mark of `used`
} phrex_arena;

#define PHREX_ARENA_ALIGN 64 // one cache line; also AVX-512 register width

// Reserves `capacity` bytes. Returns PHREX_OK or PHREX_ERR_MEMORY.
int phrex_arena_init(phrex_arena *arena, size_t capacity);
void phrex_arena_free(phrex_arena *arena);

// Returns 64-byte aligned memory, or NULL when the arena is full (the
// caller turns that into an error naming what it was allocating).
void *phrex_arena_alloc(phrex_arena *arena, size_t bytes);
float *phrex_arena_alloc_floats(phrex_arena *arena, size_t count);

static inline size_t phrex_arena_mark(const phrex_arena *arena) { return arena->used; }
static inline void phrex_arena_reset_to(phrex_arena *arena, size_t mark) { arena->used = mark; }
static inline void phrex_arena_reset(phrex_arena *arena) { arena->used = 0; }

// Bytes a sequence of allocations of these sizes takes, padding included.
static inline size_t phrex_arena_round(size_t bytes) {
    return (bytes + PHREX_ARENA_ALIGN - 1) & ~(size_t)(PHREX_ARENA_ALIGN - 1);
}

#endif
