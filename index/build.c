#include "build.h"

#include "common/error.h"
#include "common/progress.h"
#include "common/threads.h"
#include "data/buf.h"
#include "encoder/bert_config.h"
#include "encoder/embedder.h"
#include "encoder/model_dir.h"
#include "index/build_faiss.h"
#include "index/dump.h"
#include "index/dump_format.h"
#include "index/hash.h"
#include "index/manifest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAP_SIZE_MIN ((size_t)64 << 20)
#define OPTIONS_KEY "options"
#define INDEX_OPTIONS_KEY "index_options"
#define STATE_KEY "build"

// One passage waiting in a batch.
typedef struct {
    uint64_t number;
    size_t str_off;           // "id\0title\0text\0" in batch.strings
    uint32_t id_len, title_len, text_len;
    int piece0, n_pieces;     // its word pieces in batch.pieces
    int win0, n_win;          // its windows in batch.win
    uint64_t first_id;        // vector id of its first kept token
    uint32_t n_kept;
    size_t rec_off, rec_len;  // its record in batch.records
} batch_passage;

// One encoder window: pieces [start, start + len) of a passage, run as
// [CLS] pieces [SEP]. It supplies the vectors of pieces [own_lo, own_hi),
// those for which it is the most central window.
typedef struct {
    int passage; // index into batch.bp
    int start, len;
    int own_lo, own_hi;
} batch_window;

typedef struct {
    phrex_tokens pieces;   // word pieces of the batch's passages, back to back
    phrex_buf strings;     // id, title, text of each passage
    phrex_buf records;     // the passages' serialized records
    batch_passage *bp;
    int n_bp, cap_bp;
    batch_window *win;
    int n_win, cap_win;
    int tokens;            // forward tokens the windows need
    uint8_t *keep;         // (pieces.n) keep flag of every piece
    int cap_keep;
    // Sized once for batch_tokens:
    int32_t *ids, *seq_lens; // (batch_tokens)
    float *hidden;           // (batch_tokens, C)
    float *gathered;         // (batch_tokens, C) the pieces a chunk supplies, in order
    uint8_t *chunk_keep;     // (batch_tokens)
} batch;

typedef struct {
    const phrex_build_options *o;
    char dir[PATH_MAX], lmdb_path[PATH_MAX], spill_path[PATH_MAX], index_path[PATH_MAX];
    uint64_t model_hash;
    phrex_bert_config cfg;
    char phrase_dir[PATH_MAX]; // the phrase encoder folder --model resolves to
    char *fingerprint;     // options that decide the encoded content (malloc'd)
    char *index_fp;        // options that decide the index: factory, metric, train size
    uint64_t corpus_bytes;
    int dir_fd;            // holds an exclusive flock on the dump folder
    MDB_env *env;
    MDB_dbi db_info, db_pass, db_kept;
    size_t map_size;
    phrex_build_state st;
    FILE *spill;
    phrex_embedder *emb;
    const phrex_wordpiece *wp;
    int cls, sep, C, W;    // W: pieces per window (max_seq_len - 2)
    batch b;
    phrex_tokens one;      // the passage being tokenized
    phrex_progress prog;
    int64_t run_tokens;    // corpus tokens (word pieces) encoded by this run
    phrex_build_stats *stats;
    uint64_t range_lo, range_hi; // corpus passages this build takes (--shard)
    // Merging (phrex_index_merge_dumps): the shards, open, in order.
    phrex_dump **shards;
    int n_shards;
} builder;

// --- fault injection for the crash tests -----------------------------------

// PHREX_BUILD_CRASH=NAME[:K] makes the K-th (default first) pass through
// crash point NAME kill the process with SIGKILL, as `kill -9` would, at a
// known moment. Points: "spill" (spill synced, batch not committed),
// "commit" (batch committed), "index" (index written, stage not committed),
// "indexed" (stage committed, no manifest), "manifest" (manifest renamed,
// spill not removed). Tests only; unset in normal use.
static void crash_point(const char *name) {
    static long count;
    const char *spec = getenv("PHREX_BUILD_CRASH");
    size_t n = strlen(name);
    if (!spec || strncmp(spec, name, n) || (spec[n] != '\0' && spec[n] != ':')) return;
    long want = spec[n] == ':' ? atol(spec + n + 1) : 1;
    if (++count == want) raise(SIGKILL);
}

// --- options ----------------------------------------------------------------

void phrex_build_options_default(phrex_build_options *o) {
    memset(o, 0, sizeof *o);
    o->format = PHREX_CORPUS_AUTO;
    o->index_factory = "auto";
    o->max_seq_len = 384;
    o->doc_stride = 128;
    o->batch_tokens = 8192;
    o->progress = 1;
    o->filter_name = "none";
}

void phrex_index_auto_factory(int64_t n, char *out, size_t cap) {
    if (n <= 20000) {
        snprintf(out, cap, "Flat");
        return;
    }
    double target = 4.0 * sqrt((double)n);
    int64_t nlist = 256;
    while (nlist < 65536 && fabs((double)(nlist * 2) - target) < fabs((double)nlist - target)) nlist *= 2;
    snprintf(out, cap, "IVF%lld,SQ8", (long long)nlist);
}

static int check_options(const phrex_build_options *o, const phrex_bert_config *cfg) {
    if (o->n_corpus < 1) return phrex_fail(PHREX_ERR_INPUT, "no corpus given");
    if (o->max_seq_len < 3 || o->max_seq_len > cfg->max_position_embeddings)
        return phrex_fail(PHREX_ERR_INPUT, "--max-seq-len %d: the model takes 3..%d tokens", o->max_seq_len,
                          cfg->max_position_embeddings);
    if (o->doc_stride < 1 || o->doc_stride > o->max_seq_len - 2)
        return phrex_fail(PHREX_ERR_INPUT, "--doc-stride %d: must be in [1, max_seq_len - 2 = %d]", o->doc_stride,
                          o->max_seq_len - 2);
    if (o->batch_tokens < o->max_seq_len)
        return phrex_fail(PHREX_ERR_INPUT, "--batch-tokens %d: must be at least --max-seq-len %d", o->batch_tokens,
                          o->max_seq_len);
    if (o->train_size < 0) return phrex_fail(PHREX_ERR_INPUT, "--train-size must be positive");
    return PHREX_OK;
}

// Everything that decides the dump's content, one "key=value" per line. A
// resume must match it exactly; corpus files are identified by real path
// and size so that a changed corpus is not silently continued.
static int make_fingerprint(builder *B) {
    const phrex_build_options *o = B->o;
    char hex[17];
    phrex_hash64_hex(B->model_hash, hex);
    size_t len = 0;
    FILE *f = open_memstream(&B->fingerprint, &len);
    if (!f) return phrex_fail(PHREX_ERR_MEMORY, "cannot build the options fingerprint");
    fprintf(f,
            "format=%d\nmodel=%s\nmax_seq_len=%d\ndoc_stride=%d\nbatch_tokens=%d\nshard=%d/%d\nfilter=%s\n"
            "corpus_format=%s\nskip_bad=%d\n",
            PHREX_DUMP_FORMAT_VERSION, hex, o->max_seq_len, o->doc_stride, o->batch_tokens,
            o->n_shards > 1 ? o->shard : 0, o->n_shards > 1 ? o->n_shards : 1, o->filter_name ? o->filter_name : (o->filter ? "custom" : "none"), phrex_corpus_format_name(o->format),
            o->skip_bad != 0);
    int rc = PHREX_OK;
    for (int i = 0; i < o->n_corpus && !rc; i++) {
        char real[PATH_MAX];
        struct stat st;
        if (!realpath(o->corpus_paths[i], real) || stat(real, &st) != 0) {
            rc = phrex_fail(PHREX_ERR_IO, "%s: %s", o->corpus_paths[i], strerror(errno));
            break;
        }
        uint64_t size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
        B->corpus_bytes += size;
        fprintf(f, "corpus=%s size=%llu\n", real, (unsigned long long)size);
    }
    if (fclose(f) != 0 && !rc) rc = phrex_fail(PHREX_ERR_MEMORY, "cannot build the options fingerprint");
    return rc;
}

