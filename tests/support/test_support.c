#include "tests/support/test_support.h"

#include "common/error.h"
#include "data/corpus.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

uint64_t test_hash_bytes(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

int test_write_corpus(const char *path, const char *articles, int first, const int *answers, size_t n_answers) {
    FILE *f = fopen(path, "w");
    phrex_corpus *c;
    if (!f || phrex_corpus_init(&c, articles, NULL)) return -1;
    fprintf(f, "id\ttext\ttitle\n");
    phrex_passage p;
    int has;
    for (int i = 0; phrex_corpus_next(c, &p, &has) == PHREX_OK && has; i++) {
        int take = i < first;
        for (size_t a = 0; a < n_answers; a++) take |= i == answers[a];
        if (!take) continue;
        for (char *s = (char *)p.text; *s; s++)
            if (*s == '"' || *s == '\t' || *s == '\n' || *s == '\r') *s = ' ';
        fprintf(f, "p%d\t%s\t%s\n", i, p.text, p.title);
    }
    phrex_corpus_free(c);
    return fclose(f) == 0 ? 0 : -1;
}

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

char *test_load_file(const char *path, size_t *len) {
    char *buf = test_read_file(path, len);
    if (!buf) fail_msg("%s: cannot open", path);
    return buf;
}

unsigned char *test_read_fixture(const char *path, const char *how, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s: cannot open (run %s)", path, how);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes;
    assert_int_equal(posix_memalign((void **)&bytes, 64, (size_t)n), 0);
    assert_int_equal(fread(bytes, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return bytes;
}

void test_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

void test_write_string(const char *path, const char *text) { test_write_file(path, text, strlen(text)); }

const char *test_write_text(const char *dir, const char *name, const char *text) {
    static char paths[8][256];
    static int slot;
    char *path = paths[slot++ % 8];
    snprintf(path, 256, "%s/%s", dir, name);
    for (char *slash = path + strlen(dir) + 1; (slash = strchr(slash, '/')) != NULL; slash++) {
        *slash = '\0';
        mkdir(path, 0700);
        *slash = '/';
    }
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fwrite(text, 1, strlen(text), fp);
    fclose(fp);
    return path;
}

void test_copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

void test_join_path(char *out, size_t cap, const char *dir, const char *name) {
    assert_true(snprintf(out, cap, "%s/%s", dir, name) < (int)cap);
}

int test_make_tmpdir(char *tmpl) { return mkdtemp(tmpl) ? 0 : -1; }

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int test_remove_tree(const char *dir) { return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

int test_run_shell(const char *cmd) {
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

test_run_result test_run_command(const char *cmd, const char *stdin_path, const char *dir) {
    char line[8192], out[1024], err[1024];
    test_join_path(out, sizeof out, dir, "stdout");
    test_join_path(err, sizeof err, dir, "stderr");
    int n = snprintf(line, sizeof line, "%s < '%s' > '%s' 2> '%s'", cmd, stdin_path ? stdin_path : "/dev/null", out, err);
    assert_true(n < (int)sizeof line);
    test_run_result r = {test_run_shell(line), NULL, NULL, 0, 0};
    r.out = test_read_file(out, &r.out_len);
    r.err = test_read_file(err, &r.err_len);
    assert_non_null(r.out);
    assert_non_null(r.err);
    return r;
}

void test_free_run(test_run_result *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}
