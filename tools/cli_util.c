#include "tools/cli_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

const char *phrex_cli_default_model_dir(void) {
    const char *env = getenv("PHREX_MODEL");
    return env && *env ? env : PHREX_DEFAULT_MODEL_DIR;
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