static int make_index_fingerprint(builder *B) {
    const phrex_build_options *o = B->o;
    size_t len = 0;
    FILE *f = open_memstream(&B->index_fp, &len);
    if (!f) return phrex_fail(PHREX_ERR_MEMORY, "cannot build the index options");
    fprintf(f, "factory=%s\nmetric=%s\ntrain_size=%lld\n", o->index_factory ? o->index_factory : "auto",
            phrex_dump_metric_name(o->metric), (long long)o->train_size);
    return fclose(f) == 0 ? PHREX_OK : phrex_fail(PHREX_ERR_MEMORY, "cannot build the index options");
}

// Names the first line where the stored and the current fingerprints differ.
static int fingerprint_mismatch(const builder *B, const char *stored, size_t len, const char *cur) {
    size_t i = 0;
    while (i < len && cur[i] && stored[i] == cur[i]) i++;
    while (i > 0 && stored[i - 1] != '\n') i--;
    const char *a = stored + i, *b = cur + i, *nl = memchr(a, '\n', len - i);
    int na = (int)(nl ? (size_t)(nl - a) : len - i), nb = (int)strcspn(b, "\n");
    return phrex_fail(PHREX_ERR_MISMATCH,
                      "%s holds a build started with '%.*s', this run has '%.*s': rerun with the same "
                      "options and model, or remove %s to start over",
                      B->dir, na, a, nb, b, B->dir);
}

// --- the dump folder --------------------------------------------------------

// mkdir -p for the parents of path, so that --out out/dumps/x works on a
// fresh checkout. The last component is left to prepare_dir.
static int make_parents(const char *path) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return phrex_fail(PHREX_ERR_INPUT, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", buf, strerror(errno));
        *p = '/';
    }
    return PHREX_OK;
}

// Creates dir, or accepts it when it is empty or holds a phrex dump (in
// progress or complete); refuses anything else so that a typo in --out does
// not scribble into an unrelated folder.
static int prepare_dir(builder *B) {
    int rc = make_parents(B->dir);
    if (rc) return rc;
    if (mkdir(B->dir, 0755) == 0) return PHREX_OK;
    if (errno != EEXIST) return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", B->dir, strerror(errno));
    DIR *d = opendir(B->dir);
    if (!d) return phrex_fail(PHREX_ERR_IO, "%s: not a directory or unreadable: %s", B->dir, strerror(errno));
    int has_lmdb = 0, has_other = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!strcmp(e->d_name, PHREX_DUMP_LMDB)) has_lmdb = 1;
        else if (!strcmp(e->d_name, PHREX_DUMP_SHARDS)) continue; // `phrex build --mpi` builds its shards here
        else if (strncmp(e->d_name, PHREX_DUMP_LMDB, strlen(PHREX_DUMP_LMDB)) &&
                 strncmp(e->d_name, PHREX_DUMP_SPILL, strlen(PHREX_DUMP_SPILL)))
            has_other = 1;
    }
    closedir(d);
    if (has_other && !has_lmdb)
        return phrex_fail(PHREX_ERR_INPUT, "%s exists and is not a phrex dump: refusing to write into it", B->dir);
    return PHREX_OK;
}

// Two builds writing one dump would interleave their spills: the second
// one is refused while the first holds the folder's lock (released by the
// kernel when the process ends, however it ends).
static int lock_dir(builder *B) {
    B->dir_fd = open(B->dir, O_RDONLY | O_DIRECTORY);
    if (B->dir_fd < 0) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", B->dir, strerror(errno));
    if (flock(B->dir_fd, LOCK_EX | LOCK_NB) == 0) return PHREX_OK;
    if (errno == EWOULDBLOCK) return phrex_fail(PHREX_ERR_INPUT, "%s: another phrex build is writing it", B->dir);
    return phrex_fail(PHREX_ERR_IO, "%s: cannot lock: %s", B->dir, strerror(errno));
}

// --- LMDB -------------------------------------------------------------------

static int open_env(builder *B) {
    int rc = mdb_env_create(&B->env);
    if (rc) return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot create an environment");
    // Passage records are about 3x the corpus text (text + 8 bytes of
    // offsets per token); the map grows on MDB_MAP_FULL anyway.
    B->map_size = B->o->map_size ? B->o->map_size : MAP_SIZE_MIN + 4 * (size_t)B->corpus_bytes;
    if ((rc = mdb_env_set_mapsize(B->env, B->map_size)) || (rc = mdb_env_set_maxdbs(B->env, 4)) ||
        (rc = mdb_env_open(B->env, B->lmdb_path, MDB_NOSUBDIR, 0644)))
        return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot open");
    MDB_envinfo info;
    mdb_env_info(B->env, &info);
    B->map_size = info.me_mapsize; // an existing file may have a bigger map
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(B->env, NULL, 0, &txn))) return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot begin");
    if ((rc = mdb_dbi_open(txn, "info", MDB_CREATE, &B->db_info)) ||
        (rc = mdb_dbi_open(txn, "passages", MDB_CREATE, &B->db_pass)) ||
        (rc = mdb_dbi_open(txn, "kept", MDB_CREATE, &B->db_kept))) {
        mdb_txn_abort(txn);
        return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot open the databases");
    }
    // A failed commit frees the transaction: no abort after it.
    if ((rc = mdb_txn_commit(txn))) return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot create the databases");
    return PHREX_OK;
}

static int grow_map(builder *B) {
    size_t bigger = B->map_size * 2;
    int rc = mdb_env_set_mapsize(B->env, bigger);
    if (rc) return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot grow the map");
    B->map_size = bigger;
    return PHREX_OK;
}

static int put(MDB_txn *txn, MDB_dbi db, const void *k, size_t kn, const void *v, size_t vn, unsigned flags) {
    MDB_val key = {kn, (void *)k}, val = {vn, (void *)v};
    return mdb_put(txn, db, &key, &val, flags);
}

// The batch's records, the kept-id map and the new state, in one
// transaction: either all of the batch is stored or none of it.
static int write_batch_txn(builder *B, MDB_txn *txn, const phrex_build_state *st) {
    const batch *b = &B->b;
    int rc = 0;
    for (int i = 0; i < b->n_bp && !rc; i++) {
        const batch_passage *p = &b->bp[i];
        unsigned char key[8], num[8];
        phrex_dump_put_be64(key, p->number);
        rc = put(txn, B->db_pass, key, 8, b->records.data + p->rec_off, p->rec_len, MDB_APPEND);
        if (rc || !p->n_kept) continue;
        phrex_dump_put_be64(key, p->first_id);
        phrex_dump_put_le64(num, p->number);
        rc = put(txn, B->db_kept, key, 8, num, 8, MDB_APPEND);
    }
    unsigned char state[PHREX_DUMP_STATE_BYTES];
    phrex_dump_state_encode(st, state);
    if (!rc) rc = put(txn, B->db_info, STATE_KEY, strlen(STATE_KEY), state, sizeof state, 0);
    return rc;
}

// Commits the batch (possibly empty) with state `st`, growing the map and
// retrying when it is full.
static int commit_state(builder *B, const phrex_build_state *st) {
    for (;;) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(B->env, NULL, 0, &txn);
        if (rc) return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot begin a transaction");
        rc = write_batch_txn(B, txn, st);
        if (rc) mdb_txn_abort(txn);
        else rc = mdb_txn_commit(txn);
        if (rc == MDB_MAP_FULL) {
            if ((rc = grow_map(B))) return rc;
            continue;
        }
        if (rc) return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot store a batch");
        B->st = *st;
        return PHREX_OK;
    }
}

