#include "safetensors.h"

#include "common/error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// The reference implementation refuses headers over 100 MB; so do we, which
// also keeps a corrupt length from making us copy gigabytes.
#define HEADER_MAX ((uint64_t)100 * 1000 * 1000)
// Integers above 2^53 do not survive cJSON's doubles.
#define JSON_INT_MAX 9007199254740992.0

static const struct {
    const char *name;
    size_t size;
} dtype_info[PHREX_DTYPE_COUNT] = {
    [PHREX_DTYPE_F32] = {"F32", 4},       [PHREX_DTYPE_F16] = {"F16", 2},
    [PHREX_DTYPE_BF16] = {"BF16", 2},     [PHREX_DTYPE_F64] = {"F64", 8},
    [PHREX_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [PHREX_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
    [PHREX_DTYPE_I64] = {"I64", 8},       [PHREX_DTYPE_I32] = {"I32", 4},
    [PHREX_DTYPE_I16] = {"I16", 2},       [PHREX_DTYPE_I8] = {"I8", 1},
    [PHREX_DTYPE_U64] = {"U64", 8},       [PHREX_DTYPE_U32] = {"U32", 4},
    [PHREX_DTYPE_U16] = {"U16", 2},       [PHREX_DTYPE_U8] = {"U8", 1},
    [PHREX_DTYPE_BOOL] = {"BOOL", 1},
};

const char *phrex_dtype_name(phrex_dtype dtype) {
    return (unsigned)dtype < PHREX_DTYPE_COUNT ? dtype_info[dtype].name : "?";
}

size_t phrex_dtype_size(phrex_dtype dtype) {
    return (unsigned)dtype < PHREX_DTYPE_COUNT ? dtype_info[dtype].size : 0;
}

static int dtype_parse(const char *s, phrex_dtype *out) {
    for (int i = 0; i < PHREX_DTYPE_COUNT; i++)
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (phrex_dtype)i;
            return 1;
        }
    return 0;
}

// "[3,4]" into buf, for messages.
static const char *shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

// --- element conversion ------------------------------------------------------

float phrex_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0x1f) { // inf or NaN: keep the payload
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) { // normal: rebias 15 -> 127
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else { // subnormal mant * 2^-24: shift the leading one up to bit 10
        uint32_t shift = 0;
        while (!(mant & 0x400u)) mant <<= 1, shift++;
        bits = sign | ((113 - shift) << 23) | ((mant & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float phrex_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16; // bf16 is the top half of an f32
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

// --- header parsing ----------------------------------------------------------

// A JSON number that is an exact non-negative integer below 2^53.
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    // !(d >= 0) also rejects NaN; the range check keeps the cast defined.
    if (!(d >= 0) || d > JSON_INT_MAX || (double)(uint64_t)d != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int parse_shape(const phrex_safetensors *st, const char *name, const cJSON *shape,
                       phrex_safetensors_tensor *t) {
    if (!cJSON_IsArray(shape))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: tensor '%s': \"shape\" is missing or not an array", st->path, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > PHREX_SAFETENSORS_MAX_DIMS)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: tensor '%s' has %d dimensions, at most %d are supported", st->path,
                          name, ndim, PHREX_SAFETENSORS_MAX_DIMS);
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return phrex_fail(PHREX_ERR_FORMAT, "%s: tensor '%s': shape dimension %d is not a non-negative integer",
                              st->path, name, i);
        if (__builtin_mul_overflow(numel, v, &numel) || numel > SIZE_MAX)
            return phrex_fail(PHREX_ERR_FORMAT, "%s: tensor '%s': shape overflows the address space", st->path, name);
        t->shape[i] = (int64_t)v;
    }
    t->ndim = ndim;
    t->numel = (size_t)numel;
    return PHREX_OK;
}

static int parse_offsets(const phrex_safetensors *st, const char *name, const cJSON *offsets,
                         phrex_safetensors_tensor *t) {
    uint64_t begin, end;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 || !json_uint(offsets->child, &begin) ||
        !json_uint(offsets->child->next, &end))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be two non-negative integers",
                          st->path, name);
    if (begin > end)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: tensor '%s' has data_offsets [%llu, %llu]: begin after end", st->path,
                          name, (unsigned long long)begin, (unsigned long long)end);
    if (end > st->data_size)
        return phrex_fail(PHREX_ERR_FORMAT,
                          "%s: tensor '%s' has data_offsets [%llu, %llu] past the end of the data (%zu bytes)",
                          st->path, name, (unsigned long long)begin, (unsigned long long)end, st->data_size);
    t->begin = (size_t)begin;
    t->end = (size_t)end;
    // numel * size cannot overflow here: numel fits size_t and the product
    // is compared in 128 bits.
    unsigned __int128 need = (unsigned __int128)t->numel * phrex_dtype_size(t->dtype);
    if (need != (unsigned __int128)(end - begin)) {
        char s[160];
        return phrex_fail(PHREX_ERR_FORMAT, "%s: tensor '%s': shape %s of %s needs %llu bytes, data_offsets hold %llu",
                          st->path, name, shape_str(s, sizeof s, t->ndim, t->shape), phrex_dtype_name(t->dtype),
                          (unsigned long long)need, (unsigned long long)(end - begin));
    }
    return PHREX_OK;
}

