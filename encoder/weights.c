#include "weights.h"

#include "common/error.h"
#include "data/buf.h"
#include "encoder/checkpoint.h"
#include "encoder/safetensors.h"
#include "index/hash.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// Seed of the base fingerprint recorded in phrex_delta.json.
#define BASE_HASH_SEED 0x70687278626173ULL // "phrxbas"

struct phrex_weights {
    phrex_safetensors main; // model.safetensors, or the base's for a delta
    phrex_safetensors delta;
    int is_delta;
};

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int join(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return phrex_fail(PHREX_ERR_INPUT, "path too long: %s/%s", dir, name);
    return PHREX_OK;
}

// Size and XXH64 of a file: the identity of a base model.safetensors.
static int fingerprint(const char *path, uint64_t *bytes, uint64_t *hash) {
    phrex_hash64_state h;
    phrex_hash64_init(&h, BASE_HASH_SEED);
    int rc = phrex_hash64_update_file(&h, path, bytes);
    if (!rc) *hash = phrex_hash64_final(&h);
    return rc;
}

// --- reading ---------------------------------------------------------------------------

typedef struct {
    char base[PATH_MAX];
    uint64_t base_bytes, base_hash;
} delta_info;

// Parses dir/phrex_delta.json; the base path is resolved against dir.
static int read_delta_info(const char *dir, delta_info *di) {
    char path[PATH_MAX], *text = NULL;
    int rc = join(path, sizeof path, dir, PHREX_DELTA_JSON);
    size_t len;
    if (!rc) rc = phrex_data_read_file(path, &text, &len);
    if (rc) return rc;
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) return phrex_fail(PHREX_ERR_FORMAT, "%s: not valid JSON", path);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format"), *ver = cJSON_GetObjectItemCaseSensitive(j, "version"),
                *base = cJSON_GetObjectItemCaseSensitive(j, "base"),
                *bytes = cJSON_GetObjectItemCaseSensitive(j, "base_bytes"),
                *hash = cJSON_GetObjectItemCaseSensitive(j, "base_hash");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, PHREX_DELTA_FORMAT))
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field \"format\" must be \"%s\"", path, PHREX_DELTA_FORMAT);
    else if (!cJSON_IsNumber(ver) || ver->valueint < 1 || ver->valueint > PHREX_DELTA_VERSION)
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field \"version\": this build reads version %d", path,
                        PHREX_DELTA_VERSION);
    else if (!cJSON_IsString(base) || !base->valuestring[0])
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field \"base\" must name the base folder", path);
    else if (!cJSON_IsNumber(bytes) || bytes->valuedouble < 0)
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field \"base_bytes\" must be a byte count", path);
    else if (!cJSON_IsString(hash) || strlen(hash->valuestring) != 16 ||
             sscanf(hash->valuestring, "%16" SCNx64, &di->base_hash) != 1)
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field \"base_hash\" must be 16 hex digits", path);
    if (!rc) {
        di->base_bytes = (uint64_t)bytes->valuedouble;
        const char *b = base->valuestring;
        int n = b[0] == '/' ? snprintf(di->base, sizeof di->base, "%s", b)
                            : snprintf(di->base, sizeof di->base, "%s/%s", dir, b);
        if (n < 0 || (size_t)n >= sizeof di->base) rc = phrex_fail(PHREX_ERR_INPUT, "%s: base path too long", path);
    }
    cJSON_Delete(j);
    return rc;
}

static int open_delta(phrex_weights *w, const char *dir) {
    delta_info di;
    char path[PATH_MAX];
    int rc = read_delta_info(dir, &di);
    if (!rc) rc = join(path, sizeof path, di.base, "model.safetensors");
    if (rc) return rc;
    uint64_t bytes, hash;
    if ((rc = fingerprint(path, &bytes, &hash)))
        return phrex_fail_context(rc, "%s/%s names base %s", dir, PHREX_DELTA_JSON, di.base);
    if (bytes != di.base_bytes || hash != di.base_hash)
        return phrex_fail(PHREX_ERR_MISMATCH,
                          "%s is a delta over a base of %" PRIu64 " bytes, hash %016" PRIx64 ", but %s has %" PRIu64
                          " bytes, hash %016" PRIx64 ": another base model; fetch the right one (scripts/setup)",
                          dir, di.base_bytes, di.base_hash, path, bytes, hash);
    if ((rc = phrex_safetensors_init(&w->main, path))) return rc;
    if ((rc = join(path, sizeof path, dir, PHREX_DELTA_FILE))) return rc;
    return phrex_safetensors_init(&w->delta, path);
}

