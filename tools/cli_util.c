#include "tools/cli_util.h"

#include "common/error.h"
#include "encoder/model_dir.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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
