// `phrex build --mpi` under mpirun with 2 ranks on localhost, over the
// first paragraphs of DensePhrases' sample corpus:
// (1) each rank builds its shard (DUMP/shards/K-of-2), rank 0 merges them,
//     and the merged dump equals a single-process build (content hash:
//     records, id map and index file); the same command again finds it
//     complete;
// (2) more ranks than passages: rank 0's shard is empty (no vector to
//     index) and the merge still gives the one passage's dump;
// (3) a rank that fails (its shard folder is a foreign folder) makes every
//     rank exit non-zero, rank 0 naming the failed rank and its error, and
//     no merged dump is written.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "index/dump.h"
#include "tests/support/test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARTICLES PHREX_SHARED_DIR "/data/wikipedia/densephrases-sample/articles.json"
// Under AddressSanitizer the encoder runs about 10x slower.
#ifdef __SANITIZE_ADDRESS__
#define N_PASSAGES 8
#else
#define N_PASSAGES 30
#endif

static struct {
    char tmp[256], corpus[512], single[512];
} g;

// mpirun refuses root unless told; OpenMPI's leak-prone finalisation would
// fail an AddressSanitizer run at exit, so leak checks are off in the ranks.
static void mpirun_command_on(char *out, size_t cap, const char *corpus, const char *dump) {
    int n = snprintf(out, cap,
                     "ASAN_OPTIONS=detect_leaks=0 OMP_NUM_THREADS=1 %s -np 2 --oversubscribe %s %s build --mpi "
                     "--model %s --corpus %s --out %s --index-factory Flat --threads 1 --quiet",
                     PHREX_MPIEXEC, geteuid() == 0 ? "--allow-run-as-root" : "", PHREX_CLI, PHREX_BASE_MODEL_DIR,
                     corpus, dump);
    assert_true(n > 0 && (size_t)n < cap);
}

static void mpirun_command(char *out, size_t cap, const char *dump) { mpirun_command_on(out, cap, g.corpus, dump); }

static int setup(void **state) {
    (void)state;
    snprintf(g.tmp, sizeof g.tmp, "/tmp/phrex-mpi-XXXXXX");
    if (test_make_tmpdir(g.tmp)) return -1;
    snprintf(g.corpus, sizeof g.corpus, "%s/corpus.tsv", g.tmp);
    snprintf(g.single, sizeof g.single, "%s/single", g.tmp);
    if (test_write_corpus(g.corpus, ARTICLES, N_PASSAGES, NULL, 0)) return -1;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 %s build --model %s --corpus %s --out %s --index-factory Flat --threads 1 --quiet "
             "> /dev/null",
             PHREX_CLI, PHREX_BASE_MODEL_DIR, g.corpus, g.single);
    return test_run_shell(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return test_remove_tree(g.tmp);
}

static void test_two_ranks_equal_one_process(void **state) {
    (void)state;
    char dump[512], cmd[2048];
    snprintf(dump, sizeof dump, "%s/mpi", g.tmp);
    mpirun_command(cmd, sizeof cmd, dump);
    test_run_result r = test_run_command(cmd, NULL, g.tmp);
    if (r.status != 0) fail_msg("mpirun exited %d: %s", r.status, r.err);
    assert_non_null(strstr(r.out, "done"));
    test_free_run(&r);

    phrex_dump *m, *s, *shard;
    assert_int_equal(phrex_dump_open(&m, dump, PHREX_BASE_MODEL_DIR), PHREX_OK);
    assert_int_equal(phrex_dump_open(&s, g.single, PHREX_BASE_MODEL_DIR), PHREX_OK);
    const phrex_dump_info *im = phrex_dump_get_info(m), *is = phrex_dump_get_info(s);
    assert_int_equal(im->passages, N_PASSAGES);
    assert_int_equal(im->kept, is->kept);
    assert_int_equal(im->windows, is->windows);
    assert_true(im->lmdb_hash == is->lmdb_hash);
    assert_true(phrex_dump_content_hash(m) == phrex_dump_content_hash(s));
    // Each rank built one half.
    int64_t passages = 0;
    for (int k = 0; k < 2; k++) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/shards/%d-of-2", dump, k);
        assert_int_equal(phrex_dump_open(&shard, dir, PHREX_BASE_MODEL_DIR), PHREX_OK);
        int64_t n = phrex_dump_get_info(shard)->passages;
        assert_int_equal(n, (int64_t)N_PASSAGES * (k + 1) / 2 - (int64_t)N_PASSAGES * k / 2);
        passages += n;
        phrex_dump_free(shard);
    }
    assert_int_equal(passages, N_PASSAGES);
    phrex_dump_free(m);
    phrex_dump_free(s);

    // The same command again: every stage is already complete.
    r = test_run_command(cmd, NULL, g.tmp);
    if (r.status != 0) fail_msg("mpirun (again) exited %d: %s", r.status, r.err);
    assert_non_null(strstr(r.out, "already complete"));
    test_free_run(&r);
}

static void test_an_empty_shard(void **state) {
    (void)state;
    char corpus[512], dump[512], cmd[2048];
    snprintf(corpus, sizeof corpus, "%s/one.tsv", g.tmp);
    snprintf(dump, sizeof dump, "%s/mpi-one", g.tmp);
    assert_int_equal(test_write_corpus(corpus, ARTICLES, 1, NULL, 0), 0);
    mpirun_command_on(cmd, sizeof cmd, corpus, dump);
    test_run_result r = test_run_command(cmd, NULL, g.tmp);
    if (r.status != 0) fail_msg("mpirun exited %d: %s", r.status, r.err);
    test_free_run(&r);
    phrex_dump *d;
    assert_int_equal(phrex_dump_open(&d, dump, PHREX_BASE_MODEL_DIR), PHREX_OK);
    assert_int_equal(phrex_dump_get_info(d)->passages, 1);
    assert_true(phrex_dump_get_info(d)->kept > 0);
    phrex_dump_free(d);
}

static void test_a_failed_rank_fails_every_rank(void **state) {
    (void)state;
    char dump[512], cmd[2048];
    snprintf(dump, sizeof dump, "%s/mpi-fail", g.tmp);
    assert_int_equal(mkdir(dump, 0755), 0);
    test_write_text(dump, "shards/1-of-2/notes.txt", "not a dump\n"); // rank 1 must refuse this folder
    mpirun_command(cmd, sizeof cmd, dump);
    test_run_result r = test_run_command(cmd, NULL, g.tmp);
    assert_int_not_equal(r.status, 0);
    if (!strstr(r.err, "rank 1 (shard 1/2) failed") || !strstr(r.err, "not a phrex dump"))
        fail_msg("stderr lacks the failed rank and its reason: %s", r.err);
    assert_non_null(strstr(r.err, "rank 1: stopping")); // the failed rank exits non-zero itself too
    test_free_run(&r);
    char manifest[600];
    snprintf(manifest, sizeof manifest, "%s/manifest.json", dump);
    assert_int_not_equal(access(manifest, F_OK), 0);
}

int main(void) {
#ifndef PHREX_MPIEXEC
    fprintf(stderr, "test_mpi_build: phrex was configured without MPI; nothing to test\n");
    return 77;
#else
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_ranks_equal_one_process),
        cmocka_unit_test(test_an_empty_shard),
        cmocka_unit_test(test_a_failed_rank_fails_every_rank),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
#endif
}
