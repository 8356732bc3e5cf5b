// `phrex build` (and `phrex merge`) killed with SIGKILL at many moments, then run again with the
// same command, must end with a dump identical in content (LMDB records, id
// map, index file bytes) to an uninterrupted build. The kill points are
// injected (PHREX_BUILD_CRASH, see index/build.c) so that each stage
// boundary is hit for sure, plus one kill from outside at a moment chosen by
// watching the spill grow. Also: a rerun with other options is refused, and
// a rerun of a finished build changes nothing.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "tests/support/test_support.h"
#include "data/corpus.h"
#include "index/dump.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SQUAD_TSV PHREX_SHARED_DIR "/data/wikipedia/squad-dev-paragraphs/squad-dev-v1.1-paragraphs.tsv"
#define N_PASSAGES 200
#ifdef __SANITIZE_ADDRESS__
#define MAX_BYTES 32 // the encoder is ~10x slower under AddressSanitizer
#else
#define MAX_BYTES 64 // about 14 word pieces a passage
#endif
#define FACTORY "IVF16,SQ8" // trained: the index stage must be deterministic too

static struct {
    char tmp[256], corpus[300], ref[300], log[300];
    uint64_t ref_hash;
    int64_t ref_kept;
    int dim;
} g;

static void remove_tree(const char *dir) { test_remove_tree(dir); }

static void out_dir(char *out, size_t cap, const char *name) {
    assert_true(snprintf(out, cap, "%s/%s", g.tmp, name) < (int)cap);
    remove_tree(out);
}

static int exists_in(const char *dir, const char *name) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

// Short passages (the first MAX_BYTES bytes of SQuAD paragraphs) so that a build
// takes about a second and many fit in a test.
static int write_corpus(const char *path, int from, int count) {
    phrex_corpus *c;
    if (phrex_corpus_init(&c, SQUAD_TSV, NULL)) return -1;
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "id\ttext\ttitle\n");
    phrex_passage p;
    int has = 1, n = 0, seen = 0;
    while (n < count && phrex_corpus_next(c, &p, &has) == PHREX_OK && has) {
        if (seen++ < from) continue;
        size_t len = p.text_len;
        if (len > MAX_BYTES) len = MAX_BYTES;
        while (len && ((unsigned char)p.text[len - 1] & 0xC0) == 0x80) len--; // not inside a UTF-8 sequence
        if (len && (unsigned char)p.text[len - 1] >= 0xC0) len--;
        fprintf(f, "%s\t", p.id);
        for (size_t i = 0; i < len; i++) fputc(strchr("\"\t\r\n", p.text[i]) ? ' ' : p.text[i], f);
        fprintf(f, "\t%s\n", p.title);
        n++;
    }
    phrex_corpus_free(c);
    return fclose(f) == 0 && n == count ? 0 : -1;
}

