// One knob for every thread pool phrex uses. OpenBLAS (OpenMP flavour) and
// our own `#pragma omp` loops share libgomp's pool, but OpenBLAS keeps its own
// count as well, so both must be set together or a library call and a loop
// around it disagree about how many cores they may use.
#ifndef PHREX_THREADS_H
#define PHREX_THREADS_H

// Sets the OpenBLAS and OpenMP thread counts. n <= 0 means "all cores".
void phrex_set_threads(int n);

// The thread count set by phrex_set_threads (or OpenMP's default before).
int phrex_get_threads(void);

#endif
