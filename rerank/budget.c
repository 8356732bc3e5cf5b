#include "budget.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/progress.h"
#include "data/buf.h"
#include "index/hash.h"

const int phrex_budget_grid[PHREX_BUDGET_GRID_LEN] = {1, 2, 3, 4, 6, 10, 16, 25, 40, 63, 100, 158, 251, 398, 631, 1000};

#define MIN_REPS 5
#define MAX_REPS 20
#define MIN_TIME_MS 100.0

// --- the key ------------------------------------------------------------------

static void copy_trimmed(char *dst, size_t cap, const char *src) {
    while (*src == ' ' || *src == '\t') src++;
    size_t n = strcspn(src, "\n");
    while (n && (src[n - 1] == ' ' || src[n - 1] == '\t')) n--;
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void read_cpu_model(char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            copy_trimmed(out, cap, strchr(line, ':') + 1);
            break;
        }
    fclose(f);
}

void phrex_budget_key_fill(phrex_budget_key *key, uint64_t reranker_hash, int threads, int max_seq_len,
                           const char *workload) {
    memset(key, 0, sizeof *key);
    key->reranker_hash = reranker_hash;
    key->threads = threads;
    key->max_seq_len = max_seq_len;
    read_cpu_model(key->cpu, sizeof key->cpu);
    copy_trimmed(key->workload, sizeof key->workload, workload ? workload : "default");
}

int phrex_budget_key_equal(const phrex_budget_key *a, const phrex_budget_key *b) {
    return a->reranker_hash == b->reranker_hash && a->threads == b->threads && a->max_seq_len == b->max_seq_len &&
           !strcmp(a->cpu, b->cpu) && !strcmp(a->workload, b->workload);
}

// --- measuring ---------------------------------------------------------------------

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double phrex_budget_percentile(const double *sorted, int n, double p) {
    if (n <= 0) return 0;
    double at = p / 100.0 * (double)(n - 1);
    int lo = (int)floor(at), hi = lo + 1 < n ? lo + 1 : lo;
    return sorted[lo] + (at - (double)lo) * (sorted[hi] - sorted[lo]);
}

// Times k pairs: a warm-up call (caches, page faults), then MIN_REPS..MAX_REPS
// calls until MIN_TIME_MS have gone.
static int measure_point(phrex_budget_measure_fn fn, void *ctx, int k, double *mean, double *p95) {
    double t[MAX_REPS], ms, total = 0;
    int rc = fn(ctx, k, &ms), n = 0;
    while (!rc && n < MAX_REPS && (n < MIN_REPS || total < MIN_TIME_MS)) {
        if ((rc = fn(ctx, k, &t[n]))) break;
        total += t[n++];
    }
    if (rc) return phrex_fail_context(rc, "measuring the reranker on %d pairs", k);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    *mean = total / n;
    *p95 = phrex_budget_percentile(t, n, 95);
    return PHREX_OK;
}

int phrex_budget_measure(phrex_budget_calibration *out, const phrex_budget_key *key, phrex_budget_measure_fn fn,
                         void *ctx, int max_k, double stop_ms) {
    memset(out, 0, sizeof *out);
    out->key = *key;
    out->max_k = max_k;
    if (max_k < 1) return phrex_fail(PHREX_ERR_INPUT, "calibration: max_k must be >= 1, got %d", max_k);
    if (stop_ms <= 0) stop_ms = PHREX_BUDGET_DEFAULT_STOP_MS;
    int points = 0;
    while (points < PHREX_BUDGET_GRID_LEN && phrex_budget_grid[points] <= max_k) points++;
    phrex_progress prog;
    phrex_progress_init(&prog, "calibrate reranker", "sizes", points);
    int rc = PHREX_OK;
    for (int i = 0; i < points && !rc; i++) {
        int k = phrex_budget_grid[i];
        if ((rc = measure_point(fn, ctx, k, &out->mean_ms[i], &out->p95_ms[i]))) break;
        out->k[i] = k;
        out->n = i + 1;
        phrex_progress_add(&prog, 1, NULL);
        if (out->mean_ms[i] > stop_ms) break;
    }
    phrex_progress_finish(&prog);
    return rc;
}