static int parse_entry(const phrex_safetensors *st, const cJSON *entry, phrex_safetensors_tensor *t) {
    const char *name = entry->string;
    if (!cJSON_IsObject(entry))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", st->path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!cJSON_IsString(dtype))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is missing or not a string", st->path, name);
    if (!dtype_parse(dtype->valuestring, &t->dtype))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: tensor '%s' has unknown dtype \"%s\"", st->path, name,
                          dtype->valuestring);
    int rc = parse_shape(st, name, cJSON_GetObjectItemCaseSensitive(entry, "shape"), t);
    if (rc) return rc;
    return parse_offsets(st, name, cJSON_GetObjectItemCaseSensitive(entry, "data_offsets"), t);
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const phrex_safetensors_tensor *)a)->name, ((const phrex_safetensors_tensor *)b)->name);
}

static int by_begin(const void *a, const void *b) {
    const phrex_safetensors_tensor *x = *(const phrex_safetensors_tensor *const *)a;
    const phrex_safetensors_tensor *y = *(const phrex_safetensors_tensor *const *)b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

// Two tensors sharing bytes means a corrupt (or hostile) header. Empty
// tensors own no bytes and may sit anywhere.
static int check_overlaps(const phrex_safetensors *st) {
    const phrex_safetensors_tensor **order = malloc((size_t)st->n_tensors * sizeof *order + 1);
    if (!order) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory checking offsets", st->path);
    int n = 0;
    for (int i = 0; i < st->n_tensors; i++)
        if (st->tensors[i].end > st->tensors[i].begin) order[n++] = &st->tensors[i];
    qsort(order, (size_t)n, sizeof *order, by_begin);
    int rc = PHREX_OK;
    for (int i = 1; i < n && !rc; i++)
        if (order[i]->begin < order[i - 1]->end)
            rc = phrex_fail(PHREX_ERR_FORMAT, "%s: tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap", st->path,
                            order[i - 1]->name, order[i - 1]->begin, order[i - 1]->end, order[i]->name,
                            order[i]->begin, order[i]->end);
    free(order);
    return rc;
}

// Copies names into one block and fills st->tensors from the header object.
static int parse_tensors(phrex_safetensors *st, const cJSON *root) {
    size_t n = 0, name_bytes = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        n++;
        name_bytes += strlen(e->string) + 1;
    }
    if (n > INT32_MAX) return phrex_fail(PHREX_ERR_FORMAT, "%s: too many tensors (%zu)", st->path, n);
    st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
    st->names = malloc(name_bytes + 1);
    if (!st->tensors || !st->names) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory reading header", st->path);
    char *p = st->names;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e))
                return phrex_fail(PHREX_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", st->path);
            continue;
        }
        phrex_safetensors_tensor *t = &st->tensors[st->n_tensors];
        size_t len = strlen(e->string) + 1;
        t->name = memcpy(p, e->string, len);
        p += len;
        int rc = parse_entry(st, e, t);
        if (rc) return rc;
        st->n_tensors++;
    }
    qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, by_name);
    for (int i = 1; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, st->tensors[i - 1].name) == 0)
            return phrex_fail(PHREX_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", st->path,
                              st->tensors[i].name);
    return check_overlaps(st);
}

