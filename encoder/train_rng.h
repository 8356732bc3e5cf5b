// A small, portable pseudo-random generator for training: data order,
// random initialisation and the fixed projections of gradient tests. Its
// whole state is one u64, so a checkpoint can save and restore it exactly,
// and tools/make_grad_fixture.py reimplements it in a few lines of Python.
// splitmix64 (Steele, Lea, Flood 2014): passes BigCrush, one add per draw.
#ifndef PHREX_TRAIN_RNG_H
#define PHREX_TRAIN_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state;
} phrex_rng;

static inline phrex_rng phrex_rng_init(uint64_t seed) { return (phrex_rng){seed}; }

static inline uint64_t phrex_rng_next_u64(phrex_rng *r) {
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// A random u64 from a key, with no state: splitmix64's finaliser of
// key + φ·2^64. Anything keyed this way (dropout masks) is a pure function
// of its key, so it needs no storage and no order between threads.
static inline uint64_t phrex_rng_hash(uint64_t key) {
    phrex_rng r = {key};
    return phrex_rng_next_u64(&r);
}

// Uniform in [0, 1) with 24 bits, exactly representable as a float.
static inline float phrex_rng_uniform(phrex_rng *r) { return (float)(phrex_rng_next_u64(r) >> 40) * 0x1p-24f; }

// Uniform in [-1, 1): 2u - 1, exact in f32 (and in Python's float).
static inline float phrex_rng_symmetric(phrex_rng *r) { return 2.0f * phrex_rng_uniform(r) - 1.0f; }

// Uniform in [0, n) (n > 0); the modulo bias is below 2^-32 for n < 2^32.
static inline uint32_t phrex_rng_below(phrex_rng *r, uint32_t n) { return (uint32_t)(phrex_rng_next_u64(r) % n); }

#endif