// Runs `phrex build` on the test corpus into `out`, with PHREX_BUILD_CRASH
// set to `crash` when not NULL and `extra` (NULL-terminated) appended.
// Returns the wait status; stderr goes to g.log.
static pid_t spawn(const char *const *argv, const char *crash) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(g.log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_WRONLY);
        if (fd < 0 || null < 0) _exit(127);
        dup2(fd, STDERR_FILENO);
        dup2(null, STDOUT_FILENO);
        if (crash) setenv("PHREX_BUILD_CRASH", crash, 1);
        else unsetenv("PHREX_BUILD_CRASH");
        execv(PHREX_CLI, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static pid_t start_build_from(const char *corpus, const char *out, const char *crash, const char *const *extra) {
    // Short windows and batches: many checkpoints for a small corpus.
    const char *argv[32] = {PHREX_CLI, "build", "--corpus", corpus, "--out", out, "--index-factory", FACTORY,
                            "--max-seq-len", "128", "--doc-stride", "32", "--batch-tokens", "256",
                            "--threads", "1", "--quiet", "--model", PHREX_BASE_MODEL_DIR};
    int argc = 19;
    for (int i = 0; extra && extra[i]; i++) argv[argc++] = extra[i];
    argv[argc] = NULL;
    return spawn(argv, crash);
}

static pid_t start_build(const char *out, const char *crash, const char *const *extra) {
    return start_build_from(g.corpus, out, crash, extra);
}

static int wait_for(pid_t pid) {
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static int run_build(const char *out, const char *crash, const char *const *extra) {
    return wait_for(start_build(out, crash, extra));
}

static void assert_exit_ok(int status) {
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char buf[2048] = "";
        FILE *f = fopen(g.log, "r");
        if (f) {
            buf[fread(buf, 1, sizeof buf - 1, f)] = '\0';
            fclose(f);
        }
        fprintf(stderr, "phrex build failed (status 0x%x): %s\n", status, buf);
    }
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void read_log(char *buf, size_t cap) {
    FILE *f = fopen(g.log, "r");
    assert_non_null(f);
    buf[fread(buf, 1, cap - 1, f)] = '\0';
    fclose(f);
}

static void assert_killed(int status) { assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL); }

static uint64_t content_hash(const char *dir, int64_t *kept) {
    phrex_dump *d;
    int rc = phrex_dump_open(&d, dir, PHREX_BASE_MODEL_DIR);
    if (rc) fprintf(stderr, "open %s: %s\n", dir, phrex_last_error());
    assert_int_equal(rc, PHREX_OK);
    uint64_t h = phrex_dump_content_hash(d);
    *kept = phrex_dump_get_info(d)->kept;
    phrex_dump_free(d);
    return h;
}

// The dump in `dir` is finished, holds what the reference holds, and has no
// leftovers.
static void assert_same_as_reference(const char *dir) {
    int64_t kept;
    assert_true(content_hash(dir, &kept) == g.ref_hash);
    assert_int_equal(kept, g.ref_kept);
    assert_false(exists_in(dir, "vectors.f32"));
    assert_false(exists_in(dir, "index.faiss.tmp"));
    assert_false(exists_in(dir, "manifest.json.tmp"));
}

static int setup(void **state) {
    (void)state;
    snprintf(g.tmp, sizeof g.tmp, "/tmp/phrex-test-resume-XXXXXX");
    if (test_make_tmpdir(g.tmp)) return -1;
    snprintf(g.corpus, sizeof g.corpus, "%s/corpus.tsv", g.tmp);
    snprintf(g.ref, sizeof g.ref, "%s/reference", g.tmp);
    snprintf(g.log, sizeof g.log, "%s/stderr.log", g.tmp);
    if (write_corpus(g.corpus, 0, N_PASSAGES)) return -1;
    int status = run_build(g.ref, NULL, NULL);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "reference build failed, see %s\n", g.log);
        return -1;
    }
    phrex_dump *d;
    if (phrex_dump_open(&d, g.ref, PHREX_BASE_MODEL_DIR)) return -1;
    g.ref_hash = phrex_dump_content_hash(d);
    g.ref_kept = phrex_dump_get_info(d)->kept;
    g.dim = phrex_dump_get_info(d)->dim;
    phrex_dump_free(d);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(g.tmp);
    return 0;
}

// --- tests ----------------------------------------------------------------------

static void test_reference_is_sane(void **state) {
    (void)state;
    phrex_dump *d;
    assert_int_equal(phrex_dump_open(&d, g.ref, PHREX_BASE_MODEL_DIR), PHREX_OK);
    const phrex_dump_info *info = phrex_dump_get_info(d);
    assert_int_equal(info->passages, N_PASSAGES);
    assert_int_equal(info->kept, info->tokens);
    assert_string_equal(info->factory, FACTORY);
    assert_int_equal(phrex_dump_set_nprobe(d, 16), PHREX_OK);
    // IVF: reconstruct needs the direct map the builder stores.
    float v[1024];
    for (int64_t id = 0; id < info->kept; id += 97) {
        int64_t p, back;
        int32_t t;
        assert_int_equal(phrex_dump_reconstruct(d, id, v), PHREX_OK);
        assert_int_equal(phrex_dump_locate(d, id, &p, &t), PHREX_OK);
        assert_int_equal(phrex_dump_vector_id(d, p, t, &back), PHREX_OK);
        assert_int_equal(back, id);
    }
    phrex_dump_free(d);
    assert_false(exists_in(g.ref, "vectors.f32"));
}

// A second identical build, from scratch: the build is deterministic, which
// is what the resume checks below rely on.
static void test_rebuild_is_identical(void **state) {
    (void)state;
    char dir[1024];
    out_dir(dir, sizeof dir, "again");
    assert_exit_ok(run_build(dir, NULL, NULL));
    assert_same_as_reference(dir);
}

static void crash_then_resume(const char *name, const char *crash, int rerun_finished) {
    char dir[1024];
    out_dir(dir, sizeof dir, name);
    assert_killed(run_build(dir, crash, NULL));
    assert_true(exists_in(dir, "meta.mdb"));
    assert_false(exists_in(dir, "manifest.json"));
    assert_exit_ok(run_build(dir, NULL, NULL));
    assert_same_as_reference(dir);
    if (!rerun_finished) return;
    assert_exit_ok(run_build(dir, NULL, NULL)); // finished: a no-op
    assert_same_as_reference(dir);
}