static int parse_header(phrex_safetensors *st) {
    if (st->file_size < 8)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: truncated: %zu bytes, shorter than the 8-byte header length",
                          st->path, st->file_size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | st->map[i]; // little-endian on any host
    if (n > st->file_size - 8)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: truncated: header says %llu bytes, file has %zu after the length",
                          st->path, (unsigned long long)n, st->file_size - 8);
    if (n > HEADER_MAX)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: header of %llu bytes is over the 100 MB limit", st->path,
                          (unsigned long long)n);
    st->data = st->map + 8 + n;
    st->data_size = st->file_size - 8 - (size_t)n;
    // cJSON wants a terminated string; the mapping has none after the header.
    char *text = malloc((size_t)n + 1);
    if (!text) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory reading a %llu-byte header", st->path,
                                 (unsigned long long)n);
    memcpy(text, st->map + 8, (size_t)n);
    text[n] = '\0';
    const char *stop = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &stop, 0);
    int rc;
    if (!root)
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: header is not valid JSON (error near byte %td of %llu)", st->path,
                        stop ? stop - text : (ptrdiff_t)0, (unsigned long long)n);
    else if (!cJSON_IsObject(root))
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: header is not a JSON object", st->path);
    else
        rc = parse_tensors(st, root);
    cJSON_Delete(root);
    free(text);
    return rc;
}

// --- open / close ------------------------------------------------------------

static int map_file(phrex_safetensors *st) {
    int fd = open(st->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", st->path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return phrex_fail(PHREX_ERR_IO, "%s: not a regular file", st->path);
    }
    st->file_size = (size_t)sb.st_size;
    if (st->file_size > 0) { // mmap rejects length 0; parse_header reports it
        void *p = mmap(NULL, st->file_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return phrex_fail(PHREX_ERR_IO, "%s: cannot mmap %zu bytes: %s", st->path, st->file_size, strerror(e));
        }
        st->map = p;
    }
    close(fd); // the mapping outlives the descriptor
    return PHREX_OK;
}

int phrex_safetensors_init(phrex_safetensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    st->path = strdup(path);
    if (!st->path) return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    int rc = map_file(st);
    if (!rc) rc = parse_header(st);
    if (rc) phrex_safetensors_free(st);
    return rc;
}

void phrex_safetensors_free(phrex_safetensors *st) {
    if (st->map) munmap(st->map, st->file_size);
    free(st->tensors);
    free(st->names);
    free(st->path);
    memset(st, 0, sizeof *st);
}

// --- lookup and conversion ---------------------------------------------------

const phrex_safetensors_tensor *phrex_safetensors_find(const phrex_safetensors *st, const char *name) {
    phrex_safetensors_tensor key = {.name = name};
    if (st->n_tensors == 0) return NULL;
    return bsearch(&key, st->tensors, (size_t)st->n_tensors, sizeof key, by_name);
}

int phrex_safetensors_get(const phrex_safetensors *st, const char *name, int ndim, const int64_t *shape,
                          const phrex_safetensors_tensor **out) {
    const phrex_safetensors_tensor *t = phrex_safetensors_find(st, name);
    if (!t) return phrex_fail(PHREX_ERR_FORMAT, "%s: tensor '%s' is missing", st->path, name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char have[160], want[160];
        return phrex_fail(PHREX_ERR_MISMATCH, "%s: tensor '%s' has shape %s, expected %s", st->path, name,
                          shape_str(have, sizeof have, t->ndim, t->shape), shape_str(want, sizeof want, ndim, shape));
    }
    *out = t;
    return PHREX_OK;
}

int phrex_safetensors_read_f32(const phrex_safetensors *st, const char *name, int ndim, const int64_t *shape,
                               float *dst) {
    const phrex_safetensors_tensor *t;
    int rc = phrex_safetensors_get(st, name, ndim, shape, &t);
    if (rc) return rc;
    // The data section has no alignment guarantee (the header length is
    // arbitrary), so elements are read with memcpy, never through a cast.
    const unsigned char *src = st->data + t->begin;
    switch (t->dtype) {
    case PHREX_DTYPE_F32:
        memcpy(dst, src, t->numel * sizeof(float));
        return PHREX_OK;
    case PHREX_DTYPE_F16:
    case PHREX_DTYPE_BF16:
        for (size_t i = 0; i < t->numel; i++) {
            uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)); // little-endian
            dst[i] = t->dtype == PHREX_DTYPE_F16 ? phrex_f16_to_f32(h) : phrex_bf16_to_f32(h);
        }
        return PHREX_OK;
    default:
        return phrex_fail(PHREX_ERR_MISMATCH, "%s: tensor '%s' has dtype %s, expected F32, F16 or BF16", st->path,
                          name, phrex_dtype_name(t->dtype));
    }
}
