#include "checkpoint.h"

#include "common/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// ============================================================================
// Crash-safe files: write "<path>.tmp", fsync, rename, fsync the directory.
// ============================================================================

typedef struct {
    FILE *f;
    char tmp[4096];
    char path[4096];
} atomic_file;

static int af_open(atomic_file *af, const char *path) {
    if (snprintf(af->path, sizeof af->path, "%s", path) >= (int)sizeof af->path ||
        snprintf(af->tmp, sizeof af->tmp, "%s.tmp", path) >= (int)sizeof af->tmp)
        return phrex_fail(PHREX_ERR_INPUT, "%s: path too long", path);
    af->f = fopen(af->tmp, "wb");
    if (!af->f) return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", af->tmp, strerror(errno));
    return PHREX_OK;
}

static int af_write(atomic_file *af, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, af->f) != n) return phrex_fail(PHREX_ERR_IO, "%s: write failed: %s", af->tmp, strerror(errno));
    return PHREX_OK;
}

static void af_abort(atomic_file *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    unlink(af->tmp);
}

// The rename is only durable once the directory entry is on disk too.
static int fsync_dir_of(const char *path) {
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return phrex_fail(PHREX_ERR_IO, "%s: cannot open its directory: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc ? phrex_fail(PHREX_ERR_IO, "%s: fsync of its directory failed: %s", path, strerror(errno)) : PHREX_OK;
}

static int af_commit(atomic_file *af) {
    int bad = fflush(af->f) != 0 || fsync(fileno(af->f)) != 0;
    bad |= fclose(af->f) != 0;
    af->f = NULL;
    if (bad) {
        unlink(af->tmp);
        return phrex_fail(PHREX_ERR_IO, "%s: flush failed: %s", af->tmp, strerror(errno));
    }
    if (rename(af->tmp, af->path) != 0) {
        int e = errno;
        unlink(af->tmp);
        return phrex_fail(PHREX_ERR_IO, "%s: rename to %s failed: %s", af->tmp, af->path, strerror(e));
    }
    return fsync_dir_of(af->path);
}

static int write_whole_file(const char *path, const void *p, size_t n) {
    atomic_file af;
    int rc = af_open(&af, path);
    if (rc) return rc;
    rc = af_write(&af, p, n);
    if (rc) {
        af_abort(&af);
        return rc;
    }
    return af_commit(&af);
}

// ============================================================================
// safetensors writer
// ============================================================================

uint16_t phrex_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) // inf, or NaN kept quiet with its top payload bits
        return sign | 0x7c00 | (a > 0x7f800000u ? (uint16_t)(0x200 | ((a >> 13) & 0x3ff)) : 0);
    if (a >= 0x477ff000u) return sign | 0x7c00; // >= 65520 rounds past the largest half, 65504
    if (a >= 0x38800000u) {                     // normal half: rebias the exponent, round 13 bits away
        uint32_t h = (a >> 13) - ((127u - 15u) << 10), rem = a & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; // a carry rolls into the exponent, as it should
        return sign | (uint16_t)h;
    }
    int e = (int)(a >> 23);
    if (e < 102) return sign; // below 2^-25: rounds to zero
    // Subnormal half: value / 2^-24 = mantissa (with its implicit 1) >> (126 - e).
    uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    int shift = 126 - e; // 14..24
    uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) h++;
    return sign | (uint16_t)h;
}

// A growing string for the JSON header.
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = 1;
            return;
        }
        b->s = s, b->cap = cap;
    }
}

// Names and metadata are written as JSON strings; anything needing escapes
// other than the plain printable ASCII of tensor names is refused.
static int json_safe(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\') return 0;
    return 1;
}

