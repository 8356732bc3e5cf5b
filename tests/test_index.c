// The phrase dump, built with the base model and read back:
// (1) the 112 paragraphs of DensePhrases' sample corpus into a Flat dump:
//     counts, offsets that are the tokenizer's, vectors equal to a fresh
//     forward pass, self-search, the id <-> (passage, token) map;
// (2) a few passages with short windows (64 / 16) and a tiny batch, so that
//     passages span several windows and one passage several forward passes,
//     with a phrase filter dropping about half the tokens: every token's
//     vector must come from its most central window, and the kept map must
//     hold together;
// (3) refusals: another model, a truncated or altered index, an altered
//     manifest or LMDB, a newer format version, a foreign output folder.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "tests/support/test_support.h"
#include "data/corpus.h"
#include "encoder/embedder.h"
#include "index/build.h"
#include "index/dump.h"
#include "index/hash.h"

#include <ctype.h>
#include <errno.h>
#include <faiss/c_api/Index_c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARTICLES PHREX_SHARED_DIR "/data/wikipedia/densephrases-sample/articles.json"
#define VEC_TOL 1e-4f
// Under AddressSanitizer the encoder runs about 10x slower: the Flat dump is
// built from the first paragraphs only (written to a TSV); the checks are
// the same.
#ifdef __SANITIZE_ADDRESS__
#define FLAT_PASSAGES 24
#else
#define FLAT_PASSAGES 112
#endif

static struct {
    char tmp[256], flat[300], windowed[300], flat_corpus[300];
    phrex_embedder *emb;
    int C;
    phrex_dump *flat_dump; // dump (1)
    int filter_calls;
} g;

// --- helpers ------------------------------------------------------------------

static void copy_dump(const char *src, const char *dst) {
    static const char *const files[] = {"manifest.json", "index.faiss", "meta.mdb"};
    assert_int_equal(mkdir(dst, 0755), 0);
    for (size_t i = 0; i < 3; i++) {
        char a[512], b[512];
        test_join_path(a, sizeof a, src, files[i]);
        test_join_path(b, sizeof b, dst, files[i]);
        test_copy_file(a, b);
    }
}

static void flip_byte(const char *path, long offset) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, offset, SEEK_SET);
    int c = fgetc(f);
    fseek(f, offset, SEEK_SET);
    fputc(c ^ 0x20, f);
    assert_int_equal(fclose(f), 0);
}