// --- the file -----------------------------------------------------------------------

// XXH64 over a canonical text of every value as saved (%.6f), so that a
// value edited by hand or a truncated file is caught.
static uint64_t checksum(const phrex_budget_calibration *c) {
    phrex_buf b = {0};
    phrex_buf line = {0};
    phrex_buf_printf(&b, "%d|%016llx|%d|%d|%s|%s|%d|", PHREX_BUDGET_VERSION, (unsigned long long)c->key.reranker_hash,
                     c->key.threads, c->key.max_seq_len, c->key.cpu, c->key.workload, c->max_k);
    for (int i = 0; i < c->n; i++) {
        phrex_buf_printf(&line, "%d:%.6f:%.6f;", c->k[i], c->mean_ms[i], c->p95_ms[i]);
        phrex_buf_append(&b, line.data, line.len);
    }
    uint64_t h = b.data ? phrex_hash64(b.data, b.len, 0) : 0;
    phrex_buf_free(&b);
    phrex_buf_free(&line);
    return h;
}

static void write_json_string(FILE *f, const char *s) {
    putc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putc('\\', f);
        if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else putc(*s, f);
    }
    putc('"', f);
}

// Rounds values to what the file holds, so the checksum of a saved and of
// a loaded calibration agree.
static void round_values(phrex_budget_calibration *c) {
    for (int i = 0; i < c->n; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.6f", c->mean_ms[i]);
        c->mean_ms[i] = strtod(buf, NULL);
        snprintf(buf, sizeof buf, "%.6f", c->p95_ms[i]);
        c->p95_ms[i] = strtod(buf, NULL);
    }
}

int phrex_budget_save(const char *path, const phrex_budget_calibration *cal) {
    phrex_budget_calibration c = *cal;
    round_values(&c);
    char tmp[4096], hex[17];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return phrex_fail(PHREX_ERR_INPUT, "%s: path too long", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    phrex_hash64_hex(c.key.reranker_hash, hex);
    fprintf(f, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n  \"reranker_hash\": \"%s\",\n", PHREX_BUDGET_FORMAT,
            PHREX_BUDGET_VERSION, hex);
    fprintf(f, "  \"threads\": %d,\n  \"max_seq_len\": %d,\n  \"cpu\": ", c.key.threads, c.key.max_seq_len);
    write_json_string(f, c.key.cpu);
    fputs(",\n  \"workload\": ", f);
    write_json_string(f, c.key.workload);
    fprintf(f, ",\n  \"max_k\": %d,\n  \"points\": [", c.max_k);
    for (int i = 0; i < c.n; i++)
        fprintf(f, "%s\n    {\"k\": %d, \"mean_ms\": %.6f, \"p95_ms\": %.6f}", i ? "," : "", c.k[i], c.mean_ms[i],
                c.p95_ms[i]);
    phrex_hash64_hex(checksum(&c), hex);
    fprintf(f, "\n  ],\n  \"checksum\": \"%s\"\n}\n", hex);
    if (fclose(f)) {
        unlink(tmp);
        return phrex_fail(PHREX_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return phrex_fail(PHREX_ERR_IO, "%s: cannot rename into place: %s", path, strerror(e));
    }
    return PHREX_OK;
}

static int get_int(const cJSON *root, const char *path, const char *field, int lo, int hi, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s': expected an integer in [%d, %d]", path, field, lo, hi);
    *out = (int)v->valuedouble;
    return PHREX_OK;
}

static int get_str(const cJSON *root, const char *path, const char *field, char *out, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s': expected a string of under %zu bytes", path, field, cap);
    snprintf(out, cap, "%s", v->valuestring);
    return PHREX_OK;
}

static int parse_points(const cJSON *root, const char *path, phrex_budget_calibration *c) {
    const cJSON *points = cJSON_GetObjectItemCaseSensitive(root, "points");
    if (!cJSON_IsArray(points) || cJSON_GetArraySize(points) > PHREX_BUDGET_GRID_LEN)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field 'points': expected an array of at most %d", path,
                          PHREX_BUDGET_GRID_LEN);
    int i = 0, rc = PHREX_OK;
    for (const cJSON *p = points->child; p && !rc; p = p->next, i++) {
        const cJSON *mean = cJSON_GetObjectItemCaseSensitive(p, "mean_ms"),
                    *p95 = cJSON_GetObjectItemCaseSensitive(p, "p95_ms");
        if ((rc = get_int(p, path, "k", 1, 1 << 20, &c->k[i]))) break;
        if (c->k[i] != phrex_budget_grid[i] || !cJSON_IsNumber(mean) || !cJSON_IsNumber(p95) ||
            !(mean->valuedouble >= 0) || !(p95->valuedouble >= 0))
            rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field 'points[%d]': expected k %d with mean_ms, p95_ms >= 0", path,
                            i, phrex_budget_grid[i]);
        else c->mean_ms[i] = mean->valuedouble, c->p95_ms[i] = p95->valuedouble;
    }
    c->n = i;
    return rc;
}