// Reads the state and the fingerprint; a fresh dump gets both written.
static int load_state(builder *B, int *fresh) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(B->env, NULL, MDB_RDONLY, &txn);
    if (rc) return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot begin a transaction");
    MDB_val k = {strlen(STATE_KEY), STATE_KEY}, v, fk = {strlen(OPTIONS_KEY), OPTIONS_KEY}, fv;
    rc = mdb_get(txn, B->db_info, &k, &v);
    *fresh = rc == MDB_NOTFOUND;
    if (rc == 0 && (rc = mdb_get(txn, B->db_info, &fk, &fv)) == 0) {
        if (fv.mv_size != strlen(B->fingerprint) || memcmp(fv.mv_data, B->fingerprint, fv.mv_size))
            rc = fingerprint_mismatch(B, fv.mv_data, fv.mv_size, B->fingerprint);
        else
            rc = phrex_dump_state_decode(v.mv_data, v.mv_size, B->lmdb_path, &B->st);
        mdb_txn_abort(txn);
        return rc;
    }
    mdb_txn_abort(txn);
    if (!*fresh) return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot read the build state");
    memset(&B->st, 0, sizeof B->st);
    B->st.stage = PHREX_BUILD_ENCODING;
    B->st.spill_bytes = PHREX_DUMP_SPILL_HEADER;
    if ((rc = mdb_txn_begin(B->env, NULL, 0, &txn))) return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot begin");
    unsigned char state[PHREX_DUMP_STATE_BYTES];
    phrex_dump_state_encode(&B->st, state);
    if ((rc = put(txn, B->db_info, OPTIONS_KEY, strlen(OPTIONS_KEY), B->fingerprint, strlen(B->fingerprint), 0)) ||
        (rc = put(txn, B->db_info, INDEX_OPTIONS_KEY, strlen(INDEX_OPTIONS_KEY), B->index_fp, strlen(B->index_fp), 0)) ||
        (rc = put(txn, B->db_info, STATE_KEY, strlen(STATE_KEY), state, sizeof state, 0))) {
        mdb_txn_abort(txn);
        return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot start the build");
    }
    if ((rc = mdb_txn_commit(txn))) return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot start the build");
    return PHREX_OK;
}

// The index options (factory, metric, train size) may change between runs
// while the spill is there: a typo in --index-factory, found when the index
// stage fails after hours of encoding, costs a rerun of that stage only. A
// finished dump keeps its index.
static int reconcile_index_options(builder *B, int complete) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(B->env, NULL, 0, &txn);
    if (rc) return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot begin a transaction");
    MDB_val k = {strlen(INDEX_OPTIONS_KEY), INDEX_OPTIONS_KEY}, v;
    rc = mdb_get(txn, B->db_info, &k, &v);
    if (rc == 0 && v.mv_size == strlen(B->index_fp) && !memcmp(v.mv_data, B->index_fp, v.mv_size)) {
        mdb_txn_abort(txn);
        return PHREX_OK;
    }
    if (rc || complete) {
        rc = rc ? phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot read the index options")
                : fingerprint_mismatch(B, v.mv_data, v.mv_size, B->index_fp);
        mdb_txn_abort(txn);
        return rc;
    }
    phrex_build_state st = B->st;
    if (st.stage == PHREX_BUILD_INDEXED) st.stage = PHREX_BUILD_ENCODED; // index again
    unsigned char state[PHREX_DUMP_STATE_BYTES];
    phrex_dump_state_encode(&st, state);
    if ((rc = put(txn, B->db_info, INDEX_OPTIONS_KEY, strlen(INDEX_OPTIONS_KEY), B->index_fp, strlen(B->index_fp), 0)) ||
        (rc = put(txn, B->db_info, STATE_KEY, strlen(STATE_KEY), state, sizeof state, 0))) {
        mdb_txn_abort(txn);
        return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot store the index options");
    }
    if ((rc = mdb_txn_commit(txn))) return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot store the index options");
    B->st = st;
    return PHREX_OK;
}

// --- the spill --------------------------------------------------------------

static void spill_header(const builder *B, unsigned char h[PHREX_DUMP_SPILL_HEADER]) {
    memset(h, 0, PHREX_DUMP_SPILL_HEADER);
    memcpy(h, PHREX_DUMP_SPILL_MAGIC, 8);
    h[8] = PHREX_DUMP_SPILL_VERSION;
    for (int i = 0; i < 4; i++) h[12 + i] = (unsigned char)((uint32_t)B->C >> (8 * i));
}

// A spill left by an earlier run must be ours (magic, version, the model's
// dimension) and hold at least what was committed.
static int check_spill(const builder *B, FILE *f) {
    unsigned char want[PHREX_DUMP_SPILL_HEADER], got[PHREX_DUMP_SPILL_HEADER];
    spill_header(B, want);
    struct stat st;
    if (fseeko(f, 0, SEEK_SET) || fread(got, 1, sizeof got, f) != sizeof got || memcmp(got, want, sizeof got))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: not a phrex spill of %d-d vectors (bad header): remove %s and rebuild",
                          B->spill_path, B->C, B->dir);
    if (fstat(fileno(f), &st) || (uint64_t)st.st_size < B->st.spill_bytes)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: %lld bytes, shorter than the %llu bytes committed: remove %s and rebuild",
                          B->spill_path, (long long)st.st_size, (unsigned long long)B->st.spill_bytes, B->dir);
    return PHREX_OK;
}

// Opens the spill at the last committed length: bytes written after the
// last checkpoint belong to passages that will be encoded again.
static int open_spill(builder *B, int fresh) {
    B->spill = fopen(B->spill_path, fresh ? "w+b" : "r+b");
    if (!B->spill) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", B->spill_path, strerror(errno));
    int fd = fileno(B->spill);
    if (fresh) {
        unsigned char h[PHREX_DUMP_SPILL_HEADER];
        spill_header(B, h);
        if (fwrite(h, 1, sizeof h, B->spill) != sizeof h || fflush(B->spill) || fdatasync(fd))
            return phrex_fail(PHREX_ERR_IO, "%s: cannot write: %s", B->spill_path, strerror(errno));
        return PHREX_OK;
    }
    int rc = check_spill(B, B->spill);
    if (rc) return rc;
    if (ftruncate(fd, (off_t)B->st.spill_bytes) || fseeko(B->spill, (off_t)B->st.spill_bytes, SEEK_SET))
        return phrex_fail(PHREX_ERR_IO, "%s: cannot truncate: %s", B->spill_path, strerror(errno));
    return PHREX_OK;
}

static int sync_spill(builder *B) {
    if (fflush(B->spill) || fdatasync(fileno(B->spill)))
        return phrex_fail(PHREX_ERR_IO, "%s: cannot write: %s", B->spill_path, strerror(errno));
    return PHREX_OK;
}

// --- batches ----------------------------------------------------------------

static int batch_init(batch *b, int batch_tokens, int C) {
    memset(b, 0, sizeof *b);
    size_t n = (size_t)batch_tokens;
    b->ids = malloc(n * sizeof *b->ids);
    b->seq_lens = malloc(n * sizeof *b->seq_lens);
    b->hidden = malloc(n * (size_t)C * sizeof(float));
    b->gathered = malloc(n * (size_t)C * sizeof(float));
    b->chunk_keep = malloc(n);
    if (!b->ids || !b->seq_lens || !b->hidden || !b->gathered || !b->chunk_keep || phrex_tokens_init(&b->pieces, batch_tokens))
        return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate a batch of %d tokens", batch_tokens);
    return PHREX_OK;
}

static void batch_free(batch *b) {
    phrex_tokens_free(&b->pieces);
    phrex_buf_free(&b->strings);
    phrex_buf_free(&b->records);
    free(b->bp);
    free(b->win);
    free(b->keep);
    free(b->ids);
    free(b->seq_lens);
    free(b->hidden);
    free(b->gathered);
    free(b->chunk_keep);
}

static void batch_clear(batch *b) {
    phrex_tokens_clear(&b->pieces);
    phrex_buf_clear(&b->strings);
    phrex_buf_clear(&b->records);
    b->n_bp = b->n_win = b->tokens = 0;
}