static float max_abs_diff(const float *a, const float *b, int n) {
    float m = 0;
    for (int i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

// Last hidden states of [CLS] ids[0, n) [SEP] run alone; out: (n + 2, C).
static void fresh_forward(const int32_t *ids, int n, float *out) {
    const phrex_wordpiece *wp = phrex_embedder_tokenizer(g.emb);
    int32_t *seq = malloc(((size_t)n + 2) * sizeof *seq), len = n + 2;
    assert_non_null(seq);
    seq[0] = phrex_wordpiece_special(wp, PHREX_SPECIAL_CLS);
    memcpy(seq + 1, ids, (size_t)n * sizeof *ids);
    seq[n + 1] = phrex_wordpiece_special(wp, PHREX_SPECIAL_SEP);
    assert_int_equal(phrex_encoder_forward(phrex_embedder_encoder(g.emb), seq, NULL, &len, 1, out), PHREX_OK);
    free(seq);
}

static void tokenize(const char *text, size_t len, phrex_tokens *t) {
    phrex_tokens_clear(t);
    assert_int_equal(phrex_wordpiece_encode(phrex_embedder_tokenizer(g.emb), text, len, t), PHREX_OK);
}

// Keeps tokens whose first component is not negative: about half, and
// decided by the vector alone, so the test can recompute it.
static int sign_filter(void *ctx, const float *v, int n, int dim, uint8_t *keep) {
    (void)ctx;
    g.filter_calls++;
    for (int i = 0; i < n; i++) keep[i] = v[(size_t)i * dim] >= 0;
    return PHREX_OK;
}

// The first n paragraphs of the sample corpus as plain TSV text (quotes,
// tabs and line breaks turned into spaces, so no CSV quoting is needed).
// `small`: ids p0.., one passage with no word piece at all, and the last two
// paragraphs joined into one passage, "long" (more forward tokens than a
// batch of the windowed build holds). Returns 0 or -1.
static int write_articles_tsv(const char *path, int n, int small) {
    FILE *f = fopen(path, "w");
    phrex_corpus *c;
    if (!f || phrex_corpus_init(&c, ARTICLES, NULL)) return -1;
    fprintf(f, "id\ttext\ttitle\n");
    phrex_passage p;
    int has, rc = 0;
    char *prev = NULL;
    for (int i = 0; i < n && !rc; i++) {
        if (phrex_corpus_next(c, &p, &has) || !has) {
            rc = -1;
            break;
        }
        for (char *s = (char *)p.text; *s; s++)
            if (*s == '"' || *s == '\t' || *s == '\n' || *s == '\r') *s = ' ';
        if (!small) fprintf(f, "%s\t%s\t%s\n", p.id, p.text, p.title);
        else if (i == n - 1) fprintf(f, "long\t%s %s\t%s\n", prev, p.text, p.title);
        else fprintf(f, "p%d\t%s\t%s\n", i, p.text, p.title);
        if (small && i == 2) fprintf(f, "empty\t\xe2\x80\x8b \t(none)\n"); // a zero-width space: no piece
        free(prev);
        prev = strdup(p.text);
    }
    free(prev);
    phrex_corpus_free(c);
    return fclose(f) == 0 ? rc : -1;
}

static int build(const char *corpus, const char *out, const char *factory, phrex_metric metric, int max_seq_len,
                 int stride, int batch_tokens, phrex_phrase_filter_fn filter) {
    phrex_build_options o;
    phrex_build_options_default(&o);
    o.corpus_paths = &corpus;
    o.n_corpus = 1;
    o.model_dir = PHREX_BASE_MODEL_DIR;
    o.out_dir = out;
    o.index_factory = factory;
    o.metric = metric;
    o.max_seq_len = max_seq_len;
    o.doc_stride = stride;
    o.batch_tokens = batch_tokens;
    o.threads = 1; // the fastest on a busy 2-core machine; the vectors do not depend on it
    o.progress = 0;
    o.map_size = 64 << 10; // a tiny LMDB map: every build exercises growing it
    o.filter = filter;
    o.filter_name = filter ? "sign(v[0])>=0" : "none";
    phrex_build_stats s;
    int rc = phrex_index_build_dump(&o, &s);
    if (rc) fprintf(stderr, "build %s: %s\n", out, phrex_last_error());
    return rc;
}

static int setup(void **state) {
    (void)state;
    snprintf(g.tmp, sizeof g.tmp, "/tmp/phrex-test-index-XXXXXX");
    if (test_make_tmpdir(g.tmp)) return -1;
    snprintf(g.flat, sizeof g.flat, "%s/flat", g.tmp);
    snprintf(g.windowed, sizeof g.windowed, "%s/windowed", g.tmp);
    if (phrex_embedder_init(&g.emb, PHREX_BASE_MODEL_DIR, 1024)) return -1;
    g.C = phrex_embedder_config(g.emb)->hidden_size;
    snprintf(g.flat_corpus, sizeof g.flat_corpus, "%s", ARTICLES);
    if (FLAT_PASSAGES < 112) {
        snprintf(g.flat_corpus, sizeof g.flat_corpus, "%s/flat.tsv", g.tmp);
        if (write_articles_tsv(g.flat_corpus, FLAT_PASSAGES, 0)) return -1;
    }
    if (build(g.flat_corpus, g.flat, "Flat", PHREX_METRIC_INNER_PRODUCT, 384, 128, 4096, NULL)) return -1;
    if (phrex_dump_open(&g.flat_dump, g.flat, PHREX_BASE_MODEL_DIR)) {
        fprintf(stderr, "open: %s\n", phrex_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    phrex_dump_free(g.flat_dump);
    phrex_embedder_free(g.emb);
    test_remove_tree(g.tmp);
    return 0;
}

// --- (1) the sample corpus in a Flat dump ----------------------------------------

static void test_counts_and_records(void **state) {
    (void)state;
    const phrex_dump_info *info = phrex_dump_get_info(g.flat_dump);
    assert_int_equal(info->passages, FLAT_PASSAGES);
    assert_int_equal(info->dim, g.C);
    assert_string_equal(info->factory, "Flat");
    assert_int_equal(info->empty, 0);
    assert_int_equal(info->kept, info->tokens);
    assert_int_equal(faiss_Index_ntotal(phrex_dump_index(g.flat_dump)), info->kept);
    assert_int_equal(phrex_dump_set_nprobe(g.flat_dump, 16), PHREX_ERR_INPUT); // Flat: no lists
    int64_t tokens = 0;
    for (int64_t p = 0; p < info->passages; p++) {
        phrex_dump_passage r;
        assert_int_equal(phrex_dump_get_passage(g.flat_dump, p, &r), PHREX_OK);
        assert_int_equal(r.number, p);
        assert_int_equal(r.first_id, tokens); // ids run through the corpus in order
        assert_int_equal(r.n_kept, r.n_tokens);
        assert_true(r.title_len > 0 && r.text_len > 0 && strlen(r.text) == r.text_len);
        assert_non_null(strchr(r.id, ':')); // SQuAD-style ids: "TITLE:N"
        tokens += r.n_tokens;
    }
    assert_int_equal(tokens, info->tokens);
    phrex_dump_passage r;
    assert_int_equal(phrex_dump_get_passage(g.flat_dump, FLAT_PASSAGES, &r), PHREX_ERR_INPUT);
}

static void test_offsets_are_the_tokenizers(void **state) {
    (void)state;
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 512), PHREX_OK);
    const phrex_wordpiece *wp = phrex_embedder_tokenizer(g.emb);
    int checked_pieces = 0;
    for (int64_t p = 0; p < phrex_dump_get_info(g.flat_dump)->passages; p++) {
        phrex_dump_passage r;
        assert_int_equal(phrex_dump_get_passage(g.flat_dump, p, &r), PHREX_OK);
        tokenize(r.text, r.text_len, &t);
        assert_int_equal(t.n, r.n_tokens);
        for (int i = 0; i < t.n; i++) {
            assert_int_equal(r.start[i], t.start[i]);
            assert_int_equal(r.end[i], t.end[i]);
            // An ASCII piece spells the text it spans, lowercased.
            const char *piece = phrex_wordpiece_piece(wp, t.ids[i]);
            if (!strncmp(piece, "##", 2)) piece += 2;
            int n = r.end[i] - r.start[i], ascii = 1;
            for (int k = 0; k < n; k++) ascii &= (unsigned char)r.text[r.start[i] + k] < 0x80;
            if (!ascii || !strcmp(piece, "[UNK]")) continue;
            assert_int_equal((int)strlen(piece), n);
            for (int k = 0; k < n; k++) assert_int_equal(tolower((unsigned char)r.text[r.start[i] + k]), piece[k]);
            checked_pieces++;
        }
    }
    assert_true(checked_pieces > 150 * FLAT_PASSAGES);
    phrex_tokens_free(&t);
}

static void test_vectors_equal_a_fresh_forward(void **state) {
    (void)state;
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 512), PHREX_OK);
    const int64_t passages[] = {0, FLAT_PASSAGES / 3, FLAT_PASSAGES - 1};
    float *fresh = malloc(512 * (size_t)g.C * sizeof(float)), *stored = malloc((size_t)g.C * sizeof(float));
    assert_non_null(fresh);
    assert_non_null(stored);
    for (int k = 0; k < 3; k++) {
        phrex_dump_passage r;
        assert_int_equal(phrex_dump_get_passage(g.flat_dump, passages[k], &r), PHREX_OK);
        tokenize(r.text, r.text_len, &t);
        assert_true(t.n <= 382); // one window
        fresh_forward(t.ids, t.n, fresh);
        for (int i = 0; i < t.n; i++) {
            int64_t id;
            assert_int_equal(phrex_dump_vector_id(g.flat_dump, passages[k], i, &id), PHREX_OK);
            assert_int_equal(id, r.first_id + i);
            assert_int_equal(phrex_dump_reconstruct(g.flat_dump, id, stored), PHREX_OK);
            assert_true(max_abs_diff(stored, fresh + (size_t)(i + 1) * g.C, g.C) <= VEC_TOL);
        }
    }
    free(fresh);
    free(stored);
    phrex_tokens_free(&t);
}

