// Timing helpers shared by the bench_*.c programs (each builds to its own
// executable, so these are static inline).
#ifndef PHREX_BENCH_UTIL_H
#define PHREX_BENCH_UTIL_H

#include "common/progress.h"

#include <cblas.h>
#include <stdlib.h>

static int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Sorts t and returns its median; t[0] is then the best run.
static inline double bench_median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, bench_cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

typedef struct {
    double median, best; // seconds
} bench_timing;

// Seconds of OpenBLAS sgemm on (4096 x 384)·(384 x 1536), B read as
// nn.Linear's (out, in): the FFN's first layer on a 32 x 128 batch, the
// machine's practical FLOP ceiling for this model. reps runs after a warm-up.
static inline bench_timing bench_sgemm_seconds(int reps) {
    const int M = 4096, K = 384, N = 1536;
    float *a = malloc((size_t)M * K * 4), *b = malloc((size_t)N * K * 4), *c = malloc((size_t)M * N * 4);
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 17) * 0.01f;
    for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 13) * 0.01f;
    double *t = malloc((size_t)reps * sizeof *t);
    for (int r = -1; r < reps; r++) {
        double t0 = phrex_now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        if (r >= 0) t[r] = phrex_now_seconds() - t0;
    }
    bench_timing m = {bench_median(t, reps), t[0]};
    free(a), free(b), free(c), free(t);
    return m;
}

static inline double bench_sgemm_flops(void) { return 2.0 * 4096 * 384 * 1536; }

#endif