// Grows *p (elements of `size` bytes) to hold `need`; the arrays only grow,
// so after the longest batch the encode loop stops allocating.
static int grow(void **p, int *cap, int need, size_t size) {
    if (need <= *cap) return PHREX_OK;
    int n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = realloc(*p, (size_t)n * size);
    if (!q) return phrex_fail(PHREX_ERR_MEMORY, "cannot grow a batch to %d entries", need);
    *p = q;
    *cap = n;
    return PHREX_OK;
}

// Windows of a passage of n pieces: starts 0, S, 2S, .. until one reaches
// the end, each up to W pieces (DensePhrases / HF doc_stride windowing).
static int count_windows(int n, int W, int S, int *tokens) {
    int k = 0;
    *tokens = 0;
    for (int s = 0; s < n; s += S) {
        int len = n - s < W ? n - s : W;
        k++;
        *tokens += len + 2;
        if (s + len >= n) break;
    }
    return k;
}

// HF's _check_is_max_context: the window where piece j has the most
// context on its shorter side, +0.01 per window length; ties to the first.
static int best_window(const batch_window *w, int n_win, int j, int S, int W) {
    int kmin = j - W + 1 > 0 ? (j - W + 1 + S - 1) / S : 0, kmax = j / S < n_win - 1 ? j / S : n_win - 1;
    int best = -1;
    double best_score = -1;
    for (int k = kmin; k <= kmax; k++) {
        int left = j - w[k].start, right = w[k].start + w[k].len - 1 - j;
        if (left < 0 || right < 0) continue;
        double score = (left < right ? left : right) + 0.01 * w[k].len;
        if (best < 0 || score > best_score) best = k, best_score = score;
    }
    return best;
}

// Appends the passage's windows and marks which pieces each supplies. The
// owner of piece j never decreases with j, so each window owns one
// contiguous range and pieces come out of the batch in order. Why: a
// window's score is a tent over [start, end]; for two windows with start
// and end both larger in the second (true here, the last window included),
// score1 - score2 is non-increasing in j, so once the later window wins it
// keeps winning. Checked anyway: a violation is an internal error.
static int add_windows(builder *B, int passage, int n) {
    batch *b = &B->b;
    int tokens, k = count_windows(n, B->W, B->o->doc_stride, &tokens), rc;
    if ((rc = grow((void **)&b->win, &b->cap_win, b->n_win + k, sizeof *b->win))) return rc;
    batch_window *w = b->win + b->n_win;
    for (int i = 0, s = 0; i < k; i++, s += B->o->doc_stride)
        w[i] = (batch_window){passage, s, n - s < B->W ? n - s : B->W, 0, 0};
    int prev = 0;
    for (int j = 0; j < n; j++) {
        int o = best_window(w, k, j, B->o->doc_stride, B->W);
        if (o < prev) return phrex_fail(PHREX_ERR_INTERNAL, "window ownership is not monotonic at piece %d", j);
        if (w[o].own_hi == 0) w[o].own_lo = j;
        w[o].own_hi = j + 1;
        prev = o;
    }
    b->bp[passage].win0 = b->n_win;
    b->bp[passage].n_win = k;
    b->n_win += k;
    b->tokens += tokens;
    return PHREX_OK;
}

static int append_pieces(phrex_tokens *dst, const phrex_tokens *src) {
    for (int i = 0; i < src->n; i++) {
        int rc = phrex_tokens_push(dst, src->ids[i], src->start[i], src->end[i]);
        if (rc) return rc;
    }
    return PHREX_OK;
}

static int add_passage(builder *B, const phrex_passage *p, uint64_t number) {
    batch *b = &B->b;
    int rc;
    if ((rc = grow((void **)&b->bp, &b->cap_bp, b->n_bp + 1, sizeof *b->bp))) return rc;
    batch_passage *bp = &b->bp[b->n_bp];
    memset(bp, 0, sizeof *bp);
    bp->number = number;
    bp->str_off = b->strings.len;
    bp->id_len = (uint32_t)p->id_len;
    bp->title_len = (uint32_t)p->title_len;
    bp->text_len = (uint32_t)p->text_len;
    bp->piece0 = b->pieces.n;
    bp->n_pieces = B->one.n;
    if (phrex_buf_append(&b->strings, p->id, p->id_len + 1) || phrex_buf_append(&b->strings, p->title, p->title_len + 1) ||
        phrex_buf_append(&b->strings, p->text, p->text_len + 1) || append_pieces(&b->pieces, &B->one))
        return phrex_fail(PHREX_ERR_MEMORY, "cannot hold passage %llu in a batch", (unsigned long long)number);
    return add_windows(B, b->n_bp++, B->one.n);
}

// Runs windows [w0, w1) in one forward pass (at most batch_tokens tokens).
static int forward_chunk(builder *B, int w0, int w1) {
    batch *b = &B->b;
    int t = 0;
    for (int w = w0; w < w1; w++) {
        const batch_window *win = &b->win[w];
        const int32_t *ids = b->pieces.ids + b->bp[win->passage].piece0 + win->start;
        b->ids[t++] = B->cls;
        memcpy(b->ids + t, ids, (size_t)win->len * sizeof *ids);
        t += win->len;
        b->ids[t++] = B->sep;
        b->seq_lens[w - w0] = win->len + 2;
    }
    return phrex_encoder_forward(phrex_embedder_encoder(B->emb), b->ids, NULL, b->seq_lens, w1 - w0, b->hidden);
}

// Copies the vectors windows [w0, w1) supply, in piece order, filters them,
// appends the kept ones to the spill and records the flags per piece.
static int emit_chunk(builder *B, int w0, int w1) {
    batch *b = &B->b;
    size_t C = (size_t)B->C, rows = 0, row_base = 0;
    for (int w = w0; w < w1; w++) {
        const batch_window *win = &b->win[w];
        for (int j = win->own_lo; j < win->own_hi; j++, rows++)
            memcpy(b->gathered + rows * C, b->hidden + (row_base + 1 + (size_t)(j - win->start)) * C, C * sizeof(float));
        row_base += (size_t)win->len + 2;
    }
    if (B->o->filter) {
        int rc = B->o->filter(B->o->filter_ctx, b->gathered, (int)rows, B->C, b->chunk_keep);
        if (rc) return phrex_fail_context(rc, "phrase filter '%s'", B->o->filter_name ? B->o->filter_name : "custom");
    } else {
        memset(b->chunk_keep, 1, rows);
    }
    rows = 0;
    for (int w = w0; w < w1; w++) {
        const batch_window *win = &b->win[w];
        uint8_t *keep = b->keep + b->bp[win->passage].piece0;
        for (int j = win->own_lo; j < win->own_hi; j++, rows++) {
            keep[j] = b->chunk_keep[rows] != 0;
            if (keep[j] && fwrite(b->gathered + rows * C, sizeof(float), C, B->spill) != C)
                return phrex_fail(PHREX_ERR_IO, "%s: cannot write: %s", B->spill_path, strerror(errno));
        }
    }
    return PHREX_OK;
}

// Serializes every passage of the batch, assigning vector ids in order.
static int make_records(builder *B, uint64_t *kept) {
    batch *b = &B->b;
    for (int i = 0; i < b->n_bp; i++) {
        batch_passage *p = &b->bp[i];
        const uint8_t *keep = b->keep + p->piece0;
        p->first_id = *kept;
        p->n_kept = 0;
        for (int j = 0; j < p->n_pieces; j++) p->n_kept += keep[j];
        *kept += p->n_kept;
        const char *id = b->strings.data + p->str_off, *title = id + p->id_len + 1, *text = title + p->title_len + 1;
        size_t bound = phrex_dump_record_bound(p->id_len, p->title_len, p->text_len, (uint32_t)p->n_pieces);
        p->rec_off = b->records.len;
        if (phrex_buf_reserve(&b->records, bound))
            return phrex_fail(PHREX_ERR_MEMORY, "cannot serialize passage %llu", (unsigned long long)p->number);
        p->rec_len = phrex_dump_record_encode((unsigned char *)b->records.data + p->rec_off, id, p->id_len, title, p->title_len,
                                 text, p->text_len, (uint32_t)p->n_pieces, b->pieces.start + p->piece0,
                                 b->pieces.end + p->piece0, keep, p->n_kept, p->first_id);
        b->records.len += p->rec_len;
    }
    return PHREX_OK;
}