// Inner product search does not promise that a vector is its own nearest
// neighbour (with this untrained model most are not: a longer vector nearby
// scores higher), so with the IP dump: every label's stored vector scores
// what the search reports, in order, and at least the own score. Own-first
// is checked on the L2 dump below.
static void test_search_scores_match_stored_vectors(void **state) {
    (void)state;
    FaissIndex *index = phrex_dump_index(g.flat_dump);
    int64_t n = phrex_dump_get_info(g.flat_dump)->kept;
    float *q = malloc((size_t)g.C * sizeof(float)), *v = malloc((size_t)g.C * sizeof(float));
    assert_non_null(q);
    assert_non_null(v);
    for (int64_t id = 0; id < n; id += 211) {
        assert_int_equal(phrex_dump_reconstruct(g.flat_dump, id, q), PHREX_OK);
        float own = 0, d[10];
        for (int j = 0; j < g.C; j++) own += q[j] * q[j];
        idx_t labels[10];
        assert_int_equal(faiss_Index_search(index, 1, q, 10, d, labels), 0);
        assert_true(d[0] >= own * (1 - 1e-5f));
        for (int k = 0; k < 10; k++) {
            assert_true(labels[k] >= 0 && labels[k] < n);
            assert_true(k == 0 || d[k] <= d[k - 1]);
            assert_int_equal(phrex_dump_reconstruct(g.flat_dump, labels[k], v), PHREX_OK);
            float score = 0;
            for (int j = 0; j < g.C; j++) score += q[j] * v[j];
            assert_true(fabsf(score - d[k]) <= 1e-4f * fabsf(own));
        }
    }
    free(q);
    free(v);
}

