#include "tools/cli_util.h"

#include "common/error.h"
#include "encoder/model_dir.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *phrex_cli_default_model_dir(void) {
    const char *env = getenv("PHREX_MODEL");
    if (env && *env) return env;
    struct stat st;
    if (stat(PHREX_TRAINED_MODEL_DIR "/" PHREX_MODEL_JSON, &st) == 0) return PHREX_TRAINED_MODEL_DIR;
    return PHREX_DEFAULT_MODEL_DIR;
}

const char *phrex_cli_base_model_dir(void) { return PHREX_DEFAULT_MODEL_DIR; }

const char *phrex_cli_default_reranker_dir(void) { return PHREX_DEFAULT_RERANKER_DIR; }

const char *phrex_cli_phrase_encoder_dir(const char *cmd, const char *model_dir) {
    static phrex_model_paths paths;
    if (phrex_model_dir_resolve(model_dir, &paths)) {
        fprintf(stderr, "phrex %s: %s\n", cmd, phrex_last_error());
        return NULL;
    }
    return paths.phrase;
}

int phrex_cli_parse_int(const char *name, const char *text, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "phrex: %s expects an integer in [%d, %d], got '%s'\n", name, lo, hi, text);
        return 2;
    }
    *out = (int)v;
    return 0;
}

int phrex_cli_parse_double(const char *name, const char *text, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end != '\0' || !isfinite(v) || !(v >= lo && v <= hi)) {
        fprintf(stderr, "phrex: %s expects a number in [%g, %g], got '%s'\n", name, lo, hi, text);
        return 2;
    }
    *out = v;
    return 0;
}

int phrex_cli_parse_float(const char *name, const char *text, double lo, double hi, float *out) {
    double v;
    if (phrex_cli_parse_double(name, text, lo, hi, &v)) return 2;
    *out = (float)v;
    return 0;
}

int phrex_cli_parse_seed(const char *text, unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || *text == '-') {
        fprintf(stderr, "phrex: --seed expects a non-negative integer, got '%s'\n", text);
        return 2;
    }
    *out = v;
    return 0;
}

void phrex_cli_path_join(char *buf, size_t n, const char *dir, const char *name) { snprintf(buf, n, "%s/%s", dir, name); }

int phrex_cli_open_train_log(const char *log_path, const char *out_dir, FILE **out) {
    char path[4096];
    if (log_path) snprintf(path, sizeof path, "%s", log_path);
    else phrex_cli_path_join(path, sizeof path, out_dir, "train.log");
    *out = fopen(path, "a");
    return *out ? PHREX_OK : phrex_fail(PHREX_ERR_IO, "%s: cannot open log: %s", path, strerror(errno));
}