// Encodes the batch, stores it and checkpoints: the spill is synced first,
// then the records and the new spill length are committed together.
static int flush_batch(builder *B) {
    batch *b = &B->b;
    if (b->n_bp == 0) return PHREX_OK;
    int rc = grow((void **)&b->keep, &b->cap_keep, b->pieces.n, 1);
    for (int w0 = 0, w1; w0 < b->n_win && !rc; w0 = w1) {
        int t = 0;
        for (w1 = w0; w1 < b->n_win && t + b->win[w1].len + 2 <= B->o->batch_tokens; w1++) t += b->win[w1].len + 2;
        if (!(rc = forward_chunk(B, w0, w1))) rc = emit_chunk(B, w0, w1);
    }
    phrex_build_state st = B->st;
    if (!rc) rc = make_records(B, &st.kept);
    if (!rc) rc = sync_spill(B);
    if (rc) return rc;
    crash_point("spill");
    st.passages += (uint64_t)b->n_bp;
    st.tokens += (uint64_t)b->pieces.n;
    st.windows += (uint64_t)b->n_win;
    for (int i = 0; i < b->n_bp; i++) st.empty += b->bp[i].n_pieces == 0;
    st.spill_bytes = PHREX_DUMP_SPILL_HEADER + st.kept * (uint64_t)B->C * sizeof(float);
    if ((rc = commit_state(B, &st))) return rc;
    crash_point("commit");
    char extra[64];
    double dt = phrex_now_seconds() - B->prog.start_s;
    B->run_tokens += b->pieces.n;
    snprintf(extra, sizeof extra, "%.0f tokens/s", dt > 0 ? (double)B->run_tokens / dt : 0.0);
    phrex_progress_add(&B->prog, b->n_bp, extra);
    batch_clear(b);
    return PHREX_OK;
}

// --- the encode stage -------------------------------------------------------

// On resume, the passage just before the restart point must be the last
// one stored: a cheap guard against a corpus edited in place.
static int check_resume_point(builder *B, const phrex_passage *p, uint64_t number) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(B->env, NULL, MDB_RDONLY, &txn);
    if (rc) return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot begin");
    unsigned char key[8];
    phrex_dump_put_be64(key, number);
    MDB_val k = {8, key}, v;
    phrex_dump_record r;
    char what[64];
    snprintf(what, sizeof what, "passage %llu", (unsigned long long)number);
    if ((rc = mdb_get(txn, B->db_pass, &k, &v))) rc = phrex_dump_lmdb_fail(rc, B->lmdb_path, what);
    else if (!(rc = phrex_dump_record_decode(v.mv_data, v.mv_size, what, &r)) &&
             (r.id_len != p->id_len || memcmp(r.id, p->id, p->id_len)))
        rc = phrex_fail(PHREX_ERR_MISMATCH, "%s:%zu: passage %llu has id '%s' but the interrupted build stored '%s' "
                        "there: the corpus changed; remove %s to start over",
                        p->file, p->line, (unsigned long long)number, p->id, r.id, B->dir);
    mdb_txn_abort(txn);
    return rc;
}

static int encode_passage(builder *B, const phrex_passage *p, uint64_t number) {
    phrex_tokens_clear(&B->one);
    int rc = phrex_wordpiece_encode(B->wp, p->text, p->text_len, &B->one);
    if (rc) return phrex_fail_context(rc, "%s:%zu: passage '%s'", p->file, p->line, p->id);
    int tokens;
    count_windows(B->one.n, B->W, B->o->doc_stride, &tokens);
    // A batch always starts at a passage, so after a resume the batches are
    // those an uninterrupted run formed. A passage too long for one batch
    // gets a batch of its own, run in several forward passes.
    if (B->b.n_bp && B->b.tokens + tokens > B->o->batch_tokens && (rc = flush_batch(B))) return rc;
    return add_passage(B, p, number);
}

static int open_corpus(builder *B, int i, phrex_corpus **c) {
    phrex_corpus_options co = {B->o->format, B->o->skip_bad, 0};
    int rc = phrex_corpus_init(c, B->o->corpus_paths[i], &co);
    return rc ? phrex_fail_context(rc, "corpus %s", B->o->corpus_paths[i]) : PHREX_OK;
}

// Passages in all corpus files (a read without tokenizing: minutes for all
// of Wikipedia, against hours of encoding).
static int count_passages(builder *B, uint64_t *n) {
    *n = 0;
    for (int i = 0; i < B->o->n_corpus; i++) {
        phrex_corpus *c;
        int rc = open_corpus(B, i, &c), has = 1;
        if (rc) return rc;
        phrex_passage p;
        while (has && (rc = phrex_corpus_next(c, &p, &has)) == PHREX_OK) *n += (uint64_t)has;
        phrex_corpus_free(c);
        if (rc) return rc;
    }
    return PHREX_OK;
}

// --shard K/N: this build takes passages [K*P/N, (K+1)*P/N) of the P in the
// corpus, numbered from 0, so that `phrex merge` of shards 0..N-1 in order
// gives the passage numbering of one build.
static int set_shard_range(builder *B) {
    const phrex_build_options *o = B->o;
    B->range_lo = 0;
    B->range_hi = UINT64_MAX;
    if (o->n_shards <= 1) return PHREX_OK;
    if (o->shard < 0 || o->shard >= o->n_shards)
        return phrex_fail(PHREX_ERR_INPUT, "--shard %d/%d: K must be in [0, N)", o->shard, o->n_shards);
    uint64_t total;
    int rc = count_passages(B, &total);
    if (rc) return rc;
    B->range_lo = total * (uint64_t)o->shard / (uint64_t)o->n_shards;
    B->range_hi = total * (uint64_t)(o->shard + 1) / (uint64_t)o->n_shards;
    return PHREX_OK;
}

// Encodes the passages of corpus file i that come after the last stored one
// (and inside the shard's range); *seen counts passages over all files.
static int encode_corpus(builder *B, int i, uint64_t *seen) {
    phrex_corpus *c;
    int rc = open_corpus(B, i, &c), has = 1;
    if (rc) return rc;
    phrex_passage p;
    while (!rc && *seen < B->range_hi && (rc = phrex_corpus_next(c, &p, &has)) == PHREX_OK && has) {
        uint64_t g = (*seen)++;
        if (g < B->range_lo) continue;
        uint64_t n = g - B->range_lo;
        if (n + 1 == B->st.passages) rc = check_resume_point(B, &p, n);
        else if (n >= B->st.passages) rc = encode_passage(B, &p, n);
    }
    if (B->stats) B->stats->bad += (int64_t)phrex_corpus_count_bad(c);
    phrex_corpus_free(c);
    return rc;
}

static int load_model(builder *B) {
    const phrex_build_options *o = B->o;
    int rc = phrex_embedder_init(&B->emb, B->phrase_dir, o->batch_tokens);
    if (rc) return rc;
    B->wp = phrex_embedder_tokenizer(B->emb);
    B->cls = phrex_wordpiece_special(B->wp, PHREX_SPECIAL_CLS);
    B->sep = phrex_wordpiece_special(B->wp, PHREX_SPECIAL_SEP);
    if ((rc = batch_init(&B->b, o->batch_tokens, B->C))) return rc;
    return phrex_tokens_init(&B->one, 512);
}