static void test_locate_round_trips(void **state) {
    (void)state;
    int64_t n = phrex_dump_get_info(g.flat_dump)->kept;
    for (int64_t id = 0; id < n; id += 101) {
        int64_t p, back;
        int32_t t;
        assert_int_equal(phrex_dump_locate(g.flat_dump, id, &p, &t), PHREX_OK);
        assert_int_equal(phrex_dump_vector_id(g.flat_dump, p, t, &back), PHREX_OK);
        assert_int_equal(back, id);
    }
    int64_t p;
    int32_t t;
    assert_int_equal(phrex_dump_locate(g.flat_dump, n - 1, &p, &t), PHREX_OK);
    assert_int_equal(p, FLAT_PASSAGES - 1);
    assert_int_equal(phrex_dump_locate(g.flat_dump, n, &p, &t), PHREX_ERR_INPUT);
    assert_int_equal(phrex_dump_locate(g.flat_dump, -1, &p, &t), PHREX_ERR_INPUT);
}

// --- (2) windows, a passage over a batch, a filter ------------------------------

// The window supplying piece j of n with windows of W pieces every S
// (HF's _check_is_max_context, written out again independently).
static int owner_start(int j, int n, int W, int S, int *len) {
    int best_start = -1, best_len = 0;
    double best = -1;
    for (int s = 0;; s += S) {
        int l = n - s < W ? n - s : W;
        if (j >= s && j < s + l) {
            int left = j - s, right = s + l - 1 - j;
            double score = (left < right ? left : right) + 0.01 * l;
            if (best_start < 0 || score > best) best_start = s, best_len = l, best = score;
        }
        if (s + l >= n) break;
    }
    *len = best_len;
    return best_start;
}

