#include "dump.h"

#include "common/error.h"
#include "index/build_faiss.h"
#include "index/dump_format.h"
#include "index/hash.h"
#include "index/manifest.h"

#include <errno.h>
#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_io_c.h>
#include <limits.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// One reader of the LMDB file: a read transaction (held for the reader's
// life: the dump is immutable, so values stay mapped and valid), a cursor
// over the id map and aligned copies of the current passage's offsets and
// keep flags (LMDB values carry no alignment guarantee).
struct phrex_dump_reader {
    phrex_dump *d;
    MDB_txn *txn;
    int own_txn; // 0 for the dump's built-in reader, which uses the dump's transaction
    MDB_cursor *kept_cur;
    int32_t *start, *end;
    uint8_t *kept;
    size_t cap;
};

struct phrex_dump {
    char dir[PATH_MAX], lmdb_path[PATH_MAX], index_path[PATH_MAX];
    phrex_dump_info info;
    FaissIndex *index;
    MDB_env *env; // MDB_NOTLS: any number of read transactions, in any threads
    MDB_txn *txn; // one read transaction for the handle's life: the dump is immutable
    MDB_dbi db_pass, db_kept;
    phrex_dump_reader base; // what the phrex_dump_* readers use (one thread at a time)
};

const char *phrex_dump_metric_name(phrex_metric m) { return m == PHREX_METRIC_L2 ? "l2" : "inner_product"; }

int phrex_dump_parse_metric(const char *name, phrex_metric *out) {
    if (!strcmp(name, "inner_product") || !strcmp(name, "ip")) *out = PHREX_METRIC_INNER_PRODUCT;
    else if (!strcmp(name, "l2")) *out = PHREX_METRIC_L2;
    else return phrex_fail(PHREX_ERR_INPUT, "unknown metric '%s' (inner_product or l2)", name);
    return PHREX_OK;
}

int phrex_dump_model_hash(const char *model_dir, uint64_t *hash) { return phrex_dump_hash_model(model_dir, hash); }

static int check_model(const phrex_manifest *m, const char *dir, const char *model_dir) {
    uint64_t h;
    int rc = phrex_dump_hash_model(model_dir, &h);
    if (rc) return rc;
    if (h == m->model_hash) return PHREX_OK;
    char want[17], got[17];
    phrex_hash64_hex(m->model_hash, want);
    phrex_hash64_hex(h, got);
    return phrex_fail(PHREX_ERR_MISMATCH,
                      "%s was built with another model (%s, hash %s) than %s (hash %s): its vectors would not match "
                      "this model's queries; rebuild the dump or pass the model it was built with",
                      dir, m->model_dir, want, model_dir, got);
}

static int check_index_file(phrex_dump *d, const phrex_manifest *m, unsigned flags) {
    struct stat st;
    if (stat(d->index_path, &st) != 0) return phrex_fail(PHREX_ERR_IO, "%s: %s", d->index_path, strerror(errno));
    if ((uint64_t)st.st_size != m->index_bytes)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: %lld bytes, the manifest says %llu: the index is %s", d->index_path,
                          (long long)st.st_size, (unsigned long long)m->index_bytes,
                          (uint64_t)st.st_size < m->index_bytes ? "truncated" : "damaged");
    if (flags & PHREX_DUMP_OPEN_QUICK) return PHREX_OK;
    uint64_t bytes, hash;
    int rc = phrex_index_hash_file(d->index_path, &bytes, &hash);
    if (rc) return rc;
    if (hash != m->index_hash) {
        char want[17], got[17];
        phrex_hash64_hex(m->index_hash, want);
        phrex_hash64_hex(hash, got);
        return phrex_fail(PHREX_ERR_FORMAT, "%s: checksum mismatch (manifest %s, file %s): the index is corrupt",
                          d->index_path, want, got);
    }
    return PHREX_OK;
}

static int load_index(phrex_dump *d, const phrex_manifest *m) {
    if (faiss_read_index_fname(d->index_path, 0, &d->index)) {
        const char *msg = faiss_get_last_error();
        return phrex_fail(PHREX_ERR_FORMAT, "%s: FAISS cannot read it: %s", d->index_path, msg ? msg : "unknown error");
    }
    if (faiss_Index_d(d->index) != m->hidden_size || faiss_Index_ntotal(d->index) != m->ntotal)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: %lld vectors of %d dimensions, the manifest says %lld of %d",
                          d->index_path, (long long)faiss_Index_ntotal(d->index), faiss_Index_d(d->index),
                          (long long)m->ntotal, m->hidden_size);
    return PHREX_OK;
}

