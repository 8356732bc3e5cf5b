// Search over small dumps of DensePhrases' sample corpus, built at test time:
// (1) a Flat dump built by the CLI: span scoring equals an exhaustive
//     reference (every valid span of every passage scored with the
//     reconstructed vectors), de-duplication invariants for every unit,
//     whole-word answers, concurrent searches equal to a single thread's;
// (2) a Flat dump built with a phrase filter dropping about half the
//     tokens: the same reference, over kept tokens only;
// (3) an IVF16,SQ8 dump: the same reference on the quantized vectors with
//     every list probed;
// (4) question input rules: empty, NUL, invalid UTF-8, 10,000 characters;
// (5) the text helpers: whole words, sentences, normalised hashes.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "tests/support/test_support.h"
#include "data/corpus.h"
#include "data/metrics.h"
#include "index/build.h"
#include "index/dump.h"
#include "search/query.h"
#include "search/search.h"
#include "search/span_text.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ARTICLES PHREX_SHARED_DIR "/data/wikipedia/densephrases-sample/articles.json"
// Under AddressSanitizer the encoder is about 10x slower: fewer passages.
#ifdef __SANITIZE_ADDRESS__
#define FIRST_PASSAGES 6
#else
#define FIRST_PASSAGES 24
#endif
#define N_THREADS 4
#define SCORE_TOL 1e-3f

static const char *const questions[] = {
    "who won season 4 of america's got talent",
    "how many goals scored ronaldo in 2014-2015 season",
    "who plays william boldwood in far from the madding crowd",
    "when did the fourth season premiere on NBC",
    "which film did Thomas Vinterberg direct",
    "what club did Ronaldo join in 2009",
};
#define N_QUESTIONS (sizeof questions / sizeof questions[0])

static struct {
    char tmp[256], corpus[300], flat[300], filtered[300], ivf[300];
    phrex_searcher *flat_s, *filtered_s, *ivf_s;
} g;

// --- fixtures -----------------------------------------------------------------

// The first FIRST_PASSAGES paragraphs of the sample corpus and those that
// answer its three questions, as TSV (quotes, tabs, newlines made spaces).
static int write_corpus(const char *path) {
    static const int answer_paragraphs[] = {41, 90, 92, 99};
    return test_write_corpus(path, ARTICLES, FIRST_PASSAGES, answer_paragraphs, 4);
}

static int build_with_cli(const char *corpus, const char *out, const char *factory) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' build --corpus '%s' --out '%s' --index-factory %s --threads 1 --quiet >/dev/null",
             PHREX_CLI, corpus, out, factory);
    return test_run_shell(cmd) == 0 ? 0 : -1;
}

// Keeps tokens whose second component is not negative (about half).
static int half_filter(void *ctx, const float *v, int n, int dim, uint8_t *keep) {
    (void)ctx;
    for (int i = 0; i < n; i++) keep[i] = v[(size_t)i * dim + 1] >= 0;
    return PHREX_OK;
}

static int build_filtered(const char *corpus, const char *out) {
    phrex_build_options o;
    phrex_build_options_default(&o);
    o.corpus_paths = &corpus;
    o.n_corpus = 1;
    o.model_dir = PHREX_BASE_MODEL_DIR;
    o.out_dir = out;
    o.index_factory = "Flat";
    o.threads = 1;
    o.progress = 0;
    o.filter = half_filter;
    o.filter_name = "v[1]>=0";
    int rc = phrex_index_build_dump(&o, NULL);
    if (rc) fprintf(stderr, "build %s: %s\n", out, phrex_last_error());
    return rc;
}

static int open_searcher(const char *dump, phrex_searcher **s) {
    phrex_searcher_options so;
    phrex_searcher_options_default(&so);
    so.dump_dir = dump;
    so.model_dir = PHREX_BASE_MODEL_DIR;
    int rc = phrex_searcher_init(s, &so);
    if (rc) fprintf(stderr, "searcher %s: %s\n", dump, phrex_last_error());
    return rc;
}

