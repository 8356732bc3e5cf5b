#include "bert_config.h"

#include "common/error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_BYTES (1 << 20) // a config.json is a few hundred bytes

// Required integer fields with upper bounds that keep every size product
// (weights, activations) far from overflowing int and size_t.
static const struct {
    const char *field;
    size_t offset;
    int max;
} int_fields[] = {
    {"vocab_size", offsetof(phrex_bert_config, vocab_size), 1 << 24},
    {"hidden_size", offsetof(phrex_bert_config, hidden_size), 1 << 16},
    {"num_hidden_layers", offsetof(phrex_bert_config, num_hidden_layers), 1 << 10},
    {"num_attention_heads", offsetof(phrex_bert_config, num_attention_heads), 1 << 10},
    {"intermediate_size", offsetof(phrex_bert_config, intermediate_size), 1 << 18},
    {"max_position_embeddings", offsetof(phrex_bert_config, max_position_embeddings), 1 << 16},
    {"type_vocab_size", offsetof(phrex_bert_config, type_vocab_size), 1 << 16},
};

static int read_int(const cJSON *root, const char *name, const char *field, int max, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (!v) return phrex_fail(PHREX_ERR_FORMAT, "%s: required field '%s' is missing", name, field);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' must be an integer", name, field);
    if (!(v->valuedouble >= 1 && v->valuedouble <= max))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' is %g, expected 1..%d", name, field, v->valuedouble, max);
    *out = (int)v->valuedouble;
    return PHREX_OK;
}

// A string field that must equal `want`; `fallback` is HF's default when the
// field is absent, or NULL when the field is required.
static int expect_string(const cJSON *root, const char *name, const char *field, const char *want,
                         const char *fallback, const char *why) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (!v && !fallback) return phrex_fail(PHREX_ERR_FORMAT, "%s: required field '%s' is missing", name, field);
    if (v && !cJSON_IsString(v)) return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' must be a string", name, field);
    const char *have = v ? v->valuestring : fallback;
    if (strcmp(have, want) != 0)
        return phrex_fail(PHREX_ERR_MISMATCH, "%s: field '%s' is \"%s\"; only \"%s\" (%s) is supported", name, field,
                          have, want, why);
    return PHREX_OK;
}

// A boolean feature we do not implement must be absent or false.
static int expect_false(const cJSON *root, const char *name, const char *field) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (!v || cJSON_IsFalse(v)) return PHREX_OK;
    if (!cJSON_IsBool(v)) return phrex_fail(PHREX_ERR_FORMAT, "%s: field '%s' must be a boolean", name, field);
    return phrex_fail(PHREX_ERR_MISMATCH, "%s: field '%s' is true; only encoder-only BERT is supported", name, field);
}

static int read_eps(const cJSON *root, const char *name, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_eps");
    if (!v) return phrex_fail(PHREX_ERR_FORMAT, "%s: required field 'layer_norm_eps' is missing", name);
    if (!cJSON_IsNumber(v)) return phrex_fail(PHREX_ERR_FORMAT, "%s: field 'layer_norm_eps' must be a number", name);
    if (!(v->valuedouble > 0 && v->valuedouble < 1))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: field 'layer_norm_eps' is %g, expected a small positive number", name,
                          v->valuedouble);
    *out = (float)v->valuedouble;
    return PHREX_OK;
}

