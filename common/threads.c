#include "threads.h"

#include <cblas.h>
#include <omp.h>

void phrex_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    // OpenBLAS first: its OpenMP build also calls omp_set_num_threads, and
    // ours must be the last word for the calling thread's OpenMP ICV.
    openblas_set_num_threads(n);
    omp_set_num_threads(n);
}

int phrex_get_threads(void) { return omp_get_max_threads(); }
