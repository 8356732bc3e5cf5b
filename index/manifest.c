#include "manifest.h"

#include "common/error.h"
#include "common/json_write.h"
#include "index/dump_format.h"
#include "index/hash.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MANIFEST_MAX_BYTES (1 << 20)
#define CHECKSUM_FIELD "\"checksum\": \""
#define CHECKSUM_TAIL "\"\n}\n"

static void write_str(FILE *f, const char *s) { phrex_json_write_string(f, s, strlen(s)); }

static void write_hex(FILE *f, uint64_t h) {
    char hex[17];
    phrex_hash64_hex(h, hex);
    fprintf(f, "\"%s\"", hex);
}

static void write_body(FILE *f, const phrex_manifest *m, const char *const *corpus, int n_corpus) {
    fprintf(f, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n", PHREX_DUMP_FORMAT_NAME, PHREX_DUMP_FORMAT_VERSION);
    fputs("  \"model\": {\"hash\": ", f);
    write_hex(f, m->model_hash);
    fputs(", \"dir\": ", f);
    write_str(f, m->model_dir);
    fprintf(f, ", \"hidden_size\": %d, \"vocab_size\": %d},\n", m->hidden_size, m->vocab_size);
    fprintf(f, "  \"windows\": {\"max_seq_len\": %d, \"doc_stride\": %d},\n", m->max_seq_len, m->doc_stride);
    fputs("  \"filter\": ", f);
    write_str(f, m->filter);
    fputs(",\n  \"index\": {\"file\": \"" PHREX_DUMP_INDEX "\", \"factory\": ", f);
    write_str(f, m->factory);
    fputs(", \"metric\": ", f);
    write_str(f, m->metric);
    fprintf(f, ", \"bytes\": %llu, \"hash\": ", (unsigned long long)m->index_bytes);
    write_hex(f, m->index_hash);
    fprintf(f, ", \"ntotal\": %lld, \"trained_on\": %lld},\n", (long long)m->ntotal, (long long)m->trained_on);
    fputs("  \"lmdb\": {\"file\": \"" PHREX_DUMP_LMDB "\", \"hash\": ", f);
    write_hex(f, m->lmdb_hash);
    fprintf(f, ", \"entries\": %llu},\n", (unsigned long long)m->lmdb_entries);
    fprintf(f, "  \"counts\": {\"passages\": %lld, \"tokens\": %lld, \"kept\": %lld, \"empty\": %lld, \"windows\": %lld},\n",
            (long long)m->passages, (long long)m->tokens, (long long)m->kept, (long long)m->empty,
            (long long)m->windows);
    fputs("  \"corpus\": [", f);
    for (int i = 0; i < n_corpus; i++) {
        if (i) fputs(", ", f);
        write_str(f, corpus[i]);
    }
    fputs("],\n  " CHECKSUM_FIELD "0000000000000000" CHECKSUM_TAIL, f);
}

// The checksum digits of a manifest text, or NULL when the text does not end
// with the checksum field.
static char *checksum_digits(char *text, size_t len) {
    size_t field = strlen(CHECKSUM_FIELD), tail = strlen(CHECKSUM_TAIL);
    if (len < field + 16 + tail || memcmp(text + len - tail, CHECKSUM_TAIL, tail)) return NULL;
    char *digits = text + len - tail - 16;
    if (memcmp(digits - field, CHECKSUM_FIELD, field)) return NULL;
    return digits;
}

int phrex_manifest_sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return phrex_fail(PHREX_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc ? phrex_fail(PHREX_ERR_IO, "%s: fsync failed: %s", dir, strerror(errno)) : PHREX_OK;
}

static int write_file_synced(const char *path, const char *text, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    int ok = fwrite(text, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    return ok ? PHREX_OK : phrex_fail(PHREX_ERR_IO, "%s: write failed: %s", path, strerror(errno));
}

int phrex_manifest_write(const char *dir, const phrex_manifest *m, const char *const *corpus, int n_corpus) {
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) return phrex_fail(PHREX_ERR_MEMORY, "cannot build the manifest");
    write_body(mem, m, corpus, n_corpus);
    if (fclose(mem) != 0 || !text) {
        free(text);
        return phrex_fail(PHREX_ERR_MEMORY, "cannot build the manifest");
    }
    char hex[17];
    phrex_hash64_hex(phrex_hash64(text, len, 0), hex);
    memcpy(checksum_digits(text, len), hex, 16);
    char path[PATH_MAX], tmp[PATH_MAX];
    int rc = phrex_dump_path(path, sizeof path, dir, PHREX_DUMP_MANIFEST);
    if (!rc) rc = phrex_dump_path(tmp, sizeof tmp, dir, PHREX_DUMP_MANIFEST ".tmp");
    if (!rc) rc = write_file_synced(tmp, text, len);
    free(text);
    if (rc) return rc;
    if (rename(tmp, path) != 0) return phrex_fail(PHREX_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    return phrex_manifest_sync_dir(dir);
}

// --- reading ----------------------------------------------------------------

typedef struct {
    const char *path;
    int rc; // first error
} reader;

static const cJSON *field(reader *r, const cJSON *obj, const char *parent, const char *name, int want_string) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    int ok = v && (want_string ? cJSON_IsString(v) : cJSON_IsNumber(v));
    if (!ok && !r->rc)
        r->rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s%s%s' is missing or not a %s", r->path, parent,
                           *parent ? "." : "", name, want_string ? "string" : "number");
    return ok ? v : NULL;
}