static size_t entry_numel(const phrex_safetensors_entry *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

// The dtype entry t is written in when the call asks for `dtype`.
static phrex_dtype entry_dtype(const phrex_safetensors_entry *t, phrex_dtype dtype) {
    return t->i8 ? PHREX_DTYPE_I8 : t->keep_f32 ? PHREX_DTYPE_F32 : dtype;
}

static int build_header(strbuf *b, const phrex_safetensors_entry *tensors, int n, phrex_dtype dtype,
                        const char *const *meta, int n_meta, const char *path) {
    size_t at = 0;
    sb_printf(b, "{");
    if (n_meta > 0) {
        sb_printf(b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (!json_safe(meta[2 * i]) || !json_safe(meta[2 * i + 1]))
                return phrex_fail(PHREX_ERR_INPUT, "%s: metadata %d needs JSON escapes", path, i);
            sb_printf(b, "%s\"%s\":\"%s\"", i ? "," : "", meta[2 * i], meta[2 * i + 1]);
        }
        sb_printf(b, "}");
    }
    for (int i = 0; i < n; i++) {
        const phrex_safetensors_entry *t = &tensors[i];
        if (!json_safe(t->name) || !t->name[0] || t->ndim < 0 || t->ndim > PHREX_SAFETENSORS_MAX_DIMS)
            return phrex_fail(PHREX_ERR_INPUT, "%s: tensor %d has a bad name or rank", path, i);
        phrex_dtype dt = entry_dtype(t, dtype);
        size_t bytes = entry_numel(t) * phrex_dtype_size(dt);
        sb_printf(b, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i || n_meta ? "," : "", t->name,
                  phrex_dtype_name(dt));
        for (int d = 0; d < t->ndim; d++) sb_printf(b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        sb_printf(b, "],\"data_offsets\":[%zu,%zu]}", at, at + bytes);
        at += bytes;
    }
    sb_printf(b, "}");
    // The data section starts 8-byte aligned, as the format's writers pad it.
    while (!b->failed && (b->len % 8) != 0) sb_printf(b, " ");
    return b->failed ? phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory for the header", path) : PHREX_OK;
}

static int write_tensor_data(atomic_file *af, const phrex_safetensors_entry *t, phrex_dtype dtype) {
    size_t n = entry_numel(t);
    dtype = entry_dtype(t, dtype);
    if (dtype == PHREX_DTYPE_I8) return af_write(af, t->i8, n);
    if (dtype == PHREX_DTYPE_F32) return af_write(af, t->data, n * sizeof(float)); // little-endian host
    uint16_t chunk[4096];
    for (size_t i = 0; i < n; i += 4096) {
        size_t k = n - i < 4096 ? n - i : 4096;
        for (size_t j = 0; j < k; j++) chunk[j] = phrex_f32_to_f16(t->data[i + j]);
        int rc = af_write(af, chunk, k * sizeof *chunk);
        if (rc) return rc;
    }
    return PHREX_OK;
}

int phrex_safetensors_write(const char *path, const phrex_safetensors_entry *tensors, int n, phrex_dtype dtype,
                            const char *const *meta, int n_meta) {
    if (dtype != PHREX_DTYPE_F32 && dtype != PHREX_DTYPE_F16)
        return phrex_fail(PHREX_ERR_INPUT, "%s: can write F32 or F16, not %s", path, phrex_dtype_name(dtype));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(tensors[i].name, tensors[j].name) == 0)
                return phrex_fail(PHREX_ERR_INPUT, "%s: tensor name '%s' given twice", path, tensors[i].name);
    strbuf b = {0};
    int rc = build_header(&b, tensors, n, dtype, meta, n_meta, path);
    atomic_file af = {0};
    if (!rc) rc = af_open(&af, path);
    if (!rc) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)b.len >> (8 * i));
        rc = af_write(&af, len8, 8);
        if (!rc) rc = af_write(&af, b.s, b.len);
        for (int i = 0; i < n && !rc; i++) rc = write_tensor_data(&af, &tensors[i], dtype);
        if (rc)
            af_abort(&af);
        else
            rc = af_commit(&af);
    }
    free(b.s);
    return rc;
}

// ============================================================================
// Model directory
// ============================================================================

