// Reading a finished phrase dump (written by index/build.h): the FAISS
// index, passages and token offsets, and the map between vector ids and
// (passage, token).
//
// Opening validates everything that could make answers silently wrong: the
// manifest's format and version and its own checksum, that the dump was
// built with the given model (by content hash), the index file's size and
// hash, and the LMDB content hash; a dump that fails any check is refused
// with a message naming the file and what differs.
//
// The phrex_dump_* readers below share one built-in reader: one thread at
// a time. For concurrent reads, give each thread a phrex_dump_reader (its
// own LMDB read transaction, cursor and buffers) over one opened dump; the
// FAISS index is read-only and shared (search, reconstruct).
#ifndef PHREX_INDEX_DUMP_H
#define PHREX_INDEX_DUMP_H

#include <faiss/c_api/Index_c.h>
#include <stddef.h>
#include <stdint.h>

typedef struct phrex_dump phrex_dump;

// How vectors are compared. DensePhrases scores phrases by inner product
// (maximum inner product search); L2 is there for models trained for it
// and for tests (with L2 a vector is always its own nearest neighbour).
typedef enum { PHREX_METRIC_INNER_PRODUCT = 0, PHREX_METRIC_L2 = 1 } phrex_metric;
const char *phrex_dump_metric_name(phrex_metric m); // "inner_product", "l2"
int phrex_dump_parse_metric(const char *name, phrex_metric *out); // also "ip"

// Checks skipped by PHREX_DUMP_OPEN_QUICK: the index file hash and the LMDB
// content hash (reading both files once); sizes and counts are still checked.
#define PHREX_DUMP_OPEN_QUICK 1u

typedef struct {
    int format_version;
    int dim;                   // vector size (the model's hidden size)
    int max_seq_len, doc_stride;
    int64_t passages, tokens, kept, empty, windows;
    uint64_t model_hash;       // see phrex_dump_model_hash
    uint64_t index_hash, lmdb_hash;
    uint64_t index_bytes;
    char factory[128];
    phrex_metric metric;
    char filter[64];           // "none" or the filter's name
} phrex_dump_info;

// A passage as stored. Strings are NUL-terminated and point into the LMDB
// map: valid while the reader (or dump) that returned them is open. The
// offset and keep arrays are valid until the next call on the same reader.
typedef struct {
    int64_t number;          // passage number (corpus order, from 0)
    const char *id, *title, *text;
    size_t id_len, title_len, text_len;
    int32_t n_tokens;        // word pieces, [CLS]/[SEP] excluded
    int32_t n_kept;          // tokens with a vector
    int64_t first_id;        // vector id of the first kept token
    const int32_t *start;    // (n_tokens) byte offsets into text
    const int32_t *end;      // (n_tokens)
    const uint8_t *kept;     // (n_tokens) 1 when the token has a vector
} phrex_dump_passage;

// Opens dir, checking it against the model in model_dir (NULL: no model
// check, for inspection tools only). Errors: PHREX_ERR_IO (missing files),
// PHREX_ERR_FORMAT (corrupt, truncated, wrong version, incomplete build),
// PHREX_ERR_MISMATCH (another model).
int phrex_dump_open(phrex_dump **out, const char *dir, const char *model_dir);
int phrex_dump_open_ex(phrex_dump **out, const char *dir, const char *model_dir, unsigned flags);
void phrex_dump_free(phrex_dump *d);

const phrex_dump_info *phrex_dump_get_info(const phrex_dump *d);
// The FAISS index (owned by the dump). Its ids are vector ids.
FaissIndex *phrex_dump_index(phrex_dump *d);

int phrex_dump_get_passage(phrex_dump *d, int64_t number, phrex_dump_passage *out);

// Vector id -> (passage, token). PHREX_ERR_INPUT when id is out of range.
int phrex_dump_locate(phrex_dump *d, int64_t id, int64_t *passage, int32_t *token);
// Both in one read: vector id -> its passage and token.
int phrex_dump_locate_passage(phrex_dump *d, int64_t id, phrex_dump_passage *out, int32_t *token);
// (passage, token) -> vector id, or -1 when the token has no vector.
int phrex_dump_vector_id(phrex_dump *d, int64_t passage, int32_t token, int64_t *id);
// Inverted lists visited per search (IVF indexes; DensePhrases uses 256).
// PHREX_ERR_INPUT for an index without inverted lists.
int phrex_dump_set_nprobe(phrex_dump *d, int nprobe);

// The stored (possibly quantized) vector of id; out: (dim).
int phrex_dump_reconstruct(phrex_dump *d, int64_t id, float *out);

// --- per-thread readers ---------------------------------------------------
// A reader holds a read transaction for its whole life (the dump never
// changes), so the id, title and text of a passage it returns point into
// the LMDB map and stay valid until phrex_dump_reader_free; the offset and
// keep arrays are the reader's buffers, valid until its next call. Any
// number of readers may be open at once, each used by one thread at a
// time; free them before the dump.
typedef struct phrex_dump_reader phrex_dump_reader;
int phrex_dump_reader_init(phrex_dump_reader **out, phrex_dump *d);
void phrex_dump_reader_free(phrex_dump_reader *r);
int phrex_dump_reader_get_passage(phrex_dump_reader *r, int64_t number, phrex_dump_passage *out);
int phrex_dump_reader_locate(phrex_dump_reader *r, int64_t id, int64_t *passage, int32_t *token);
int phrex_dump_reader_locate_passage(phrex_dump_reader *r, int64_t id, phrex_dump_passage *out, int32_t *token);
// The built-in reader of the phrex_dump_* calls (not to be freed).
phrex_dump_reader *phrex_dump_default_reader(phrex_dump *d);

// A hash of everything the dump holds (passages, offsets, id map, index
// file): two builds of the same corpus with the same options and model
// give the same value, however often they were interrupted.
uint64_t phrex_dump_content_hash(const phrex_dump *d);

// The model fingerprint the manifest stores for model_dir.
int phrex_dump_model_hash(const char *model_dir, uint64_t *hash);

#endif
