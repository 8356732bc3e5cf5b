// Error codes and a per-thread error message, in the style of faiss's c_api:
// every fallible call returns an int (0 = ok) and leaves a human-readable
// message that phrex_last_error() returns on the same thread.
#ifndef PHREX_ERROR_H
#define PHREX_ERROR_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    PHREX_OK = 0,
    PHREX_ERR_IO = 1,       // file missing, unreadable, short read, mmap failed
    PHREX_ERR_FORMAT = 2,   // file present but malformed, corrupt or truncated
    PHREX_ERR_INPUT = 3,    // bad user input (text, arguments)
    PHREX_ERR_MEMORY = 4,   // allocation or arena exhausted
    PHREX_ERR_MISMATCH = 5, // consistent file, wrong for this model or config
    PHREX_ERR_INTERNAL = 6, // a library (FAISS, LMDB, sentencepiece) failed
};

// Sets the calling thread's message (printf-style) and returns `code`, so
// that callers can write `return phrex_fail(PHREX_ERR_IO, "...", ...);`.
int phrex_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Prepends "context: " to the calling thread's current message; returns code.
int phrex_fail_context(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// The calling thread's last message ("" when none).
const char *phrex_last_error(void);

// Clears the calling thread's message.
void phrex_clear_error(void);

#ifdef __cplusplus
}
#endif

#endif