// A truncated LMDB file still opens (LMDB reads only its meta pages), and
// the first read of a page past the end would kill the process with SIGBUS:
// the pages its meta page says are in use must all be in the file.
static int check_lmdb_size(phrex_dump *d) {
    MDB_envinfo ei;
    MDB_stat es;
    struct stat st;
    int rc = mdb_env_info(d->env, &ei);
    if (rc || (rc = mdb_env_stat(d->env, &es))) return phrex_dump_lmdb_fail(rc, d->lmdb_path, "cannot stat");
    if (stat(d->lmdb_path, &st) != 0) return phrex_fail(PHREX_ERR_IO, "%s: %s", d->lmdb_path, strerror(errno));
    uint64_t need = ((uint64_t)ei.me_last_pgno + 1) * es.ms_psize;
    if ((uint64_t)st.st_size < need)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: %lld bytes, but its pages reach byte %llu: the file is truncated",
                          d->lmdb_path, (long long)st.st_size, (unsigned long long)need);
    return PHREX_OK;
}

static int open_lmdb(phrex_dump *d, const phrex_manifest *m, unsigned flags) {
    int rc = mdb_env_create(&d->env);
    if (rc) return phrex_dump_lmdb_fail(rc, d->lmdb_path, "cannot create an environment");
    // Read-only without the lock file: a finished dump never changes, and
    // this way it can be served from read-only storage.
    if ((rc = mdb_env_set_maxdbs(d->env, 4)) ||
        (rc = mdb_env_open(d->env, d->lmdb_path, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0444)))
        return phrex_dump_lmdb_fail(rc, d->lmdb_path, "cannot open");
    if ((rc = check_lmdb_size(d))) return rc;
    // The databases are opened in a transaction of their own and committed,
    // which makes their handles valid in every later transaction (readers').
    if ((rc = mdb_txn_begin(d->env, NULL, MDB_RDONLY, &d->txn)))
        return phrex_dump_lmdb_fail(rc, d->lmdb_path, "cannot begin a read transaction");
    if ((rc = mdb_dbi_open(d->txn, "passages", 0, &d->db_pass)) || (rc = mdb_dbi_open(d->txn, "kept", 0, &d->db_kept)))
        return phrex_dump_lmdb_fail(rc, d->lmdb_path, "missing database");
    rc = mdb_txn_commit(d->txn);
    d->txn = NULL;
    if (rc || (rc = mdb_txn_begin(d->env, NULL, MDB_RDONLY, &d->txn)))
        return phrex_dump_lmdb_fail(rc, d->lmdb_path, "cannot begin a read transaction");
    d->base = (phrex_dump_reader){.d = d, .txn = d->txn};
    if ((rc = mdb_cursor_open(d->txn, d->db_kept, &d->base.kept_cur)))
        return phrex_dump_lmdb_fail(rc, d->lmdb_path, "cannot open a cursor");
    MDB_stat st;
    if ((rc = mdb_stat(d->txn, d->db_pass, &st))) return phrex_dump_lmdb_fail(rc, d->lmdb_path, "cannot stat");
    if ((int64_t)st.ms_entries != m->passages)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: %zu passages, the manifest says %lld", d->lmdb_path, st.ms_entries,
                          (long long)m->passages);
    if (flags & PHREX_DUMP_OPEN_QUICK) return PHREX_OK;
    uint64_t hash, entries;
    if ((rc = phrex_dump_hash_lmdb(d->txn, d->db_pass, d->db_kept, d->lmdb_path, &hash, &entries))) return rc;
    if (hash != m->lmdb_hash || entries != m->lmdb_entries)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: content checksum mismatch (%llu entries, manifest %llu): corrupt",
                          d->lmdb_path, (unsigned long long)entries, (unsigned long long)m->lmdb_entries);
    return PHREX_OK;
}