static void check_windowed_passage(phrex_dump *d, int64_t number, phrex_tokens *t, float *fresh, float *stored,
                                   int64_t *kept_total) {
    const int W = 62, S = 16;
    phrex_dump_passage r;
    assert_int_equal(phrex_dump_get_passage(d, number, &r), PHREX_OK);
    assert_int_equal(r.first_id, *kept_total);
    tokenize(r.text, r.text_len, t);
    assert_int_equal(t->n, r.n_tokens);
    int kept = 0, last_s = -1;
    for (int j = 0; j < t->n; j++) {
        int len, s = owner_start(j, t->n, W, S, &len);
        if (s != last_s) fresh_forward(t->ids + s, len, fresh); // owners come in order: one forward per window
        last_s = s;
        const float *want = fresh + (size_t)(j - s + 1) * g.C;
        int64_t id;
        assert_int_equal(phrex_dump_vector_id(d, number, j, &id), PHREX_OK);
        assert_int_equal(r.kept[j], id >= 0);
        if (fabsf(want[0]) > 1e-3f) assert_int_equal(r.kept[j], want[0] >= 0);
        if (id < 0) continue;
        assert_int_equal(id, r.first_id + kept);
        kept++;
        assert_int_equal(phrex_dump_reconstruct(d, id, stored), PHREX_OK);
        assert_true(max_abs_diff(stored, want, g.C) <= VEC_TOL);
        // L2: a vector is its own nearest neighbour, or ties with a copy of
        // itself ("long" starts with passage p3, so its first windows are p3's).
        float dist[2], other[1024];
        idx_t label[2];
        assert_int_equal(faiss_Index_search(phrex_dump_index(d), 1, stored, 2, dist, label), 0);
        assert_true(dist[0] <= 1e-6f);
        assert_true(label[0] == id || label[1] == id);
        int64_t twin = label[0] == id ? label[1] : label[0];
        assert_int_equal(phrex_dump_reconstruct(d, twin, other), PHREX_OK);
        assert_true(twin == id || dist[1] > 1e-6f || max_abs_diff(other, stored, g.C) == 0);
        int64_t p;
        int32_t tok;
        assert_int_equal(phrex_dump_locate(d, id, &p, &tok), PHREX_OK);
        assert_int_equal(p, number);
        assert_int_equal(tok, j);
    }
    assert_int_equal(kept, r.n_kept);
    *kept_total += kept;
}

static void test_windows_batches_and_filter(void **state) {
    (void)state;
    char tsv[512];
    test_join_path(tsv, sizeof tsv, g.tmp, "small.tsv");
    assert_int_equal(write_articles_tsv(tsv, 5, 1), 0);
    g.filter_calls = 0;
    // 64-token windows every 16 pieces, 256-token batches: the "long"
    // passage needs several forward passes of its own.
    assert_int_equal(build(tsv, g.windowed, "Flat", PHREX_METRIC_L2, 64, 16, 256, sign_filter), PHREX_OK);
    assert_true(g.filter_calls > 6);
    phrex_dump *d;
    assert_int_equal(phrex_dump_open(&d, g.windowed, PHREX_BASE_MODEL_DIR), PHREX_OK);
    const phrex_dump_info *info = phrex_dump_get_info(d);
    assert_int_equal(info->passages, 6);
    assert_int_equal(info->empty, 1);
    assert_string_equal(info->filter, "sign(v[0])>=0");
    assert_int_equal(info->metric, PHREX_METRIC_L2);
    assert_true(info->kept > info->tokens / 5 && info->kept < info->tokens * 4 / 5);
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 1024), PHREX_OK);
    float *fresh = malloc(64 * (size_t)g.C * sizeof(float)), *stored = malloc((size_t)g.C * sizeof(float));
    assert_non_null(fresh);
    assert_non_null(stored);
    int64_t kept = 0;
    for (int64_t p = 0; p < info->passages; p++) check_windowed_passage(d, p, &t, fresh, stored, &kept);
    assert_int_equal(kept, info->kept);
    phrex_dump_passage r;
    assert_int_equal(phrex_dump_get_passage(d, 5, &r), PHREX_OK);
    assert_string_equal(r.id, "long");
    assert_true(r.n_tokens > 256); // more than one batch
    free(fresh);
    free(stored);
    phrex_tokens_free(&t);
    phrex_dump_free(d);
}