static int write_config(const char *dir, const phrex_bert_config *c) {
    char path[4096], text[2048];
    snprintf(path, sizeof path, "%s/config.json", dir);
    int n = snprintf(text, sizeof text,
                     "{\n  \"architectures\": [\"BertModel\"],\n  \"model_type\": \"bert\",\n"
                     "  \"hidden_act\": \"gelu\",\n  \"position_embedding_type\": \"absolute\",\n"
                     "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"num_hidden_layers\": %d,\n"
                     "  \"num_attention_heads\": %d,\n  \"intermediate_size\": %d,\n"
                     "  \"max_position_embeddings\": %d,\n  \"type_vocab_size\": %d,\n"
                     "  \"layer_norm_eps\": %.9g,\n  \"pad_token_id\": 0,\n  \"initializer_range\": 0.02,\n"
                     "  \"hidden_dropout_prob\": 0.1,\n  \"attention_probs_dropout_prob\": 0.1\n}\n",
                     c->vocab_size, c->hidden_size, c->num_hidden_layers, c->num_attention_heads,
                     c->intermediate_size, c->max_position_embeddings, c->type_vocab_size, (double)c->layer_norm_eps);
    return write_whole_file(path, text, (size_t)n);
}

// Copies src_dir/name to dst_dir/name when it exists (a missing file is fine).
static int copy_if_present(const char *src_dir, const char *dst_dir, const char *name) {
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/%s", src_dir, name);
    snprintf(dst, sizeof dst, "%s/%s", dst_dir, name);
    FILE *f = fopen(src, "rb");
    if (!f) return errno == ENOENT ? PHREX_OK : phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = PHREX_OK;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *p = realloc(buf, cap);
            if (!p) {
                rc = phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", src);
                break;
            }
            buf = p;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) rc = phrex_fail(PHREX_ERR_IO, "%s: read error", src);
            break;
        }
    }
    fclose(f);
    if (!rc) rc = write_whole_file(dst, buf, len);
    free(buf);
    return rc;
}

int phrex_checkpoint_save_model(const char *dir, phrex_train_bert *m, phrex_dtype dtype, const char *tokenizer_dir) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return phrex_fail(PHREX_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    phrex_train_params p = phrex_train_bert_params(m);
    phrex_safetensors_entry *e = calloc((size_t)p.n_tensors, sizeof *e);
    if (!e) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", dir);
    for (int i = 0; i < p.n_tensors; i++) {
        const phrex_param_tensor *t = &p.tensors[i];
        e[i] = (phrex_safetensors_entry){.name = t->name, .data = p.params + t->offset, .ndim = t->ndim, .shape = {t->shape[0], t->shape[1]}};
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    static const char *const meta[] = {"format", "pt", "writer", "phrex"};
    int rc = phrex_safetensors_write(path, e, p.n_tensors, dtype, meta, 2);
    free(e);
    if (!rc) rc = write_config(dir, phrex_train_bert_config(m));
    static const char *const tok_files[] = {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
                                            "tokenizer.json"};
    for (size_t i = 0; tokenizer_dir && i < sizeof tok_files / sizeof *tok_files && !rc; i++)
        rc = copy_if_present(tokenizer_dir, dir, tok_files[i]);
    return rc ? phrex_fail_context(rc, "saving the model to %s", dir) : PHREX_OK;
}

// ============================================================================
// Training state
// ============================================================================
//
// Layout (little-endian, the host order of x86 and ARM):
//   state_header
//   model_header × n_models
//   per model: params f32[n_params], m f32[n_grads], v f32[n_grads]
//   extra bytes (the caller's: e.g. the phrase loss's pre-batch cache)
//   u64 checksum of every byte before it

#define STATE_MAGIC "PHXTRAIN"
#define STATE_VERSION 2u
#define MAX_MODELS 64

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t n_models;
    uint64_t extra_bytes;
    int64_t step;
    uint64_t rng_state, data_epoch, data_pos, user[4];
} state_header;

typedef struct {
    uint64_t n_params, grad_offset, n_grads;
    uint64_t layout_hash; // names, shapes and trainable flags of the table
    int64_t opt_steps;
} model_header;

