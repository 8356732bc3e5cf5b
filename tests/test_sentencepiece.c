// The SentencePiece shim and the JSON-vocabulary converter, on real data:
// (1) USE-lite's vocabulary turned into a model at test time must reproduce
//     the 5 golden TF.js token-id sequences, with sensible byte offsets;
//     colons (the pieces whose upstream score is null) are checked too;
// (2) a model trained here on Wikipedia passages must round-trip held-out
//     passages and load identically from its .model file;
// (3) bad models, bad text and bad vocabularies must fail cleanly.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "common/progress.h"
#include "encoder/spm.h"
#include "encoder/spm_vocab.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define USE_LITE_DIR PHREX_SHARED_DIR "/models/use-lite"
#define WIKI_TSV PHREX_SHARED_DIR "/data/wikipedia/enwiki-2019-good-articles-sample/psgs_w100.tsv"
#define META "\xe2\x96\x81" // U+2581, SentencePiece's word-start marker

enum { TRAIN_PASSAGES = 3000, HELDOUT_FIRST = 50000, HELDOUT_PASSAGES = 200 };

static struct {
    char dir[256]; // per-run temporary directory
    unsigned char *use_proto;
    size_t use_len;
    phrex_spm_vocab_report use_report;
    phrex_spm *use_lite; // loaded from the in-memory proto
} g;

// --- helpers ------------------------------------------------------------------

static void temp_path(char *out, size_t cap, const char *name) {
    int n = snprintf(out, cap, "%s/%s", g.dir, name);
    assert_true(n > 0 && (size_t)n < cap);
}

