#include "spm_vocab.h"

#include "common/error.h"
#include "common/utf8.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- a minimal protobuf writer -----------------------------------------------
// Only what ModelProto needs: varints, length-delimited fields (strings and
// nested messages) and fixed32 floats. Nested messages are built in their own
// buffer and then appended, since the length prefix comes first.

enum { WIRE_VARINT = 0, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

typedef struct {
    unsigned char *data;
    size_t len, cap;
    int failed; // sticky: set once an allocation fails, checked at the end
} pb_buf;

static void pb_reserve(pb_buf *b, size_t extra) {
    if (b->failed || b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    unsigned char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return;
    }
    b->data = p;
    b->cap = cap;
}

static void pb_bytes(pb_buf *b, const void *src, size_t n) {
    pb_reserve(b, n);
    if (b->failed) return;
    memcpy(b->data + b->len, src, n);
    b->len += n;
}

static void pb_varint(pb_buf *b, uint64_t v) {
    unsigned char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    pb_bytes(b, tmp, n);
}

static void pb_tag(pb_buf *b, int field, int wire) { pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire); }

// int32 fields are sign-extended to 64 bits on the wire (proto2 `int32`).
static void pb_int_field(pb_buf *b, int field, int64_t v) {
    pb_tag(b, field, WIRE_VARINT);
    pb_varint(b, (uint64_t)v);
}

static void pb_string_field(pb_buf *b, int field, const void *s, size_t n) {
    pb_tag(b, field, WIRE_LEN);
    pb_varint(b, n);
    pb_bytes(b, s, n);
}

static void pb_cstring_field(pb_buf *b, int field, const char *s) { pb_string_field(b, field, s, strlen(s)); }

// fixed32 is little-endian regardless of the host.
static void pb_float_field(pb_buf *b, int field, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    unsigned char le[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                           (unsigned char)(u >> 24)};
    pb_tag(b, field, WIRE_FIXED32);
    pb_bytes(b, le, sizeof le);
}

static void pb_message_field(pb_buf *b, int field, const pb_buf *sub) {
    if (sub->failed) b->failed = 1;
    pb_string_field(b, field, sub->data, sub->len);
}

// --- ModelProto field numbers (sentencepiece_model.proto) ---------------------
enum {
    MODEL_PIECES = 1, MODEL_TRAINER_SPEC = 2, MODEL_NORMALIZER_SPEC = 3,
    PIECE_PIECE = 1, PIECE_SCORE = 2, PIECE_TYPE = 3,
    TRAINER_MODEL_TYPE = 3, TRAINER_VOCAB_SIZE = 4,
    TRAINER_UNK_ID = 40, TRAINER_BOS_ID = 41, TRAINER_EOS_ID = 42, TRAINER_PAD_ID = 43,
    TRAINER_UNK_PIECE = 45, TRAINER_BOS_PIECE = 46, TRAINER_EOS_PIECE = 47,
    NORM_NAME = 1, NORM_ADD_DUMMY_PREFIX = 3, NORM_REMOVE_EXTRA_WHITESPACES = 4,
    NORM_ESCAPE_WHITESPACES = 5,
};
enum { MODEL_TYPE_UNIGRAM = 1 };
enum { TYPE_NORMAL = 1, TYPE_UNKNOWN = 2, TYPE_CONTROL = 3, TYPE_USER_DEFINED = 4, TYPE_UNUSED = 5 };

// USE-lite's reserved block: <unk>-like, <s>, </s>, three extra symbols.
#define RESERVED_IDS 6

static int piece_type_for_id(int id) {
    if (id == 0) return TYPE_UNKNOWN;
    if (id <= 2) return TYPE_CONTROL;
    if (id < RESERVED_IDS) return TYPE_USER_DEFINED;
    return TYPE_NORMAL;
}

// --- reading the JSON ---------------------------------------------------------

static int read_whole_file(const char *path, char **data_out, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *data = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 1 << 16;
            char *p = realloc(data, cap);
            if (!p) {
                free(data);
                fclose(f);
                return phrex_fail(PHREX_ERR_MEMORY, "%s: cannot allocate %zu bytes", path, cap);
            }
            data = p;
        }
        size_t got = fread(data + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(data);
        return phrex_fail(PHREX_ERR_IO, "%s: read error", path);
    }
    *data_out = data;
    *len_out = len;
    return PHREX_OK;
}

// Line and column (1-based) of byte `at`, for a parse error a person can find.
static void line_and_column(const char *text, size_t at, int *line, int *column) {
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *column = 1;
        } else {
            (*column)++;
        }
    }
}