// 64-bit FNV-1a over 8-byte words (then the tail bytes): 8x fewer
// dependent multiplies than byte-wise, enough to catch a torn or flipped file.
static uint64_t hash_update(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
#define HASH_SEED 0xcbf29ce484222325ull

static uint64_t layout_hash(const phrex_train_params *p) {
    uint64_t h = HASH_SEED;
    for (int i = 0; i < p->n_tensors; i++) {
        const phrex_param_tensor *t = &p->tensors[i];
        h = hash_update(h, t->name, strlen(t->name));
        h = hash_update(h, t->shape, sizeof t->shape);
        h = hash_update(h, &t->trainable, sizeof t->trainable);
    }
    return h;
}

// Writes p (n bytes) to the file and folds it into the running checksum.
static int write_hashed(atomic_file *af, uint64_t *h, const void *p, size_t n) {
    *h = hash_update(*h, p, n);
    return af_write(af, p, n);
}

static int check_slots(const char *path, const phrex_train_slot *slots, int n) {
    if (n < 1 || n > MAX_MODELS) return phrex_fail(PHREX_ERR_INPUT, "%s: %d models, expected 1..%d", path, n, MAX_MODELS);
    for (int i = 0; i < n; i++) {
        phrex_train_params p = phrex_train_bert_params(slots[i].model);
        if (phrex_adamw_size(slots[i].opt) != p.n_grads)
            return phrex_fail(PHREX_ERR_MISMATCH, "%s: model %d: the optimiser holds %zu moments, the model %zu gradients",
                              path, i, phrex_adamw_size(slots[i].opt), p.n_grads);
    }
    return PHREX_OK;
}

int phrex_checkpoint_save_states(const char *path, const phrex_train_slot *slots, int n,
                                 const phrex_train_progress *progress, const void *extra, size_t extra_bytes) {
    int rc = check_slots(path, slots, n);
    if (rc) return rc;
    state_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, STATE_MAGIC, 8);
    h.version = STATE_VERSION;
    h.n_models = (uint32_t)n;
    h.extra_bytes = extra_bytes;
    h.step = progress->step, h.rng_state = progress->rng_state;
    h.data_epoch = progress->data_epoch, h.data_pos = progress->data_pos;
    memcpy(h.user, progress->user, sizeof h.user);
    atomic_file af;
    if ((rc = af_open(&af, path))) return rc;
    uint64_t sum = HASH_SEED;
    rc = write_hashed(&af, &sum, &h, sizeof h);
    for (int i = 0; i < n && !rc; i++) {
        phrex_train_params p = phrex_train_bert_params(slots[i].model);
        model_header mh = {p.n_params, p.grad_offset, p.n_grads, layout_hash(&p), phrex_adamw_steps(slots[i].opt)};
        rc = write_hashed(&af, &sum, &mh, sizeof mh);
    }
    for (int i = 0; i < n && !rc; i++) {
        phrex_train_params p = phrex_train_bert_params(slots[i].model);
        rc = write_hashed(&af, &sum, p.params, p.n_params * sizeof(float));
        if (!rc) rc = write_hashed(&af, &sum, phrex_adamw_m(slots[i].opt), p.n_grads * sizeof(float));
        if (!rc) rc = write_hashed(&af, &sum, phrex_adamw_v(slots[i].opt), p.n_grads * sizeof(float));
    }
    if (!rc && extra_bytes) rc = write_hashed(&af, &sum, extra, extra_bytes);
    if (!rc) rc = af_write(&af, &sum, sizeof sum);
    if (rc) {
        af_abort(&af);
        return rc;
    }
    return af_commit(&af);
}