static void write_text_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *read_text_file(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    assert_true(len >= 0);
    rewind(f);
    char *data = malloc((size_t)len + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    data[len] = '\0';
    if (len_out) *len_out = (size_t)len;
    return data;
}

static int is_byte_piece(const char *piece) {
    return strlen(piece) == 6 && strncmp(piece, "<0x", 3) == 0 && piece[5] == '>';
}

// `s` without any occurrence of `drop`, into `out` (cap bytes).
static void strip_all(const char *s, size_t len, const char *drop, char *out, size_t cap) {
    size_t dl = strlen(drop), n = 0;
    for (size_t i = 0; i < len;) {
        if (i + dl <= len && memcmp(s + i, drop, dl) == 0) {
            i += dl;
            continue;
        }
        assert_true(n + 1 < cap);
        out[n++] = s[i++];
    }
    out[n] = '\0';
}

// The spans of `t` must lie in the text, in order and without overlap; every
// byte no span covers must be a space; each piece must equal its span once
// "▁" and spaces are dropped. Unknown pieces only need a non-empty span. A
// run of byte-fallback pieces must spell exactly the bytes of the span its
// last piece carries.
static void check_spans(const phrex_spm *spm, const char *text, size_t len, const phrex_tokens *t) {
    int32_t covered = 0;
    unsigned char bytes[8];
    int nbytes = 0;
    for (int i = 0; i < t->n; i++) {
        int32_t s = t->start[i], e = t->end[i];
        assert_true(s >= covered);
        assert_true(s <= e);
        assert_true((size_t)e <= len);
        for (int32_t k = covered; k < s; k++) assert_int_equal(text[k], ' ');
        covered = e;
        const char *piece = phrex_spm_id_to_piece(spm, t->ids[i]);
        assert_non_null(piece);
        if (t->ids[i] == 0) { // the unknown id in both models here
            assert_true(e > s);
        } else if (is_byte_piece(piece)) {
            assert_true(nbytes < (int)sizeof bytes);
            bytes[nbytes++] = (unsigned char)strtol(piece + 3, NULL, 16);
            if (e > s) {
                assert_int_equal(e - s, nbytes);
                assert_memory_equal(text + s, bytes, (size_t)nbytes);
                nbytes = 0;
            }
        } else {
            char want[512], got[512];
            strip_all(piece, strlen(piece), META, want, sizeof want);
            strip_all(text + s, (size_t)(e - s), " ", got, sizeof got);
            assert_string_equal(got, want);
        }
    }
    assert_int_equal(nbytes, 0);
    for (size_t k = (size_t)covered; k < len; k++) assert_int_equal(text[k], ' ');
}

// Runs of spaces collapsed to one, no leading or trailing space: what
// SentencePiece's whitespace handling makes of the text. Caller frees.
static char *normalise_spaces(const char *s) {
    char *out = malloc(strlen(s) + 1);
    assert_non_null(out);
    size_t n = 0;
    for (; *s; s++) {
        if (*s == ' ' && (n == 0 || out[n - 1] == ' ')) continue;
        out[n++] = *s;
    }
    if (n && out[n - 1] == ' ') n--;
    out[n] = '\0';
    return out;
}

// Encodes `text`, checks the spans, decodes, and returns the decoded text
// (caller frees).
static char *encode_check_decode(const phrex_spm *spm, const char *text, phrex_tokens *t) {
    size_t len = strlen(text);
    int rc = phrex_spm_encode(spm, text, len, t);
    if (rc) fail_msg("encode \"%.80s\": %s", text, phrex_last_error());
    check_spans(spm, text, len, t);
    size_t need;
    rc = phrex_spm_decode(spm, t->ids, t->n, NULL, 0, &need);
    assert_int_equal(rc, PHREX_ERR_INPUT); // a 0-byte buffer cannot hold even the NUL: asks for more
    char *buf = malloc(need + 1);
    assert_non_null(buf);
    size_t got;
    assert_int_equal(phrex_spm_decode(spm, t->ids, t->n, buf, need + 1, &got), PHREX_OK);
    assert_int_equal(got, need);
    assert_int_equal(strlen(buf), got);
    return buf;
}

static void assert_ids(const phrex_tokens *t, const int32_t *want, int n, const char *what) {
    if (t->n != n) fail_msg("%s: %d tokens, want %d", what, t->n, n);
    for (int i = 0; i < n; i++)
        if (t->ids[i] != want[i]) fail_msg("%s: token %d is %d, want %d", what, i, t->ids[i], want[i]);
}

// Field 2 (the passage text) of one psgs_w100.tsv row, unquoted the way
// Python's csv module quoted it. Returns 0 for a line without it.
static int tsv_passage(const char *line, char *out, size_t cap) {
    const char *p = strchr(line, '\t');
    if (!p) return 0;
    p++;
    size_t n = 0;
    if (*p == '"') {
        for (p++; *p; p++) {
            if (*p == '"' && p[1] == '"') p++;
            else if (*p == '"') break;
            if (n + 1 < cap) out[n++] = *p;
        }
    } else {
        for (; *p && *p != '\t' && *p != '\n'; p++)
            if (n + 1 < cap) out[n++] = *p;
    }
    out[n] = '\0';
    return n > 0;
}

// Reads `count` passages starting at passage index `first` (0-based, header
// excluded). Returns a malloc'd array of malloc'd strings.
static char **read_passages(int first, int count) {
    FILE *f = fopen(WIKI_TSV, "rb");
    if (!f) fail_msg("cannot open %s", WIKI_TSV);
    char **out = calloc((size_t)count, sizeof *out);
    assert_non_null(out);
    char *line = NULL, passage[1 << 14];
    size_t cap = 0;
    int index = -1, n = 0; // -1: the header line
    while (n < count && getline(&line, &cap, f) > 0) {
        if (index++ < first) continue;
        if (!tsv_passage(line, passage, sizeof passage)) continue;
        out[n] = strdup(passage);
        assert_non_null(out[n++]);
    }
    free(line);
    fclose(f);
    assert_int_equal(n, count);
    return out;
}

static void free_passages(char **p, int count) {
    for (int i = 0; i < count; i++) free(p[i]);
    free(p);
}

static void expect_error(int rc, int want_code, const char *want_in_message) {
    if (rc != want_code) fail_msg("rc %d, want %d (message: %s)", rc, want_code, phrex_last_error());
    if (want_in_message && !strstr(phrex_last_error(), want_in_message))
        fail_msg("message \"%s\" lacks \"%s\"", phrex_last_error(), want_in_message);
}

// --- fixture --------------------------------------------------------------------

static int setup(void **state) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g.dir, sizeof g.dir, "%s/phrex-spm-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g.dir)) return -1;
    double t0 = phrex_now_seconds();
    int rc = phrex_spm_proto_from_vocab_json_report(USE_LITE_DIR "/vocab_spm_unigram.json", &g.use_proto,
                                                    &g.use_len, &g.use_report);
    if (rc == PHREX_OK) rc = phrex_spm_init_from_bytes(&g.use_lite, g.use_proto, g.use_len, "use-lite");
    if (rc) {
        fprintf(stderr, "setup: %s\n", phrex_last_error());
        return -1;
    }
    printf("[ timing ] USE-lite vocabulary JSON -> ModelProto -> loaded: %.3f s\n", phrex_now_seconds() - t0);
    return 0;
}

