// The reranker at inference: phrex_reranker.json + an encoder folder (HF or
// delta layout, loaded by phrex_bert_init into the packed inference
// kernels) + a linear score head on [CLS]. See rerank/reranker.h.
#include "rerank/reranker.h"

#include "common/error.h"
#include "encoder/bert.h"
#include "encoder/checkpoint.h"
#include "encoder/embedder.h"
#include "encoder/safetensors.h"
#include "index/hash.h"
#include "rerank/rerank_data.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define JSON_MAX_BYTES (1 << 20)
// The encoder workspace holds at most this many packed tokens; larger calls
// run as several forwards over consecutive pairs (same scores), which bounds
// the memory of a worker sized for 1000 candidates.
#define MAX_FORWARD_TOKENS 16384

struct phrex_reranker {
    phrex_bert *bert;
    phrex_wordpiece *wp;
    float *head_w; // (C)
    float head_b;
    int C, layers, max_seq_len, max_query_len;
    int32_t mark_start, mark_end;
    phrex_rerank_pool pool;
    uint64_t hash;
};

struct phrex_rerank_worker {
    const phrex_reranker *r;
    int max_pairs, max_tokens;
    phrex_encoder *enc;
    phrex_rerank_tokenizer tok;
    int32_t *ids, *types, *lens, *pair_len; // (max_tokens), (max_tokens), (max_pairs), (max_pairs)
    float *hidden;                          // (max_tokens, C)
    int last_n;
};

// --- phrex_reranker.json -------------------------------------------------------

static int read_text(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(JSON_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, JSON_MAX_BYTES + 1, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (!buf) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    if (err) return free(buf), phrex_fail(PHREX_ERR_IO, "%s: read failed", path);
    if (n > JSON_MAX_BYTES) return free(buf), phrex_fail(PHREX_ERR_FORMAT, "%s: larger than 1 MiB", path);
    buf[n] = 0;
    *out = buf, *len = n;
    return PHREX_OK;
}

static int json_int(const cJSON *root, const char *path, const char *field, int lo, int hi, int fallback, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (!v && fallback != INT32_MIN) return *out = fallback, PHREX_OK;
    if (!v) return phrex_fail(PHREX_ERR_FORMAT, "%s: required field '%s' is missing", path, field);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' must be an integer", path, field);
    if (!(v->valuedouble >= lo && v->valuedouble <= hi))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' is %g, expected %d..%d", path, field, v->valuedouble, lo,
                          hi);
    *out = (int)v->valuedouble;
    return PHREX_OK;
}

static int json_str(const cJSON *root, const char *path, const char *field, const char *fallback, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (!v && fallback) return *out = fallback, PHREX_OK;
    if (!v) return phrex_fail(PHREX_ERR_FORMAT, "%s: required field '%s' is missing", path, field);
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' must be a non-empty string", path, field);
    // Parts live inside the folder: no absolute paths, no "..".
    if (v->valuestring[0] == '/' || strstr(v->valuestring, ".."))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' must be a path inside the folder, got \"%s\"", path,
                          field, v->valuestring);
    *out = v->valuestring;
    return PHREX_OK;
}

typedef struct {
    char encoder[4096], head[4096];
    int version, layers, hidden, max_seq_len, max_query_len, mark_start, mark_end;
    phrex_rerank_pool pool;
} meta_read;

