#include "build_faiss.h"

#include "common/error.h"
#include "common/progress.h"
#include "index/dump_format.h"
#include "index/hash.h"
#include "index/manifest.h"

#include <errno.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/IndexPreTransform_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ADD_CHUNK_ROWS 16384     // rows per faiss add call: 24 MiB at 384-d
#define TRAIN_MIN 65536          // PQ and SQ want tens of thousands of points
#define TRAIN_PER_LIST 64        // k-means points per IVF list (FAISS caps at 256)
#define SAMPLE_SEED 0x7068726578ull

static int faiss_fail(const char *what, const char *factory) {
    const char *msg = faiss_get_last_error();
    return phrex_fail(PHREX_ERR_INTERNAL, "FAISS %s (factory '%s'): %s", what, factory, msg ? msg : "unknown error");
}

// The IVF part of an index: the index itself, or what an IndexPreTransform
// (OPQ, PCA) wraps. NULL for indexes without inverted lists.
static FaissIndexIVF *find_ivf(FaissIndex *index) {
    FaissIndexIVF *ivf = faiss_IndexIVF_cast(index);
    if (ivf) return ivf;
    FaissIndexPreTransform *pt = faiss_IndexPreTransform_cast(index);
    return pt ? faiss_IndexIVF_cast(faiss_IndexPreTransform_index(pt)) : NULL;
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int read_rows(int fd, const char *path, int64_t row, int64_t count, int dim, float *out) {
    size_t want = (size_t)count * (size_t)dim * sizeof(float);
    off_t at = PHREX_DUMP_SPILL_HEADER + (off_t)row * dim * (off_t)sizeof(float);
    unsigned char *p = (unsigned char *)out;
    while (want) {
        ssize_t got = pread(fd, p, want, at);
        if (got <= 0)
            return phrex_fail(PHREX_ERR_IO, "%s: cannot read rows %lld..%lld: %s", path, (long long)row,
                              (long long)(row + count), got == 0 ? "unexpected end of file" : strerror(errno));
        p += got, at += got, want -= (size_t)got;
    }
    return PHREX_OK;
}

// A stratified sample: the rows split into m equal blocks, one row drawn
// uniformly from each. Uniform over the corpus (every region represented,
// unlike the first K passages), sorted (reads move forward through the
// file), and the same on every run (seeded).
static int read_sample(int fd, const char *path, int64_t n, int64_t m, int dim, float *out) {
    uint64_t rng = SAMPLE_SEED;
    for (int64_t b = 0; b < m; b++) {
        int64_t lo = (int64_t)((__int128)n * b / m), hi = (int64_t)((__int128)n * (b + 1) / m);
        int64_t row = lo + (int64_t)(splitmix64(&rng) % (uint64_t)(hi - lo));
        int rc = read_rows(fd, path, row, 1, dim, out + (size_t)b * dim);
        if (rc) return rc;
    }
    return PHREX_OK;
}

static int64_t default_train_size(FaissIndexIVF *ivf) {
    int64_t per_list = ivf ? (int64_t)faiss_IndexIVF_nlist(ivf) * TRAIN_PER_LIST : 0;
    return per_list > TRAIN_MIN ? per_list : TRAIN_MIN;
}

static int train(FaissIndex *index, const phrex_faiss_job *job, int fd, int64_t *trained_on) {
    FaissIndexIVF *ivf = find_ivf(index);
    int64_t m = job->train_size > 0 ? job->train_size : default_train_size(ivf);
    if (m > job->n) m = job->n;
    size_t nlist = ivf ? faiss_IndexIVF_nlist(ivf) : 0;
    if (ivf && (size_t)m < nlist)
        return phrex_fail(PHREX_ERR_INPUT,
                          "index factory '%s' has %zu lists but only %lld vectors to train on: use fewer lists "
                          "(about n/39, e.g. IVF%lld) or Flat for a corpus this small",
                          job->factory, nlist, (long long)m, (long long)(m / 39 > 1 ? m / 39 : 1));
    float *x = malloc((size_t)m * (size_t)job->dim * sizeof(float));
    if (!x) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate %lld training vectors", (long long)m);
    int rc = read_sample(fd, job->spill_path, job->n, m, job->dim, x);
    double t0 = phrex_now_seconds();
    if (!rc && faiss_Index_train(index, m, x)) rc = faiss_fail("training failed", job->factory);
    free(x);
    if (!rc && job->progress && isatty(STDERR_FILENO))
        fprintf(stderr, "\r\033[Ktrain: %s on %lld vectors in %.1f s\n", job->factory, (long long)m,
                phrex_now_seconds() - t0);
    *trained_on = m;
    return rc;
}

static int add_all(FaissIndex *index, const phrex_faiss_job *job, int fd) {
    int64_t chunk = job->n < ADD_CHUNK_ROWS ? job->n : ADD_CHUNK_ROWS;
    float *x = malloc((size_t)chunk * (size_t)job->dim * sizeof(float));
    if (!x) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate %lld vectors", (long long)chunk);
    phrex_progress prog;
    phrex_progress_init(&prog, "index", "vectors", job->n);
    prog.enabled &= job->progress;
    int rc = PHREX_OK;
    for (int64_t row = 0; row < job->n && !rc; row += chunk) {
        int64_t count = job->n - row < chunk ? job->n - row : chunk;
        if ((rc = read_rows(fd, job->spill_path, row, count, job->dim, x))) break;
        // Sequential ids: FAISS numbers vectors in add order, 0..n-1.
        if (faiss_Index_add(index, count, x)) rc = faiss_fail("add failed", job->factory);
        phrex_progress_add(&prog, count, NULL);
    }
    phrex_progress_finish(&prog);
    free(x);
    return rc;
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc ? phrex_fail(PHREX_ERR_IO, "%s: fsync failed: %s", path, strerror(errno)) : PHREX_OK;
}

int phrex_index_hash_file(const char *path, uint64_t *bytes, uint64_t *hash) {
    phrex_hash64_state h;
    phrex_hash64_init(&h, PHREX_DUMP_SEED_INDEX);
    int rc = phrex_hash64_update_file(&h, path, bytes);
    if (!rc) *hash = phrex_hash64_final(&h);
    return rc;
}

// Writes to index_path.tmp, fsyncs, hashes, renames, fsyncs the directory:
// a crash leaves either no index.faiss or a complete one.
static int write_index(FaissIndex *index, const phrex_faiss_job *job, uint64_t *bytes, uint64_t *hash) {
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", job->index_path) >= (int)sizeof tmp)
        return phrex_fail(PHREX_ERR_INPUT, "path too long: %s", job->index_path);
    if (faiss_write_index_fname(index, tmp)) return faiss_fail("cannot write the index", job->factory);
    int rc;
    if ((rc = fsync_path(tmp)) || (rc = phrex_index_hash_file(tmp, bytes, hash))) return rc;
    if (rename(tmp, job->index_path) != 0)
        return phrex_fail(PHREX_ERR_IO, "%s: cannot rename to %s: %s", tmp, job->index_path, strerror(errno));
    snprintf(dir, sizeof dir, "%s", job->index_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    return phrex_manifest_sync_dir(slash ? dir : ".");
}

static int create_index(const char *factory, int dim, int metric_l2, FaissIndex **index) {
    *index = NULL;
    if (!strncmp(factory, "IDMap", 5))
        return phrex_fail(PHREX_ERR_INPUT, "index factory '%s': phrex assigns the ids itself, drop the IDMap prefix",
                          factory);
    if (faiss_index_factory(index, dim, factory, metric_l2 ? METRIC_L2 : METRIC_INNER_PRODUCT))
        return faiss_fail("cannot create the index", factory);
    return PHREX_OK;
}

int phrex_index_check_factory(const char *factory, int dim, int metric_l2) {
    FaissIndex *index;
    int rc = create_index(factory, dim, metric_l2, &index);
    if (!rc) faiss_Index_free(index);
    return rc;
}

int phrex_index_build_faiss(const phrex_faiss_job *job, int64_t *trained_on, uint64_t *bytes, uint64_t *hash) {
    *trained_on = 0;
    if (job->n <= 0 && !job->allow_empty)
        return phrex_fail(PHREX_ERR_INPUT, "no token vectors to index (every token filtered out?)");
    FaissIndex *index;
    int rc = create_index(job->factory, job->dim, job->metric_l2, &index);
    if (rc) return rc;
    int fd = open(job->spill_path, O_RDONLY);
    rc = fd < 0 ? phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", job->spill_path, strerror(errno)) : PHREX_OK;
    if (!rc && !faiss_Index_is_trained(index)) rc = train(index, job, fd, trained_on);
    if (!rc) rc = add_all(index, job, fd);
    FaissIndexIVF *ivf = rc ? NULL : find_ivf(index);
    // The direct map makes reconstruct(id) work on IVF indexes, which span
    // scoring needs (the vectors next to a start hit); 8 bytes a vector.
    if (ivf && faiss_IndexIVF_make_direct_map(ivf, 1)) rc = faiss_fail("cannot build the direct map", job->factory);
    if (!rc) rc = write_index(index, job, bytes, hash);
    if (fd >= 0) close(fd);
    faiss_Index_free(index);
    return rc;
}
