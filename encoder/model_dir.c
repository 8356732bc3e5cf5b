#include "model_dir.h"

#include "common/error.h"
#include "data/buf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// Newest phrex_model.json version this build reads.
#define MODEL_VERSION 1

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// out = dir/rel (an absolute rel stays as it is), which must exist (as a folder when want_dir).
static int part_path(char *out, const char *dir, const char *json, const char *field, const char *rel,
                     int want_dir) {
    int n = rel[0] == '/' ? snprintf(out, PHREX_MODEL_PATH_MAX, "%s", rel)
                          : snprintf(out, PHREX_MODEL_PATH_MAX, "%s/%s", dir, rel);
    if (n < 0 || n >= PHREX_MODEL_PATH_MAX) return phrex_fail(PHREX_ERR_INPUT, "%s: field \"%s\": path too long", json, field);
    struct stat st;
    if (stat(out, &st) != 0 || (want_dir && !S_ISDIR(st.st_mode)))
        return phrex_fail(PHREX_ERR_IO, "%s: field \"%s\" names %s, which is missing%s", json, field, out,
                          want_dir ? " or not a folder" : "");
    return PHREX_OK;
}

static int read_encoders(const cJSON *j, const char *dir, const char *json, phrex_model_paths *out) {
    const cJSON *enc = cJSON_GetObjectItemCaseSensitive(j, "encoders");
    if (!cJSON_IsObject(enc)) return phrex_fail(PHREX_ERR_FORMAT, "%s: field \"encoders\" must be an object", json);
    static const char *const names[3] = {"phrase", "query_start", "query_end"};
    char *dst[3] = {out->phrase, out->query_start, out->query_end};
    for (int i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(enc, names[i]);
        char field[64];
        snprintf(field, sizeof field, "encoders.%s", names[i]);
        if (!cJSON_IsString(v) || !v->valuestring[0])
            return phrex_fail(PHREX_ERR_FORMAT, "%s: field \"%s\" must name a folder", json, field);
        int rc = part_path(dst[i], dir, json, field, v->valuestring, 1);
        if (rc) return rc;
    }
    return PHREX_OK;
}

static int read_model_json(const char *dir, const char *json, phrex_model_paths *out) {
    char *text = NULL;
    size_t len;
    int rc = phrex_data_read_file(json, &text, &len);
    if (rc) return rc;
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) return phrex_fail(PHREX_ERR_FORMAT, "%s: not valid JSON", json);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format"),
                *ver = cJSON_GetObjectItemCaseSensitive(j, "version"),
                *filter = cJSON_GetObjectItemCaseSensitive(j, "filter"),
                *mal = cJSON_GetObjectItemCaseSensitive(j, "max_answer_len");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, PHREX_MODEL_FORMAT))
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field \"format\" must be \"%s\"", json, PHREX_MODEL_FORMAT);
    else if (!cJSON_IsNumber(ver) || ver->valueint < 1 || ver->valueint > MODEL_VERSION)
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field \"version\": this build reads versions 1 to %d", json,
                        MODEL_VERSION);
    else if (mal && (!cJSON_IsNumber(mal) || mal->valueint < 1 || mal->valueint > 512))
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field \"max_answer_len\" must be 1..512", json);
    else if (filter && !cJSON_IsNull(filter) && (!cJSON_IsString(filter) || !filter->valuestring[0]))
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field \"filter\" must name a file or be null", json);
    if (!rc) rc = read_encoders(j, dir, json, out);
    if (!rc && cJSON_IsString(filter)) rc = part_path(out->filter, dir, json, "filter", filter->valuestring, 0);
    if (!rc && mal) out->max_answer_len = mal->valueint;
    cJSON_Delete(j);
    return rc;
}

int phrex_model_dir_resolve(const char *dir, phrex_model_paths *out) {
    memset(out, 0, sizeof *out);
    out->max_answer_len = 10;
    if (!dir || !*dir) return phrex_fail(PHREX_ERR_INPUT, "no model folder given");
    if (!is_dir(dir)) return phrex_fail(PHREX_ERR_IO, "%s: model folder missing: %s", dir, strerror(errno));
    char json[PHREX_MODEL_PATH_MAX];
    int n = snprintf(json, sizeof json, "%s/%s", dir, PHREX_MODEL_JSON);
    if (n < 0 || (size_t)n >= sizeof json) return phrex_fail(PHREX_ERR_INPUT, "%s: path too long", dir);
    struct stat st;
    if (stat(json, &st) == 0) {
        out->trained = 1;
        return read_model_json(dir, json, out);
    }
    snprintf(out->phrase, sizeof out->phrase, "%s", dir); // a plain HF folder
    return PHREX_OK;
}