static int parse_meta(const cJSON *root, const char *path, const char *dir, meta_read *m) {
    if (!cJSON_IsObject(root)) return phrex_fail(PHREX_ERR_FORMAT, "%s: not a JSON object", path);
    const char *format, *enc, *head, *backbone, *pool;
    int rc = json_str(root, path, "format", NULL, &format);
    if (!rc && strcmp(format, PHREX_RERANKER_FORMAT))
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field 'format' is \"%s\", expected \"%s\"", path, format,
                        PHREX_RERANKER_FORMAT);
    if (!rc) rc = json_int(root, path, "version", 1, 1 << 20, INT32_MIN, &m->version);
    if (!rc && m->version > PHREX_RERANKER_VERSION)
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: version %d is newer than this build reads (%d)", path, m->version,
                        PHREX_RERANKER_VERSION);
    if (!rc) rc = json_str(root, path, "backbone", "bert", &backbone);
    if (!rc && strcmp(backbone, "bert"))
        rc = phrex_fail(PHREX_ERR_MISMATCH, "%s: backbone \"%s\" is not one this build runs (\"bert\")", path,
                        backbone);
    if (!rc) rc = json_str(root, path, "encoder", NULL, &enc);
    if (!rc) rc = json_str(root, path, "head", NULL, &head);
    if (!rc) rc = json_int(root, path, "layers", 1, 1024, INT32_MIN, &m->layers);
    if (!rc) rc = json_int(root, path, "hidden_size", 1, 1 << 16, INT32_MIN, &m->hidden);
    if (!rc) rc = json_int(root, path, "max_seq_len", PHREX_RERANK_MIN_SEQ_LEN, 1 << 16, INT32_MIN, &m->max_seq_len);
    if (!rc) rc = json_int(root, path, "max_query_len", 4, 1 << 16, PHREX_RERANK_MAX_QUERY_LEN, &m->max_query_len);
    if (!rc) rc = json_int(root, path, "marker_start_id", 0, INT32_MAX - 1, INT32_MIN, &m->mark_start);
    if (!rc) rc = json_int(root, path, "marker_end_id", 0, INT32_MAX - 1, INT32_MIN, &m->mark_end);
    if (!rc) rc = json_str(root, path, "pool", "cls", &pool);
    if (!rc && phrex_rerank_pool_parse(pool, &m->pool)) rc = phrex_fail_context(PHREX_ERR_FORMAT, "%s: field 'pool'", path);
    if (rc) return rc;
    snprintf(m->encoder, sizeof m->encoder, "%s/%s", dir, enc);
    snprintf(m->head, sizeof m->head, "%s/%s", dir, head);
    return PHREX_OK;
}

static int read_meta(const char *dir, meta_read *m) {
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return phrex_fail(PHREX_ERR_IO, "reranker %s: no such folder", dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, PHREX_RERANKER_JSON);
    char *text = NULL;
    size_t len = 0;
    int rc = read_text(path, &text, &len);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) rc = phrex_fail(PHREX_ERR_FORMAT, "%s: not valid JSON (near byte %ld)", path,
                               cJSON_GetErrorPtr() ? (long)(cJSON_GetErrorPtr() - text) : -1L);
    else rc = parse_meta(root, path, dir, m);
    cJSON_Delete(root);
    free(text);
    return rc;
}

// --- the parts -------------------------------------------------------------------

static int load_head(phrex_reranker *r, const char *path) {
    phrex_safetensors st;
    int rc = phrex_safetensors_init(&st, path);
    if (rc) return rc;
    int64_t wshape[2] = {1, r->C}, bshape[1] = {1};
    r->head_w = malloc((size_t)r->C * sizeof(float));
    if (!r->head_w) rc = phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    if (!rc) rc = phrex_safetensors_read_f32(&st, PHREX_RERANKER_HEAD_WEIGHT, 2, wshape, r->head_w);
    if (!rc) rc = phrex_safetensors_read_f32(&st, PHREX_RERANKER_HEAD_BIAS, 1, bshape, &r->head_b);
    for (int i = 0; !rc && i < r->C; i++)
        if (!isfinite(r->head_w[i])) rc = phrex_fail(PHREX_ERR_FORMAT, "%s: score.weight[%d] is not finite", path, i);
    if (!rc && !isfinite(r->head_b)) rc = phrex_fail(PHREX_ERR_FORMAT, "%s: score.bias is not finite", path);
    phrex_safetensors_free(&st);
    if (rc) phrex_fail_context(rc, "reranker head (expects %s (1, %d) and %s (1))", PHREX_RERANKER_HEAD_WEIGHT, r->C,
                               PHREX_RERANKER_HEAD_BIAS);
    return rc;
}

