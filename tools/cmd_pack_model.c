// phrex pack-model: stores a trained model as compact deltas from the base
// package, the form committed under models/ (encoder/weights.h).
//
//   phrex pack-model --from out/phrase-run --out models/phrase
//
// A trained phrex model folder (phrex_model.json) is packed encoder by
// encoder, and its phrex_model.json rewritten to name the packed folders;
// a plain HF folder (a reranker, say) is packed as one folder. Frozen
// tensors cost nothing, 2-D tensors are per-row int8 differences (--f16:
// f16 differences), biases and LayerNorm f32 differences.
#include "tools/cli.h"
#include "tools/cli_util.h"

#include "common/error.h"
#include "data/buf.h"
#include "encoder/model_dir.h"
#include "encoder/weights.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    const char *from, *out, *base;
    int f16;
} pack_options;

static void print_help(FILE *f) {
    fprintf(f,
            "usage: phrex pack-model --from DIR --out DIR [--base DIR] [--f16]\n\n"
            "  --from DIR   a trained model: phrex_model.json with its encoder folders, or one HF folder\n"
            "  --out DIR    where the packed model goes (created)\n"
            "  --base DIR   the base the deltas are taken from (default %s)\n"
            "  --f16        f16 differences instead of per-row int8\n",
            phrex_cli_base_model_dir());
}

static long long dir_bytes(const char *dir) {
    char path[PHREX_MODEL_PATH_MAX + 32];
    struct stat st;
    long long sum = 0;
    static const char *const files[] = {PHREX_DELTA_FILE, PHREX_DELTA_JSON, "config.json", "vocab.txt"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (stat(path, &st) == 0) sum += st.st_size;
    }
    return sum;
}

static int pack_one(const char *from, const char *out, const pack_options *o) {
    double err = 0;
    int rc = phrex_weights_write_delta(from, o->base, out, !o->f16, &err);
    if (rc) return rc;
    printf("phrex: packed %s -> %s: %.1f MB, largest weight error %.3g\n", from, out, (double)dir_bytes(out) / 1e6,
           err);
    return PHREX_OK;
}

// Writes OUT/phrex_model.json: FROM's, with the encoders renamed to the
// packed folders and the dtype recorded.
static int write_model_json(const char *from, const char *out) {
    char path[PHREX_MODEL_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", from, PHREX_MODEL_JSON);
    char *buf;
    size_t n;
    int rc = phrex_data_read_file(path, &buf, &n);
    if (rc) return rc;
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    if (!j) return phrex_fail(PHREX_ERR_FORMAT, "%s: not valid JSON", path);
    cJSON *enc = cJSON_CreateObject();
    cJSON_AddStringToObject(enc, "phrase", "phrase");
    cJSON_AddStringToObject(enc, "query_start", "query_start");
    cJSON_AddStringToObject(enc, "query_end", "query_end");
    cJSON_ReplaceItemInObjectCaseSensitive(j, "encoders", enc);
    cJSON_DeleteItemFromObjectCaseSensitive(j, "dtype");
    cJSON_AddStringToObject(j, "dtype", "int8 or f16 deltas over the base (encoder/weights.h)");
    cJSON_DeleteItemFromObjectCaseSensitive(j, "base_model"); // each delta names its base
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/%s", out, PHREX_MODEL_JSON);
    FILE *f = text ? fopen(path, "w") : NULL;
    if (!f || fprintf(f, "%s\n", text) < 0) rc = phrex_fail(PHREX_ERR_IO, "%s: cannot write", path);
    if (f && fclose(f) && !rc) rc = phrex_fail(PHREX_ERR_IO, "%s: write failed", path);
    free(text);
    return rc;
}

static int pack(const pack_options *o) {
    phrex_model_paths p;
    int rc = phrex_model_dir_resolve(o->from, &p);
    if (rc) return rc;
    if (mkdir(o->out, 0755) != 0 && errno != EEXIST)
        return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", o->out, strerror(errno));
    if (!p.trained) return pack_one(o->from, o->out, o);
    if (p.filter[0]) return phrex_fail(PHREX_ERR_INPUT, "%s: packing a model with a phrase filter is not supported yet",
                                       o->from);
    const char *parts[3] = {p.phrase, p.query_start, p.query_end}, *names[3] = {"phrase", "query_start", "query_end"};
    char dst[PHREX_MODEL_PATH_MAX];
    for (int i = 0; i < 3 && !rc; i++) {
        snprintf(dst, sizeof dst, "%s/%s", o->out, names[i]);
        rc = pack_one(parts[i], dst, o);
    }
    return rc ? rc : write_model_json(o->from, o->out);
}

int cmd_pack_model(int argc, char **argv) {
    static const struct option longopts[] = {{"from", required_argument, 0, 'f'}, {"out", required_argument, 0, 'o'},
                                             {"base", required_argument, 0, 'b'}, {"f16", no_argument, 0, 'F'},
                                             {"help", no_argument, 0, 'h'},       {0, 0, 0, 0}};
    pack_options o = {.base = phrex_cli_base_model_dir()};
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'f': o.from = optarg; break;
        case 'o': o.out = optarg; break;
        case 'b': o.base = optarg; break;
        case 'F': o.f16 = 1; break;
        case 'h': print_help(stdout); return 0;
        default: print_help(stderr); return 2;
        }
    }
    if (!o.from || !o.out || optind < argc) {
        fprintf(stderr, "phrex pack-model: --from and --out are required\n\n");
        print_help(stderr);
        return 2;
    }
    if (pack(&o)) {
        fprintf(stderr, "phrex pack-model: %s\n", phrex_last_error());
        return 1;
    }
    return 0;
}
