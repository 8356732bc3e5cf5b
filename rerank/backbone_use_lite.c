#include "rerank/backbone_use_lite.h"

#include "common/error.h"
#include "encoder/safetensors.h"
#include "encoder/use_lite.h"
#include "encoder/use_lite_train.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    phrex_use_lite_train *m;
    phrex_use_lite_train_encoder *e;
} use_bb;

static int ul_set_dropout(void *self, float p, uint64_t key) {
    return phrex_use_lite_train_encoder_set_dropout(((use_bb *)self)->e, p, p, key);
}

static int ul_forward(void *self, const int32_t *ids, const int32_t *types, const int32_t *lens, int n,
                      const float **out) {
    (void)types; // no token types in USE-lite
    return phrex_use_lite_train_encoder_forward(((use_bb *)self)->e, ids, lens, n, out);
}

static int ul_backward(void *self, const float *dout) {
    return phrex_use_lite_train_encoder_backward(((use_bb *)self)->e, dout);
}

static phrex_train_params ul_params(void *self) { return phrex_use_lite_train_params(((use_bb *)self)->m); }
static void ul_zero(void *self) { phrex_use_lite_train_zero_grads(((use_bb *)self)->m); }
static phrex_train_bert *ul_tb(void *self) { return (void)self, NULL; }

// src into dst byte for byte; a missing src is not an error (nothing to copy).
static int copy_if_present(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb");
    if (!in) return PHREX_OK;
    FILE *out = fopen(dst, "wb");
    int bad = !out;
    char buf[65536];
    size_t n;
    while (!bad && (n = fread(buf, 1, sizeof buf, in)) > 0) bad = fwrite(buf, 1, n, out) != n;
    bad |= ferror(in);
    fclose(in);
    if (out) bad |= fclose(out) != 0;
    return bad ? phrex_fail(PHREX_ERR_IO, "%s: cannot copy to %s", src, dst) : PHREX_OK;
}

static int ul_save(void *self, const char *dir, int dtype, const char *tok_dir) {
    if (mkdir(dir, 0777) && errno != EEXIST)
        return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    char path[4096], src[4096];
    snprintf(path, sizeof path, "%s/%s", dir, PHREX_USE_LITE_WEIGHTS_FILE);
    int rc = phrex_use_lite_train_save(((use_bb *)self)->m, path, dtype);
    if (rc || !tok_dir) return rc;
    snprintf(src, sizeof src, "%s/%s", tok_dir, PHREX_USE_LITE_VOCAB_FILE);
    snprintf(path, sizeof path, "%s/%s", dir, PHREX_USE_LITE_VOCAB_FILE);
    return copy_if_present(src, path);
}

static void ul_free(void *self) {
    use_bb *b = self;
    if (!b) return;
    phrex_use_lite_train_encoder_free(b->e);
    phrex_use_lite_train_free(b->m);
    free(b);
}

int phrex_rerank_backbone_use_lite(phrex_rerank_backbone *out, const char *safetensors_path, int max_tokens,
                                   int max_seq, int freeze_word_embeddings) {
    memset(out, 0, sizeof *out);
    use_bb *b = calloc(1, sizeof *b);
    if (!b) return phrex_fail(PHREX_ERR_MEMORY, "reranker backbone: out of memory");
    phrex_use_lite_train_options o = {.freeze_word_embeddings = freeze_word_embeddings};
    int rc = phrex_use_lite_train_init(&b->m, safetensors_path, &o);
    if (!rc) rc = phrex_use_lite_train_encoder_init(&b->e, b->m, max_tokens, max_seq);
    if (rc) {
        ul_free(b);
        return phrex_fail_context(rc, "reranker backbone %s", safetensors_path);
    }
    *out = (phrex_rerank_backbone){.name = PHREX_RERANK_BACKBONE_USE_LITE,
                                   .hidden_size = phrex_use_lite_train_shape(b->m)->dim,
                                   .max_tokens = max_tokens, .self = b, .set_dropout = ul_set_dropout,
                                   .forward = ul_forward, .backward = ul_backward, .params = ul_params,
                                   .zero_grads = ul_zero, .save = ul_save, .train_bert = ul_tb,
                                   .free = ul_free};
    return PHREX_OK;
}