static int64_t get_int(reader *r, const cJSON *obj, const char *parent, const char *name, int64_t lo, int64_t hi) {
    const cJSON *v = field(r, obj, parent, name, 0);
    if (!v) return 0;
    double d = v->valuedouble;
    if (d != (double)(int64_t)d || d < (double)lo || d > (double)hi) {
        if (!r->rc)
            r->rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s.%s' = %g is out of range", r->path, parent, name, d);
        return 0;
    }
    return (int64_t)d;
}

static void get_str(reader *r, const cJSON *obj, const char *parent, const char *name, char *out, size_t cap) {
    const cJSON *v = field(r, obj, parent, name, 1);
    out[0] = '\0';
    if (!v) return;
    if (strlen(v->valuestring) >= cap) {
        if (!r->rc) r->rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s.%s' is too long", r->path, parent, name);
        return;
    }
    strcpy(out, v->valuestring);
}

static uint64_t get_hex(reader *r, const cJSON *obj, const char *parent, const char *name) {
    char hex[32];
    get_str(r, obj, parent, name, hex, sizeof hex);
    uint64_t h = 0;
    if (!r->rc && phrex_hash64_parse_hex(hex, &h))
        r->rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s.%s' is not 16 hex digits", r->path, parent, name);
    return h;
}

static const cJSON *object(reader *r, const cJSON *root, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!cJSON_IsObject(v) && !r->rc)
        r->rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' is missing or not an object", r->path, name);
    return cJSON_IsObject(v) ? v : NULL;
}