int phrex_weights_open(phrex_weights **out, const char *model_dir) {
    *out = NULL;
    phrex_weights *w = calloc(1, sizeof *w);
    if (!w) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", model_dir);
    char path[PATH_MAX];
    int rc = join(path, sizeof path, model_dir, PHREX_DELTA_JSON);
    if (!rc && file_exists(path)) {
        w->is_delta = 1;
        rc = open_delta(w, model_dir);
    } else if (!rc) {
        rc = join(path, sizeof path, model_dir, "model.safetensors");
        if (!rc) rc = phrex_safetensors_init(&w->main, path);
    }
    if (rc) {
        phrex_weights_close(w);
        return rc;
    }
    *out = w;
    return PHREX_OK;
}

void phrex_weights_close(phrex_weights *w) {
    if (!w) return;
    phrex_safetensors_free(&w->main);
    phrex_safetensors_free(&w->delta);
    free(w);
}

int phrex_weights_is_delta(const phrex_weights *w) { return w->is_delta; }

const char *phrex_weights_path(const phrex_weights *w) { return w->is_delta ? w->delta.path : w->main.path; }

int phrex_weights_has(const phrex_weights *w, const char *name) {
    return phrex_safetensors_find(&w->main, name) || (w->is_delta && phrex_safetensors_find(&w->delta, name));
}

static size_t shape_numel(int ndim, const int64_t *shape) {
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    return n;
}

// dst += q * scale[row]: the int8 difference of a 2-D tensor.
static int add_int8_delta(const phrex_weights *w, const phrex_safetensors_tensor *t, const char *name, int ndim,
                          const int64_t *shape, float *dst) {
    if (ndim != 2 || t->ndim != 2 || t->shape[0] != shape[0] || t->shape[1] != shape[1])
        return phrex_fail(PHREX_ERR_MISMATCH, "%s: int8 delta '%s' has the wrong shape", w->delta.path, name);
    char sname[512];
    snprintf(sname, sizeof sname, "%s%s", name, PHREX_DELTA_SCALE_SUFFIX);
    int64_t rows = shape[0], cols = shape[1];
    float *scale = malloc((size_t)rows * sizeof *scale);
    if (!scale) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", w->delta.path);
    int rc = phrex_safetensors_read_f32(&w->delta, sname, 1, &rows, scale);
    const int8_t *q = (const int8_t *)(w->delta.data + t->begin);
    for (int64_t r = 0; r < rows && !rc; r++)
        for (int64_t c = 0; c < cols; c++) dst[r * cols + c] += (float)q[r * cols + c] * scale[r];
    free(scale);
    return rc;
}

static int read_delta_tensor(const phrex_weights *w, const char *name, int ndim, const int64_t *shape, float *dst) {
    const phrex_safetensors_tensor *d = phrex_safetensors_find(&w->delta, name);
    int in_base = phrex_safetensors_find(&w->main, name) != NULL;
    if (!in_base) // a new tensor, stored whole (or missing: the reader names it)
        return phrex_safetensors_read_f32(d ? &w->delta : &w->main, name, ndim, shape, dst);
    int rc = phrex_safetensors_read_f32(&w->main, name, ndim, shape, dst);
    if (rc || !d) return rc;
    if (d->dtype == PHREX_DTYPE_I8) return add_int8_delta(w, d, name, ndim, shape, dst);
    size_t n = shape_numel(ndim, shape);
    float *tmp = malloc(n * sizeof *tmp);
    if (!tmp) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", w->delta.path);
    rc = phrex_safetensors_read_f32(&w->delta, name, ndim, shape, tmp);
    for (size_t i = 0; i < n && !rc; i++) dst[i] += tmp[i];
    free(tmp);
    return rc;
}

int phrex_weights_read_f32(const phrex_weights *w, const char *name, int ndim, const int64_t *shape, float *dst) {
    if (!w->is_delta) return phrex_safetensors_read_f32(&w->main, name, ndim, shape, dst);
    return read_delta_tensor(w, name, ndim, shape, dst);
}

int phrex_weights_list_files(const char *model_dir, phrex_weights_files *out) {
    char path[PATH_MAX];
    int rc = join(path, sizeof path, model_dir, PHREX_DELTA_JSON);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    if (file_exists(path)) {
        out->files[0] = PHREX_DELTA_JSON; // names the base's size and hash
        out->files[1] = PHREX_DELTA_FILE;
    } else {
        out->files[0] = "model.safetensors";
    }
    return PHREX_OK;
}