// The json's claims against the encoder and vocabulary it names.
static int check_parts(phrex_reranker *r, const meta_read *m, const char *dir) {
    const phrex_bert_config *c = phrex_bert_get_config(r->bert);
    const char *json = PHREX_RERANKER_JSON;
    if (c->num_hidden_layers != m->layers)
        return phrex_fail(PHREX_ERR_MISMATCH, "%s/%s: layers is %d but %s has num_hidden_layers %d", dir, json,
                          m->layers, m->encoder, c->num_hidden_layers);
    if (c->hidden_size != m->hidden)
        return phrex_fail(PHREX_ERR_MISMATCH, "%s/%s: hidden_size is %d but %s has %d", dir, json, m->hidden,
                          m->encoder, c->hidden_size);
    if (m->max_seq_len > c->max_position_embeddings)
        return phrex_fail(PHREX_ERR_MISMATCH, "%s/%s: max_seq_len %d is over the encoder's %d positions", dir, json,
                          m->max_seq_len, c->max_position_embeddings);
    if (c->type_vocab_size < 2)
        return phrex_fail(PHREX_ERR_MISMATCH, "%s: type_vocab_size %d; the reranker needs 2 segments", m->encoder,
                          c->type_vocab_size);
    int32_t ms, me;
    int rc = phrex_rerank_marker_ids(r->wp, &ms, &me);
    if (rc) return phrex_fail_context(rc, "%s/vocab.txt", m->encoder);
    if (ms != m->mark_start || me != m->mark_end)
        return phrex_fail(PHREX_ERR_MISMATCH,
                          "%s/%s: marker ids %d, %d but %s/vocab.txt has %s = %d and %s = %d", dir, json,
                          m->mark_start, m->mark_end, m->encoder, PHREX_RERANK_MARK_START, ms, PHREX_RERANK_MARK_END,
                          me);
    if (phrex_wordpiece_vocab_size(r->wp) > c->vocab_size)
        return phrex_fail(PHREX_ERR_MISMATCH, "%s: vocab.txt has %d tokens, the model %d", m->encoder,
                          phrex_wordpiece_vocab_size(r->wp), c->vocab_size);
    return PHREX_OK;
}

// Hash of every file that decides a score, and of the settings.
static uint64_t hash_parts(const char *dir, const meta_read *m) {
    static const char *const enc_files[] = {"config.json", "model.safetensors", "phrex_delta.json",
                                            "delta.safetensors", "vocab.txt", "tokenizer_config.json"};
    phrex_hash64_state h;
    phrex_hash64_init(&h, 0x5245524eull);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, PHREX_RERANKER_JSON);
    phrex_hash64_update_file(&h, path, NULL);
    phrex_hash64_update_file(&h, m->head, NULL);
    for (size_t i = 0; i < sizeof enc_files / sizeof *enc_files; i++) {
        snprintf(path, sizeof path, "%s/%s", m->encoder, enc_files[i]);
        struct stat st;
        phrex_hash64_update_u64(&h, i);
        if (stat(path, &st) == 0) phrex_hash64_update_file(&h, path, NULL);
    }
    phrex_clear_error();
    return phrex_hash64_final(&h);
}

int phrex_reranker_init(phrex_reranker **out, const char *dir) {
    *out = NULL;
    meta_read m;
    int rc = read_meta(dir, &m);
    if (rc) return rc;
    phrex_reranker *r = calloc(1, sizeof *r);
    if (!r) return phrex_fail(PHREX_ERR_MEMORY, "reranker %s: out of memory", dir);
    rc = phrex_bert_init(&r->bert, m.encoder);
    if (rc) phrex_fail_context(rc, "reranker %s: encoder", dir);
    if (!rc && (rc = phrex_embedder_load_tokenizer(m.encoder, &r->wp))) phrex_fail_context(rc, "reranker %s", dir);
    if (!rc) r->C = phrex_bert_get_config(r->bert)->hidden_size;
    if (!rc) rc = check_parts(r, &m, dir);
    if (!rc) rc = load_head(r, m.head);
    if (rc) {
        phrex_reranker_free(r);
        return rc;
    }
    r->layers = m.layers, r->max_seq_len = m.max_seq_len, r->max_query_len = m.max_query_len;
    r->mark_start = m.mark_start, r->mark_end = m.mark_end, r->pool = m.pool;
    r->hash = hash_parts(dir, &m);
    *out = r;
    return PHREX_OK;
}