static int encode_stage(builder *B, int fresh) {
    int rc;
    double t0 = phrex_now_seconds();
    if ((rc = open_spill(B, fresh)) || (rc = load_model(B))) return rc;
    int show = B->o->progress && isatty(STDERR_FILENO);
    uint64_t total = 0;
    if (B->range_hi != UINT64_MAX) total = B->range_hi - B->range_lo;
    else if (show && count_passages(B, &total)) total = 0; // unknown: the encode pass reports the error
    phrex_clear_error();
    phrex_progress_init(&B->prog, "encode", "passages", total > B->st.passages ? (int64_t)(total - B->st.passages) : 0);
    B->prog.enabled &= show;
    uint64_t seen = 0;
    for (int i = 0; i < B->o->n_corpus && !rc && seen < B->range_hi; i++) rc = encode_corpus(B, i, &seen);
    if (!rc) rc = flush_batch(B);
    phrex_progress_finish(&B->prog);
    if (rc) return rc;
    phrex_build_state st = B->st;
    st.stage = PHREX_BUILD_ENCODED;
    rc = commit_state(B, &st);
    if (B->stats) {
        B->stats->encode_s = phrex_now_seconds() - t0;
        B->stats->run_tokens = B->run_tokens;
    }
    return rc;
}

// --- the index and finish stages --------------------------------------------

static void resolve_factory(const builder *B, char *out, size_t cap) {
    const char *f = B->o->index_factory;
    if (B->o->n_shards > 1 && B->st.kept == 0) snprintf(out, cap, "Flat"); // an empty shard: nothing to train
    else if (!f || !*f || !strcmp(f, "auto")) phrex_index_auto_factory((int64_t)B->st.kept, out, cap);
    else snprintf(out, cap, "%s", f);
}

static int index_stage(builder *B) {
    FILE *f = fopen(B->spill_path, "rb");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", B->spill_path, strerror(errno));
    int rc = check_spill(B, f);
    fclose(f);
    if (rc) return rc;
    char factory[128];
    resolve_factory(B, factory, sizeof factory);
    double t0 = phrex_now_seconds();
    // A shard may hold no kept token (more shards than passages, or a
    // filter that drops a whole range): the merge only needs its records.
    int empty_shard = B->o->n_shards > 1 && B->st.kept == 0; // resolve_factory made it Flat
    phrex_faiss_job job = {B->spill_path, B->index_path, factory, B->o->metric == PHREX_METRIC_L2,
                           B->C,           (int64_t)B->st.kept, B->o->train_size, B->o->progress, empty_shard};
    int64_t trained_on;
    phrex_build_state st = B->st;
    rc = phrex_index_build_faiss(&job, &trained_on, &st.index_bytes, &st.index_hash);
    if (rc) return rc;
    crash_point("index");
    st.trained_on = (uint64_t)trained_on;
    st.stage = PHREX_BUILD_INDEXED;
    B->b.n_bp = 0; // commit_state stores the batch: make sure it is empty
    rc = commit_state(B, &st);
    if (B->stats) B->stats->index_s = phrex_now_seconds() - t0;
    crash_point("indexed");
    return rc;
}

// An index file that disagrees with the committed state (a crash between
// the rename and the commit cannot cause that, a damaged disk can).
static int index_file_ok(const builder *B) {
    uint64_t bytes, hash;
    if (phrex_index_hash_file(B->index_path, &bytes, &hash)) {
        phrex_clear_error();
        return 0;
    }
    return bytes == B->st.index_bytes && hash == B->st.index_hash;
}

static int lmdb_hash(builder *B, uint64_t *hash, uint64_t *entries) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(B->env, NULL, MDB_RDONLY, &txn);
    if (rc) return phrex_dump_lmdb_fail(rc, B->lmdb_path, "cannot begin");
    rc = phrex_dump_hash_lmdb(txn, B->db_pass, B->db_kept, B->lmdb_path, hash, entries);
    mdb_txn_abort(txn);
    return rc;
}

static int finish_stage(builder *B) {
    const phrex_build_options *o = B->o;
    phrex_manifest m = {0};
    m.version = PHREX_DUMP_FORMAT_VERSION;
    m.model_hash = B->model_hash;
    snprintf(m.model_dir, sizeof m.model_dir, "%s", o->model_dir);
    m.hidden_size = B->C;
    m.vocab_size = B->cfg.vocab_size;
    m.max_seq_len = o->max_seq_len;
    m.doc_stride = o->doc_stride;
    snprintf(m.filter, sizeof m.filter, "%s", o->filter_name ? o->filter_name : (o->filter ? "custom" : "none"));
    resolve_factory(B, m.factory, sizeof m.factory);
    snprintf(m.metric, sizeof m.metric, "%s", phrex_dump_metric_name(o->metric));
    m.index_bytes = B->st.index_bytes;
    m.index_hash = B->st.index_hash;
    m.ntotal = m.kept = (int64_t)B->st.kept;
    m.trained_on = (int64_t)B->st.trained_on;
    m.passages = (int64_t)B->st.passages;
    m.tokens = (int64_t)B->st.tokens;
    m.empty = (int64_t)B->st.empty;
    m.windows = (int64_t)B->st.windows;
    int rc = lmdb_hash(B, &m.lmdb_hash, &m.lmdb_entries);
    if (!rc) rc = phrex_manifest_write(B->dir, &m, o->corpus_paths, o->n_corpus);
    if (!rc) crash_point("manifest");
    return rc;
}

// --- merging shards ---------------------------------------------------------

// Passages and vectors before shard s: its offsets in the merged dump.
static void shard_offsets(const builder *B, int s, uint64_t *passages, uint64_t *kept) {
    *passages = *kept = 0;
    for (int i = 0; i < s; i++) {
        *passages += (uint64_t)phrex_dump_get_info(B->shards[i])->passages;
        *kept += (uint64_t)phrex_dump_get_info(B->shards[i])->kept;
    }
}

// Queues passage `local` of shard s as passage `number`, its vector ids
// moved by `id_offset`; the record is re-encoded by the builder's encoder,
// so it is byte for byte what one build of the whole corpus stores.
static int queue_shard_passage(builder *B, phrex_dump *shard, int64_t local, uint64_t number, uint64_t id_offset) {
    phrex_dump_passage p;
    batch *b = &B->b;
    int rc;
    if ((rc = phrex_dump_get_passage(shard, local, &p)) ||
        (rc = grow((void **)&b->bp, &b->cap_bp, b->n_bp + 1, sizeof *b->bp)))
        return rc;
    batch_passage *bp = &b->bp[b->n_bp++];
    memset(bp, 0, sizeof *bp);
    bp->number = number;
    bp->first_id = (uint64_t)p.first_id + id_offset;
    bp->n_kept = (uint32_t)p.n_kept;
    bp->n_pieces = p.n_tokens;
    size_t bound = phrex_dump_record_bound((uint32_t)p.id_len, (uint32_t)p.title_len, (uint32_t)p.text_len,
                                           (uint32_t)p.n_tokens);
    bp->rec_off = b->records.len;
    if (phrex_buf_reserve(&b->records, bound))
        return phrex_fail(PHREX_ERR_MEMORY, "cannot serialize passage %llu", (unsigned long long)number);
    bp->rec_len = phrex_dump_record_encode((unsigned char *)b->records.data + bp->rec_off, p.id, (uint32_t)p.id_len, p.title,
                             (uint32_t)p.title_len, p.text, (uint32_t)p.text_len, (uint32_t)p.n_tokens, p.start, p.end,
                             p.kept, (uint32_t)p.n_kept, bp->first_id);
    b->records.len += bp->rec_len;
    return PHREX_OK;
}

// Appends rows [from, from + n) of a shard's spill to the merged spill.
static int copy_rows(builder *B, const char *shard_dir, uint64_t from, uint64_t n) {
    char path[PATH_MAX];
    int rc = phrex_dump_path(path, sizeof path, shard_dir, PHREX_DUMP_SPILL);
    if (rc) return rc;
    FILE *f = fopen(path, "rb");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s (build shards with --keep-vectors)", path, strerror(errno));
    size_t row = (size_t)B->C * sizeof(float);
    char buf[1 << 16];
    uint64_t left = n * row;
    if (fseeko(f, (off_t)(PHREX_DUMP_SPILL_HEADER + from * row), SEEK_SET)) left = UINT64_MAX;
    while (left && left != UINT64_MAX) {
        size_t want = left < sizeof buf ? (size_t)left : sizeof buf;
        if (fread(buf, 1, want, f) != want || fwrite(buf, 1, want, B->spill) != want) break;
        left -= want;
    }
    fclose(f);
    return left ? phrex_fail(PHREX_ERR_IO, "%s: cannot copy rows %llu..%llu", path, (unsigned long long)from,
                             (unsigned long long)(from + n))
                : PHREX_OK;
}