// Removes the temporary directory's files (names are ours, so a glob-free
// list is enough) and the directory itself.
static int teardown(void **state) {
    static const char *names[] = {"use_lite.model", "train.txt", "train.log", "uni.model", "uni.vocab", "bpe_train.txt",
                                  "bpe.model", "bpe.vocab", "corrupt.model", "bad.json", "nope.model"};
    char path[256];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        temp_path(path, sizeof path, names[i]);
        unlink(path);
    }
    rmdir(g.dir);
    phrex_spm_free(g.use_lite);
    free(g.use_proto);
    return 0;
}

// --- (1) USE-lite ---------------------------------------------------------------

static void test_use_lite_vocabulary_repairs(void **state) {
    const phrex_spm_vocab_report *r = &g.use_report;
    assert_int_equal(r->pieces, 8000);
    assert_int_equal(phrex_spm_vocab_size(g.use_lite), 8000);
    // ":" "://" "▁:" "▁:)" "▁:(" "):" "▁:-)" have null scores upstream.
    assert_int_equal(r->null_scores, 7);
    assert_int_equal(r->first_null_score_id, 57);
    // "”5" is at 230, 238 and 4464: the first stays, the others become placeholders.
    assert_int_equal(r->duplicates, 2);
    assert_int_equal(r->first_duplicate_id, 238);
    assert_int_equal(phrex_spm_piece_to_id(g.use_lite, "\xe2\x80\x9d" "5"), 230);
    assert_string_equal(phrex_spm_id_to_piece(g.use_lite, 238), PHREX_SPM_DUPLICATE_PREFIX "238>");
    assert_string_equal(phrex_spm_id_to_piece(g.use_lite, 4464), PHREX_SPM_DUPLICATE_PREFIX "4464>");
    assert_int_equal(phrex_spm_piece_to_id(g.use_lite, META "the"), 9);
    assert_int_equal(phrex_spm_piece_to_id(g.use_lite, "\xef\xbf\xbd"), 0); // id 0 is U+FFFD
    assert_int_equal(phrex_spm_piece_to_id(g.use_lite, "<s>"), 1);
    assert_int_equal(phrex_spm_piece_to_id(g.use_lite, "no such piece"), -1);
    assert_null(phrex_spm_id_to_piece(g.use_lite, 8000));
    assert_null(phrex_spm_id_to_piece(g.use_lite, -1));

    // Placeholders are UNUSED: their text is never encoded to their id.
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 16), PHREX_OK);
    const char *literal = PHREX_SPM_DUPLICATE_PREFIX "238> x\xe2\x80\x9d" "5";
    assert_int_equal(phrex_spm_encode(g.use_lite, literal, strlen(literal), &t), PHREX_OK);
    for (int i = 0; i < t.n; i++) assert_true(t.ids[i] != 238 && t.ids[i] != 4464);
    assert_int_equal(t.ids[t.n - 1], 230);
    phrex_tokens_free(&t);
}