static int setup(void **state) {
    (void)state;
    snprintf(g.tmp, sizeof g.tmp, "/tmp/phrex-test-search-XXXXXX");
    if (test_make_tmpdir(g.tmp)) return -1;
    snprintf(g.corpus, sizeof g.corpus, "%s/corpus.tsv", g.tmp);
    snprintf(g.flat, sizeof g.flat, "%s/flat", g.tmp);
    snprintf(g.filtered, sizeof g.filtered, "%s/filtered", g.tmp);
    snprintf(g.ivf, sizeof g.ivf, "%s/ivf", g.tmp);
    if (write_corpus(g.corpus) || build_with_cli(g.corpus, g.flat, "Flat") || build_filtered(g.corpus, g.filtered) ||
        build_with_cli(g.corpus, g.ivf, "IVF16,SQ8"))
        return -1;
    return open_searcher(g.flat, &g.flat_s) || open_searcher(g.filtered, &g.filtered_s) ||
                   open_searcher(g.ivf, &g.ivf_s)
               ? -1
               : 0;
}

static int teardown(void **state) {
    (void)state;
    phrex_searcher_free(g.flat_s);
    phrex_searcher_free(g.filtered_s);
    phrex_searcher_free(g.ivf_s);
    test_remove_tree(g.tmp);
    return 0;
}

// --- helpers --------------------------------------------------------------------

typedef struct {
    float *q; // (2, C)
    int C;
} query_vecs;

static query_vecs encode(phrex_searcher *s, const char *question) {
    const phrex_query_model *qm = phrex_searcher_query_model(s);
    query_vecs v = {NULL, phrex_query_model_dim(qm)};
    v.q = malloc(2 * (size_t)v.C * sizeof *v.q);
    assert_non_null(v.q);
    phrex_query_encoder *enc;
    assert_int_equal(phrex_query_encoder_init(&enc, qm), PHREX_OK);
    assert_int_equal(phrex_query_encode(enc, question, strlen(question), v.q, v.q + v.C, NULL), PHREX_OK);
    phrex_query_encoder_free(enc);
    return v;
}

static phrex_search *new_search(phrex_searcher *s, phrex_search_unit unit, int top_k, int search_k) {
    phrex_search_options o;
    phrex_search_options_default(&o);
    o.unit = unit;
    o.top_k = top_k;
    o.search_k = search_k;
    phrex_search *h;
    int rc = phrex_search_init(&h, s, &o);
    if (rc) fprintf(stderr, "phrex_search_init: %s\n", phrex_last_error());
    assert_int_equal(rc, PHREX_OK);
    return h;
}