// --- writing ---------------------------------------------------------------------------

// Tensors of one delta file, grouped by dtype so every F32 and F16 tensor
// starts aligned to its element size (F32 first, F16, then I8).
typedef struct {
    phrex_safetensors_entry *e;
    int n, cap;
    void **owned; // buffers to free
    int n_owned;
} entry_list;

// Makes room for one more entry and two more owned buffers.
static int list_reserve(entry_list *l) {
    if (l->n < l->cap) return PHREX_OK;
    int cap = l->cap ? 2 * l->cap : 64;
    phrex_safetensors_entry *p = realloc(l->e, (size_t)cap * sizeof *p);
    if (p) l->e = p;
    void **o = realloc(l->owned, (size_t)cap * 2 * sizeof *o);
    if (o) l->owned = o;
    if (!p || !o) return phrex_fail(PHREX_ERR_MEMORY, "out of memory for the delta's tensor list");
    l->cap = cap;
    return PHREX_OK;
}

// Adds e; the list frees `owned` and `owned2` (either may be NULL), also on failure.
static int list_add(entry_list *l, phrex_safetensors_entry e, void *owned, void *owned2) {
    int rc = list_reserve(l);
    if (rc) return free(owned), free(owned2), rc;
    l->e[l->n++] = e;
    if (owned) l->owned[l->n_owned++] = owned;
    if (owned2) l->owned[l->n_owned++] = owned2;
    return PHREX_OK;
}

static void list_free(entry_list *l) {
    for (int i = 0; i < l->n_owned; i++) free(l->owned[i]);
    free(l->owned);
    free(l->e);
}

static phrex_dtype written_dtype(const phrex_safetensors_entry *e) {
    return e->i8 ? PHREX_DTYPE_I8 : e->keep_f32 ? PHREX_DTYPE_F32 : PHREX_DTYPE_F16;
}

static int dtype_rank(phrex_dtype d) { return d == PHREX_DTYPE_F32 ? 0 : d == PHREX_DTYPE_F16 ? 1 : 2; }

static int cmp_entries(const void *a, const void *b) {
    const phrex_safetensors_entry *x = a, *y = b;
    int rx = dtype_rank(written_dtype(x)), ry = dtype_rank(written_dtype(y));
    return rx != ry ? rx - ry : strcmp(x->name, y->name);
}

static float f16_round(float v) {
    // the value an f16 store reads back as (round to nearest even)
    uint16_t h = phrex_f32_to_f16(v);
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0) {
        float f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    bits = exp == 31 ? sign | 0x7f800000u | (man << 13) : sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// Per-row symmetric int8 of d (rows, cols): q and scale; returns the largest
// reconstruction error.
static double quantize_rows(const float *d, int64_t rows, int64_t cols, int8_t *q, float *scale) {
    double err = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *row = d + r * cols;
        float amax = 0;
        for (int64_t c = 0; c < cols; c++) amax = fmaxf(amax, fabsf(row[c]));
        scale[r] = amax / 127.0f;
        float inv = amax > 0 ? 127.0f / amax : 0;
        for (int64_t c = 0; c < cols; c++) {
            long v = lrintf(row[c] * inv);
            q[r * cols + c] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
            err = fmax(err, fabs((double)row[c] - (double)q[r * cols + c] * scale[r]));
        }
    }
    return err;
}