// --- (3) refusals ---------------------------------------------------------------

static void test_refuses_another_model(void **state) {
    (void)state;
    char dir[512], a[512], b[512];
    test_join_path(dir, sizeof dir, g.tmp, "other-model");
    assert_int_equal(mkdir(dir, 0755), 0);
    const char *links[] = {"model.safetensors", "vocab.txt", "tokenizer_config.json"};
    for (int i = 0; i < 3; i++) {
        test_join_path(a, sizeof a, PHREX_BASE_MODEL_DIR, links[i]);
        test_join_path(b, sizeof b, dir, links[i]);
        assert_int_equal(symlink(a, b), 0);
    }
    // Same weights, one changed config value: another model.
    size_t len;
    test_join_path(a, sizeof a, PHREX_BASE_MODEL_DIR, "config.json");
    char *config = test_load_file(a, &len);
    char *eps = strstr(config, "1e-12");
    assert_non_null(eps);
    memcpy(eps, "1e-11", 5);
    test_join_path(b, sizeof b, dir, "config.json");
    test_write_file(b, config, len);
    free(config);
    phrex_dump *d;
    assert_int_equal(phrex_dump_open(&d, g.flat, dir), PHREX_ERR_MISMATCH);
    assert_null(d);
    assert_non_null(strstr(phrex_last_error(), "another model"));
    assert_int_equal(phrex_dump_open(&d, g.flat, NULL), PHREX_OK); // no model check asked for
    phrex_dump_free(d);
}

static void test_refuses_a_damaged_index(void **state) {
    (void)state;
    char dir[512], index[512];
    test_join_path(dir, sizeof dir, g.tmp, "damaged-index");
    copy_dump(g.flat, dir);
    test_join_path(index, sizeof index, dir, "index.faiss");
    struct stat st;
    assert_int_equal(stat(index, &st), 0);
    phrex_dump *d;
    assert_int_equal(truncate(index, st.st_size - 4096), 0);
    assert_int_equal(phrex_dump_open(&d, dir, PHREX_BASE_MODEL_DIR), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "truncated"));
    char src[512];
    test_join_path(src, sizeof src, g.flat, "index.faiss");
    test_copy_file(src, index);
    flip_byte(index, (long)(st.st_size / 2));
    assert_int_equal(phrex_dump_open(&d, dir, PHREX_BASE_MODEL_DIR), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "checksum mismatch"));
    assert_int_equal(phrex_dump_open_ex(&d, dir, PHREX_BASE_MODEL_DIR, PHREX_DUMP_OPEN_QUICK), PHREX_OK);
    phrex_dump_free(d); // the quick open checks sizes only, by design
}

static void test_refuses_a_damaged_lmdb(void **state) {
    (void)state;
    char dir[512], lmdb[512];
    test_join_path(dir, sizeof dir, g.tmp, "damaged-lmdb");
    copy_dump(g.flat, dir);
    test_join_path(lmdb, sizeof lmdb, dir, "meta.mdb");
    phrex_dump_passage r;
    assert_int_equal(phrex_dump_get_passage(g.flat_dump, 3, &r), PHREX_OK);
    size_t len;
    char *bytes = test_load_file(lmdb, &len);
    char *at = memmem(bytes, len, r.text, 40); // passage 3's text, in a page
    assert_non_null(at);
    long offset = (long)(at - bytes) + 10;
    free(bytes);
    flip_byte(lmdb, offset);
    phrex_dump *d;
    assert_int_equal(phrex_dump_open(&d, dir, PHREX_BASE_MODEL_DIR), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "meta.mdb"));
}