static void test_use_lite_golden(void **state) {
    char *json = read_text_file(USE_LITE_DIR "/golden_tfjs.json", NULL);
    cJSON *root = cJSON_Parse(json);
    free(json);
    assert_non_null(root);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(root, "items");
    assert_int_equal(cJSON_GetArraySize(items), 5);
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 16), PHREX_OK);
    const cJSON *item;
    cJSON_ArrayForEach(item, items) {
        const char *text = cJSON_GetObjectItemCaseSensitive(item, "text")->valuestring;
        const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(item, "tokens");
        int32_t want[64];
        int n = 0;
        const cJSON *id;
        cJSON_ArrayForEach(id, tokens) {
            assert_true(n < 64);
            want[n++] = (int32_t)id->valueint;
        }
        char *decoded = encode_check_decode(g.use_lite, text, &t);
        assert_ids(&t, want, n, text);
        assert_string_equal(decoded, text);
        // Single-spaced text: spans tile it exactly.
        assert_int_equal(t.start[0], 0);
        assert_int_equal(t.end[t.n - 1], (int32_t)strlen(text));
        for (int i = 1; i < t.n; i++) assert_int_equal(t.start[i], t.end[i - 1]);
        free(decoded);
    }
    phrex_tokens_free(&t);
    cJSON_Delete(root);
}

// The 7 null-score pieces were given score 0, i.e. log-probability 0: free
// for the Viterbi search, so a colon piece always wins over any split of the
// same characters, and ":30" (score +30 upstream) wins outright. That is
// also what the TF.js tokenizer did (JavaScript's null + x == x): these ids
// were checked against a port of its algorithm. The one place the two part
// ways is a text that *starts* with a colon piece: the TF.js Viterbi treats a
// running score of exactly 0 as "unset" and re-splits "▁:" into "▁" ":", so
// TF.js gives [30, 57] where SentencePiece gives [604].
static void test_use_lite_colons(void **state) {
    static const struct {
        const char *text;
        int32_t ids[24];
        int n;
    } cases[] = {
        {"Note: the meeting starts at 10:30.", {4566, 57, 9, 1566, 3543, 38, 320, 4177, 6}, 9},
        {"See https://example.com: it works :)", {2576, 290, 7, 255, 773, 1563, 147, 6, 167, 57, 21, 1032, 658}, 13},
        {"(see above): ok :( :-) a:b", {44, 7, 606, 1202, 4445, 2303, 4258, 6600, 11, 57, 151}, 11},
        {"The ratio was 3:1 at 12:00 and 9:45 p.m.", {34, 4472, 33, 216, 57, 363, 38, 575, 5920, 12, 538, 57, 3285, 581, 6, 47, 6}, 17},
        {"Q: What is it? A: Nothing.", {1856, 57, 379, 18, 21, 54, 74, 57, 4340, 6}, 10},
        {"http://a.b:8080/x", {290, 255, 86, 6, 151, 57, 2281, 2281, 68, 152}, 10},
        {": leading colon", {604, 2428, 6002}, 3}, // TF.js: 30 57 2428 6002
    };
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 16), PHREX_OK);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char *decoded = encode_check_decode(g.use_lite, cases[c].text, &t);
        assert_ids(&t, cases[c].ids, cases[c].n, cases[c].text);
        assert_string_equal(decoded, cases[c].text); // lossless: no <unk>, no rewriting
        free(decoded);
    }
    phrex_tokens_free(&t);
}