void phrex_reranker_free(phrex_reranker *r) {
    if (!r) return;
    phrex_bert_free(r->bert);
    phrex_wordpiece_free(r->wp);
    free(r->head_w);
    free(r);
}

int phrex_reranker_layers(const phrex_reranker *r) { return r->layers; }
int phrex_reranker_max_seq_len(const phrex_reranker *r) { return r->max_seq_len; }
uint64_t phrex_reranker_hash(const phrex_reranker *r) { return r->hash; }
int phrex_reranker_hidden_size(const phrex_reranker *r) { return r->C; }
int32_t phrex_reranker_marker(const phrex_reranker *r, int which) { return which ? r->mark_end : r->mark_start; }
int phrex_reranker_pool(const phrex_reranker *r) { return r->pool; }
const float *phrex_reranker_head(const phrex_reranker *r, float *b) {
    if (b) *b = r->head_b;
    return r->head_w;
}

// --- writing (training saves through these) -----------------------------------------

int phrex_reranker_write_json(const char *dir, const phrex_reranker_meta *m, const char *extra_json) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, PHREX_RERANKER_JSON);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    fprintf(f,
            "{\"format\": \"%s\", \"version\": %d, \"backbone\": \"%s\",\n"
            " \"encoder\": \"%s\", \"head\": \"%s\",\n"
            " \"layers\": %d, \"hidden_size\": %d, \"max_seq_len\": %d, \"max_query_len\": %d,\n"
            " \"marker_start\": \"%s\", \"marker_start_id\": %d, \"marker_end\": \"%s\", \"marker_end_id\": %d,\n"
            " \"input\": \"[CLS] question [SEP] title : passage with the span between the markers [SEP]\",\n"
            " \"pool\": \"%s\"%s%s}\n",
            PHREX_RERANKER_FORMAT, PHREX_RERANKER_VERSION, m->backbone ? m->backbone : "bert", m->encoder, m->head,
            m->layers, m->hidden_size, m->max_seq_len, m->max_query_len, PHREX_RERANK_MARK_START, m->mark_start,
            PHREX_RERANK_MARK_END, m->mark_end, phrex_rerank_pool_name((phrex_rerank_pool)m->pool),
            extra_json ? ",\n " : "", extra_json ? extra_json : "");
    if (fclose(f)) return phrex_fail(PHREX_ERR_IO, "%s: write failed", tmp);
    if (rename(tmp, path)) return phrex_fail(PHREX_ERR_IO, "%s: cannot rename: %s", path, strerror(errno));
    return PHREX_OK;
}

int phrex_reranker_write_head(const char *path, const float *w, float b, int C, int dtype) {
    phrex_safetensors_entry e[2] = {{.name = PHREX_RERANKER_HEAD_WEIGHT, .data = w, .ndim = 2, .shape = {1, C}},
                                    {.name = PHREX_RERANKER_HEAD_BIAS, .data = &b, .ndim = 1, .shape = {1}}};
    const char *meta[2] = {"format", "pt"};
    return phrex_safetensors_write(path, e, 2, (phrex_dtype)dtype, meta, 1);
}

// --- scoring ------------------------------------------------------------------------