static void parse_fields(reader *r, const cJSON *root, phrex_manifest *m) {
    const int64_t big = INT64_C(1) << 53;
    const cJSON *model = object(r, root, "model"), *win = object(r, root, "windows");
    const cJSON *index = object(r, root, "index"), *lmdb = object(r, root, "lmdb"), *counts = object(r, root, "counts");
    if (r->rc) return;
    m->model_hash = get_hex(r, model, "model", "hash");
    get_str(r, model, "model", "dir", m->model_dir, sizeof m->model_dir);
    m->hidden_size = (int)get_int(r, model, "model", "hidden_size", 1, 1 << 16);
    m->vocab_size = (int)get_int(r, model, "model", "vocab_size", 1, INT32_MAX);
    m->max_seq_len = (int)get_int(r, win, "windows", "max_seq_len", 3, 1 << 16);
    m->doc_stride = (int)get_int(r, win, "windows", "doc_stride", 1, 1 << 16);
    get_str(r, root, "", "filter", m->filter, sizeof m->filter);
    get_str(r, index, "index", "factory", m->factory, sizeof m->factory);
    get_str(r, index, "index", "metric", m->metric, sizeof m->metric);
    m->index_bytes = (uint64_t)get_int(r, index, "index", "bytes", 1, big);
    m->index_hash = get_hex(r, index, "index", "hash");
    m->ntotal = get_int(r, index, "index", "ntotal", 0, big);
    m->trained_on = get_int(r, index, "index", "trained_on", 0, big);
    m->lmdb_hash = get_hex(r, lmdb, "lmdb", "hash");
    m->lmdb_entries = (uint64_t)get_int(r, lmdb, "lmdb", "entries", 0, big);
    m->passages = get_int(r, counts, "counts", "passages", 0, big);
    m->tokens = get_int(r, counts, "counts", "tokens", 0, big);
    m->kept = get_int(r, counts, "counts", "kept", 0, big);
    m->empty = get_int(r, counts, "counts", "empty", 0, big);
    m->windows = get_int(r, counts, "counts", "windows", 0, big);
    if (!r->rc && (m->kept > m->tokens || m->kept != m->ntotal))
        r->rc = phrex_fail(PHREX_ERR_FORMAT, "%s: counts disagree: %lld kept of %lld tokens, index ntotal %lld", r->path,
                           (long long)m->kept, (long long)m->tokens, (long long)m->ntotal);
}

static int check_format(reader *r, const cJSON *root, phrex_manifest *m) {
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, PHREX_DUMP_FORMAT_NAME))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: not a phrex dump manifest (field 'format' is not \"%s\")", r->path,
                          PHREX_DUMP_FORMAT_NAME);
    m->version = (int)get_int(r, root, "", "version", 0, INT32_MAX);
    if (r->rc) return r->rc;
    if (m->version != PHREX_DUMP_FORMAT_VERSION)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: dump format version %d, this phrex reads version %d: rebuild the dump",
                          r->path, m->version, PHREX_DUMP_FORMAT_VERSION);
    return PHREX_OK;
}

static int verify_checksum(const char *path, char *text, size_t len) {
    char *digits = checksum_digits(text, len);
    if (!digits) return phrex_fail(PHREX_ERR_FORMAT, "%s: truncated: does not end with the checksum field", path);
    char stored[17];
    memcpy(stored, digits, 16);
    stored[16] = '\0';
    memset(digits, '0', 16);
    uint64_t want, got = phrex_hash64(text, len, 0);
    memcpy(digits, stored, 16);
    if (phrex_hash64_parse_hex(stored, &want) || want != got) {
        char hex[17];
        phrex_hash64_hex(got, hex);
        return phrex_fail(PHREX_ERR_FORMAT, "%s: checksum mismatch (stored %s, computed %s): the file was altered or damaged",
                          path, stored, hex);
    }
    return PHREX_OK;
}

static int read_text(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s (not a complete phrex dump?)", path, strerror(errno));
    char *buf = malloc(MANIFEST_MAX_BYTES + 1);
    if (!buf) {
        fclose(f);
        return phrex_fail(PHREX_ERR_MEMORY, "%s: cannot allocate", path);
    }
    size_t n = fread(buf, 1, MANIFEST_MAX_BYTES + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > MANIFEST_MAX_BYTES) {
        free(buf);
        return phrex_fail(bad ? PHREX_ERR_IO : PHREX_ERR_FORMAT, "%s: %s", path,
                          bad ? "read error" : "over 1 MiB: not a manifest");
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return PHREX_OK;
}

int phrex_manifest_read(const char *path, phrex_manifest *m) {
    memset(m, 0, sizeof *m);
    char *text = NULL;
    size_t len = 0;
    int rc = read_text(path, &text, &len);
    if (rc) return rc;
    if ((rc = verify_checksum(path, text, len))) {
        free(text);
        return rc;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return phrex_fail(PHREX_ERR_FORMAT, "%s: not valid JSON", path);
    reader r = {path, PHREX_OK};
    rc = check_format(&r, root, m);
    if (!rc) {
        parse_fields(&r, root, m);
        rc = r.rc;
    }
    cJSON_Delete(root);
    return rc;
}