static void test_use_lite_whitespace_and_unknown(void **state) {
    phrex_tokens t, u;
    assert_int_equal(phrex_tokens_init(&t, 16), PHREX_OK);
    assert_int_equal(phrex_tokens_init(&u, 16), PHREX_OK);
    // Extra whitespace is removed: same ids as the single-spaced text, and
    // the spans skip the leading spaces and take in the inner ones.
    const char *spaced = "  Paris   is  the capital ";
    char *decoded = encode_check_decode(g.use_lite, spaced, &t);
    assert_string_equal(decoded, "Paris is the capital");
    free(decoded);
    const char *plain = "Paris is the capital";
    assert_int_equal(phrex_spm_encode(g.use_lite, plain, strlen(plain), &u), PHREX_OK);
    assert_ids(&t, u.ids, u.n, spaced);
    assert_int_equal(t.start[0], 2);
    assert_int_equal(t.start[1], 7); // "▁is" spans "   is"
    // Characters outside the vocabulary: one <unk> for the run, decoded as " ⁇ ".
    const char *cjk = "Tokyo \xe6\x97\xa5\xe6\x9c\xac";
    decoded = encode_check_decode(g.use_lite, cjk, &t);
    assert_int_equal(t.ids[t.n - 1], 0);
    assert_int_equal(t.start[t.n - 1], 6);
    assert_int_equal(t.end[t.n - 1], 12);
    assert_non_null(strstr(decoded, "\xe2\x81\x87"));
    free(decoded);
    // Empty text: no tokens.
    assert_int_equal(phrex_spm_encode(g.use_lite, "", 0, &t), PHREX_OK);
    assert_int_equal(t.n, 0);
    phrex_tokens_free(&t);
    phrex_tokens_free(&u);
}

// The proto written to a .model file and loaded from it gives the same ids.
static void test_use_lite_model_file(void **state) {
    char path[256];
    temp_path(path, sizeof path, "use_lite.model");
    assert_int_equal(phrex_spm_proto_write(path, g.use_proto, g.use_len), PHREX_OK);
    phrex_spm *from_file = NULL;
    assert_int_equal(phrex_spm_init(&from_file, path), PHREX_OK);
    char **passages = read_passages(HELDOUT_FIRST, 50);
    phrex_tokens a, b;
    assert_int_equal(phrex_tokens_init(&a, 16), PHREX_OK);
    assert_int_equal(phrex_tokens_init(&b, 16), PHREX_OK);
    for (int i = 0; i < 50; i++) {
        size_t len = strlen(passages[i]);
        assert_int_equal(phrex_spm_encode(g.use_lite, passages[i], len, &a), PHREX_OK);
        assert_int_equal(phrex_spm_encode(from_file, passages[i], len, &b), PHREX_OK);
        assert_ids(&b, a.ids, a.n, passages[i]);
        assert_memory_equal(a.start, b.start, (size_t)a.n * sizeof *a.start);
        assert_memory_equal(a.end, b.end, (size_t)a.n * sizeof *a.end);
        check_spans(g.use_lite, passages[i], len, &a);
    }
    phrex_tokens_free(&a);
    phrex_tokens_free(&b);
    free_passages(passages, 50);
    phrex_spm_free(from_file);
}

// --- (2) training -----------------------------------------------------------------

// Writes passages [first, first+count) one per line to `name` in the temp dir.
static void write_corpus(const char *name, int first, int count, char *path, size_t cap) {
    temp_path(path, cap, name);
    char **passages = read_passages(first, count);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < count; i++) fprintf(f, "%s\n", passages[i]);
    assert_int_equal(fclose(f), 0);
    free_passages(passages, count);
}

