// The safetensors reader and the BERT config reader against files written
// here, in a temp dir, at test time: good ones (values, f16/bf16 conversion)
// and broken ones. Every broken file must give a non-zero code and a
// message naming the file and the problem, and nothing may crash (the suite
// also runs under ASan + UBSan).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "tests/support/test_support.h"
#include "encoder/bert.h"
#include "encoder/bert_config.h"
#include "encoder/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

// --- writing files ---------------------------------------------------------------

static void path_of(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", tmpdir, name); }

static void write_bytes(const char *name, const void *bytes, size_t n) {
    char path[256];
    path_of(path, sizeof path, name);
    test_write_file(path, bytes, n);
}

// A safetensors file: an 8-byte length (header_len, or strlen(header) when
// header_len is 0), the header text, then data_len bytes of data.
static void write_raw(const char *name, const char *header, uint64_t header_len, const void *data, size_t data_len) {
    size_t hn = strlen(header);
    if (!header_len) header_len = hn;
    unsigned char *buf = malloc(8 + hn + data_len + 1);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(header_len >> (8 * i));
    memcpy(buf + 8, header, hn);
    if (data_len) memcpy(buf + 8 + hn, data, data_len);
    write_bytes(name, buf, 8 + hn + data_len);
    free(buf);
}

// Writes `header` with `data_len` zero bytes of data, opens it and expects
// failure with a message holding the file name and `needle`.
static void expect_bad(const char *name, const char *header, size_t data_len, const char *needle) {
    unsigned char *zeros = calloc(1, data_len + 1);
    assert_non_null(zeros);
    write_raw(name, header, 0, zeros, data_len);
    free(zeros);
    char path[256];
    path_of(path, sizeof path, name);
    phrex_safetensors st;
    phrex_clear_error();
    int rc = phrex_safetensors_init(&st, path);
    if (rc == PHREX_OK) fail_msg("%s: opened, expected an error about '%s'", name, needle);
    const char *msg = phrex_last_error();
    if (!strstr(msg, name) || !strstr(msg, needle)) fail_msg("%s: message '%s' lacks the file or '%s'", name, msg, needle);
    assert_null(st.map); // left empty, safe to free again
    phrex_safetensors_free(&st);
}

// --- good files --------------------------------------------------------------------

static void put_u16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

// f32 [2,3] at 0..24, f16 [8] at 24..40, bf16 [2,2] at 40..48, i64 [2] at 48..64.
static void write_good(const char *name) {
    const char *header = "{\"__metadata__\":{\"format\":\"pt\"},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                         "\"half\":{\"dtype\":\"F16\",\"shape\":[8],\"data_offsets\":[24,40]},"
                         "\"brain\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[40,48]},"
                         "\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[48,64]},"
                         "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[64,64]}}";
    unsigned char data[64] = {0};
    float a[6] = {1.5f, -2.0f, 0.25f, 3e-3f, -7.0f, 1e10f};
    memcpy(data, a, sizeof a);
    // f16: 1, -2, 65504 (max), 2^-24 (smallest subnormal), 2^-14 (smallest
    // normal), 0.333251953125, +inf, a NaN.
    uint16_t h[8] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x3555, 0x7c00, 0x7e00};
    for (int i = 0; i < 8; i++) put_u16(data + 24 + 2 * i, h[i]);
    // bf16: 1, -3.140625, 2^-129 (f32 subnormal 0x00100000), -0
    uint16_t b[4] = {0x3f80, 0xc049, 0x0010, 0x8000};
    for (int i = 0; i < 4; i++) put_u16(data + 40 + 2 * i, b[i]);
    write_raw(name, header, 0, data, sizeof data);
}