// Stores the queued passages of shard s and their vectors, checkpointing as
// a batch of the encode stage does.
static int flush_merged(builder *B, int s, uint64_t kept_offset) {
    batch *b = &B->b;
    if (!b->n_bp) return PHREX_OK;
    phrex_build_state st = B->st;
    uint64_t first = b->bp[0].first_id, kept = 0;
    for (int i = 0; i < b->n_bp; i++) {
        kept += b->bp[i].n_kept;
        st.tokens += (uint64_t)b->bp[i].n_pieces;
        st.empty += b->bp[i].n_pieces == 0;
    }
    int rc = copy_rows(B, B->o->corpus_paths[s], first - kept_offset, kept);
    if (!rc) rc = sync_spill(B);
    if (rc) return rc;
    crash_point("spill");
    st.passages += (uint64_t)b->n_bp;
    st.kept += kept;
    st.spill_bytes = PHREX_DUMP_SPILL_HEADER + st.kept * (uint64_t)B->C * sizeof(float);
    if ((rc = commit_state(B, &st))) return rc;
    crash_point("commit");
    phrex_progress_add(&B->prog, b->n_bp, NULL);
    b->n_bp = 0;
    phrex_buf_clear(&b->records);
    return PHREX_OK;
}

#define MERGE_CHECKPOINT 4096 // passages per transaction

static int merge_shard(builder *B, int s) {
    uint64_t passages, kept;
    shard_offsets(B, s, &passages, &kept);
    const phrex_dump_info *info = phrex_dump_get_info(B->shards[s]);
    int rc = PHREX_OK;
    for (int64_t local = (int64_t)(B->st.passages - passages); local < info->passages && !rc; local++) {
        rc = queue_shard_passage(B, B->shards[s], local, passages + (uint64_t)local, kept);
        if (!rc && (B->b.n_bp == MERGE_CHECKPOINT || local + 1 == info->passages)) rc = flush_merged(B, s, kept);
    }
    return rc;
}

static int merge_stage(builder *B, int fresh) {
    double t0 = phrex_now_seconds();
    int rc = open_spill(B, fresh);
    if (rc) return rc;
    uint64_t total, kept;
    shard_offsets(B, B->n_shards, &total, &kept);
    phrex_progress_init(&B->prog, "merge", "passages", (int64_t)(total - B->st.passages));
    B->prog.enabled &= B->o->progress;
    for (int s = 0; s < B->n_shards && !rc; s++) {
        uint64_t before, unused;
        shard_offsets(B, s + 1, &before, &unused);
        if (B->st.passages < before) rc = merge_shard(B, s);
    }
    phrex_progress_finish(&B->prog);
    if (rc) return rc;
    phrex_build_state st = B->st;
    st.stage = PHREX_BUILD_ENCODED;
    for (int s = 0; s < B->n_shards; s++) st.windows += (uint64_t)phrex_dump_get_info(B->shards[s])->windows;
    rc = commit_state(B, &st);
    if (B->stats) B->stats->encode_s = phrex_now_seconds() - t0;
    return rc;
}

static int run_stages(builder *B) {
    int fresh = 0, rc;
    char manifest[PATH_MAX];
    if ((rc = prepare_dir(B)) || (rc = lock_dir(B)) || (rc = open_env(B)) || (rc = load_state(B, &fresh)) ||
        (rc = phrex_dump_path(manifest, sizeof manifest, B->dir, PHREX_DUMP_MANIFEST)))
        return rc;
    int complete = B->st.stage == PHREX_BUILD_INDEXED && access(manifest, F_OK) == 0;
    if ((rc = reconcile_index_options(B, complete))) return rc;
    if (complete) {
        if (B->stats) B->stats->resumed = 2;
        return PHREX_OK; // validated by the caller once LMDB is closed
    }
    if (B->stats && !fresh) B->stats->resumed = 1;
    if (B->st.stage == PHREX_BUILD_ENCODING && (rc = B->shards ? merge_stage(B, fresh) : encode_stage(B, fresh)))
        return rc;
    if (B->st.stage == PHREX_BUILD_INDEXED && !index_file_ok(B)) B->st.stage = PHREX_BUILD_ENCODED;
    if (B->st.stage == PHREX_BUILD_ENCODED && (rc = index_stage(B))) return rc;
    return finish_stage(B);
}

// --- entry point ------------------------------------------------------------

static int set_paths(builder *B) {
    const char *out = B->o->out_dir;
    if (!out || !*out) return phrex_fail(PHREX_ERR_INPUT, "no output directory given");
    if (snprintf(B->dir, sizeof B->dir, "%s", out) >= (int)sizeof B->dir)
        return phrex_fail(PHREX_ERR_INPUT, "path too long: %s", out);
    size_t n = strlen(B->dir);
    while (n > 1 && B->dir[n - 1] == '/') B->dir[--n] = '\0';
    int rc;
    if ((rc = phrex_dump_path(B->lmdb_path, sizeof B->lmdb_path, B->dir, PHREX_DUMP_LMDB)) ||
        (rc = phrex_dump_path(B->spill_path, sizeof B->spill_path, B->dir, PHREX_DUMP_SPILL)) ||
        (rc = phrex_dump_path(B->index_path, sizeof B->index_path, B->dir, PHREX_DUMP_INDEX)))
        return rc;
    return PHREX_OK;
}

// --model names a plain HF folder or a trained model folder
// (encoder/model_dir.h): the phrase encoder is what the dump needs.
static int resolve_phrase_dir(builder *B) {
    phrex_model_paths *p = malloc(sizeof *p);
    if (!p) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate model paths");
    int rc = phrex_model_dir_resolve(B->o->model_dir, p);
    if (!rc && snprintf(B->phrase_dir, sizeof B->phrase_dir, "%s", p->phrase) >= (int)sizeof B->phrase_dir)
        rc = phrex_fail(PHREX_ERR_INPUT, "%s: path too long", p->phrase);
    free(p);
    return rc;
}

static int setup(builder *B) {
    const phrex_build_options *o = B->o;
    char config[PATH_MAX];
    int rc;
    if ((rc = set_paths(B))) return rc;
    if (!o->model_dir) return phrex_fail(PHREX_ERR_INPUT, "no model directory given");
    if ((rc = resolve_phrase_dir(B)) || (rc = phrex_dump_path(config, sizeof config, B->phrase_dir, "config.json")) ||
        (rc = phrex_bert_config_read(&B->cfg, config)) || (rc = check_options(o, &B->cfg)) ||
        (rc = phrex_dump_hash_model(o->model_dir, &B->model_hash)) || (rc = make_fingerprint(B)) ||
        (rc = make_index_fingerprint(B)) || (rc = set_shard_range(B)))
        return rc;
    B->C = B->cfg.hidden_size;
    B->W = o->max_seq_len - 2;
    const char *f = o->index_factory;
    if (f && *f && strcmp(f, "auto")) return phrex_index_check_factory(f, B->C, o->metric == PHREX_METRIC_L2);
    return PHREX_OK;
}