static void test_kill_before_a_batch_commit(void **state) {
    (void)state;
    crash_then_resume("spill-2", "spill:2", 1);
}

static void test_kill_after_a_later_commit(void **state) {
    (void)state;
    crash_then_resume("commit-3", "commit:3", 0);
}

static void test_kill_after_the_index_file(void **state) {
    (void)state;
    crash_then_resume("index", "index", 0);
}

static void test_kill_before_the_manifest(void **state) {
    (void)state;
    crash_then_resume("indexed", "indexed", 0);
}

static void test_kill_after_the_manifest(void **state) {
    (void)state;
    char dir[1024];
    out_dir(dir, sizeof dir, "manifest");
    assert_killed(run_build(dir, "manifest", NULL));
    assert_true(exists_in(dir, "manifest.json") && exists_in(dir, "vectors.f32"));
    assert_exit_ok(run_build(dir, NULL, NULL)); // removes the spill
    assert_same_as_reference(dir);
}

static void test_killed_twice(void **state) {
    (void)state;
    char dir[1024];
    out_dir(dir, sizeof dir, "twice");
    assert_killed(run_build(dir, "commit:2", NULL));
    assert_killed(run_build(dir, "spill:3", NULL));
    assert_exit_ok(run_build(dir, NULL, NULL));
    assert_same_as_reference(dir);
}

static off_t file_size(const char *dir, const char *name) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

// A real kill -9 from outside, mid-encoding: when the spill holds about a
// third of the vectors.
static void test_kill_from_outside(void **state) {
    (void)state;
    char dir[1024];
    out_dir(dir, sizeof dir, "outside");
    off_t third = 64 + (off_t)g.ref_kept * g.dim * (off_t)sizeof(float) / 3;
    pid_t pid = start_build(dir, NULL, NULL);
    int status, done = 0;
    struct timespec pause = {0, 2 * 1000 * 1000};
    while (!done && file_size(dir, "vectors.f32") < third) {
        done = waitpid(pid, &status, WNOHANG) == pid;
        nanosleep(&pause, NULL);
    }
    if (!done) {
        kill(pid, SIGKILL);
        status = wait_for(pid);
        assert_killed(status);
        assert_false(exists_in(dir, "manifest.json"));
    }
    assert_exit_ok(run_build(dir, NULL, NULL));
    assert_same_as_reference(dir);
}

static void test_resume_with_other_options_is_refused(void **state) {
    (void)state;
    char dir[1024];
    out_dir(dir, sizeof dir, "options");
    assert_killed(run_build(dir, "commit:2", NULL));
    const char *other[] = {"--doc-stride", "64", NULL};
    int status = run_build(dir, NULL, other);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    char buf[2048];
    read_log(buf, sizeof buf);
    assert_non_null(strstr(buf, "doc_stride=32"));
    assert_non_null(strstr(buf, "doc_stride=64"));
    assert_exit_ok(run_build(dir, NULL, NULL));
    assert_same_as_reference(dir);
}

// The index options may change while the spill is there (the index is built
// again, the passages are kept); a finished dump keeps its index.
static void test_index_options_may_change_until_the_end(void **state) {
    (void)state;
    char dir[1024], buf[2048];
    out_dir(dir, sizeof dir, "refactory");
    assert_killed(run_build(dir, "indexed", NULL)); // an IVF index, no manifest
    const char *flat[] = {"--index-factory", "Flat", NULL};
    assert_exit_ok(run_build(dir, NULL, flat));
    phrex_dump *d, *ref;
    assert_int_equal(phrex_dump_open(&d, dir, PHREX_BASE_MODEL_DIR), PHREX_OK);
    assert_int_equal(phrex_dump_open(&ref, g.ref, PHREX_BASE_MODEL_DIR), PHREX_OK);
    assert_string_equal(phrex_dump_get_info(d)->factory, "Flat");
    assert_true(phrex_dump_get_info(d)->lmdb_hash == phrex_dump_get_info(ref)->lmdb_hash);
    assert_int_equal(phrex_dump_get_info(d)->kept, g.ref_kept);
    phrex_dump_free(d);
    phrex_dump_free(ref);
    int status = run_build(dir, NULL, NULL); // back to IVF: refused, the dump is finished
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    read_log(buf, sizeof buf);
    assert_non_null(strstr(buf, "factory=Flat"));
}