static float dot(const float *a, const float *b, int n) {
    float acc = 0;
    for (int i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

typedef struct {
    float score;
    int64_t passage;
    int32_t i, j;
} best_span;

// Scores of every kept token of passage p with both query halves.
static void token_scores(phrex_dump *d, const phrex_dump_passage *p, const query_vecs *v, float *s, float *e) {
    float *vec = malloc((size_t)v->C * sizeof *vec);
    assert_non_null(vec);
    for (int32_t t = 0, k = 0; t < p->n_tokens; t++) {
        if (!p->kept[t]) continue;
        assert_int_equal(phrex_dump_reconstruct(d, p->first_id + k++, vec), PHREX_OK);
        s[t] = dot(v->q, vec, v->C);
        e[t] = dot(v->q + v->C, vec, v->C);
    }
    free(vec);
}

// The exhaustive reference: every kept start i and kept end j with
// i <= j < i + L inside one passage.
static best_span brute_force(const char *dump_dir, const query_vecs *v, int L) {
    phrex_dump *d;
    assert_int_equal(phrex_dump_open(&d, dump_dir, PHREX_BASE_MODEL_DIR), PHREX_OK);
    best_span best = {-INFINITY, -1, -1, -1};
    for (int64_t n = 0; n < phrex_dump_get_info(d)->passages; n++) {
        phrex_dump_passage p;
        assert_int_equal(phrex_dump_get_passage(d, n, &p), PHREX_OK);
        float *s = calloc((size_t)p.n_tokens + 1, sizeof *s), *e = calloc((size_t)p.n_tokens + 1, sizeof *e);
        uint8_t *kept = malloc((size_t)p.n_tokens + 1);
        assert_true(s && e && kept);
        memcpy(kept, p.kept, (size_t)p.n_tokens);
        token_scores(d, &p, v, s, e);
        for (int32_t i = 0; i < p.n_tokens; i++)
            for (int32_t j = i; j < p.n_tokens && j < i + L; j++)
                if (kept[i] && kept[j] && s[i] + e[j] > best.score) best = (best_span){s[i] + e[j], n, i, j};
        free(s), free(e), free(kept);
    }
    phrex_dump_free(d);
    return best;
}

static void check_against_reference(phrex_searcher *s, const char *dump_dir) {
    int64_t kept = phrex_searcher_info(s)->kept;
    phrex_search *h = new_search(s, PHREX_UNIT_PHRASE, 5, (int)kept); // every token a hit: exhaustive
    for (size_t q = 0; q < N_QUESTIONS; q++) {
        query_vecs v = encode(s, questions[q]);
        best_span ref = brute_force(dump_dir, &v, PHREX_SEARCH_DEFAULT_MAX_ANSWER_LEN);
        phrex_search_output out;
        assert_int_equal(phrex_search_vectors(h, v.q, v.q + v.C, &out), PHREX_OK);
        assert_true(out.n >= 1);
        const phrex_search_result *r = &out.results[0];
        assert_int_equal(r->passage, ref.passage);
        assert_int_equal(r->start_token, ref.i);
        assert_int_equal(r->end_token, ref.j);
        assert_true(fabsf(r->score - ref.score) <= SCORE_TOL * fmaxf(1.0f, fabsf(ref.score)));
        assert_true(fabsf(r->start_score + r->end_score - r->score) <= SCORE_TOL * fmaxf(1.0f, fabsf(r->score)));
        // A smaller search never finds a better phrase than the exhaustive one.
        phrex_search *small = new_search(s, PHREX_UNIT_PHRASE, 1, 10);
        phrex_search_output o2;
        assert_int_equal(phrex_search_vectors(small, v.q, v.q + v.C, &o2), PHREX_OK);
        assert_true(o2.n == 1 && o2.results[0].score <= ref.score + SCORE_TOL * fmaxf(1.0f, fabsf(ref.score)));
        phrex_search_free(small);
        free(v.q);
    }
    phrex_search_free(h);
}

// --- (1) and (2): span scoring equals the exhaustive reference ---------------------

static void test_matches_brute_force(void **state) {
    (void)state;
    check_against_reference(g.flat_s, g.flat);
}

static void test_filtered_matches_brute_force(void **state) {
    (void)state;
    const phrex_dump_info *info = phrex_searcher_info(g.filtered_s);
    assert_true(info->kept < info->tokens && info->kept > info->tokens / 4); // the filter dropped some
    check_against_reference(g.filtered_s, g.filtered);
    // Every answer starts and ends on a kept token.
    phrex_dump *d;
    assert_int_equal(phrex_dump_open(&d, g.filtered, PHREX_BASE_MODEL_DIR), PHREX_OK);
    phrex_search *h = new_search(g.filtered_s, PHREX_UNIT_PHRASE, 30, 30);
    phrex_search_output out;
    assert_int_equal(phrex_search_question(h, questions[0], strlen(questions[0]), &out), PHREX_OK);
    for (int r = 0; r < out.n; r++) {
        int64_t id;
        assert_int_equal(phrex_dump_vector_id(d, out.results[r].passage, out.results[r].start_token, &id), 0);
        assert_true(id >= 0);
        assert_int_equal(phrex_dump_vector_id(d, out.results[r].passage, out.results[r].end_token, &id), 0);
        assert_true(id >= 0);
    }
    phrex_search_free(h);
    phrex_dump_free(d);
}

// An IVF index with 8-bit scalar quantization: spans are scored with the
// quantized vectors (reconstructed through the direct map), and with every
// list probed the search is again exhaustive.
static void test_ivf_sq8_matches_brute_force(void **state) {
    (void)state;
    assert_true(phrex_searcher_is_ivf(g.ivf_s));
    assert_int_equal(phrex_searcher_set_nprobe(g.ivf_s, 16), PHREX_OK);
    check_against_reference(g.ivf_s, g.ivf);
    // Fewer lists: still answers, never better than exhaustive.
    assert_int_equal(phrex_searcher_set_nprobe(g.ivf_s, 2), PHREX_OK);
    phrex_search *h = new_search(g.ivf_s, PHREX_UNIT_PHRASE, 3, 0);
    phrex_search_output out;
    assert_int_equal(phrex_search_question(h, questions[1], strlen(questions[1]), &out), PHREX_OK);
    assert_true(out.n >= 1);
    phrex_search_free(h);
    assert_false(phrex_searcher_is_ivf(g.flat_s));
}

// --- units and de-duplication ---------------------------------------------------------

static int is_word_byte(unsigned char c) { return c < 0x80 && isalnum(c); }

static void check_common(const phrex_search_output *out, int top_k) {
    assert_true(out->n >= 1 && out->n <= top_k);
    for (int r = 0; r < out->n; r++) {
        const phrex_search_result *x = &out->results[r];
        if (r) assert_true(x->score <= out->results[r - 1].score);
        assert_true(x->answer_start >= 0 && x->answer_start < x->answer_end &&
                    (size_t)x->answer_end <= x->context_len);
        assert_int_equal(x->answer_len, (size_t)(x->answer_end - x->answer_start));
        assert_memory_equal(x->answer, x->context + x->answer_start, x->answer_len);
        assert_int_equal(x->text_len, (size_t)(x->end - x->start));
        assert_memory_equal(x->text, x->context + x->start, x->text_len);
        assert_true(x->start <= x->answer_start && x->answer_end <= x->end);
        assert_true(x->start_token <= x->end_token && x->end_token < x->start_token + 10);
        // Whole words: no cut between two word characters.
        const unsigned char *c = (const unsigned char *)x->context;
        if (x->answer_start > 0) assert_false(is_word_byte(c[x->answer_start - 1]) && is_word_byte(c[x->answer_start]));
        if ((size_t)x->answer_end < x->context_len)
            assert_false(is_word_byte(c[x->answer_end - 1]) && is_word_byte(c[x->answer_end]));
    }
}

static void test_phrase_dedup(void **state) {
    (void)state;
    phrex_search *h = new_search(g.flat_s, PHREX_UNIT_PHRASE, 50, 100);
    for (size_t q = 0; q < N_QUESTIONS; q++) {
        phrex_search_output out;
        assert_int_equal(phrex_search_question(h, questions[q], strlen(questions[q]), &out), PHREX_OK);
        check_common(&out, 50);
        assert_true(out.candidates >= out.n);
        for (int a = 0; a < out.n; a++)
            for (int b = 0; b < a; b++) {
                const phrex_search_result *x = &out.results[a], *y = &out.results[b];
                assert_false(x->passage == y->passage && x->answer_start == y->answer_start &&
                             x->answer_end == y->answer_end);
                char *nx = phrex_metric_normalize(x->answer), *ny = phrex_metric_normalize(y->answer);
                assert_false(!strcmp(nx, ny) && !strcmp(x->title, y->title));
                free(nx), free(ny);
            }
    }
    phrex_search_free(h);
}

static void test_units(void **state) {
    (void)state;
    phrex_search *ph = new_search(g.flat_s, PHREX_UNIT_PHRASE, 5, 200);
    phrex_search *se = new_search(g.flat_s, PHREX_UNIT_SENTENCE, 5, 200);
    phrex_search *pa = new_search(g.flat_s, PHREX_UNIT_PASSAGE, 10, 200);
    phrex_search *doc = new_search(g.flat_s, PHREX_UNIT_DOCUMENT, 5, 200);
    for (size_t q = 0; q < N_QUESTIONS; q++) {
        const char *text = questions[q];
        phrex_search_output o_ph, o_se, o_pa, o_doc;
        assert_int_equal(phrex_search_question(ph, text, strlen(text), &o_ph), PHREX_OK);
        assert_int_equal(phrex_search_question(se, text, strlen(text), &o_se), PHREX_OK);
        assert_int_equal(phrex_search_question(pa, text, strlen(text), &o_pa), PHREX_OK);
        assert_int_equal(phrex_search_question(doc, text, strlen(text), &o_doc), PHREX_OK);
        check_common(&o_ph, 5), check_common(&o_se, 5), check_common(&o_pa, 10), check_common(&o_doc, 5);
        // Every unit's first result holds the best phrase.
        const phrex_search_result *top = &o_ph.results[0];
        assert_string_equal(o_se.results[0].answer, top->answer);
        assert_string_equal(o_pa.results[0].answer, top->answer);
        assert_string_equal(o_doc.results[0].answer, top->answer);
        assert_true(o_pa.results[0].score == top->score);
        for (int a = 0; a < o_pa.n; a++) {
            assert_int_equal(o_pa.results[a].start, 0);
            assert_int_equal(o_pa.results[a].text_len, o_pa.results[a].context_len);
            for (int b = 0; b < a; b++) assert_true(o_pa.results[a].passage != o_pa.results[b].passage);
        }
        for (int a = 0; a < o_doc.n; a++)
            for (int b = 0; b < a; b++) assert_string_not_equal(o_doc.results[a].title, o_doc.results[b].title);
        for (int a = 0; a < o_se.n; a++)
            for (int b = 0; b < a; b++) assert_string_not_equal(o_se.results[a].text, o_se.results[b].text);
    }
    phrex_search_free(ph), phrex_search_free(se), phrex_search_free(pa), phrex_search_free(doc);
}

// --- threads --------------------------------------------------------------------------

typedef struct {
    float score;
    int64_t passage;
    int32_t i, j, a, b;
    uint64_t text_hash; // answer, unit text, title, passage id and context: pointers into the LMDB map
} result_key;

static uint64_t fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return (h ^ 0xff) * 0x100000001b3ull;
}

static uint64_t result_text_hash(const phrex_search_result *x) {
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv(h, x->answer, x->answer_len);
    h = fnv(h, x->text, x->text_len);
    h = fnv(h, x->title, strlen(x->title));
    h = fnv(h, x->passage_id, strlen(x->passage_id));
    return fnv(h, x->context, x->context_len);
}

#define KEYS_PER_QUESTION 10

typedef struct {
    phrex_searcher *s;
    phrex_search_unit unit;
    query_vecs *v; // (N_QUESTIONS)
    result_key keys[N_QUESTIONS][KEYS_PER_QUESTION];
    int n[N_QUESTIONS];
    int failed;
} thread_job;

static void run_questions(thread_job *job, int rounds) {
    phrex_search *h;
    phrex_search_options o;
    phrex_search_options_default(&o);
    o.unit = job->unit;
    if (phrex_search_init(&h, job->s, &o)) {
        job->failed = 1;
        return;
    }
    for (int round = 0; round < rounds; round++)
        for (size_t q = 0; q < N_QUESTIONS; q++) {
            phrex_search_output out;
            if (phrex_search_vectors(h, job->v[q].q, job->v[q].q + job->v[q].C, &out)) job->failed = 1;
            job->n[q] = out.n;
            for (int r = 0; r < out.n && r < KEYS_PER_QUESTION; r++) {
                const phrex_search_result *x = &out.results[r];
                job->keys[q][r] = (result_key){x->score, x->passage, x->start_token, x->end_token, x->answer_start,
                                               x->answer_end, result_text_hash(x)};
            }
        }
    phrex_search_free(h);
}

static void *thread_main(void *arg) {
    run_questions(arg, 3);
    return NULL;
}

// N threads searching one searcher, each through its own handle (and so
// its own LMDB reader), give the serial answers, texts included.
static void threads_agree(phrex_searcher *s, phrex_search_unit unit) {
    query_vecs v[N_QUESTIONS];
    for (size_t q = 0; q < N_QUESTIONS; q++) v[q] = encode(s, questions[q]);
    thread_job ref, jobs[N_THREADS];
    memset(&ref, 0, sizeof ref);
    memset(jobs, 0, sizeof jobs);
    ref = (thread_job){.s = s, .unit = unit, .v = v};
    run_questions(&ref, 1);
    assert_false(ref.failed);
    for (size_t q = 0; q < N_QUESTIONS; q++) assert_true(ref.n[q] > 0);
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        jobs[i].s = s, jobs[i].unit = unit;
        jobs[i].v = v;
        assert_int_equal(pthread_create(&t[i], NULL, thread_main, &jobs[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < N_THREADS; i++) {
        assert_false(jobs[i].failed);
        assert_memory_equal(jobs[i].n, ref.n, sizeof ref.n);
        assert_memory_equal(jobs[i].keys, ref.keys, sizeof ref.keys);
    }
    for (size_t q = 0; q < N_QUESTIONS; q++) free(v[q].q);
}

static void test_threads_agree(void **state) {
    (void)state;
    threads_agree(g.flat_s, PHREX_UNIT_PHRASE);
}

static void test_threads_agree_ivf_passages(void **state) {
    (void)state;
    threads_agree(g.ivf_s, PHREX_UNIT_PASSAGE);
}

// Passage strings point into the LMDB map and stay valid across later
// searches on the same handle (search.h); answers are valid until the next.
static void test_result_lifetime(void **state) {
    (void)state;
    phrex_search *h = new_search(g.flat_s, PHREX_UNIT_PASSAGE, 3, 0);
    query_vecs a = encode(g.flat_s, questions[0]), b = encode(g.flat_s, questions[1]);
    phrex_search_output out;
    assert_int_equal(phrex_search_vectors(h, a.q, a.q + a.C, &out), PHREX_OK);
    assert_true(out.n > 0);
    const phrex_search_result first = out.results[0];
    char *context = strndup(first.context, first.context_len), *title = strdup(first.title);
    assert_int_equal(strlen(first.context), first.context_len); // NUL-terminated in the map
    for (int round = 0; round < 5; round++) {
        assert_int_equal(phrex_search_vectors(h, round % 2 ? a.q : b.q, (round % 2 ? a.q : b.q) + a.C, &out), 0);
        assert_memory_equal(first.context, context, first.context_len + 1);
        assert_string_equal(first.title, title);
    }
    free(context), free(title), free(a.q), free(b.q);
    phrex_search_free(h);
}

// phrex_dump_locate_passage = phrex_dump_locate + phrex_dump_get_passage, for
// every vector id, through the built-in reader and through an extra one.
static void test_locate_passage(void **state) {
    (void)state;
    phrex_dump *d;
    assert_int_equal(phrex_dump_open(&d, g.filtered, PHREX_BASE_MODEL_DIR), PHREX_OK);
    phrex_dump_reader *rd;
    assert_int_equal(phrex_dump_reader_init(&rd, d), PHREX_OK);
    const phrex_dump_info *info = phrex_dump_get_info(d);
    assert_true(info->kept > 0 && info->kept < info->tokens); // the filter dropped some tokens
    for (int64_t id = 0; id < info->kept; id++) {
        int64_t number;
        int32_t token, token2, token3;
        phrex_dump_passage p, q, r;
        assert_int_equal(phrex_dump_locate(d, id, &number, &token), PHREX_OK);
        assert_int_equal(phrex_dump_get_passage(d, number, &p), PHREX_OK);
        int32_t n = p.n_tokens;
        int32_t *start = malloc((size_t)n * 4), *end = malloc((size_t)n * 4);
        uint8_t *kept = malloc((size_t)n);
        memcpy(start, p.start, (size_t)n * 4), memcpy(end, p.end, (size_t)n * 4), memcpy(kept, p.kept, (size_t)n);
        assert_int_equal(phrex_dump_locate_passage(d, id, &q, &token2), PHREX_OK);
        assert_int_equal(phrex_dump_reader_locate_passage(rd, id, &r, &token3), PHREX_OK);
        assert_int_equal(token2, token);
        assert_int_equal(token3, token);
        const phrex_dump_passage *ps[2] = {&q, &r};
        for (int k = 0; k < 2; k++) {
            assert_int_equal(ps[k]->number, number);
            assert_int_equal(ps[k]->n_tokens, n);
            assert_true(ps[k]->kept[token]);
            assert_string_equal(ps[k]->text, p.text);
            assert_string_equal(ps[k]->title, p.title);
            assert_memory_equal(ps[k]->start, start, (size_t)n * 4);
            assert_memory_equal(ps[k]->end, end, (size_t)n * 4);
            assert_memory_equal(ps[k]->kept, kept, (size_t)n);
        }
        int64_t back;
        assert_int_equal(phrex_dump_vector_id(d, number, token, &back), PHREX_OK);
        assert_int_equal(back, id);
        free(start), free(end), free(kept);
    }
    int64_t number;
    int32_t token;
    phrex_dump_passage p;
    assert_int_equal(phrex_dump_reader_locate_passage(rd, info->kept, &p, &token), PHREX_ERR_INPUT);
    assert_int_equal(phrex_dump_reader_locate(rd, -1, &number, &token), PHREX_ERR_INPUT);
    phrex_dump_reader_free(rd);
    phrex_dump_free(d);
}

// --- (4) question input rules -------------------------------------------------------------

static void test_question_input(void **state) {
    (void)state;
    phrex_search *h = new_search(g.flat_s, PHREX_UNIT_PHRASE, 3, 0);
    phrex_search_output out;
    assert_int_equal(phrex_search_question(h, "", 0, &out), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "empty"));
    assert_int_equal(phrex_search_question(h, " \t  ", 4, &out), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "empty"));
    assert_int_equal(phrex_search_question(h, "who\0won", 7, &out), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "NUL byte at byte 3"));
    assert_int_equal(phrex_search_question(h, "who \xff won", 9, &out), PHREX_ERR_INPUT);
    assert_non_null(strstr(phrex_last_error(), "invalid UTF-8 at byte 4"));
    // 10,000 characters: cut to 64 tokens, answered, and flagged.
    char *longq = malloc(10001);
    assert_non_null(longq);
    for (int i = 0; i < 10000; i++) longq[i] = "who won season four "[i % 20];
    longq[10000] = '\0';
    assert_int_equal(phrex_search_question(h, longq, 10000, &out), PHREX_OK);
    assert_int_equal(out.truncated, 1);
    assert_true(out.n >= 1);
    // No spaces at all: one 10,000-byte word.
    memset(longq, 'a', 10000);
    assert_int_equal(phrex_search_question(h, longq, 10000, &out), PHREX_OK);
    free(longq);
    assert_int_equal(phrex_search_question(h, "Who won?", 8, &out), PHREX_OK);
    assert_int_equal(out.truncated, 0);
    phrex_search_free(h);
}