static int parse_json(const char *path, const char *text, size_t len, cJSON **root_out) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        int line, column;
        line_and_column(text, at, &line, &column);
        return phrex_fail(PHREX_ERR_FORMAT, "%s: malformed JSON near byte %zu (line %d, column %d)", path,
                          at, line, column);
    }
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return phrex_fail(PHREX_ERR_FORMAT, "%s: expected a JSON array of [piece, score] entries", path);
    }
    *root_out = root;
    return PHREX_OK;
}

// One entry must be [non-empty string, number or null] with a float-sized score.
static int check_entry(const char *path, int index, const cJSON *entry, const char **piece, float *score,
                       int *score_was_null) {
    if (!cJSON_IsArray(entry) || cJSON_GetArraySize(entry) != 2)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: entry %d is not a [piece, score] pair", path, index);
    const cJSON *p = cJSON_GetArrayItem(entry, 0), *s = cJSON_GetArrayItem(entry, 1);
    if (!cJSON_IsString(p) || p->valuestring[0] == '\0')
        return phrex_fail(PHREX_ERR_FORMAT, "%s: entry %d: piece is not a non-empty string", path, index);
    size_t bad_at;
    if (!phrex_utf8_check(p->valuestring, strlen(p->valuestring), &bad_at))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: entry %d: piece is not valid UTF-8 (byte %zu)", path, index,
                          bad_at);
    *score_was_null = cJSON_IsNull(s);
    if (!*score_was_null && !cJSON_IsNumber(s))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: entry %d (\"%s\"): score is not a number or null", path, index,
                          p->valuestring);
    if (!*score_was_null && !(s->valuedouble >= -FLT_MAX && s->valuedouble <= FLT_MAX))
        return phrex_fail(PHREX_ERR_FORMAT, "%s: entry %d (\"%s\"): score %g does not fit a float", path, index,
                          p->valuestring, s->valuedouble);
    *piece = p->valuestring;
    *score = *score_was_null ? 0.0f : (float)s->valuedouble;
    return PHREX_OK;
}

// --- duplicate detection: an open-addressing set of piece strings -------------

typedef struct {
    const char **slots; // borrowed from the cJSON tree
    size_t mask;
} piece_set;