static int parse_fields(phrex_bert_config *cfg, const cJSON *root, const char *name) {
    int rc = PHREX_OK;
    for (size_t i = 0; i < sizeof int_fields / sizeof *int_fields && !rc; i++)
        rc = read_int(root, name, int_fields[i].field, int_fields[i].max,
                      (int *)((char *)cfg + int_fields[i].offset));
    if (!rc) rc = read_eps(root, name, &cfg->layer_norm_eps);
    if (!rc) rc = expect_string(root, name, "hidden_act", "gelu", NULL, "exact erf GELU");
    if (!rc) rc = expect_string(root, name, "position_embedding_type", "absolute", "absolute", "learned absolute");
    if (!rc) rc = expect_string(root, name, "model_type", "bert", "bert", "post-LayerNorm BERT");
    if (!rc) rc = expect_false(root, name, "is_decoder");
    if (!rc) rc = expect_false(root, name, "add_cross_attention");
    if (rc) return rc;
    if (cfg->hidden_size % cfg->num_attention_heads != 0)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: hidden_size %d is not divisible by num_attention_heads %d", name,
                          cfg->hidden_size, cfg->num_attention_heads);
    cfg->head_dim = cfg->hidden_size / cfg->num_attention_heads;
    return PHREX_OK;
}

int phrex_bert_config_parse(phrex_bert_config *cfg, const char *text, size_t len, const char *name) {
    memset(cfg, 0, sizeof *cfg);
    const char *stop = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &stop, 0);
    int rc;
    if (!root)
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: not valid JSON (error near byte %td)", name,
                        stop ? stop - text : (ptrdiff_t)0);
    else if (!cJSON_IsObject(root))
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: not a JSON object", name);
    else
        rc = parse_fields(cfg, root, name);
    cJSON_Delete(root);
    if (rc) memset(cfg, 0, sizeof *cfg);
    return rc;
}

int phrex_bert_config_read(phrex_bert_config *cfg, const char *path) {
    memset(cfg, 0, sizeof *cfg);
    FILE *f = fopen(path, "rb");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *text = malloc(CONFIG_MAX_BYTES + 1);
    if (!text) {
        fclose(f);
        return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory", path);
    }
    size_t n = fread(text, 1, CONFIG_MAX_BYTES + 1, f);
    int failed = ferror(f);
    fclose(f);
    int rc;
    if (failed)
        rc = phrex_fail(PHREX_ERR_IO, "%s: read error", path);
    else if (n > CONFIG_MAX_BYTES)
        rc = phrex_fail(PHREX_ERR_FORMAT, "%s: over %d bytes, not a model config", path, CONFIG_MAX_BYTES);
    else
        rc = phrex_bert_config_parse(cfg, text, n, path);
    free(text);
    return rc;
}

int phrex_bert_check_packed(const phrex_bert_config *c, const char *who, const int32_t *ids, const int32_t *type_ids,
                            const int32_t *seq_lens, int n_seqs, int min_seqs, int max_seq, const char *max_seq_name,
                            int max_tokens, int *n_tokens) {
    if (n_seqs < min_seqs || n_seqs > max_tokens)
        return phrex_fail(PHREX_ERR_INPUT, "%s: n_seqs is %d, expected %d..%d (max_tokens)", who, n_seqs, min_seqs,
                          max_tokens);
    int64_t total = 0;
    for (int s = 0; s < n_seqs; s++) {
        if (seq_lens[s] < 1 || seq_lens[s] > max_seq)
            return phrex_fail(PHREX_ERR_INPUT, "%s: sequence %d has %d tokens, expected 1..%d (%s)", who, s,
                              seq_lens[s], max_seq, max_seq_name);
        total += seq_lens[s];
    }
    if (total > max_tokens)
        return phrex_fail(PHREX_ERR_INPUT, "%s: %lld tokens in the batch, the workspace holds %d", who,
                          (long long)total, max_tokens);
    for (int64_t i = 0; i < total; i++) {
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return phrex_fail(PHREX_ERR_INPUT, "%s: token %lld has id %d, vocabulary is 0..%d", who, (long long)i,
                              ids[i], c->vocab_size - 1);
        if (type_ids && (type_ids[i] < 0 || type_ids[i] >= c->type_vocab_size))
            return phrex_fail(PHREX_ERR_INPUT, "%s: token %lld has type id %d, expected 0..%d", who, (long long)i,
                              type_ids[i], c->type_vocab_size - 1);
    }
    *n_tokens = (int)total;
    return PHREX_OK;
}