static void test_bad_options(void **state) {
    (void)state;
    phrex_search_options o;
    phrex_search_options_default(&o);
    phrex_search *h;
    o.top_k = 0;
    assert_int_equal(phrex_search_init(&h, g.flat_s, &o), PHREX_ERR_INPUT);
    phrex_search_options_default(&o);
    o.max_answer_len = 0;
    assert_int_equal(phrex_search_init(&h, g.flat_s, &o), PHREX_ERR_INPUT);
    // A Flat index has no lists to probe.
    assert_int_equal(phrex_searcher_set_nprobe(g.flat_s, 8), PHREX_ERR_INPUT);
    phrex_search_unit u;
    assert_int_equal(phrex_search_parse_unit("passage", &u), PHREX_OK);
    assert_int_equal(u, PHREX_UNIT_PASSAGE);
    assert_int_equal(phrex_search_parse_unit("paragraph", &u), PHREX_ERR_INPUT);
}


// --- a query encoder plugged in through phrex_query_backend ----------------------------

typedef struct {
    int dim;
    int workers;
} axis_model;

static int axis_worker_init(void *model, void **worker) {
    ((axis_model *)model)->workers++;
    *worker = model;
    return PHREX_OK;
}

static void axis_worker_free(void *worker) { ((axis_model *)worker)->workers--; }