// Adds the delta of tensor t (model value m, base value b or NULL) to l.
static int add_tensor_delta(entry_list *l, const phrex_safetensors_tensor *t, float *m, const float *b, int int8,
                            double *max_err) {
    size_t n = t->numel;
    phrex_safetensors_entry e = {.name = t->name, .ndim = t->ndim};
    memcpy(e.shape, t->shape, sizeof e.shape);
    if (!b) { // new tensor: whole, f16
        double err = 0;
        for (size_t i = 0; i < n; i++) err = fmax(err, fabs((double)m[i] - f16_round(m[i])));
        *max_err = fmax(*max_err, err);
        e.data = m;
        return list_add(l, e, m, NULL);
    }
    int same = 1;
    for (size_t i = 0; i < n; i++) {
        m[i] -= b[i]; // m now holds the difference
        same &= m[i] == 0.0f;
    }
    if (same) return free(m), PHREX_OK;
    if (t->ndim != 2) { // biases, LayerNorm: small, kept exact
        e.data = m, e.keep_f32 = 1;
        return list_add(l, e, m, NULL);
    }
    if (!int8) {
        double err = 0;
        for (size_t i = 0; i < n; i++) err = fmax(err, fabs((double)m[i] - f16_round(m[i])));
        *max_err = fmax(*max_err, err);
        e.data = m;
        return list_add(l, e, m, NULL);
    }
    int8_t *q = malloc(n);
    float *scale = malloc((size_t)t->shape[0] * sizeof *scale);
    char *sname = malloc(strlen(t->name) + sizeof PHREX_DELTA_SCALE_SUFFIX);
    if (!q || !scale || !sname) {
        free(q), free(scale), free(sname), free(m);
        return phrex_fail(PHREX_ERR_MEMORY, "out of memory quantising %s", t->name);
    }
    *max_err = fmax(*max_err, quantize_rows(m, t->shape[0], t->shape[1], q, scale));
    free(m);
    sprintf(sname, "%s%s", t->name, PHREX_DELTA_SCALE_SUFFIX);
    e.i8 = q;
    int rc = list_add(l, e, q, NULL);
    phrex_safetensors_entry s = {.name = sname, .data = scale, .ndim = 1, .shape = {t->shape[0]}, .keep_f32 = 1};
    if (rc) return free(scale), free(sname), rc;
    return list_add(l, s, scale, sname);
}

static int collect_deltas(entry_list *l, const phrex_safetensors *model, const phrex_safetensors *base, int int8,
                          double *max_err) {
    for (int i = 0; i < model->n_tensors; i++) {
        const phrex_safetensors_tensor *t = &model->tensors[i];
        if (t->dtype != PHREX_DTYPE_F32 && t->dtype != PHREX_DTYPE_F16 && t->dtype != PHREX_DTYPE_BF16) continue;
        float *m = malloc(t->numel * sizeof *m), *b = NULL;
        if (!m) return phrex_fail(PHREX_ERR_MEMORY, "out of memory reading %s", t->name);
        int rc = phrex_safetensors_read_f32(model, t->name, t->ndim, t->shape, m);
        const phrex_safetensors_tensor *bt = phrex_safetensors_find(base, t->name);
        if (!rc && bt) {
            if (bt->ndim != t->ndim || memcmp(bt->shape, t->shape, (size_t)t->ndim * sizeof *t->shape))
                rc = phrex_fail(PHREX_ERR_MISMATCH, "%s: tensor %s has another shape in the base %s", model->path,
                                t->name, base->path);
            else if (!(b = malloc(t->numel * sizeof *b)))
                rc = phrex_fail(PHREX_ERR_MEMORY, "out of memory reading %s", t->name);
            else
                rc = phrex_safetensors_read_f32(base, t->name, t->ndim, t->shape, b);
        }
        if (!rc) rc = add_tensor_delta(l, t, m, b, int8, max_err);
        else free(m);
        free(b);
        if (rc) return rc;
    }
    return PHREX_OK;
}