// Opens and checks the shards (complete, same model and windows, vectors
// kept) and fills in what the merged dump inherits from them.
static int open_shards(builder *B, phrex_build_options *mo) {
    const phrex_build_options *o = B->o;
    if (o->n_corpus < 1) return phrex_fail(PHREX_ERR_INPUT, "no shard given");
    B->shards = calloc((size_t)o->n_corpus, sizeof *B->shards);
    if (!B->shards) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate %d shards", o->n_corpus);
    for (int s = 0; s < o->n_corpus; s++) {
        const char *dir = o->corpus_paths[s];
        int rc = phrex_dump_open(&B->shards[s], dir, NULL);
        if (rc) return phrex_fail_context(rc, "shard %s", dir);
        B->n_shards++;
        const phrex_dump_info *i = phrex_dump_get_info(B->shards[s]), *first = phrex_dump_get_info(B->shards[0]);
        if (i->model_hash != B->model_hash)
            return phrex_fail(PHREX_ERR_MISMATCH, "shard %s was built with another model than %s", dir, o->model_dir);
        if (i->max_seq_len != first->max_seq_len || i->doc_stride != first->doc_stride || strcmp(i->filter, first->filter))
            return phrex_fail(PHREX_ERR_MISMATCH, "shard %s has windows %d/%d and filter '%s', shard %s %d/%d and '%s'",
                              dir, i->max_seq_len, i->doc_stride, i->filter, o->corpus_paths[0], first->max_seq_len,
                              first->doc_stride, first->filter);
        char spill[PATH_MAX];
        struct stat st;
        if ((rc = phrex_dump_path(spill, sizeof spill, dir, PHREX_DUMP_SPILL))) return rc;
        uint64_t want = PHREX_DUMP_SPILL_HEADER + (uint64_t)i->kept * (uint64_t)B->C * sizeof(float);
        if (stat(spill, &st) != 0 || (uint64_t)st.st_size != want)
            return phrex_fail(PHREX_ERR_INPUT, "%s: missing or not %llu bytes: build shards with --keep-vectors", spill,
                              (unsigned long long)want);
    }
    const phrex_dump_info *first = phrex_dump_get_info(B->shards[0]);
    mo->max_seq_len = first->max_seq_len;
    mo->doc_stride = first->doc_stride;
    mo->filter_name = first->filter;
    return PHREX_OK;
}

// What the merged dump is made of: the shards, by path and content hash.
static int make_merge_fingerprint(builder *B) {
    const phrex_build_options *o = B->o;
    char hex[17];
    phrex_hash64_hex(B->model_hash, hex);
    size_t len = 0;
    FILE *f = open_memstream(&B->fingerprint, &len);
    if (!f) return phrex_fail(PHREX_ERR_MEMORY, "cannot build the options fingerprint");
    fprintf(f, "merge=1\nformat=%d\nmodel=%s\nmax_seq_len=%d\ndoc_stride=%d\nfilter=%s\n", PHREX_DUMP_FORMAT_VERSION,
            hex, o->max_seq_len, o->doc_stride, o->filter_name);
    for (int s = 0; s < B->n_shards; s++) {
        char real[PATH_MAX];
        if (!realpath(o->corpus_paths[s], real)) snprintf(real, sizeof real, "%s", o->corpus_paths[s]);
        phrex_hash64_hex(phrex_dump_content_hash(B->shards[s]), hex);
        fprintf(f, "shard=%s content=%s\n", real, hex);
    }
    return fclose(f) == 0 ? PHREX_OK : phrex_fail(PHREX_ERR_MEMORY, "cannot build the options fingerprint");
}

static int merge_setup(builder *B, phrex_build_options *mo) {
    const phrex_build_options *o = B->o;
    char config[PATH_MAX];
    int rc;
    if ((rc = set_paths(B))) return rc;
    if (!o->model_dir) return phrex_fail(PHREX_ERR_INPUT, "no model directory given");
    if ((rc = resolve_phrase_dir(B)) || (rc = phrex_dump_path(config, sizeof config, B->phrase_dir, "config.json")) ||
        (rc = phrex_bert_config_read(&B->cfg, config)) || (rc = phrex_dump_hash_model(o->model_dir, &B->model_hash)))
        return rc;
    B->C = B->cfg.hidden_size;
    if ((rc = open_shards(B, mo))) return rc;
    B->o = mo;
    if ((rc = make_merge_fingerprint(B)) || (rc = make_index_fingerprint(B))) return rc;
    const char *f = o->index_factory;
    if (f && *f && strcmp(f, "auto")) return phrex_index_check_factory(f, B->C, o->metric == PHREX_METRIC_L2);
    return PHREX_OK;
}

static void teardown(builder *B) {
    if (B->spill) fclose(B->spill);
    B->spill = NULL;
    if (B->env) mdb_env_close(B->env);
    B->env = NULL;
    phrex_embedder_free(B->emb);
    B->emb = NULL;
    batch_free(&B->b);
    phrex_tokens_free(&B->one);
    free(B->fingerprint);
    free(B->index_fp);
    B->fingerprint = B->index_fp = NULL;
    for (int s = 0; s < B->n_shards; s++) phrex_dump_free(B->shards[s]);
    free(B->shards);
    B->shards = NULL;
    B->n_shards = 0;
}

// Confirms the finished dump by opening it as a reader would, fills the
// stats from it, and removes the spill.
static int confirm(builder *B, phrex_build_stats *s) {
    phrex_dump *d;
    // The model was hashed in setup(): compare with that instead of reading
    // the weights again.
    int rc = phrex_dump_open(&d, B->dir, NULL);
    if (rc) return phrex_fail_context(rc, "the finished dump does not validate");
    const phrex_dump_info *info = phrex_dump_get_info(d);
    if (info->model_hash != B->model_hash) {
        phrex_dump_free(d);
        return phrex_fail(PHREX_ERR_MISMATCH, "%s was built with another model than %s: remove it to rebuild", B->dir,
                          B->o->model_dir);
    }
    s->passages = info->passages;
    s->tokens = info->tokens;
    s->kept = info->kept;
    s->empty = info->empty;
    s->index_bytes = info->index_bytes;
    snprintf(s->factory, sizeof s->factory, "%s", info->factory);
    phrex_dump_free(d);
    struct stat st;
    s->lmdb_bytes = stat(B->lmdb_path, &st) == 0 ? (uint64_t)st.st_size : 0;
    s->windows = (int64_t)B->st.windows;
    s->trained_on = (int64_t)B->st.trained_on;
    s->corpus_bytes = B->corpus_bytes;
    if (!B->o->keep_vectors && unlink(B->spill_path) != 0 && errno != ENOENT)
        return phrex_fail(PHREX_ERR_IO, "%s: cannot remove: %s", B->spill_path, strerror(errno));
    return PHREX_OK;
}

int phrex_index_build_dump(const phrex_build_options *o, phrex_build_stats *stats) {
    phrex_build_stats local;
    phrex_build_stats *s = stats ? stats : &local;
    memset(s, 0, sizeof *s);
    double t0 = phrex_now_seconds();
    builder B;
    memset(&B, 0, sizeof B);
    B.o = o;
    B.stats = s;
    B.dir_fd = -1;
    phrex_set_threads(o->threads);
    int rc = setup(&B);
    if (!rc) rc = run_stages(&B);
    teardown(&B); // closes LMDB before the dump is reopened read-only
    if (!rc) rc = confirm(&B, s);
    if (B.dir_fd >= 0) close(B.dir_fd); // the lock goes with it
    s->total_s = phrex_now_seconds() - t0;
    return rc;
}

int phrex_index_merge_dumps(const phrex_build_options *o, phrex_build_stats *stats) {
    phrex_build_stats local;
    phrex_build_stats *s = stats ? stats : &local;
    memset(s, 0, sizeof *s);
    double t0 = phrex_now_seconds();
    builder B;
    memset(&B, 0, sizeof B);
    phrex_build_options mo = *o; // windows and filter come from the shards
    B.o = o;
    B.stats = s;
    B.dir_fd = -1;
    phrex_set_threads(o->threads);
    int rc = merge_setup(&B, &mo);
    if (!rc) rc = run_stages(&B);
    teardown(&B);
    if (!rc) rc = confirm(&B, s);
    if (B.dir_fd >= 0) close(B.dir_fd);
    s->total_s = phrex_now_seconds() - t0;
    return rc;
}