static void test_reads_good_file(void **state) {
    (void)state;
    write_good("good.safetensors");
    char path[256];
    path_of(path, sizeof path, "good.safetensors");
    phrex_safetensors st;
    if (phrex_safetensors_init(&st, path) != PHREX_OK) fail_msg("%s", phrex_last_error());
    assert_int_equal(st.n_tensors, 5);
    const phrex_safetensors_tensor *t = phrex_safetensors_find(&st, "ids");
    assert_non_null(t);
    assert_int_equal(t->dtype, PHREX_DTYPE_I64);
    assert_null(phrex_safetensors_find(&st, "__metadata__"));

    float a[6], h[8], b[4];
    assert_int_equal(phrex_safetensors_read_f32(&st, "a", 2, (int64_t[]){2, 3}, a), PHREX_OK);
    assert_true(a[0] == 1.5f && a[1] == -2.0f && a[3] == 3e-3f && a[5] == 1e10f);
    assert_int_equal(phrex_safetensors_read_f32(&st, "half", 1, (int64_t[]){8}, h), PHREX_OK);
    assert_true(h[0] == 1.0f && h[1] == -2.0f && h[2] == 65504.0f);
    assert_true(h[3] == ldexpf(1.0f, -24) && h[4] == ldexpf(1.0f, -14) && h[5] == 0.333251953125f);
    assert_true(isinf(h[6]) && h[6] > 0 && isnan(h[7]));
    assert_int_equal(phrex_safetensors_read_f32(&st, "brain", 2, (int64_t[]){2, 2}, b), PHREX_OK);
    assert_true(b[0] == 1.0f && b[1] == -3.140625f && b[2] == ldexpf(1.0f, -129));
    assert_true(b[3] == 0.0f && signbit(b[3]));
    float none[1];
    assert_int_equal(phrex_safetensors_read_f32(&st, "empty", 2, (int64_t[]){0, 4}, none), PHREX_OK);
    phrex_safetensors_free(&st);
}

// Every f16 bit pattern against the value it encodes, computed another way.
static void test_f16_all_values(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        int e = (h >> 10) & 0x1f, m = h & 0x3ff;
        double want = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
        if (h & 0x8000) want = -want;
        float got = phrex_f16_to_f32((uint16_t)h);
        if (isnan(want) ? !isnan(got) : (double)got != want || !signbit(got) != !signbit(want))
            fail_msg("f16 0x%04x: got %g, want %g", h, got, want);
    }
}

static void test_lookup_errors(void **state) {
    (void)state;
    write_good("lookup.safetensors");
    char path[256];
    path_of(path, sizeof path, "lookup.safetensors");
    phrex_safetensors st;
    assert_int_equal(phrex_safetensors_init(&st, path), PHREX_OK);
    float buf[8];
    struct {
        const char *name;
        int ndim;
        int64_t shape[2];
        int code;
        const char *needle;
    } cases[] = {
        {"nope", 1, {3}, PHREX_ERR_FORMAT, "tensor 'nope' is missing"},
        {"a", 2, {3, 2}, PHREX_ERR_MISMATCH, "tensor 'a' has shape [2,3], expected [3,2]"},
        {"a", 1, {6}, PHREX_ERR_MISMATCH, "has shape [2,3], expected [6]"},
        {"ids", 1, {2}, PHREX_ERR_MISMATCH, "tensor 'ids' has dtype I64, expected F32, F16 or BF16"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        phrex_clear_error();
        int rc = phrex_safetensors_read_f32(&st, cases[i].name, cases[i].ndim, cases[i].shape, buf);
        assert_int_equal(rc, cases[i].code);
        const char *msg = phrex_last_error();
        if (!strstr(msg, "lookup.safetensors") || !strstr(msg, cases[i].needle))
            fail_msg("message '%s' lacks '%s'", msg, cases[i].needle);
    }
    phrex_safetensors_free(&st);
}

// --- broken files ------------------------------------------------------------------

static void test_truncated_files(void **state) {
    (void)state;
    char path[256];
    phrex_safetensors st;

    write_bytes("empty.safetensors", "", 0);
    path_of(path, sizeof path, "empty.safetensors");
    assert_int_equal(phrex_safetensors_init(&st, path), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "empty.safetensors: truncated: 0 bytes"));

    write_bytes("short.safetensors", "\x10\x00\x00", 3);
    path_of(path, sizeof path, "short.safetensors");
    assert_int_equal(phrex_safetensors_init(&st, path), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "short.safetensors: truncated: 3 bytes"));

    // The header length claims 9000 bytes; 100 follow.
    char header[101];
    memset(header, ' ', 100);
    header[100] = '\0';
    header[0] = '{', header[99] = '}';
    write_raw("long_header.safetensors", header, 9000, NULL, 0);
    path_of(path, sizeof path, "long_header.safetensors");
    assert_int_equal(phrex_safetensors_init(&st, path), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "long_header.safetensors: truncated: header says 9000 bytes, file has 100"));

    // A length near 2^64 must not wrap any size computation.
    write_raw("huge_header.safetensors", "{}", UINT64_MAX - 3, NULL, 0);
    path_of(path, sizeof path, "huge_header.safetensors");
    assert_int_equal(phrex_safetensors_init(&st, path), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "huge_header.safetensors: truncated"));

    // A good file cut inside its data.
    write_good("cut.safetensors");
    path_of(path, sizeof path, "cut.safetensors");
    assert_int_equal(truncate(path, 8 + 300), 0);
    assert_int_equal(phrex_safetensors_init(&st, path), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "cut.safetensors"));

    path_of(path, sizeof path, "absent.safetensors");
    assert_int_equal(phrex_safetensors_init(&st, path), PHREX_ERR_IO);
    assert_non_null(strstr(phrex_last_error(), "absent.safetensors: cannot open"));
    path_of(path, sizeof path, "");
    assert_int_equal(phrex_safetensors_init(&st, path), PHREX_ERR_IO); // a directory
    phrex_safetensors_free(&st);
}