// Held-out passages round-trip (up to whitespace), spans are exact, no
// <unk> appears (byte fallback), and the .model file loaded through the
// path and through its bytes gives the same ids.
static void check_trained_model(const char *model_path, int vocab_size, int heldout) {
    phrex_spm *from_file = NULL, *from_bytes = NULL;
    assert_int_equal(phrex_spm_init(&from_file, model_path), PHREX_OK);
    assert_int_equal(phrex_spm_vocab_size(from_file), vocab_size);
    size_t len;
    char *bytes = read_text_file(model_path, &len);
    assert_int_equal(phrex_spm_init_from_bytes(&from_bytes, bytes, len, "trained"), PHREX_OK);
    free(bytes);

    char **passages = read_passages(HELDOUT_FIRST, heldout);
    phrex_tokens a, b;
    assert_int_equal(phrex_tokens_init(&a, 16), PHREX_OK);
    assert_int_equal(phrex_tokens_init(&b, 16), PHREX_OK);
    long tokens = 0, bytes_in = 0;
    for (int i = 0; i < heldout; i++) {
        char *decoded = encode_check_decode(from_file, passages[i], &a);
        char *want = normalise_spaces(passages[i]);
        assert_string_equal(decoded, want);
        for (int k = 0; k < a.n; k++) assert_true(a.ids[k] != 0);
        assert_int_equal(phrex_spm_encode(from_bytes, passages[i], strlen(passages[i]), &b), PHREX_OK);
        assert_ids(&b, a.ids, a.n, passages[i]);
        tokens += a.n;
        bytes_in += (long)strlen(passages[i]);
        free(decoded);
        free(want);
    }
    printf("[ info   ] %s: %d held-out passages, %.2f bytes per token\n", model_path, heldout,
           (double)bytes_in / (double)tokens);
    phrex_tokens_free(&a);
    phrex_tokens_free(&b);
    free_passages(passages, heldout);
    phrex_spm_free(from_file);
    phrex_spm_free(from_bytes);
}

static void test_train_unigram(void **state) {
    char corpus[256], prefix[256], model[300];
    write_corpus("train.txt", 0, TRAIN_PASSAGES, corpus, sizeof corpus);
    temp_path(prefix, sizeof prefix, "uni");
    snprintf(model, sizeof model, "%s.model", prefix);
    phrex_spm_train_options o = phrex_spm_train_defaults();
    o.num_threads = 1; // the budget is stated for one core
    // SentencePiece's stderr is captured: training must be quiet.
    char log_path[256];
    temp_path(log_path, sizeof log_path, "train.log");
    fflush(stderr);
    int saved = dup(2), log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && log_fd >= 0);
    dup2(log_fd, 2);
    double t0 = phrex_now_seconds();
    int rc = phrex_spm_train_with(corpus, prefix, 4000, "unigram", &o);
    double seconds = phrex_now_seconds() - t0;
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(log_fd);
    if (rc) fail_msg("%s", phrex_last_error());
    size_t log_len;
    char *log = read_text_file(log_path, &log_len);
    if (strstr(log, "Running command") || strstr(log, "LOG(INFO)")) fail_msg("training logged:\n%.500s", log);
    free(log);
    printf("[ timing ] unigram, vocab 4000, %d passages, 1 thread: %.2f s (%zu bytes on stderr)\n", TRAIN_PASSAGES,
           seconds, log_len);
    check_trained_model(model, 4000, HELDOUT_PASSAGES);
}

static void test_train_bpe(void **state) {
    char corpus[256], prefix[256], model[300];
    write_corpus("bpe_train.txt", 0, 1000, corpus, sizeof corpus);
    temp_path(prefix, sizeof prefix, "bpe");
    snprintf(model, sizeof model, "%s.model", prefix);
    double t0 = phrex_now_seconds();
    int rc = phrex_spm_train(corpus, prefix, 2000, "bpe"); // the plain entry: defaults, all CPUs
    if (rc) fail_msg("%s", phrex_last_error());
    printf("[ timing ] bpe, vocab 2000, 1000 passages, default threads: %.2f s\n", phrex_now_seconds() - t0);
    check_trained_model(model, 2000, 50);
}

// --- (3) failures -----------------------------------------------------------------

