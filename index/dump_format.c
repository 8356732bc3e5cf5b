#include "dump_format.h"

#include "common/error.h"
#include "encoder/model_dir.h"
#include "encoder/weights.h"
#include "index/hash.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// --- integers ---------------------------------------------------------------

void phrex_dump_put_be64(unsigned char out[8], uint64_t v) {
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(v >> (56 - 8 * i));
}

uint64_t phrex_dump_get_be64(const unsigned char in[8]) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | in[i];
    return v;
}

void phrex_dump_put_le64(unsigned char out[8], uint64_t v) {
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(v >> (8 * i));
}

uint64_t phrex_dump_get_le64(const unsigned char in[8]) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | in[i];
    return v;
}

static void put_le32(unsigned char *out, uint32_t v) {
    for (int i = 0; i < 4; i++) out[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_le32(const unsigned char *in) {
    return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24;
}

// --- build state ------------------------------------------------------------

void phrex_dump_state_encode(const phrex_build_state *s, unsigned char out[PHREX_DUMP_STATE_BYTES]) {
    memcpy(out, PHREX_DUMP_STATE_MAGIC, 8);
    put_le32(out + 8, PHREX_DUMP_STATE_VERSION);
    put_le32(out + 12, s->stage);
    const uint64_t v[9] = {s->passages, s->tokens,      s->kept,       s->empty,     s->windows,
                           s->spill_bytes, s->index_bytes, s->index_hash, s->trained_on};
    for (int i = 0; i < 9; i++) phrex_dump_put_le64(out + 16 + 8 * i, v[i]);
    phrex_dump_put_le64(out + 88, phrex_hash64(out, 88, 0));
}

int phrex_dump_state_decode(const void *data, size_t len, const char *what, phrex_build_state *s) {
    const unsigned char *p = data;
    if (len != PHREX_DUMP_STATE_BYTES || memcmp(p, PHREX_DUMP_STATE_MAGIC, 8))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: build state is not a phrex build state (%zu bytes)", what, len);
    if (get_le32(p + 8) != PHREX_DUMP_STATE_VERSION)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: build state version %u, this phrex writes version %d", what,
                          get_le32(p + 8), PHREX_DUMP_STATE_VERSION);
    if (phrex_dump_get_le64(p + 88) != phrex_hash64(p, 88, 0))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: build state checksum mismatch", what);
    s->stage = get_le32(p + 12);
    if (s->stage < PHREX_BUILD_ENCODING || s->stage > PHREX_BUILD_INDEXED)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: unknown build stage %u", what, s->stage);
    uint64_t *v[9] = {&s->passages, &s->tokens,      &s->kept,       &s->empty,     &s->windows,
                      &s->spill_bytes, &s->index_bytes, &s->index_hash, &s->trained_on};
    for (int i = 0; i < 9; i++) *v[i] = phrex_dump_get_le64(p + 16 + 8 * i);
    return PHREX_OK;
}

// --- LMDB -------------------------------------------------------------------

int phrex_dump_lmdb_fail(int mdb_rc, const char *path, const char *what) {
    int code = PHREX_ERR_INTERNAL;
    if (mdb_rc == MDB_CORRUPTED || mdb_rc == MDB_INVALID || mdb_rc == MDB_VERSION_MISMATCH ||
        mdb_rc == MDB_PAGE_NOTFOUND)
        code = PHREX_ERR_FORMAT;
    return phrex_fail(code, "%s: %s: %s", path, what, mdb_strerror(mdb_rc));
}

static int hash_db(MDB_txn *txn, MDB_dbi dbi, const char *path, phrex_hash64_state *h, uint64_t *entries) {
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) return phrex_dump_lmdb_fail(rc, path, "cannot open a cursor");
    MDB_val k, v;
    uint64_t n = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
        phrex_hash64_update_u64(h, k.mv_size);
        phrex_hash64_update(h, k.mv_data, k.mv_size);
        phrex_hash64_update_u64(h, v.mv_size);
        phrex_hash64_update(h, v.mv_data, v.mv_size);
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) return phrex_dump_lmdb_fail(rc, path, "cannot read");
    phrex_hash64_update_u64(h, n);
    *entries += n;
    return PHREX_OK;
}

int phrex_dump_hash_lmdb(MDB_txn *txn, MDB_dbi passages, MDB_dbi kept, const char *path, uint64_t *hash,
                         uint64_t *entries) {
    phrex_hash64_state h;
    phrex_hash64_init(&h, PHREX_DUMP_SEED_LMDB);
    *entries = 0;
    int rc;
    if ((rc = hash_db(txn, passages, path, &h, entries)) || (rc = hash_db(txn, kept, path, &h, entries))) return rc;
    *hash = phrex_hash64_final(&h);
    return PHREX_OK;
}

// --- model fingerprint ------------------------------------------------------

// Hashes the phrase encoder's config, weights (model.safetensors, or a
// delta and through it the base's hash: encoder/weights.h) and vocabulary.
// A trained model folder (encoder/model_dir.h) stands for its phrase encoder,
// so `--model models/phrase` and `--model models/phrase/phrase` agree.
int phrex_dump_hash_model(const char *model_dir, uint64_t *hash) {
    phrex_model_paths *paths = malloc(sizeof *paths);
    if (!paths) return phrex_fail(PHREX_ERR_MEMORY, "out of memory");
    int rc = phrex_model_dir_resolve(model_dir, paths);
    phrex_weights_files wf;
    if (!rc) rc = phrex_weights_list_files(paths->phrase, &wf);
    const char *files[8] = {"config.json"};
    int optional[8] = {0}, n = 1;
    for (int i = 0; !rc && wf.files[i]; i++) files[n++] = wf.files[i];
    files[n] = "vocab.txt", files[n + 1] = "tokenizer_config.json", optional[n + 1] = 1, n += 2;
    phrex_hash64_state h;
    phrex_hash64_init(&h, PHREX_DUMP_SEED_MODEL);
    for (int i = 0; i < n && !rc; i++) {
        char path[PATH_MAX];
        if ((rc = phrex_dump_path(path, sizeof path, paths->phrase, files[i]))) break;
        phrex_hash64_update(&h, files[i], strlen(files[i]) + 1);
        struct stat st;
        if (optional[i] && stat(path, &st) != 0) {
            phrex_hash64_update_u64(&h, UINT64_MAX); // absent
            continue;
        }
        uint64_t bytes;
        if ((rc = phrex_hash64_update_file(&h, path, &bytes))) rc = phrex_fail_context(rc, "model fingerprint");
        else phrex_hash64_update_u64(&h, bytes);
    }
    free(paths);
    if (!rc) *hash = phrex_hash64_final(&h);
    return rc;
}

int phrex_dump_path(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return phrex_fail(PHREX_ERR_INPUT, "path too long: %s/%s", dir, name);
    return PHREX_OK;
}