static void test_bad_headers(void **state) {
    (void)state;
    expect_bad("json.safetensors", "{\"a\":{\"dtype\":\"F32\",", 0, "header is not valid JSON");
    expect_bad("array.safetensors", "[1,2,3]", 0, "header is not a JSON object");
    expect_bad("entry.safetensors", "{\"a\":5}", 0, "tensor 'a': entry is not a JSON object");
    expect_bad("meta.safetensors", "{\"__metadata__\":[1]}", 0, "\"__metadata__\" is not a JSON object");
    expect_bad("nodtype.safetensors", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "tensor 'a': \"dtype\" is missing");
    expect_bad("dtype.safetensors", "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "tensor 'a' has unknown dtype \"F33\"");
    expect_bad("noshape.safetensors", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "\"shape\" is missing");
    expect_bad("negdim.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
               "shape dimension 0 is not a non-negative integer");
    expect_bad("fracdim.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,12]}}", 12,
               "shape dimension 1 is not a non-negative integer");
    expect_bad("strdim.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"3\"],\"data_offsets\":[0,12]}}", 12,
               "shape dimension 0");
    expect_bad("ndim.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
               1, "tensor 'a' has 9 dimensions");
    expect_bad("overflow.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
               "shape overflows");
    expect_bad("bigdim.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4,
               "not a non-negative integer");
}

