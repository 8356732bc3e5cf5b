#include "error.h"

#include <stdio.h>
#include <string.h>

#define PHREX_ERROR_CAP 1024

static _Thread_local char error_message[PHREX_ERROR_CAP];

int phrex_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    return code;
}

int phrex_fail_context(int code, const char *fmt, ...) {
    char previous[PHREX_ERROR_CAP];
    memcpy(previous, error_message, sizeof previous);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof error_message && previous[0] != '\0')
        snprintf(error_message + n, sizeof error_message - (size_t)n, ": %s", previous);
    return code;
}

const char *phrex_last_error(void) { return error_message; }

void phrex_clear_error(void) { error_message[0] = '\0'; }
