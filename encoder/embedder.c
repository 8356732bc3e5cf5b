#include "embedder.h"

#include "common/error.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct phrex_embedder {
    phrex_bert *model;
    phrex_encoder *encoder;
    phrex_wordpiece *tokenizer;
    int cls, sep;
};

// do_lower_case from tokenizer_config.json; 1 when the file or key is absent.
static int read_do_lower_case(const char *model_dir, int *lowercase) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    *lowercase = 1;
    FILE *f = fopen(path, "rb");
    if (!f) return PHREX_OK;
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int too_long = !feof(f);
    fclose(f);
    if (too_long) return phrex_fail(PHREX_ERR_FORMAT, "%s: over %zu bytes", path, sizeof buf - 1);
    buf[n] = '\0';
    cJSON *root = cJSON_Parse(buf);
    if (!root) return phrex_fail(PHREX_ERR_FORMAT, "%s: not valid JSON", path);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "do_lower_case");
    int rc = PHREX_OK;
    if (v && !cJSON_IsBool(v)) rc = phrex_fail(PHREX_ERR_FORMAT, "%s: field 'do_lower_case' is not a boolean", path);
    else if (v) *lowercase = cJSON_IsTrue(v);
    cJSON_Delete(root);
    return rc;
}

int phrex_embedder_load_tokenizer(const char *model_dir, phrex_wordpiece **out) {
    char vocab[PATH_MAX];
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", model_dir);
    int lowercase, rc = read_do_lower_case(model_dir, &lowercase);
    return rc ? rc : phrex_wordpiece_init(out, vocab, lowercase);
}

int phrex_embedder_init(phrex_embedder **out, const char *model_dir, int max_tokens) {
    *out = NULL;
    phrex_embedder *e = calloc(1, sizeof *e);
    if (!e) return phrex_fail(PHREX_ERR_MEMORY, "cannot allocate an embedder");
    int rc;
    if ((rc = phrex_embedder_load_tokenizer(model_dir, &e->tokenizer)) || (rc = phrex_bert_init(&e->model, model_dir)) ||
        (rc = phrex_encoder_init(&e->encoder, e->model, max_tokens))) {
        phrex_embedder_free(e);
        return rc;
    }
    int vocab_size = phrex_wordpiece_vocab_size(e->tokenizer);
    int model_vocab = phrex_bert_get_config(e->model)->vocab_size;
    if (vocab_size != model_vocab) {
        phrex_embedder_free(e);
        return phrex_fail(PHREX_ERR_MISMATCH, "%s/vocab.txt has %d tokens but %s/config.json says vocab_size %d",
                          model_dir, vocab_size, model_dir, model_vocab);
    }
    e->cls = phrex_wordpiece_special(e->tokenizer, PHREX_SPECIAL_CLS);
    e->sep = phrex_wordpiece_special(e->tokenizer, PHREX_SPECIAL_SEP);
    *out = e;
    return PHREX_OK;
}

void phrex_embedder_free(phrex_embedder *e) {
    if (!e) return;
    phrex_encoder_free(e->encoder);
    phrex_bert_free(e->model);
    phrex_wordpiece_free(e->tokenizer);
    free(e);
}

const phrex_bert_config *phrex_embedder_config(const phrex_embedder *e) { return phrex_bert_get_config(e->model); }
const phrex_wordpiece *phrex_embedder_tokenizer(const phrex_embedder *e) { return e->tokenizer; }
phrex_encoder *phrex_embedder_encoder(phrex_embedder *e) { return e->encoder; }

int phrex_embedder_tokenize(const phrex_embedder *e, const char *text, size_t len, int truncate, phrex_tokens *out,
                            int *n_added) {
    int first = out->n, rc;
    *n_added = 0;
    if ((rc = phrex_tokens_push(out, e->cls, -1, -1))) return rc;
    if ((rc = phrex_wordpiece_encode(e->tokenizer, text, len, out))) {
        out->n = first;
        return rc;
    }
    int pieces = out->n - first - 1;
    int max_pieces = phrex_bert_get_config(e->model)->max_position_embeddings - 2;
    if (pieces == 0) {
        out->n = first;
        return phrex_fail(PHREX_ERR_INPUT, "empty: the text has no tokens");
    }
    if (pieces > max_pieces) {
        if (!truncate) {
            out->n = first;
            return phrex_fail(PHREX_ERR_INPUT, "too long: %d word pieces, the model takes at most %d", pieces,
                              max_pieces);
        }
        out->n = first + 1 + max_pieces;
    }
    if ((rc = phrex_tokens_push(out, e->sep, -1, -1))) {
        out->n = first;
        return rc;
    }
    *n_added = out->n - first;
    return PHREX_OK;
}