int phrex_budget_load(const char *path, phrex_budget_calibration *c) {
    memset(c, 0, sizeof *c);
    char *text;
    size_t len;
    int rc = phrex_data_read_file(path, &text, &len);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return phrex_fail(PHREX_ERR_FORMAT, "%s: not a JSON object", path);
    }
    char format[64], hash[32], sum[32];
    int version = 0;
    rc = get_str(root, path, "format", format, sizeof format);
    if (!rc && strcmp(format, PHREX_BUDGET_FORMAT))
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field 'format' is \"%s\", expected \"%s\"", path, format,
                        PHREX_BUDGET_FORMAT);
    if (!rc) rc = get_int(root, path, "version", 0, 1 << 20, &version);
    if (!rc && version != PHREX_BUDGET_VERSION)
        rc = phrex_fail(PHREX_ERR_MISMATCH, "%s: field 'version' is %d, this phrex reads %d", path, version,
                        PHREX_BUDGET_VERSION);
    if (!rc) rc = get_str(root, path, "reranker_hash", hash, sizeof hash);
    if (!rc && phrex_hash64_parse_hex(hash, &c->key.reranker_hash))
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field 'reranker_hash': expected 16 hex digits", path);
    if (!rc) rc = get_int(root, path, "threads", 1, 1 << 16, &c->key.threads);
    if (!rc) rc = get_int(root, path, "max_seq_len", 1, 1 << 20, &c->key.max_seq_len);
    if (!rc) rc = get_str(root, path, "cpu", c->key.cpu, sizeof c->key.cpu);
    if (!rc) rc = get_str(root, path, "workload", c->key.workload, sizeof c->key.workload);
    if (!rc) rc = get_int(root, path, "max_k", 1, 1 << 20, &c->max_k);
    if (!rc) rc = parse_points(root, path, c);
    if (!rc) rc = get_str(root, path, "checksum", sum, sizeof sum);
    uint64_t want;
    if (!rc && (phrex_hash64_parse_hex(sum, &want) || want != checksum(c)))
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field 'checksum' does not match the contents", path);
    if (!rc && c->n == 0) rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field 'points': empty", path);
    cJSON_Delete(root);
    return rc;
}

// The file serves `key` up to max_k: same key, and measured up to max_k or
// stopped early by the ceiling (its last point above it).
static int covers(const phrex_budget_calibration *c, const phrex_budget_key *key, int max_k) {
    if (!phrex_budget_key_equal(&c->key, key) || c->n == 0) return 0;
    int want = 0, asked = 0;
    while (want < PHREX_BUDGET_GRID_LEN && phrex_budget_grid[want] <= max_k) want++;
    while (asked < PHREX_BUDGET_GRID_LEN && phrex_budget_grid[asked] <= c->max_k) asked++;
    return c->n >= want || c->n < asked; // c->n < asked: the ceiling stopped it, larger k cannot fit
}

static int make_parent(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(dir, 0755) && errno != EEXIST) return -1;
        *p = '/';
    }
    return 0;
}