static uint64_t hash_string(const char *s) { // FNV-1a
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int piece_set_init(piece_set *set, int count) {
    size_t cap = 16;
    while (cap < 2 * (size_t)count) cap *= 2; // load factor at most 1/2
    set->slots = calloc(cap, sizeof *set->slots);
    set->mask = cap - 1;
    return set->slots ? PHREX_OK : PHREX_ERR_MEMORY;
}

// Returns 1 if `piece` was already present, 0 after inserting it.
static int piece_set_insert(piece_set *set, const char *piece) {
    for (size_t i = hash_string(piece) & set->mask;; i = (i + 1) & set->mask) {
        if (!set->slots[i]) {
            set->slots[i] = piece;
            return 0;
        }
        if (strcmp(set->slots[i], piece) == 0) return 1;
    }
}

// --- assembling the ModelProto ------------------------------------------------

static void put_piece(pb_buf *model, pb_buf *scratch, const char *piece, float score, int type) {
    scratch->len = 0;
    pb_cstring_field(scratch, PIECE_PIECE, piece);
    pb_float_field(scratch, PIECE_SCORE, score);
    pb_int_field(scratch, PIECE_TYPE, type);
    pb_message_field(model, MODEL_PIECES, scratch);
}

static void put_trainer_spec(pb_buf *model, pb_buf *scratch, int vocab_size, const char *const reserved[3]) {
    scratch->len = 0;
    pb_int_field(scratch, TRAINER_MODEL_TYPE, MODEL_TYPE_UNIGRAM);
    pb_int_field(scratch, TRAINER_VOCAB_SIZE, vocab_size);
    pb_int_field(scratch, TRAINER_UNK_ID, 0);
    pb_int_field(scratch, TRAINER_BOS_ID, 1);
    pb_int_field(scratch, TRAINER_EOS_ID, 2);
    pb_int_field(scratch, TRAINER_PAD_ID, -1);
    // The processor looks up its unk id by this name, so it must be the
    // vocabulary's own id-0 piece, not SentencePiece's default "<unk>".
    pb_cstring_field(scratch, TRAINER_UNK_PIECE, reserved[0]);
    pb_cstring_field(scratch, TRAINER_BOS_PIECE, reserved[1]);
    pb_cstring_field(scratch, TRAINER_EOS_PIECE, reserved[2]);
    pb_message_field(model, MODEL_TRAINER_SPEC, scratch);
}

static void put_normalizer_spec(pb_buf *model, pb_buf *scratch) {
    scratch->len = 0;
    pb_cstring_field(scratch, NORM_NAME, "identity");
    pb_int_field(scratch, NORM_ADD_DUMMY_PREFIX, 1);
    pb_int_field(scratch, NORM_REMOVE_EXTRA_WHITESPACES, 1);
    pb_int_field(scratch, NORM_ESCAPE_WHITESPACES, 1);
    pb_message_field(model, MODEL_NORMALIZER_SPEC, scratch);
}

static int build_proto(const char *path, const cJSON *root, pb_buf *model, phrex_spm_vocab_report *report) {
    int count = cJSON_GetArraySize(root);
    if (count <= RESERVED_IDS)
        return phrex_fail(PHREX_ERR_FORMAT, "%s: %d entries; need the %d reserved ids and at least one piece",
                          path, count, RESERVED_IDS);
    piece_set seen;
    if (piece_set_init(&seen, count)) return phrex_fail(PHREX_ERR_MEMORY, "%s: cannot allocate a piece set", path);
    pb_buf scratch = {0};
    const char *reserved[3] = {0};
    int rc = PHREX_OK, index = 0;
    for (const cJSON *entry = root->child; entry; entry = entry->next, index++) {
        // Initialised because the compiler cannot see that a failing
        // check_entry (via phrex_fail) never returns 0.
        const char *piece = NULL;
        float score = 0.0f;
        int was_null = 0;
        if ((rc = check_entry(path, index, entry, &piece, &score, &was_null))) break;
        if (index < 3) reserved[index] = piece;
        if (was_null && report->null_scores++ == 0) report->first_null_score_id = index;
        if (piece_set_insert(&seen, piece)) {
            if (index < RESERVED_IDS) {
                rc = phrex_fail(PHREX_ERR_FORMAT, "%s: entry %d: reserved piece \"%s\" is a duplicate", path,
                                index, piece);
                break;
            }
            if (report->duplicates++ == 0) report->first_duplicate_id = index;
            char placeholder[48];
            snprintf(placeholder, sizeof placeholder, PHREX_SPM_DUPLICATE_PREFIX "%d>", index);
            put_piece(model, &scratch, placeholder, score, TYPE_UNUSED);
        } else {
            put_piece(model, &scratch, piece, score, piece_type_for_id(index));
        }
    }
    if (rc == PHREX_OK) {
        report->pieces = count;
        put_trainer_spec(model, &scratch, count, reserved);
        put_normalizer_spec(model, &scratch);
        if (model->failed || scratch.failed)
            rc = phrex_fail(PHREX_ERR_MEMORY, "%s: cannot allocate the model proto", path);
    }
    free(scratch.data);
    free(seen.slots);
    return rc;
}

int phrex_spm_proto_from_vocab_json_report(const char *json_path, unsigned char **proto_out, size_t *len_out,
                                           phrex_spm_vocab_report *report) {
    if (!json_path || !proto_out || !len_out) return phrex_fail(PHREX_ERR_INPUT, "spm vocab: NULL argument");
    *proto_out = NULL;
    *len_out = 0;
    phrex_spm_vocab_report local = {0, 0, -1, 0, -1};
    char *text = NULL;
    size_t len = 0;
    int rc = read_whole_file(json_path, &text, &len);
    if (rc) return rc;
    cJSON *root = NULL;
    rc = parse_json(json_path, text, len, &root);
    free(text);
    if (rc) return rc;
    pb_buf model = {0};
    rc = build_proto(json_path, root, &model, &local);
    cJSON_Delete(root);
    if (rc) {
        free(model.data);
        return rc;
    }
    *proto_out = model.data;
    *len_out = model.len;
    if (report) *report = local;
    return PHREX_OK;
}

int phrex_spm_proto_from_vocab_json(const char *json_path, unsigned char **proto_out, size_t *len_out) {
    return phrex_spm_proto_from_vocab_json_report(json_path, proto_out, len_out, NULL);
}

int phrex_spm_proto_write(const char *model_path, const unsigned char *proto, size_t len) {
    if (!model_path || (!proto && len)) return phrex_fail(PHREX_ERR_INPUT, "spm model write: NULL argument");
    size_t tmp_len = strlen(model_path) + 16;
    char *tmp = malloc(tmp_len);
    if (!tmp) return phrex_fail(PHREX_ERR_MEMORY, "%s: cannot allocate a path", model_path);
    snprintf(tmp, tmp_len, "%s.tmp", model_path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int rc = phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    int bad = fwrite(proto, 1, len, f) != len;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, model_path) != 0) {
        int rc = phrex_fail(PHREX_ERR_IO, "%s: cannot write: %s", model_path, strerror(errno));
        remove(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    return PHREX_OK;
}

int phrex_spm_model_from_vocab_json(const char *json_path, const char *model_path,
                                    phrex_spm_vocab_report *report) {
    unsigned char *proto;
    size_t len;
    int rc = phrex_spm_proto_from_vocab_json_report(json_path, &proto, &len, report);
    if (rc) return rc;
    rc = phrex_spm_proto_write(model_path, proto, len);
    free(proto);
    return rc;
}
