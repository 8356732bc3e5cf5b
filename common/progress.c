#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define PROGRESS_REDRAW_S 0.25

double phrex_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void phrex_progress_init(phrex_progress *p, const char *label, const char *unit, int64_t total) {
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->done = 0;
    p->start_s = phrex_now_seconds();
    p->last_draw_s = 0;
    p->enabled = isatty(STDERR_FILENO);
}

static void format_duration(char *buf, size_t cap, double s) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
    else snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
}

static void draw(const phrex_progress *p, double now, const char *extra) {
    double elapsed = now - p->start_s;
    double rate = elapsed > 0 ? (double)p->done / elapsed : 0;
    char eta[32] = "?";
    if (p->total > 0 && rate > 0) format_duration(eta, sizeof eta, (double)(p->total - p->done) / rate);
    if (p->total > 0)
        fprintf(stderr, "\r\033[K%s: %lld/%lld %s (%.1f%%) %.1f %s/s ETA %s%s%s", p->label,
                (long long)p->done, (long long)p->total, p->unit, 100.0 * (double)p->done / (double)p->total,
                rate, p->unit, eta, extra ? "  " : "", extra ? extra : "");
    else
        fprintf(stderr, "\r\033[K%s: %lld %s %.1f %s/s%s%s", p->label, (long long)p->done, p->unit, rate,
                p->unit, extra ? "  " : "", extra ? extra : "");
    fflush(stderr);
}

void phrex_progress_add(phrex_progress *p, int64_t n, const char *extra) {
    p->done += n;
    if (!p->enabled) return;
    double now = phrex_now_seconds();
    if (now - p->last_draw_s < PROGRESS_REDRAW_S && p->done != p->total) return;
    p->last_draw_s = now;
    draw(p, now, extra);
}

void phrex_progress_finish(phrex_progress *p) {
    if (p->enabled) fprintf(stderr, "\r\033[K");
}