int phrex_budget_calibrate(const char *path, const phrex_budget_key *key, phrex_budget_measure_fn fn, void *ctx,
                           int max_k, phrex_budget_calibration *out, int *measured) {
    if (measured) *measured = 0;
    int rc = phrex_budget_load(path, out);
    if (rc == PHREX_OK && covers(out, key, max_k)) return PHREX_OK;
    if (rc != PHREX_OK && rc != PHREX_ERR_IO) fprintf(stderr, "phrex: %s; measuring again\n", phrex_last_error());
    if ((rc = phrex_budget_measure(out, key, fn, ctx, max_k, 0))) return rc;
    if (measured) *measured = 1;
    if (make_parent(path) || phrex_budget_save(path, out))
        fprintf(stderr, "phrex: warning: cannot save the calibration to %s: %s\n", path, phrex_last_error());
    return PHREX_OK;
}

int phrex_budget_default_path(char *out, size_t cap, const phrex_budget_key *key) {
    const char *dir = getenv("PHREX_CALIBRATION_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char base[2048];
    if (dir && *dir) snprintf(base, sizeof base, "%s", dir);
    else if (xdg && *xdg) snprintf(base, sizeof base, "%s/phrex", xdg);
    else if (home && *home) snprintf(base, sizeof base, "%s/.cache/phrex", home);
    else return phrex_fail(PHREX_ERR_INPUT, "no folder for the calibration: set PHREX_CALIBRATION_DIR or HOME");
    char hex[17], tag[64];
    phrex_hash64_hex(key->reranker_hash, hex);
    size_t i = 0;
    for (const char *s = key->workload; *s && i + 1 < sizeof tag; s++)
        tag[i++] = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ? *s : '_';
    tag[i] = '\0';
    if (snprintf(out, cap, "%s/rerank-%s-t%d-%s.json", base, hex, key->threads, tag) >= (int)cap)
        return phrex_fail(PHREX_ERR_INPUT, "calibration path too long under %s", base);
    return PHREX_OK;
}

// --- choosing k -------------------------------------------------------------------

double phrex_budget_predict_p95(const phrex_budget_calibration *c, int k) {
    if (k <= 0 || c->n == 0) return 0;
    double env[PHREX_BUDGET_GRID_LEN]; // running maximum: cost never falls with more pairs
    for (int i = 0; i < c->n; i++) env[i] = i && env[i - 1] > c->p95_ms[i] ? env[i - 1] : c->p95_ms[i];
    if (k <= c->k[0]) return env[0]; // one call's fixed cost dominates below the first point
    for (int i = 1; i < c->n; i++)
        if (k <= c->k[i])
            return env[i - 1] + (env[i] - env[i - 1]) * (double)(k - c->k[i - 1]) / (double)(c->k[i] - c->k[i - 1]);
    if (c->n == 1) return env[0] * (double)k / (double)c->k[0];
    int a = c->n - 2, b = c->n - 1;
    double slope = (env[b] - env[a]) / (double)(c->k[b] - c->k[a]);
    if (slope <= 0) slope = env[b] / (double)c->k[b];
    return env[b] + slope * (double)(k - c->k[b]);
}

int phrex_budget_choose_k(const phrex_budget_calibration *c, double budget_ms, double base_p95_ms, int max_k,
                          int *k) {
    *k = 0;
    if (!(budget_ms > 0) || !isfinite(budget_ms))
        return phrex_fail(PHREX_ERR_INPUT, "the latency budget must be > 0 ms, got %g", budget_ms);
    if (!(base_p95_ms >= 0) || !isfinite(base_p95_ms))
        return phrex_fail(PHREX_ERR_INPUT, "the encode + search p95 must be >= 0 ms, got %g", base_p95_ms);
    if (c->n == 0) return phrex_fail(PHREX_ERR_INPUT, "the reranker calibration is empty");
    // predict_p95 does not decrease in k: binary search for the last k that fits.
    int lo = 0, hi = max_k < 0 ? 0 : max_k;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (base_p95_ms + phrex_budget_predict_p95(c, mid) <= budget_ms) lo = mid;
        else hi = mid - 1;
    }
    *k = lo;
    return PHREX_OK;
}
