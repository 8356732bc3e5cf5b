// Query encoding: a question in, two vectors out, q_start and q_end (each
// (dim) floats), scored against the dump's token vectors by inner product.
//
// DensePhrases encodes a question with two query-side BERTs fine-tuned for
// the purpose; the [CLS] output of the first is q_start, of the second q_end.
// Any encoder plugs in through phrex_query_backend (a small vtable): the
// model part is shared read-only between threads, each thread encodes with
// its own worker (workspace). The built-in BERT backend reads a model folder
// (encoder/model_dir.h):
//   - a trained phrex model (phrex_model.json): its query_start/ and
//     query_end/ encoders, [CLS] pooled as they were trained;
//   - a plain BERT folder (the untrained baseline: the phrase model itself):
//     q_start = q_end = the mean of the question's token vectors, which finds
//     more answers than [CLS] with a model never trained for queries.
// `--pool` overrides either choice (PHREX_QUERY_POOL_AUTO keeps it).
//
// Input rules, checked before any backend sees the text: NUL bytes and
// invalid UTF-8 are PHREX_ERR_INPUT naming the byte offset; a question with
// no word piece is PHREX_ERR_INPUT ("empty"). Questions over
// PHREX_QUERY_MAX_LEN tokens ([CLS] and [SEP] included, as DensePhrases'
// max_query_length) are truncated, and the caller is told so.
#ifndef PHREX_SEARCH_QUERY_H
#define PHREX_SEARCH_QUERY_H

#include <stddef.h>

#define PHREX_QUERY_MAX_LEN 64
// Bytes of a question looked at: whatever lies beyond is past 64 tokens
// anyway, and the cap bounds the token buffer, allocated once.
#define PHREX_QUERY_MAX_BYTES 4096

typedef enum {
    PHREX_QUERY_POOL_CLS = 0,  // last hidden state of [CLS] (DensePhrases)
    PHREX_QUERY_POOL_MEAN = 1, // mean of all token vectors, [CLS]/[SEP] included
    PHREX_QUERY_POOL_AUTO = 2, // cls for trained query encoders, mean for a plain folder
} phrex_query_pool;

#define PHREX_QUERY_POOL_DEFAULT PHREX_QUERY_POOL_AUTO

// What a query encoder implements. `model` is shared by all threads and
// must not change after init; a worker belongs to one thread at a time and
// must not allocate in `encode`.
typedef struct {
    const char *name; // e.g. "bert-cls", shown by tools
    int dim;          // length of q_start and q_end
    void *model;
    int (*worker_init)(void *model, void **worker);
    void (*worker_free)(void *worker);
    // text[0, len) is valid UTF-8 without NUL, at most PHREX_QUERY_MAX_BYTES.
    // Writes q_start, q_end (dim each); *truncated = 1 when the question was
    // cut to PHREX_QUERY_MAX_LEN tokens. PHREX_ERR_INPUT when it has no token.
    int (*encode)(void *worker, const char *text, size_t len, float *q_start, float *q_end, int *truncated);
    void (*model_free)(void *model);
} phrex_query_backend;

typedef struct phrex_query_model phrex_query_model;     // shared, read-only
typedef struct phrex_query_encoder phrex_query_encoder; // one per thread

// Loads the built-in BERT backend from model_dir (see above for the two
// layouts). Errors: those of the model readers; PHREX_ERR_MISMATCH when
// query_start/ and query_end/ differ in hidden size or vocabulary.
int phrex_query_model_init(phrex_query_model **out, const char *model_dir, phrex_query_pool pool);
// Wraps any backend; takes ownership of backend->model (freed by
// phrex_query_model_free through backend->model_free).
int phrex_query_model_init_backend(phrex_query_model **out, const phrex_query_backend *backend);
void phrex_query_model_free(phrex_query_model *m);
int phrex_query_model_dim(const phrex_query_model *m);
const char *phrex_query_model_name(const phrex_query_model *m);

// A worker with every buffer a question needs (no allocation per question).
int phrex_query_encoder_init(phrex_query_encoder **out, const phrex_query_model *m);
void phrex_query_encoder_free(phrex_query_encoder *enc);

// Checks text[0, len) (see the input rules above) and encodes it.
// q_start, q_end: (dim). *truncated (may be NULL): 1 when cut.
int phrex_query_encode(phrex_query_encoder *enc, const char *text, size_t len, float *q_start, float *q_end,
                       int *truncated);

// The input checks alone (NUL, UTF-8, over-long bytes are fine: they are
// cut): PHREX_OK or PHREX_ERR_INPUT with a message naming the byte offset.
int phrex_query_check_text(const char *text, size_t len);

const char *phrex_query_pool_name(phrex_query_pool pool); // "cls", "mean", "auto"
int phrex_query_parse_pool(const char *name, phrex_query_pool *out);

#endif