// The corpus built as shards (--shard 0/3 on one corpus file, and the rest
// as its own file, as on two machines) and merged: the passages are those of
// the one-file build, the vectors those of the shards, and a merge killed in
// the middle resumes to the same dump.
static void test_merge_of_shards(void **state) {
    (void)state;
    char b_tsv[1024], a[1024], b[1024], m[1024], m2[1024];
    const int n_a = N_PASSAGES / 3; // what --shard 0/3 takes
    snprintf(b_tsv, sizeof b_tsv, "%s/rest.tsv", g.tmp);
    assert_int_equal(write_corpus(b_tsv, n_a, N_PASSAGES - n_a), 0);
    out_dir(a, sizeof a, "shard-a");
    out_dir(b, sizeof b, "shard-b");
    out_dir(m, sizeof m, "merged");
    out_dir(m2, sizeof m2, "merged-killed");
    const char *shard_a[] = {"--keep-vectors", "--index-factory", "Flat", "--shard", "0/3", NULL};
    const char *keep_flat[] = {"--keep-vectors", "--index-factory", "Flat", NULL};
    assert_exit_ok(wait_for(start_build(a, NULL, shard_a)));
    assert_exit_ok(wait_for(start_build_from(b_tsv, b, NULL, keep_flat)));
    const char *merge[] = {PHREX_CLI, "merge", "--out", m, "--index-factory", "Flat", "--threads", "1", "--quiet",
                           "--model", PHREX_BASE_MODEL_DIR, a, b, NULL};
    assert_exit_ok(wait_for(spawn(merge, NULL)));
    merge[3] = m2;
    assert_killed(wait_for(spawn(merge, "commit:1"))); // shard a stored, shard b not
    assert_exit_ok(wait_for(spawn(merge, NULL)));
    phrex_dump *dm, *dm2, *ref, *da, *db;
    assert_int_equal(phrex_dump_open(&dm, m, PHREX_BASE_MODEL_DIR), PHREX_OK);
    assert_int_equal(phrex_dump_open(&dm2, m2, PHREX_BASE_MODEL_DIR), PHREX_OK);
    assert_int_equal(phrex_dump_open(&ref, g.ref, PHREX_BASE_MODEL_DIR), PHREX_OK);
    assert_int_equal(phrex_dump_open(&da, a, PHREX_BASE_MODEL_DIR), PHREX_OK);
    assert_int_equal(phrex_dump_open(&db, b, PHREX_BASE_MODEL_DIR), PHREX_OK);
    const phrex_dump_info *im = phrex_dump_get_info(dm), *ia = phrex_dump_get_info(da);
    assert_int_equal(ia->passages, n_a);
    assert_true(phrex_dump_content_hash(dm) == phrex_dump_content_hash(dm2));
    assert_true(im->lmdb_hash == phrex_dump_get_info(ref)->lmdb_hash); // records as one build stores them
    assert_int_equal(im->passages, N_PASSAGES);
    assert_int_equal(im->kept, g.ref_kept);
    assert_int_equal(im->windows, phrex_dump_get_info(ref)->windows);
    float x[1024], y[1024];
    for (int64_t id = 0; id < im->kept; id += 7) {
        phrex_dump *shard = id < ia->kept ? da : db;
        int64_t local = id < ia->kept ? id : id - ia->kept;
        assert_int_equal(phrex_dump_reconstruct(dm, id, x), PHREX_OK);
        assert_int_equal(phrex_dump_reconstruct(shard, local, y), PHREX_OK);
        assert_memory_equal(x, y, (size_t)im->dim * sizeof(float));
    }
    phrex_dump_free(dm);
    phrex_dump_free(dm2);
    phrex_dump_free(ref);
    phrex_dump_free(da);
    phrex_dump_free(db);
    assert_true(exists_in(a, "vectors.f32") && exists_in(b, "vectors.f32")); // shards untouched
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_is_sane),
        cmocka_unit_test(test_rebuild_is_identical),
        cmocka_unit_test(test_kill_before_a_batch_commit),
        cmocka_unit_test(test_kill_after_a_later_commit),
        cmocka_unit_test(test_kill_after_the_index_file),
        cmocka_unit_test(test_kill_before_the_manifest),
        cmocka_unit_test(test_kill_after_the_manifest),
        cmocka_unit_test(test_killed_twice),
        cmocka_unit_test(test_kill_from_outside),
        cmocka_unit_test(test_resume_with_other_options_is_refused),
        cmocka_unit_test(test_index_options_may_change_until_the_end),
        cmocka_unit_test(test_merge_of_shards),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