static void fill_info(phrex_dump *d, const phrex_manifest *m) {
    phrex_dump_info *i = &d->info;
    i->format_version = m->version;
    i->dim = m->hidden_size;
    i->max_seq_len = m->max_seq_len;
    i->doc_stride = m->doc_stride;
    i->passages = m->passages;
    i->tokens = m->tokens;
    i->kept = m->kept;
    i->empty = m->empty;
    i->windows = m->windows;
    i->model_hash = m->model_hash;
    i->index_hash = m->index_hash;
    i->lmdb_hash = m->lmdb_hash;
    i->index_bytes = m->index_bytes;
    snprintf(i->factory, sizeof i->factory, "%s", m->factory);
    snprintf(i->filter, sizeof i->filter, "%s", m->filter);
}

static int open_checked(phrex_dump *d, const char *dir, const char *model_dir, unsigned flags) {
    char manifest[PATH_MAX];
    int rc;
    if ((rc = phrex_dump_path(manifest, sizeof manifest, dir, PHREX_DUMP_MANIFEST)) ||
        (rc = phrex_dump_path(d->lmdb_path, sizeof d->lmdb_path, dir, PHREX_DUMP_LMDB)) ||
        (rc = phrex_dump_path(d->index_path, sizeof d->index_path, dir, PHREX_DUMP_INDEX)))
        return rc;
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    phrex_manifest m;
    if ((rc = phrex_manifest_read(manifest, &m))) return rc;
    if (phrex_dump_parse_metric(m.metric, &d->info.metric))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field 'index.metric': unknown metric '%s'", manifest, m.metric);
    fill_info(d, &m);
    if (model_dir && (rc = check_model(&m, dir, model_dir))) return rc;
    if ((rc = check_index_file(d, &m, flags)) || (rc = open_lmdb(d, &m, flags))) return rc;
    return load_index(d, &m);
}

int phrex_dump_open_ex(phrex_dump **out, const char *dir, const char *model_dir, unsigned flags) {
    *out = NULL;
    phrex_dump *d = calloc(1, sizeof *d);
    if (!d) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate a dump handle");
    int rc = open_checked(d, dir, model_dir, flags);
    if (rc) {
        phrex_dump_free(d);
        return rc;
    }
    *out = d;
    return PHREX_OK;
}

int phrex_dump_open(phrex_dump **out, const char *dir, const char *model_dir) {
    return phrex_dump_open_ex(out, dir, model_dir, 0);
}

void phrex_dump_free(phrex_dump *d) {
    if (!d) return;
    if (d->base.kept_cur) mdb_cursor_close(d->base.kept_cur);
    if (d->txn) mdb_txn_abort(d->txn);
    if (d->env) mdb_env_close(d->env);
    if (d->index) faiss_Index_free(d->index);
    free(d->base.start);
    free(d->base.end);
    free(d->base.kept);
    free(d);
}

const phrex_dump_info *phrex_dump_get_info(const phrex_dump *d) { return &d->info; }
FaissIndex *phrex_dump_index(phrex_dump *d) { return d->index; }

uint64_t phrex_dump_content_hash(const phrex_dump *d) {
    phrex_hash64_state h;
    phrex_hash64_init(&h, PHREX_DUMP_SEED_CONTENT);
    phrex_hash64_update_u64(&h, d->info.lmdb_hash);
    phrex_hash64_update_u64(&h, d->info.index_hash);
    phrex_hash64_update_u64(&h, (uint64_t)d->info.kept);
    return phrex_hash64_final(&h);
}

static int grow_arrays(phrex_dump_reader *d, size_t n) {
    if (n <= d->cap) return PHREX_OK;
    size_t cap = d->cap ? d->cap : 512;
    while (cap < n) cap *= 2;
    int32_t *s = realloc(d->start, cap * sizeof *s);
    if (s) d->start = s;
    int32_t *e = realloc(d->end, cap * sizeof *e);
    if (e) d->end = e;
    uint8_t *k = realloc(d->kept, cap);
    if (k) d->kept = k;
    if (!s || !e || !k) return phrex_fail(PHREX_ERR_MEMORY, "cannot hold %zu token offsets", n);
    d->cap = cap;
    return PHREX_OK;
}