static void test_bad_offsets(void **state) {
    (void)state;
    expect_bad("arity.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
               "\"data_offsets\" must be two non-negative integers");
    expect_bad("negoff.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
               "\"data_offsets\" must be two");
    expect_bad("past.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
               "tensor 'a' has data_offsets [0, 16] past the end of the data (8 bytes)");
    expect_bad("farpast.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9007199254740988,9007199254740992]}}", 8,
               "past the end");
    expect_bad("inverted.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
               "tensor 'a' has data_offsets [8, 4]: begin after end");
    expect_bad("size.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,40]}}", 48,
               "tensor 'a': shape [3,4] of F32 needs 48 bytes, data_offsets hold 40");
    expect_bad("size16.safetensors", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,12]}}", 12,
               "shape [3] of BF16 needs 6 bytes, data_offsets hold 12");
    expect_bad("overlap.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,20]}}",
               20, "tensors 'a' [0, 12) and 'b' [8, 20) overlap");
    expect_bad("same.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               4, "overlap");
    expect_bad("twice.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "tensor 'a' appears twice");
}

// --- config.json --------------------------------------------------------------------

// The real model's fields, with `edit` spliced in: "key": value pairs that
// replace the defaults below (a key mapped to "DELETE" is left out).
static void write_config(const char *name, const char *edits[][2], int n_edits) {
    static const char *base[][2] = {
        {"hidden_act", "\"gelu\""},      {"hidden_size", "384"},
        {"intermediate_size", "1536"},   {"layer_norm_eps", "1e-12"},
        {"max_position_embeddings", "512"}, {"model_type", "\"bert\""},
        {"num_attention_heads", "12"},   {"num_hidden_layers", "6"},
        {"position_embedding_type", "\"absolute\""}, {"type_vocab_size", "2"},
        {"vocab_size", "30522"},
    };
    char text[2048] = "{\"architectures\": [\"BertModel\"], \"hidden_dropout_prob\": 0.1";
    int nb = (int)(sizeof base / sizeof *base);
    for (int i = 0; i < nb; i++) {
        const char *value = base[i][1];
        for (int e = 0; e < n_edits; e++)
            if (strcmp(edits[e][0], base[i][0]) == 0) value = edits[e][1];
        if (strcmp(value, "DELETE") == 0) continue;
        size_t len = strlen(text);
        snprintf(text + len, sizeof text - len, ", \"%s\": %s", base[i][0], value);
    }
    for (int e = 0; e < n_edits; e++) { // keys not in base
        int known = 0;
        for (int i = 0; i < nb; i++) known |= strcmp(edits[e][0], base[i][0]) == 0;
        size_t len = strlen(text);
        if (!known) snprintf(text + len, sizeof text - len, ", \"%s\": %s", edits[e][0], edits[e][1]);
    }
    strcat(text, "}");
    write_bytes(name, text, strlen(text));
}

static void expect_config(const char *name, const char *key, const char *value, int code, const char *needle) {
    const char *edit[1][2] = {{key, value}};
    write_config(name, edit, 1);
    char path[256];
    path_of(path, sizeof path, name);
    phrex_bert_config cfg;
    phrex_clear_error();
    int rc = phrex_bert_config_read(&cfg, path);
    if (rc != code) fail_msg("%s (%s = %s): code %d, expected %d: %s", name, key, value, rc, code, phrex_last_error());
    if (code == PHREX_OK) return;
    const char *msg = phrex_last_error();
    if (!strstr(msg, name) || !strstr(msg, needle)) fail_msg("%s: message '%s' lacks the file or '%s'", name, msg, needle);
}

static void test_config_good(void **state) {
    (void)state;
    write_config("config_ok.json", NULL, 0);
    char path[256];
    path_of(path, sizeof path, "config_ok.json");
    phrex_bert_config cfg;
    if (phrex_bert_config_read(&cfg, path) != PHREX_OK) fail_msg("%s", phrex_last_error());
    assert_int_equal(cfg.hidden_size, 384);
    assert_int_equal(cfg.head_dim, 32);
    assert_int_equal(cfg.vocab_size, 30522);
    assert_true(cfg.layer_norm_eps == 1e-12f);
    // HF's defaults when the optional fields are absent.
    expect_config("config_nopos.json", "position_embedding_type", "DELETE", PHREX_OK, "");
    expect_config("config_notype.json", "model_type", "DELETE", PHREX_OK, "");
    expect_config("config_dec.json", "is_decoder", "false", PHREX_OK, "");
}

static void test_config_bad(void **state) {
    (void)state;
    expect_config("c1.json", "hidden_act", "\"relu\"", PHREX_ERR_MISMATCH,
                  "field 'hidden_act' is \"relu\"; only \"gelu\"");
    expect_config("c2.json", "hidden_act", "\"gelu_new\"", PHREX_ERR_MISMATCH, "'hidden_act'");
    expect_config("c3.json", "hidden_act", "DELETE", PHREX_ERR_FORMAT, "required field 'hidden_act' is missing");
    expect_config("c4.json", "hidden_size", "DELETE", PHREX_ERR_FORMAT, "required field 'hidden_size' is missing");
    expect_config("c5.json", "num_hidden_layers", "\"6\"", PHREX_ERR_FORMAT,
                  "field 'num_hidden_layers' must be an integer");
    expect_config("c6.json", "num_hidden_layers", "6.5", PHREX_ERR_FORMAT, "must be an integer");
    expect_config("c7.json", "intermediate_size", "0", PHREX_ERR_FORMAT, "field 'intermediate_size' is 0, expected 1..");
    expect_config("c8.json", "vocab_size", "-3", PHREX_ERR_FORMAT, "field 'vocab_size' is -3");
    expect_config("c9.json", "num_attention_heads", "5", PHREX_ERR_FORMAT,
                  "hidden_size 384 is not divisible by num_attention_heads 5");
    expect_config("c10.json", "position_embedding_type", "\"relative_key\"", PHREX_ERR_MISMATCH,
                  "'position_embedding_type' is \"relative_key\"");
    expect_config("c11.json", "model_type", "\"roberta\"", PHREX_ERR_MISMATCH, "'model_type' is \"roberta\"");
    expect_config("c12.json", "is_decoder", "true", PHREX_ERR_MISMATCH, "'is_decoder' is true");
    expect_config("c13.json", "layer_norm_eps", "-1e-12", PHREX_ERR_FORMAT, "'layer_norm_eps' is -1e-12");
    expect_config("c14.json", "layer_norm_eps", "null", PHREX_ERR_FORMAT, "'layer_norm_eps' must be a number");
    expect_config("c15.json", "hidden_size", "1e30", PHREX_ERR_FORMAT, "field 'hidden_size'");
    expect_config("c16.json", "hidden_act", "7", PHREX_ERR_FORMAT, "field 'hidden_act' must be a string");

    char path[256];
    phrex_bert_config cfg;
    write_bytes("c_json.json", "{\"hidden_size\": 384,", 20);
    path_of(path, sizeof path, "c_json.json");
    assert_int_equal(phrex_bert_config_read(&cfg, path), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "c_json.json: not valid JSON"));
    write_bytes("c_arr.json", "[]", 2);
    path_of(path, sizeof path, "c_arr.json");
    assert_int_equal(phrex_bert_config_read(&cfg, path), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "c_arr.json: not a JSON object"));
    path_of(path, sizeof path, "c_absent.json");
    assert_int_equal(phrex_bert_config_read(&cfg, path), PHREX_ERR_IO);
    assert_non_null(strstr(phrex_last_error(), "c_absent.json: cannot open"));
}