static void rewrite_manifest(const char *path, const char *from, const char *to, int fix_checksum) {
    size_t len;
    char *text = test_load_file(path, &len);
    char *at = strstr(text, from);
    assert_non_null(at);
    assert_int_equal(strlen(from), strlen(to));
    memcpy(at, to, strlen(to));
    if (fix_checksum) {
        char *digits = strstr(text, "\"checksum\": \"") + strlen("\"checksum\": \"");
        memset(digits, '0', 16);
        char hex[17];
        phrex_hash64_hex(phrex_hash64(text, len, 0), hex);
        memcpy(digits, hex, 16);
    }
    test_write_file(path, text, len);
    free(text);
}

static void test_refuses_a_damaged_or_newer_manifest(void **state) {
    (void)state;
    char dir[512], manifest[512], src[512];
    test_join_path(dir, sizeof dir, g.tmp, "damaged-manifest");
    copy_dump(g.flat, dir);
    test_join_path(manifest, sizeof manifest, dir, "manifest.json");
    test_join_path(src, sizeof src, g.flat, "manifest.json");
    phrex_dump *d;
    char from[64], to[64];
    snprintf(from, sizeof from, "\"passages\": %d", FLAT_PASSAGES);
    snprintf(to, sizeof to, "\"passages\": %d", FLAT_PASSAGES + 1);
    rewrite_manifest(manifest, from, to, 0);
    assert_int_equal(phrex_dump_open(&d, dir, PHREX_BASE_MODEL_DIR), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "checksum mismatch"));
    test_copy_file(src, manifest);
    // A newer format, and the older one (record version 1: 8 bytes of
    // offsets per token), are both refused with the version named.
    rewrite_manifest(manifest, "\"version\": 2", "\"version\": 3", 1);
    assert_int_equal(phrex_dump_open(&d, dir, PHREX_BASE_MODEL_DIR), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "version 3"));
    test_copy_file(src, manifest);
    rewrite_manifest(manifest, "\"version\": 2", "\"version\": 1", 1);
    assert_int_equal(phrex_dump_open(&d, dir, PHREX_BASE_MODEL_DIR), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "version 1"));
    assert_non_null(strstr(phrex_last_error(), "rebuild"));
    assert_int_equal(unlink(manifest), 0);
    assert_int_equal(phrex_dump_open(&d, dir, PHREX_BASE_MODEL_DIR), PHREX_ERR_IO);
    assert_non_null(strstr(phrex_last_error(), "manifest.json"));
}

static void test_build_refuses_a_foreign_folder(void **state) {
    (void)state;
    char dir[512], file[512];
    test_join_path(dir, sizeof dir, g.tmp, "foreign");
    assert_int_equal(mkdir(dir, 0755), 0);
    test_join_path(file, sizeof file, dir, "notes.txt");
    test_write_file(file, "mine\n", 5);
    assert_int_equal(build(g.flat_corpus, dir, "Flat", PHREX_METRIC_INNER_PRODUCT, 384, 128, 4096, NULL), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "not a phrex dump"));
}

// A second build into a folder that a build holds (its flock) is refused.
static void test_build_refuses_a_locked_folder(void **state) {
    (void)state;
    char dir[512];
    test_join_path(dir, sizeof dir, g.tmp, "locked");
    assert_int_equal(mkdir(dir, 0755), 0);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    assert_int_equal(build(g.flat_corpus, dir, "Flat", PHREX_METRIC_INNER_PRODUCT, 384, 128, 4096, NULL), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "another phrex build"));
    close(fd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_records),
        cmocka_unit_test(test_offsets_are_the_tokenizers),
        cmocka_unit_test(test_vectors_equal_a_fresh_forward),
        cmocka_unit_test(test_search_scores_match_stored_vectors),
        cmocka_unit_test(test_locate_round_trips),
        cmocka_unit_test(test_windows_batches_and_filter),
        cmocka_unit_test(test_refuses_another_model),
        cmocka_unit_test(test_refuses_a_damaged_index),
        cmocka_unit_test(test_refuses_a_damaged_lmdb),
        cmocka_unit_test(test_refuses_a_damaged_or_newer_manifest),
        cmocka_unit_test(test_build_refuses_a_foreign_folder),
        cmocka_unit_test(test_build_refuses_a_locked_folder),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