int phrex_dump_reader_init(phrex_dump_reader **out, phrex_dump *d) {
    *out = NULL;
    phrex_dump_reader *rd = calloc(1, sizeof *rd);
    if (!rd) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate a dump reader");
    rd->d = d;
    rd->own_txn = 1;
    int rc = mdb_txn_begin(d->env, NULL, MDB_RDONLY, &rd->txn);
    if (!rc) rc = mdb_cursor_open(rd->txn, d->db_kept, &rd->kept_cur);
    if (rc) {
        phrex_dump_reader_free(rd);
        return phrex_dump_lmdb_fail(rc, d->lmdb_path, "cannot begin a reader's transaction");
    }
    *out = rd;
    return PHREX_OK;
}

void phrex_dump_reader_free(phrex_dump_reader *rd) {
    if (!rd || !rd->own_txn) return;
    if (rd->kept_cur) mdb_cursor_close(rd->kept_cur);
    if (rd->txn) mdb_txn_abort(rd->txn);
    free(rd->start);
    free(rd->end);
    free(rd->kept);
    free(rd);
}

phrex_dump_reader *phrex_dump_default_reader(phrex_dump *d) { return &d->base; }

static int get_record(phrex_dump_reader *rd, int64_t number, phrex_dump_record *r) {
    const phrex_dump *d = rd->d;
    if (number < 0 || number >= d->info.passages)
        return phrex_fail(PHREX_ERR_INPUT, "passage %lld is out of range (the dump has %lld)", (long long)number,
                          (long long)d->info.passages);
    unsigned char key[8];
    phrex_dump_put_be64(key, (uint64_t)number);
    MDB_val k = {8, key}, v;
    char what[PATH_MAX + 64];
    snprintf(what, sizeof what, "%s: passage %lld", d->lmdb_path, (long long)number);
    int rc = mdb_get(rd->txn, d->db_pass, &k, &v);
    if (rc) return phrex_dump_lmdb_fail(rc, d->lmdb_path, what);
    return phrex_dump_record_decode(v.mv_data, v.mv_size, what, r);
}

// Decodes record r of passage `number` into *out (offsets into the reader's buffers).
static int fill_passage(phrex_dump_reader *rd, int64_t number, const phrex_dump_record *rec,
                        phrex_dump_passage *out) {
    phrex_dump_record r = *rec;
    int rc = grow_arrays(rd, r.n_tokens);
    if (rc) return rc;
    char what[PATH_MAX + 64];
    snprintf(what, sizeof what, "%s: passage %lld", rd->d->lmdb_path, (long long)number);
    if ((rc = phrex_dump_record_offsets(&r, what, rd->start, rd->end))) return rc;
    for (uint32_t t = 0; t < r.n_tokens; t++) rd->kept[t] = (uint8_t)phrex_dump_record_kept(&r, t);
    *out = (phrex_dump_passage){number,      r.id,       r.title,   r.text,   r.id_len, r.title_len,
                                r.text_len, (int32_t)r.n_tokens, (int32_t)r.n_kept, (int64_t)r.first_id,
                                rd->start,   rd->end,     rd->kept};
    return PHREX_OK;
}

int phrex_dump_reader_get_passage(phrex_dump_reader *rd, int64_t number, phrex_dump_passage *out) {
    phrex_dump_record r;
    int rc = get_record(rd, number, &r);
    return rc ? rc : fill_passage(rd, number, &r, out);
}

int phrex_dump_get_passage(phrex_dump *d, int64_t number, phrex_dump_passage *out) {
    return phrex_dump_reader_get_passage(&d->base, number, out);
}

// The k-th (0-based) kept token of a record.
static int32_t nth_kept(const phrex_dump_record *r, uint64_t k) {
    if (!r->keep) return (int32_t)k;
    for (uint32_t t = 0; t < r->n_tokens; t++)
        if (phrex_dump_record_kept(r, t) && k-- == 0) return (int32_t)t;
    return -1;
}