// Copies every small regular file of src (but the weights) into dst.
static int copy_side_files(const char *src, const char *dst) {
    DIR *d = opendir(src);
    if (!d) return phrex_fail(PHREX_ERR_IO, "%s: cannot list: %s", src, strerror(errno));
    int rc = PHREX_OK;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        const char *n = de->d_name;
        if (n[0] == '.' || !strcmp(n, "model.safetensors") || !strcmp(n, PHREX_DELTA_JSON) ||
            !strcmp(n, PHREX_DELTA_FILE))
            continue;
        char from[PATH_MAX], to[PATH_MAX], *text = NULL;
        struct stat st;
        if ((rc = join(from, sizeof from, src, n)) || (rc = join(to, sizeof to, dst, n))) break;
        if (stat(from, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (st.st_size > (1 << 20)) { // a weights file we cannot delta: refuse rather than bloat
            rc = phrex_fail(PHREX_ERR_INPUT, "%s: %lld bytes; only model.safetensors is stored as a delta", from,
                            (long long)st.st_size);
            break;
        }
        size_t len;
        if ((rc = phrex_data_read_file(from, &text, &len))) break;
        FILE *f = fopen(to, "wb");
        if (!f || fwrite(text, 1, len, f) != len)
            rc = phrex_fail(PHREX_ERR_IO, "%s: cannot write: %s", to, strerror(errno));
        if (f && fclose(f) && !rc) rc = phrex_fail(PHREX_ERR_IO, "%s: write failed", to);
        free(text);
    }
    closedir(d);
    return rc;
}

// The base path as the delta folder should record it: relative to out_dir
// when both are relative paths (so a committed model folder travels with
// the repository), else absolute.
static int base_reference(const char *base_dir, const char *out_dir, char *ref, size_t cap) {
    char base_abs[PATH_MAX], out_abs[PATH_MAX];
    if (!realpath(base_dir, base_abs)) return phrex_fail(PHREX_ERR_IO, "%s: %s", base_dir, strerror(errno));
    if (!realpath(out_dir, out_abs)) return phrex_fail(PHREX_ERR_IO, "%s: %s", out_dir, strerror(errno));
    // common prefix by whole components, then one "../" per remaining out component
    size_t i = 0, last = 0;
    while (base_abs[i] && base_abs[i] == out_abs[i]) {
        if (base_abs[i] == '/') last = i;
        i++;
    }
    if ((!base_abs[i] || base_abs[i] == '/') && (!out_abs[i] || out_abs[i] == '/')) last = i;
    size_t len = 0;
    for (const char *p = out_abs + last; *p; p++)
        if (*p == '/' && len + 3 < cap) memcpy(ref + len, "../", 3), len += 3;
    const char *rest = base_abs + last + (base_abs[last] == '/');
    int n = snprintf(ref + len, cap - len, "%s", rest);
    if (n < 0 || (size_t)n >= cap - len) return phrex_fail(PHREX_ERR_INPUT, "%s: path too long", base_dir);
    if (len + (size_t)n == 0) snprintf(ref, cap, ".");
    return PHREX_OK;
}

static int write_delta_json(const char *base_dir, const char *out_dir) {
    char path[PATH_MAX], ref[PATH_MAX], base_file[PATH_MAX];
    uint64_t bytes, hash;
    int rc = join(base_file, sizeof base_file, base_dir, "model.safetensors");
    if (!rc) rc = fingerprint(base_file, &bytes, &hash);
    if (!rc) rc = base_reference(base_dir, out_dir, ref, sizeof ref);
    if (!rc) rc = join(path, sizeof path, out_dir, PHREX_DELTA_JSON);
    if (rc) return rc;
    cJSON *j = cJSON_CreateObject();
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, hash);
    cJSON_AddStringToObject(j, "format", PHREX_DELTA_FORMAT);
    cJSON_AddNumberToObject(j, "version", PHREX_DELTA_VERSION);
    cJSON_AddStringToObject(j, "base", ref);
    cJSON_AddNumberToObject(j, "base_bytes", (double)bytes);
    cJSON_AddStringToObject(j, "base_hash", hex);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    FILE *f = text ? fopen(path, "w") : NULL;
    if (!f || fprintf(f, "%s\n", text) < 0) rc = phrex_fail(PHREX_ERR_IO, "%s: cannot write", path);
    if (f && fclose(f) && !rc) rc = phrex_fail(PHREX_ERR_IO, "%s: write failed", path);
    free(text);
    return rc;
}

int phrex_weights_write_delta(const char *model_dir, const char *base_dir, const char *out_dir, int int8,
                              double *max_err) {
    double err = 0;
    char path[PATH_MAX];
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
        return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", out_dir, strerror(errno));
    phrex_safetensors model = {0}, base = {0};
    entry_list l = {0};
    int rc = join(path, sizeof path, model_dir, "model.safetensors");
    if (!rc) rc = phrex_safetensors_init(&model, path);
    if (!rc) rc = join(path, sizeof path, base_dir, "model.safetensors");
    if (!rc) rc = phrex_safetensors_init(&base, path);
    if (!rc) rc = collect_deltas(&l, &model, &base, int8, &err);
    if (!rc) {
        qsort(l.e, (size_t)l.n, sizeof *l.e, cmp_entries);
        static const char *const meta[] = {"format", "phrex-delta", "writer", "phrex"};
        rc = join(path, sizeof path, out_dir, PHREX_DELTA_FILE);
        if (!rc) rc = phrex_safetensors_write(path, l.e, l.n, PHREX_DTYPE_F16, meta, 2);
    }
    if (!rc) rc = copy_side_files(model_dir, out_dir);
    if (!rc) rc = write_delta_json(base_dir, out_dir);
    list_free(&l);
    phrex_safetensors_free(&model);
    phrex_safetensors_free(&base);
    if (!rc && max_err) *max_err = err;
    return rc;
}