// q_start = e0, q_end = e1: the best phrase maximises v_i[0] + v_j[1].
static int axis_encode(void *worker, const char *text, size_t len, float *q_start, float *q_end, int *truncated) {
    (void)text, (void)len;
    const axis_model *m = worker;
    for (int c = 0; c < m->dim; c++) q_start[c] = c == 0, q_end[c] = c == 1;
    *truncated = 0;
    return PHREX_OK;
}

static void axis_model_free(void *model) { (void)model; }

static void test_custom_query_backend(void **state) {
    (void)state;
    axis_model m = {384, 0};
    phrex_query_backend b = {"axis", m.dim, &m, axis_worker_init, axis_worker_free, axis_encode, axis_model_free};
    phrex_query_model *qm;
    assert_int_equal(phrex_query_model_init_backend(&qm, &b), PHREX_OK);
    phrex_searcher_options so;
    phrex_searcher_options_default(&so);
    so.dump_dir = g.flat;
    so.model_dir = PHREX_BASE_MODEL_DIR;
    phrex_searcher *s;
    assert_int_equal(phrex_searcher_init_with_model(&s, &so, qm), PHREX_OK);
    assert_string_equal(phrex_query_model_name(phrex_searcher_query_model(s)), "axis");
    phrex_search *h = new_search(s, PHREX_UNIT_PHRASE, 1, (int)phrex_searcher_info(s)->kept);
    assert_int_equal(m.workers, 1);
    phrex_search_output out;
    assert_int_equal(phrex_search_question(h, "anything", 8, &out), PHREX_OK);
    float q[2 * 384] = {0};
    q[0] = 1, q[384 + 1] = 1;
    query_vecs v = {q, 384};
    best_span ref = brute_force(g.flat, &v, PHREX_SEARCH_DEFAULT_MAX_ANSWER_LEN);
    assert_int_equal(out.results[0].passage, ref.passage);
    assert_int_equal(out.results[0].start_token, ref.i);
    assert_int_equal(out.results[0].end_token, ref.j);
    // Input rules hold whatever the backend.
    assert_int_equal(phrex_search_question(h, "a\xc0", 2, &out), PHREX_ERR_INPUT);
    phrex_search_free(h);
    assert_int_equal(m.workers, 0);
    phrex_searcher_free(s);
    // A backend whose vectors do not fit the dump is refused.
    b.dim = 10;
    assert_int_equal(phrex_query_model_init_backend(&qm, &b), PHREX_OK);
    assert_int_equal(phrex_searcher_init_with_model(&s, &so, qm), PHREX_ERR_MISMATCH);
    assert_non_null(strstr(phrex_last_error(), "gives 10"));
    b.encode = NULL;
    assert_int_equal(phrex_query_model_init_backend(&qm, &b), PHREX_ERR_INPUT);
}