static void test_bad_models(void **state) {
    phrex_spm *spm = (phrex_spm *)&spm; // any non-NULL value: a failed init must reset it to NULL
    char path[256];
    temp_path(path, sizeof path, "nope.model");
    expect_error(phrex_spm_init(&spm, path), PHREX_ERR_IO, path);
    assert_null(spm);

    const char junk[] = "this is not a sentencepiece model";
    expect_error(phrex_spm_init_from_bytes(&spm, junk, sizeof junk - 1, "junk.bytes"), PHREX_ERR_FORMAT,
                 "junk.bytes");
    assert_null(spm);
    temp_path(path, sizeof path, "corrupt.model");
    write_text_file(path, junk, sizeof junk - 1);
    expect_error(phrex_spm_init(&spm, path), PHREX_ERR_FORMAT, path);

    // A valid proto cut mid-field, and an empty one (no pieces, no <unk>).
    expect_error(phrex_spm_init_from_bytes(&spm, g.use_proto, g.use_len / 2 + 1, "half"), PHREX_ERR_FORMAT,
                 "half");
    expect_error(phrex_spm_init_from_bytes(&spm, "", 0, "empty"), PHREX_ERR_FORMAT, "empty");
    assert_null(spm);
}

static void test_bad_text(void **state) {
    // Each is bad from byte 3 on; encode must say so before sentencepiece sees it.
    static const char *const bad[] = {
        "ok \xff",             // never valid in UTF-8
        "ok \x80",             // stray continuation byte
        "ok \xc0\xaf",         // overlong "/"
        "ok \xe0\x80\xaf",     // overlong, three bytes
        "ok \xed\xa0\x80",     // UTF-16 surrogate
        "ok \xf4\x90\x80\x80", // above U+10FFFF
        "ok \xe2\x96",         // truncated at the end
        "ok \xe2\x41\x41 fine", // lead byte without continuations
    };
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 16), PHREX_OK);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        t.n = 7; // a stale count must not survive a failed call
        expect_error(phrex_spm_encode(g.use_lite, bad[i], strlen(bad[i]), &t), PHREX_ERR_INPUT, "UTF-8 at byte 3");
        assert_int_equal(t.n, 0);
    }
    // Edges that are valid: 4-byte emoji, U+10FFFF, U+FFFD, an embedded NUL.
    const char good[] = "\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xef\xbf\xbd a\0b";
    assert_int_equal(phrex_spm_encode(g.use_lite, good, sizeof good - 1, &t), PHREX_OK);
    assert_true(t.n > 0);

    // Decode: ids outside the vocabulary, and a buffer that is too small.
    int32_t ids[] = {9, 8000};
    size_t len;
    char buf[8];
    expect_error(phrex_spm_decode(g.use_lite, ids, 2, buf, sizeof buf, &len), PHREX_ERR_INPUT, "id 8000");
    int32_t capital[] = {1706, 1706};
    expect_error(phrex_spm_decode(g.use_lite, capital, 2, buf, sizeof buf, &len), PHREX_ERR_INPUT, "need");
    assert_int_equal(len, strlen("capital capital"));
    phrex_tokens_free(&t);
}

// Writes `json` to bad.json and expects the converter to fail naming the
// file and `want` (the entry index or the parse position).
static void expect_bad_vocab(const char *json, int code, const char *want) {
    char path[256];
    temp_path(path, sizeof path, "bad.json");
    write_text_file(path, json, strlen(json));
    unsigned char *proto = (unsigned char *)path;
    size_t len = 1;
    expect_error(phrex_spm_proto_from_vocab_json(path, &proto, &len), code, path);
    if (want && !strstr(phrex_last_error(), want)) fail_msg("\"%s\" lacks \"%s\"", phrex_last_error(), want);
    assert_null(proto);
    assert_int_equal(len, 0);
}

#define RESERVED "[\"<unk>\",0],[\"<s>\",0],[\"</s>\",0],[\"x1\",0],[\"x2\",0],[\"x3\",0]"