// Vector id -> its passage's record and the token, one cursor step and one read.
static int locate_record(phrex_dump_reader *rd, int64_t id, int64_t *passage, int32_t *token,
                         phrex_dump_record *rec) {
    const phrex_dump *d = rd->d;
    if (id < 0 || id >= d->info.kept)
        return phrex_fail(PHREX_ERR_INPUT, "vector id %lld is out of range (the dump has %lld)", (long long)id,
                          (long long)d->info.kept);
    unsigned char key[8];
    phrex_dump_put_be64(key, (uint64_t)id);
    MDB_val k = {8, key}, v;
    // The passage whose first id is the greatest one <= id.
    int rc = mdb_cursor_get(rd->kept_cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && phrex_dump_get_be64(k.mv_data) != (uint64_t)id) rc = mdb_cursor_get(rd->kept_cur, &k, &v, MDB_PREV);
    else if (rc == MDB_NOTFOUND) rc = mdb_cursor_get(rd->kept_cur, &k, &v, MDB_LAST);
    if (rc) return phrex_dump_lmdb_fail(rc, d->lmdb_path, "id map lookup");
    if (k.mv_size != 8 || v.mv_size != 8) return phrex_fail(PHREX_ERR_FORMAT, "%s: damaged id map entry", d->lmdb_path);
    uint64_t first = phrex_dump_get_be64(k.mv_data);
    int64_t number = (int64_t)phrex_dump_get_le64(v.mv_data);
    phrex_dump_record r;
    if ((rc = get_record(rd, number, &r))) return rc;
    int32_t t = r.first_id == first && (uint64_t)id - first < r.n_kept ? nth_kept(&r, (uint64_t)id - first) : -1;
    if (t < 0)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: id map says vector %lld is in passage %lld, which disagrees",
                          d->lmdb_path, (long long)id, (long long)number);
    *passage = number;
    *token = t;
    *rec = r;
    return PHREX_OK;
}

int phrex_dump_reader_locate(phrex_dump_reader *rd, int64_t id, int64_t *passage, int32_t *token) {
    phrex_dump_record r;
    return locate_record(rd, id, passage, token, &r);
}

int phrex_dump_reader_locate_passage(phrex_dump_reader *rd, int64_t id, phrex_dump_passage *out, int32_t *token) {
    phrex_dump_record r;
    int64_t number = -1;
    int rc = locate_record(rd, id, &number, token, &r);
    return rc ? rc : fill_passage(rd, number, &r, out);
}

int phrex_dump_locate(phrex_dump *d, int64_t id, int64_t *passage, int32_t *token) {
    return phrex_dump_reader_locate(&d->base, id, passage, token);
}

int phrex_dump_locate_passage(phrex_dump *d, int64_t id, phrex_dump_passage *out, int32_t *token) {
    return phrex_dump_reader_locate_passage(&d->base, id, out, token);
}

int phrex_dump_vector_id(phrex_dump *d, int64_t passage, int32_t token, int64_t *id) {
    phrex_dump_record r;
    int rc = get_record(&d->base, passage, &r);
    if (rc) return rc;
    if (token < 0 || (uint32_t)token >= r.n_tokens)
        return phrex_fail(PHREX_ERR_INPUT, "token %d is out of range (passage %lld has %u)", token,
                          (long long)passage, r.n_tokens);
    *id = -1;
    if (!phrex_dump_record_kept(&r, (uint32_t)token)) return PHREX_OK;
    int64_t rank = 0;
    for (uint32_t t = 0; r.keep && t < (uint32_t)token; t++) rank += phrex_dump_record_kept(&r, t);
    *id = (int64_t)r.first_id + (r.keep ? rank : token);
    return PHREX_OK;
}

int phrex_dump_set_nprobe(phrex_dump *d, int nprobe) {
    if (nprobe < 1) return phrex_fail(PHREX_ERR_INPUT, "nprobe %d: must be at least 1", nprobe);
    FaissParameterSpace *ps;
    if (faiss_ParameterSpace_new(&ps)) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate a FAISS parameter space");
    int failed = faiss_ParameterSpace_set_index_parameter(ps, d->index, "nprobe", nprobe);
    faiss_ParameterSpace_free(ps);
    if (failed)
        return phrex_fail(PHREX_ERR_INPUT, "%s: index '%s' has no inverted lists to probe", d->index_path,
                          d->info.factory);
    return PHREX_OK;
}

int phrex_dump_reconstruct(phrex_dump *d, int64_t id, float *out) {
    if (id < 0 || id >= d->info.kept)
        return phrex_fail(PHREX_ERR_INPUT, "vector id %lld is out of range (the dump has %lld)", (long long)id,
                          (long long)d->info.kept);
    if (faiss_Index_reconstruct(d->index, id, out)) {
        const char *msg = faiss_get_last_error();
        return phrex_fail(PHREX_ERR_INTERNAL, "%s: cannot reconstruct vector %lld: %s", d->index_path, (long long)id,
                          msg ? msg : "unknown error");
    }
    return PHREX_OK;
}