// --- a whole (tiny) model -------------------------------------------------------------

// Writes a model dir with a 1-layer BERT (C = 32, 2 heads, F = 64, V = 40,
// P = 16) whose tensors are f16 or bf16 as `dtype` says, with one tensor
// renamed or re-shaped when `bad` names it, and a "bert." prefix if asked.
static void write_tiny_model(const char *dir, const char *dtype, const char *bad, const char *prefix) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, dir);
    mkdir(path, 0700);
    char cfg_name[128];
    snprintf(cfg_name, sizeof cfg_name, "%s/config.json", dir);
    const char *edits[][2] = {{"hidden_size", "32"}, {"num_attention_heads", "2"}, {"num_hidden_layers", "1"},
                              {"intermediate_size", "64"}, {"vocab_size", "40"}, {"max_position_embeddings", "16"}};
    write_config(cfg_name, edits, 6);
    static const struct {
        const char *name;
        int d0, d1;
    } tensors[] = {
        {"embeddings.word_embeddings.weight", 40, 32}, {"embeddings.position_embeddings.weight", 16, 32},
        {"embeddings.token_type_embeddings.weight", 2, 32}, {"embeddings.LayerNorm.weight", 32, 0},
        {"embeddings.LayerNorm.bias", 32, 0}, {"encoder.layer.0.attention.self.query.weight", 32, 32},
        {"encoder.layer.0.attention.self.query.bias", 32, 0}, {"encoder.layer.0.attention.self.key.weight", 32, 32},
        {"encoder.layer.0.attention.self.key.bias", 32, 0}, {"encoder.layer.0.attention.self.value.weight", 32, 32},
        {"encoder.layer.0.attention.self.value.bias", 32, 0},
        {"encoder.layer.0.attention.output.dense.weight", 32, 32},
        {"encoder.layer.0.attention.output.dense.bias", 32, 0},
        {"encoder.layer.0.attention.output.LayerNorm.weight", 32, 0},
        {"encoder.layer.0.attention.output.LayerNorm.bias", 32, 0},
        {"encoder.layer.0.intermediate.dense.weight", 64, 32}, {"encoder.layer.0.intermediate.dense.bias", 64, 0},
        {"encoder.layer.0.output.dense.weight", 32, 64}, {"encoder.layer.0.output.dense.bias", 32, 0},
        {"encoder.layer.0.output.LayerNorm.weight", 32, 0}, {"encoder.layer.0.output.LayerNorm.bias", 32, 0},
    };
    size_t n = sizeof tensors / sizeof *tensors, off = 0;
    char *header = malloc(16384);
    unsigned char *data = malloc(1 << 16);
    assert_true(header && data);
    strcpy(header, "{");
    for (size_t i = 0; i < n; i++) {
        int d0 = tensors[i].d0, d1 = tensors[i].d1;
        int is_bad = bad && strcmp(bad, tensors[i].name) == 0;
        if (is_bad) d0 += 1; // mis-shaped
        size_t count = (size_t)d0 * (d1 ? d1 : 1);
        for (size_t k = 0; k < count; k++) // small values, 1 for LayerNorm scales
            put_u16(data + off + 2 * k, strstr(tensors[i].name, "LayerNorm.weight") ? 0x3f80 : (uint16_t)(0x3c00 + k % 64));
        if (strcmp(dtype, "F16") == 0)
            for (size_t k = 0; k < count; k++) put_u16(data + off + 2 * k, (uint16_t)(0x2000 + (k * 37) % 0x1000));
        char shape[32];
        if (d1)
            snprintf(shape, sizeof shape, "[%d,%d]", d0, d1);
        else
            snprintf(shape, sizeof shape, "[%d]", d0);
        size_t len = strlen(header);
        snprintf(header + len, 16384 - len, "%s\"%s%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                 i ? "," : "", prefix, tensors[i].name, dtype, shape, off, off + 2 * count);
        off += 2 * count;
    }
    strcat(header, "}");
    char st_name[128];
    snprintf(st_name, sizeof st_name, "%s/model.safetensors", dir);
    write_raw(st_name, header, 0, data, off);
    free(header);
    free(data);
}