// Checks a mapped state file's headers and checksum against the slots, so
// that a bad file is refused before anything is overwritten.
static int check_state(const unsigned char *map, size_t size, const phrex_train_slot *slots, int n,
                       size_t extra_bytes, const char *path) {
    state_header h;
    if (size < sizeof h + 8) return phrex_fail(PHREX_ERR_FORMAT, "%s: too short for a training state", path);
    memcpy(&h, map, sizeof h);
    if (memcmp(h.magic, STATE_MAGIC, 8) != 0)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: not a phrex training state (bad magic)", path);
    if (h.version != STATE_VERSION)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: version %u, expected %u", path, h.version, STATE_VERSION);
    if (h.n_models > MAX_MODELS || size < sizeof h + h.n_models * sizeof(model_header) + 8)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: %u models in %zu bytes (truncated?)", path, h.n_models, size);
    uint64_t expect = sizeof h + h.n_models * sizeof(model_header) + h.extra_bytes + 8;
    for (uint32_t i = 0; i < h.n_models; i++) {
        model_header mh;
        memcpy(&mh, map + sizeof h + i * sizeof mh, sizeof mh);
        if (mh.n_params > ((uint64_t)1 << 40) || mh.n_grads > mh.n_params)
            return phrex_fail(PHREX_ERR_FORMAT, "%s: model %u: implausible sizes", path, i);
        expect += (mh.n_params + 2 * mh.n_grads) * sizeof(float);
    }
    if (h.extra_bytes > size || expect != size)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: %zu bytes, the headers say %llu (truncated?)", path, size,
                          (unsigned long long)expect);
    uint64_t stored;
    memcpy(&stored, map + size - 8, 8);
    if (hash_update(HASH_SEED, map, size - 8) != stored)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: checksum mismatch (corrupt file)", path);
    if ((int)h.n_models != n || h.extra_bytes != extra_bytes)
        return phrex_fail(PHREX_ERR_MISMATCH, "%s: holds %u models and %llu extra bytes, expected %d and %zu", path,
                          h.n_models, (unsigned long long)h.extra_bytes, n, extra_bytes);
    for (int i = 0; i < n; i++) {
        model_header mh;
        memcpy(&mh, map + sizeof h + (size_t)i * sizeof mh, sizeof mh);
        phrex_train_params p = phrex_train_bert_params(slots[i].model);
        if (mh.n_params != p.n_params || mh.grad_offset != p.grad_offset || mh.n_grads != p.n_grads ||
            mh.layout_hash != layout_hash(&p))
            return phrex_fail(PHREX_ERR_MISMATCH,
                              "%s: model %d was saved from another layout (%llu parameters, %llu trainable; this one "
                              "has %zu, %zu)",
                              path, i, (unsigned long long)mh.n_params, (unsigned long long)mh.n_grads, p.n_params,
                              p.n_grads);
    }
    return PHREX_OK;
}

// Copies a verified file into the slots, progress and extra.
static void restore_state(const unsigned char *map, const phrex_train_slot *slots, int n,
                          phrex_train_progress *progress, void *extra, size_t extra_bytes) {
    state_header h;
    memcpy(&h, map, sizeof h);
    const unsigned char *at = map + sizeof h + (size_t)n * sizeof(model_header);
    for (int i = 0; i < n; i++) {
        model_header mh;
        memcpy(&mh, map + sizeof h + (size_t)i * sizeof mh, sizeof mh);
        phrex_train_params p = phrex_train_bert_params(slots[i].model);
        size_t pb = p.n_params * sizeof(float), gb = p.n_grads * sizeof(float);
        memcpy(p.params, at, pb);
        memcpy(phrex_adamw_m(slots[i].opt), at + pb, gb);
        memcpy(phrex_adamw_v(slots[i].opt), at + pb + gb, gb);
        phrex_adamw_set_steps(slots[i].opt, mh.opt_steps);
        at += pb + 2 * gb;
    }
    if (extra_bytes) memcpy(extra, at, extra_bytes);
    progress->step = h.step, progress->rng_state = h.rng_state;
    progress->data_epoch = h.data_epoch, progress->data_pos = h.data_pos;
    memcpy(progress->user, h.user, sizeof h.user);
}

int phrex_checkpoint_load_states(const char *path, const phrex_train_slot *slots, int n,
                                 phrex_train_progress *progress, void *extra, size_t extra_bytes) {
    int rc = check_slots(path, slots, n);
    if (rc) return rc;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < (off_t)(sizeof(state_header) + 8)) {
        close(fd);
        return phrex_fail(PHREX_ERR_FORMAT, "%s: too short for a training state", path);
    }
    size_t size = (size_t)sb.st_size;
    unsigned char *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return phrex_fail(PHREX_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    rc = check_state(map, size, slots, n, extra_bytes, path);
    if (!rc) restore_state(map, slots, n, progress, extra, extra_bytes);
    munmap(map, size);
    return rc;
}

int phrex_checkpoint_save_state(const char *path, phrex_train_bert *m, phrex_adamw *opt,
                                const phrex_train_progress *progress) {
    phrex_train_slot s = {m, opt};
    return phrex_checkpoint_save_states(path, &s, 1, progress, NULL, 0);
}

int phrex_checkpoint_load_state(const char *path, phrex_train_bert *m, phrex_adamw *opt,
                                phrex_train_progress *progress) {
    phrex_train_slot s = {m, opt};
    return phrex_checkpoint_load_states(path, &s, 1, progress, NULL, 0);
}