int phrex_rerank_worker_init(phrex_rerank_worker **out, const phrex_reranker *r, int max_pairs) {
    *out = NULL;
    if (max_pairs < 1 || max_pairs > (1 << 20))
        return phrex_fail(PHREX_ERR_INPUT, "reranker worker: max_pairs %d is not in 1..%d", max_pairs, 1 << 20);
    phrex_rerank_worker *w = calloc(1, sizeof *w);
    if (!w) return phrex_fail(PHREX_ERR_MEMORY, "reranker worker: out of memory");
    w->r = r, w->max_pairs = max_pairs;
    int64_t want = (int64_t)max_pairs * r->max_seq_len;
    w->max_tokens = want < MAX_FORWARD_TOKENS ? (int)want : MAX_FORWARD_TOKENS;
    if (w->max_tokens < r->max_seq_len) w->max_tokens = r->max_seq_len;
    int rc = phrex_encoder_init(&w->enc, r->bert, w->max_tokens);
    if (!rc) rc = phrex_rerank_tokenizer_init(&w->tok, r->wp, r->max_seq_len, r->max_query_len, r->mark_start,
                                              r->mark_end);
    if (!rc) {
        w->ids = malloc((size_t)w->max_tokens * 4), w->types = malloc((size_t)w->max_tokens * 4);
        w->lens = malloc((size_t)max_pairs * 4), w->pair_len = malloc((size_t)max_pairs * 4);
        w->hidden = malloc((size_t)w->max_tokens * (size_t)r->C * 4);
        if (!w->ids || !w->types || !w->lens || !w->pair_len || !w->hidden)
            rc = phrex_fail(PHREX_ERR_MEMORY, "reranker worker: out of memory for %d pairs", max_pairs);
    }
    if (rc) {
        phrex_rerank_worker_free(w);
        return rc;
    }
    *out = w;
    return PHREX_OK;
}

void phrex_rerank_worker_free(phrex_rerank_worker *w) {
    if (!w) return;
    phrex_encoder_free(w->enc);
    phrex_rerank_tokenizer_free(&w->tok);
    free(w->ids), free(w->types), free(w->lens), free(w->pair_len), free(w->hidden);
    free(w);
}

int phrex_rerank_worker_pair_len(const phrex_rerank_worker *w, int i) {
    return i >= 0 && i < w->last_n ? w->pair_len[i] : -1;
}

// Forward of pairs [p0, p1) packed at ids[0, n_tok); scores[p] = w·pooled h + b
// (as phrex_rerank_model_forward in training).
static int forward_scores(phrex_rerank_worker *w, int p0, int p1, float *scores) {
    const phrex_reranker *r = w->r;
    int rc = phrex_encoder_forward(w->enc, w->ids, w->types, w->lens, p1 - p0, w->hidden);
    if (rc) return rc;
    size_t at = 0;
    for (int p = p0; p < p1; p++) {
        int rows[PHREX_RERANK_POOL_MAX_ROWS], len = w->lens[p - p0];
        int k = phrex_rerank_pool_rows(w->ids + at, len, r->pool, r->mark_start, r->mark_end, rows);
        float s = 0;
        for (int j = 0; j < k; j++) {
            const float *h = w->hidden + (at + (size_t)rows[j]) * (size_t)r->C;
            for (int c = 0; c < r->C; c++) s += r->head_w[c] * h[c];
        }
        scores[p] = r->head_b + s / (float)k;
        at += (size_t)len;
    }
    return PHREX_OK;
}

int phrex_rerank_score(phrex_rerank_worker *w, const char *question, size_t question_len,
                       const phrex_rerank_candidate *cands, int n, float *scores) {
    w->last_n = 0;
    if (n < 0 || n > w->max_pairs)
        return phrex_fail(PHREX_ERR_INPUT, "reranker: %d candidates; this worker takes 0..%d", n, w->max_pairs);
    if (!question) return phrex_fail(PHREX_ERR_INPUT, "reranker: question is NULL");
    if (n == 0) return PHREX_OK;
    int rc = phrex_rerank_tokenizer_set_question(&w->tok, question, question_len);
    if (rc) return rc;
    int L = w->r->max_seq_len, p0 = 0, n_tok = 0;
    for (int p = 0; p < n; p++) {
        if (n_tok + L > w->max_tokens) { // the workspace is full: score what it holds
            if ((rc = forward_scores(w, p0, p, scores))) return rc;
            p0 = p, n_tok = 0;
        }
        phrex_rerank_pair_info info;
        rc = phrex_rerank_tokenizer_pair(&w->tok, &cands[p], w->ids + n_tok, w->types + n_tok, NULL, NULL, &info);
        if (rc) return phrex_fail_context(rc, "candidate %d", p);
        w->lens[p - p0] = info.len, w->pair_len[p] = info.len;
        n_tok += info.len;
    }
    rc = forward_scores(w, p0, n, scores);
    if (!rc) w->last_n = n;
    return rc;
}