static void test_tiny_model(void **state) {
    (void)state;
    char dir[256];
    phrex_bert *m = NULL;
    const char *variants[][2] = {{"tiny_f16", "F16"}, {"tiny_bf16", "BF16"}};
    for (int v = 0; v < 2; v++) {
        write_tiny_model(variants[v][0], variants[v][1], NULL, v ? "bert." : "");
        snprintf(dir, sizeof dir, "%s/%s", tmpdir, variants[v][0]);
        if (phrex_bert_init(&m, dir) != PHREX_OK) fail_msg("%s", phrex_last_error());
        assert_int_equal(phrex_bert_get_config(m)->hidden_size, 32);
        phrex_encoder *enc;
        assert_int_equal(phrex_encoder_init(&enc, m, 40), PHREX_OK);
        int32_t ids[20], lens[2] = {16, 4};
        for (int i = 0; i < 20; i++) ids[i] = i * 7 % 40;
        float out[20 * 32];
        assert_int_equal(phrex_encoder_forward(enc, ids, NULL, lens, 2, out), PHREX_OK);
        for (int i = 0; i < 20 * 32; i++) assert_true(isfinite(out[i]));
        int32_t too_long = 17;
        assert_int_equal(phrex_encoder_forward(enc, ids, NULL, &too_long, 1, out), PHREX_ERR_INPUT);
        phrex_encoder_free(enc);
        phrex_bert_free(m);
    }
    write_tiny_model("tiny_bad", "F16", "encoder.layer.0.intermediate.dense.weight", "");
    snprintf(dir, sizeof dir, "%s/tiny_bad", tmpdir);
    assert_int_equal(phrex_bert_init(&m, dir), PHREX_ERR_MISMATCH);
    assert_null(m);
    const char *msg = phrex_last_error();
    if (!strstr(msg, "tiny_bad/model.safetensors") ||
        !strstr(msg, "tensor 'encoder.layer.0.intermediate.dense.weight' has shape [65,32], expected [64,32]"))
        fail_msg("message: %s", msg);
    write_tiny_model("tiny_missing", "F16", NULL, "roberta.");
    snprintf(dir, sizeof dir, "%s/tiny_missing", tmpdir);
    assert_int_equal(phrex_bert_init(&m, dir), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "tensor 'embeddings.word_embeddings.weight' is missing"));
}

// --- temp dir ----------------------------------------------------------------------

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/phrex-st-XXXXXX", base && strlen(base) < 40 ? base : "/tmp");
    return test_make_tmpdir(tmpdir);
}

static int teardown(void **state) {
    (void)state;
    return test_remove_tree(tmpdir) == 0 ? 0 : -1; // only our own mkdtemp dir
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_good_file), cmocka_unit_test(test_f16_all_values),
        cmocka_unit_test(test_lookup_errors),   cmocka_unit_test(test_truncated_files),
        cmocka_unit_test(test_bad_headers),     cmocka_unit_test(test_bad_offsets),
        cmocka_unit_test(test_config_good),     cmocka_unit_test(test_config_bad),
        cmocka_unit_test(test_tiny_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