static void test_bad_vocab_json(void **state) {
    expect_bad_vocab("[[\"a\", 0], [\"b\"", PHREX_ERR_FORMAT, "line 1");
    expect_bad_vocab("[\n  [\"a\", 0],\n  [\"b\", -1.5]\n  [\"c\", 0]\n]", PHREX_ERR_FORMAT, "line 4");
    expect_bad_vocab("{\"a\": 1}", PHREX_ERR_FORMAT, "JSON array");
    expect_bad_vocab("[" RESERVED "]", PHREX_ERR_FORMAT, "6 entries");
    expect_bad_vocab("[" RESERVED ",[\"ok\",-1],[\"y\",\"high\"]]", PHREX_ERR_FORMAT, "entry 7");
    expect_bad_vocab("[" RESERVED ",[\"\",-1]]", PHREX_ERR_FORMAT, "entry 6");
    expect_bad_vocab("[" RESERVED ",[17,-1]]", PHREX_ERR_FORMAT, "entry 6");
    expect_bad_vocab("[" RESERVED ",[\"a\",-1,3]]", PHREX_ERR_FORMAT, "entry 6");
    expect_bad_vocab("[" RESERVED ",\"a\"]", PHREX_ERR_FORMAT, "entry 6");
    expect_bad_vocab("[" RESERVED ",[\"a\",1e300]]", PHREX_ERR_FORMAT, "entry 6");
    expect_bad_vocab("[" RESERVED ",[\"\xc3\x28\",-1]]", PHREX_ERR_FORMAT, "entry 6");
    expect_bad_vocab("[[\"<unk>\",0],[\"<s>\",0],[\"<s>\",0],[\"x1\",0],[\"x2\",0],[\"x3\",0],[\"a\",-1]]",
                     PHREX_ERR_FORMAT, "entry 2: reserved piece");

    unsigned char *proto;
    size_t len;
    expect_error(phrex_spm_proto_from_vocab_json(PHREX_SHARED_DIR "/no/such/vocab.json", &proto, &len),
                 PHREX_ERR_IO, "no/such/vocab.json");

    // A small vocabulary that is well formed converts, loads and encodes.
    char path[256];
    temp_path(path, sizeof path, "bad.json");
    const char *ok = "[" RESERVED ",[\"" META "a\",-1],[\"b\",null],[\"" META "\",-2],[\"a\",-3],[\"b\",-4]]";
    write_text_file(path, ok, strlen(ok));
    phrex_spm_vocab_report r;
    assert_int_equal(phrex_spm_proto_from_vocab_json_report(path, &proto, &len, &r), PHREX_OK);
    assert_int_equal(r.pieces, 11);
    assert_int_equal(r.null_scores, 1);
    assert_int_equal(r.first_null_score_id, 7);
    assert_int_equal(r.duplicates, 1);
    assert_int_equal(r.first_duplicate_id, 10);
    phrex_spm *spm;
    assert_int_equal(phrex_spm_init_from_bytes(&spm, proto, len, "tiny"), PHREX_OK);
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 4), PHREX_OK);
    assert_int_equal(phrex_spm_encode(spm, "ab", 2, &t), PHREX_OK);
    int32_t want[] = {6, 7};
    assert_ids(&t, want, 2, "ab");
    phrex_tokens_free(&t);
    phrex_spm_free(spm);
    free(proto);
}

static void test_bad_training_arguments(void **state) {
    char prefix[256];
    temp_path(prefix, sizeof prefix, "never");
    expect_error(phrex_spm_train(PHREX_SHARED_DIR "/no/such/corpus.txt", prefix, 1000, "unigram"), PHREX_ERR_IO,
                 "corpus.txt");
    expect_error(phrex_spm_train(WIKI_TSV, prefix, 1000, "word"), PHREX_ERR_INPUT, "\"word\"");
    expect_error(phrex_spm_train(WIKI_TSV, prefix, 0, "bpe"), PHREX_ERR_INPUT, "vocab_size");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_use_lite_vocabulary_repairs),
        cmocka_unit_test(test_use_lite_golden),
        cmocka_unit_test(test_use_lite_colons),
        cmocka_unit_test(test_use_lite_whitespace_and_unknown),
        cmocka_unit_test(test_use_lite_model_file),
        cmocka_unit_test(test_train_unigram),
        cmocka_unit_test(test_train_bpe),
        cmocka_unit_test(test_bad_models),
        cmocka_unit_test(test_bad_text),
        cmocka_unit_test(test_bad_vocab_json),
        cmocka_unit_test(test_bad_training_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