// --- text helpers: whole words, sentences, normalised hashes ---------------------------

static void check_widen(const char *text, int32_t a, int32_t b, const char *want) {
    phrex_span_widen_to_words(text, strlen(text), &a, &b);
    assert_int_equal((size_t)(b - a), strlen(want));
    assert_memory_equal(text + a, want, strlen(want));
}

static void test_widen_to_words(void **state) {
    (void)state;
    check_widen("Kevin Skinner won", 6, 10, "Skinner");        // "skin" of "skin ##ner"
    check_widen("Kevin Skinner won", 9, 13, "Skinner");        // "##ner" alone
    check_widen("Kevin Skinner won", 0, 5, "Kevin");           // already whole
    check_widen("won 24\xe2\x80\x93" "10 over", 4, 6, "24");   // an en dash is no word character
    check_widen("the na\xc3\xafve one", 4, 6, "na\xc3\xafve");  // a non-ASCII letter is
    check_widen("\xe6\x9d\xb1\xe4\xba\xac tower", 0, 3, "\xe6\x9d\xb1"); // a CJK ideograph is a word
    check_widen("(1996)", 1, 3, "1996");
    check_widen("U.S. army", 0, 1, "U");
}

static void check_sentence(const char *text, const char *span, const char *want) {
    const char *at = strstr(text, span);
    assert_non_null(at);
    int32_t a, b;
    phrex_span_sentence(text, strlen(text), (int32_t)(at - text), (int32_t)(at - text + strlen(span)), &a, &b);
    assert_int_equal((size_t)(b - a), strlen(want));
    assert_memory_equal(text + a, want, strlen(want));
}

