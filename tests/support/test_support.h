// Small helpers shared by the cmocka tests: whole-file reads and writes,
// temporary folders, and running shell commands with captured output.
#ifndef PHREX_TEST_SUPPORT_H
#define PHREX_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

// What a captured command left: exit status (-1 when killed by a signal),
// stdout and stderr (NUL-terminated, malloc'd), and their lengths.
typedef struct {
    int status;
    char *out, *err;
    size_t out_len, err_len;
} test_run_result;

// Mixes n bytes into the FNV-1a 64-bit hash h (callers pass their own offset basis).
uint64_t test_hash_bytes(uint64_t h, const void *data, size_t n);
// Writes the TSV corpus (id, text, title) of the first `first` paragraphs of articles and those listed in answers; 0 or -1.
int test_write_corpus(const char *path, const char *articles, int first, const int *answers, size_t n_answers);
// Reads a whole file, NUL-terminated; NULL when it cannot be opened; *len (if non-NULL) gets its size.
char *test_read_file(const char *path, size_t *len);
// Reads a whole file like test_read_file, failing the test when it cannot be opened.
char *test_load_file(const char *path, size_t *len);
// Reads a whole file into 64-byte-aligned memory, failing the test (naming `how` to make it) when it cannot.
unsigned char *test_read_fixture(const char *path, const char *how, size_t *size);
// Writes len bytes to path (replacing it), asserting every step.
void test_write_file(const char *path, const void *data, size_t len);
// Writes the NUL-terminated text to path (replacing it), asserting every step.
void test_write_string(const char *path, const char *text);
// Writes text to dir/name (creating its folders); returns the path (static, eight call slots).
const char *test_write_text(const char *dir, const char *name, const char *text);
// Copies the file src to dst, asserting every step.
void test_copy_file(const char *src, const char *dst);
// Writes "dir/name" into out (cap bytes), asserting it fits.
void test_join_path(char *out, size_t cap, const char *dir, const char *name);
// Creates a temporary folder from tmpl (ending "XXXXXX", rewritten in place); 0 or -1.
int test_make_tmpdir(char *tmpl);
// Removes a folder and everything under it; 0 when it all went.
int test_remove_tree(const char *dir);
// Runs a shell command line; its exit status, or -1 when it did not exit normally.
int test_run_shell(const char *cmd);
// Runs `cmd < stdin_path` (NULL: /dev/null) with stdout/stderr captured in files under dir.
test_run_result test_run_command(const char *cmd, const char *stdin_path, const char *dir);
// Frees what test_run_command captured.
void test_free_run(test_run_result *r);

#endif
