// Progress lines for long work (build, train, eval): done/total, rate and ETA,
// redrawn in place at most a few times a second on a terminal, and silent
// when stderr is not a terminal (pipes, CI logs), where only the final
// summary that callers print themselves appears.
#ifndef PHREX_PROGRESS_H
#define PHREX_PROGRESS_H

#include <stdint.h>

typedef struct {
    const char *label; // e.g. "encode"
    const char *unit;  // e.g. "passages"
    int64_t total;     // 0 when unknown: no percentage, no ETA
    int64_t done;
    double start_s;
    double last_draw_s;
    int enabled;       // stderr is a terminal
} phrex_progress;

double phrex_now_seconds(void); // monotonic clock

void phrex_progress_init(phrex_progress *p, const char *label, const char *unit, int64_t total);
// Adds `n` to done and redraws if enough time passed. `extra` (may be NULL)
// is appended, e.g. "loss 1.234".
void phrex_progress_add(phrex_progress *p, int64_t n, const char *extra);
// Clears the progress line so that the caller's summary starts clean.
void phrex_progress_finish(phrex_progress *p);

#endif