static void test_sentences(void **state) {
    (void)state;
    const char *t = "It was won by Kevin. The final aired on NBC! Who knew?  Nobody";
    check_sentence(t, "Kevin", "It was won by Kevin.");
    check_sentence(t, "final", "The final aired on NBC!");
    check_sentence(t, "knew", "Who knew?");
    check_sentence(t, "Nobody", "Nobody");
    // A heuristic: an abbreviation's full stop ends a sentence, but the
    // span itself is never cut.
    check_sentence("In the U.S. army", "U.S.", "In the U.S.");
    check_sentence("In the U.S. army", "army", "army");
}

static void test_normal_hash(void **state) {
    (void)state;
#define H(s) phrex_span_normal_hash(s, strlen(s))
    assert_true(H("The Denver Broncos!") == H("denver   broncos"));
    assert_true(H("an apple") == H("Apple"));
    assert_true(H("a") == H(""));
    assert_true(H("U.S.") == H("us"));
    assert_true(H("theory") != H("ory"));
    assert_true(H("the") != H("then"));
    assert_true(H("Denver Broncos") != H("Carolina Panthers"));
    assert_true(H("ab c") != H("a bc"));
#undef H
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_brute_force), cmocka_unit_test(test_filtered_matches_brute_force),
        cmocka_unit_test(test_ivf_sq8_matches_brute_force),
        cmocka_unit_test(test_phrase_dedup),        cmocka_unit_test(test_units),
        cmocka_unit_test(test_threads_agree),       cmocka_unit_test(test_question_input),
        cmocka_unit_test(test_threads_agree_ivf_passages), cmocka_unit_test(test_result_lifetime),
        cmocka_unit_test(test_locate_passage),
        cmocka_unit_test(test_bad_options),         cmocka_unit_test(test_widen_to_words),
        cmocka_unit_test(test_sentences),           cmocka_unit_test(test_normal_hash),
        cmocka_unit_test(test_custom_query_backend),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
