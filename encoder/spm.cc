// extern "C" shim over libsentencepiece. Every entry point catches all C++
// exceptions (std::bad_alloc from the library's containers above all) and
// turns them into phrex error codes, since an exception unwinding into C is
// undefined behaviour.
#include "encoder/spm.h"

// These C headers have no extern "C" guard of their own.
extern "C" {
#include "common/error.h"
#include "common/utf8.h"
}

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <unistd.h>
#include <unordered_map>
#include <vector>

struct phrex_spm {
    sentencepiece::SentencePieceProcessor processor;
    std::string name; // model path or caller's label, for messages
};

namespace {

const char *status_text(const sentencepiece::util::Status &s) {
    const char *m = s.error_message();
    return m && *m ? m : "(no message)";
}

// The catch-all every entry point ends with: the error message names `what`.
int fail_from_exception(const char *what) {
    try {
        throw;
    } catch (const std::bad_alloc &) {
        return phrex_fail(PHREX_ERR_MEMORY, "%s: out of memory in sentencepiece", what);
    } catch (const std::exception &e) {
        return phrex_fail(PHREX_ERR_INTERNAL, "%s: sentencepiece threw: %s", what, e.what());
    } catch (...) {
        return phrex_fail(PHREX_ERR_INTERNAL, "%s: sentencepiece threw an unknown exception", what);
    }
}

int read_file(const char *path, std::string *out) {
    FILE *f = std::fopen(path, "rb");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", path, std::strerror(errno));
    char chunk[1 << 16];
    size_t got;
    while ((got = std::fread(chunk, 1, sizeof chunk, f)) > 0) out->append(chunk, got);
    int bad = std::ferror(f);
    std::fclose(f);
    if (bad) return phrex_fail(PHREX_ERR_IO, "%s: read error", path);
    return PHREX_OK;
}

int load(phrex_spm **out, const void *proto, size_t len, const char *name) {
    // unique_ptr: the handle must not leak if the library throws mid-load.
    auto spm = std::make_unique<phrex_spm>();
    spm->name = name;
    auto status = spm->processor.LoadFromSerializedProto(
        std::string_view(static_cast<const char *>(proto), len));
    if (!status.ok()) {
        // The library's parse failure is just its source line and the failed
        // expression; say what it means instead.
        if (std::strstr(status_text(status), "ParseFromArray"))
            return phrex_fail(PHREX_ERR_FORMAT, "%s: not a sentencepiece model: the ModelProto does not parse "
                              "(corrupt or truncated, %zu bytes)", name, len);
        return phrex_fail(PHREX_ERR_FORMAT, "%s: not a valid sentencepiece model: %s", name, status_text(status));
    }
    *out = spm.release();
    return PHREX_OK;
}

} // namespace

extern "C" {

int phrex_spm_init_from_bytes(phrex_spm **out, const void *proto, size_t len, const char *name_for_errors) {
    const char *name = name_for_errors ? name_for_errors : "<memory>";
    if (!out || (!proto && len)) return phrex_fail(PHREX_ERR_INPUT, "%s: NULL argument to phrex_spm_init_from_bytes", name);
    *out = nullptr;
    try {
        return load(out, proto, len, name);
    } catch (...) {
        return fail_from_exception(name);
    }
}

int phrex_spm_init(phrex_spm **out, const char *model_path) {
    if (!out || !model_path) return phrex_fail(PHREX_ERR_INPUT, "phrex_spm_init: NULL argument");
    *out = nullptr;
    try {
        // Reading the file here, not through Load(path), tells "missing" (IO)
        // apart from "corrupt" (FORMAT) and keeps errno's reason.
        std::string bytes;
        int rc = read_file(model_path, &bytes);
        if (rc) return rc;
        return load(out, bytes.data(), bytes.size(), model_path);
    } catch (...) {
        return fail_from_exception(model_path);
    }
}

void phrex_spm_free(phrex_spm *spm) { delete spm; }

int phrex_spm_encode(const phrex_spm *spm, const char *text, size_t len, phrex_tokens *out) {
    if (!spm || !out || (!text && len)) return phrex_fail(PHREX_ERR_INPUT, "phrex_spm_encode: NULL argument");
    phrex_tokens_clear(out);
    if (len > INT32_MAX)
        return phrex_fail(PHREX_ERR_INPUT, "%s: text of %zu bytes is over the 2^31-1 offset limit",
                          spm->name.c_str(), len);
    size_t bad_at;
    if (!phrex_utf8_check(text, len, &bad_at))
        return phrex_fail(PHREX_ERR_INPUT, "%s: text is not valid UTF-8 at byte %zu", spm->name.c_str(), bad_at);
    try {
        sentencepiece::ImmutableSentencePieceText spt;
        auto status = spm->processor.Encode(std::string_view(text, len), spt.mutable_proto());
        if (!status.ok())
            return phrex_fail(PHREX_ERR_INTERNAL, "%s: encode failed: %s", spm->name.c_str(), status_text(status));
        const size_t n = spt.pieces_size();
        for (size_t i = 0; i < n; i++) {
            const auto piece = spt.pieces(static_cast<int>(i));
            int rc = phrex_tokens_push(out, static_cast<int32_t>(piece.id()), static_cast<int32_t>(piece.begin()),
                                       static_cast<int32_t>(piece.end()));
            if (rc) return phrex_fail_context(rc, "%s", spm->name.c_str());
        }
        return PHREX_OK;
    } catch (...) {
        return fail_from_exception(spm->name.c_str());
    }
}

int phrex_spm_decode(const phrex_spm *spm, const int32_t *ids, int n, char *buf, size_t cap, size_t *len_out) {
    if (!spm || !len_out || (!ids && n > 0) || n < 0 || (!buf && cap))
        return phrex_fail(PHREX_ERR_INPUT, "phrex_spm_decode: bad argument");
    *len_out = 0;
    const int size = spm->processor.GetPieceSize();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= size)
            return phrex_fail(PHREX_ERR_INPUT, "%s: id %d at position %d is outside the vocabulary [0, %d)",
                              spm->name.c_str(), (int)ids[i], i, size);
    try {
        std::vector<int> v(ids, ids + n);
        std::string text;
        auto status = spm->processor.Decode(v, &text);
        if (!status.ok())
            return phrex_fail(PHREX_ERR_INTERNAL, "%s: decode failed: %s", spm->name.c_str(), status_text(status));
        *len_out = text.size();
        if (cap < text.size() + 1)
            return phrex_fail(PHREX_ERR_INPUT, "%s: decode buffer of %zu bytes, need %zu", spm->name.c_str(), cap,
                              text.size() + 1);
        std::memcpy(buf, text.data(), text.size());
        buf[text.size()] = '\0';
        return PHREX_OK;
    } catch (...) {
        return fail_from_exception(spm->name.c_str());
    }
}

int phrex_spm_vocab_size(const phrex_spm *spm) { return spm ? spm->processor.GetPieceSize() : 0; }

int phrex_spm_piece_to_id(const phrex_spm *spm, const char *piece) {
    if (!spm || !piece) return -1;
    try {
        int id = spm->processor.PieceToId(piece);
        // SentencePiece answers the unknown id for any piece it lacks.
        if (spm->processor.IsUnknown(id) && spm->processor.IdToPiece(id) != piece) return -1;
        return id;
    } catch (...) {
        return -1;
    }
}

const char *phrex_spm_id_to_piece(const phrex_spm *spm, int id) {
    if (!spm || id < 0 || id >= spm->processor.GetPieceSize()) return nullptr;
    try {
        return spm->processor.IdToPiece(id).c_str();
    } catch (...) {
        return nullptr;
    }
}

phrex_spm_train_options phrex_spm_train_defaults(void) {
    phrex_spm_train_options o;
    o.num_threads = 0;
    o.input_sentence_size = 0;
    o.byte_fallback = 1;
    o.normalization = "identity";
    return o;
}

} // extern "C"

namespace {

int check_train_arguments(const char *input_path, const char *model_prefix, int vocab_size, const char *model_type,
                          const phrex_spm_train_options &o) {
    if (!input_path || !model_prefix || !model_type)
        return phrex_fail(PHREX_ERR_INPUT, "phrex_spm_train: NULL argument");
    if (std::strcmp(model_type, "unigram") != 0 && std::strcmp(model_type, "bpe") != 0)
        return phrex_fail(PHREX_ERR_INPUT, "%s: model type \"%s\" is not \"unigram\" or \"bpe\"", input_path,
                          model_type);
    if (vocab_size < 8)
        return phrex_fail(PHREX_ERR_INPUT, "%s: vocab_size %d is too small", input_path, vocab_size);
    if (o.num_threads < 0 || o.input_sentence_size < 0 || !o.normalization || !*o.normalization)
        return phrex_fail(PHREX_ERR_INPUT, "%s: bad training options", input_path);
    // SentencePiece reads `input` as a comma-separated list of files, so a
    // comma would silently split the path in two.
    if (std::strchr(input_path, ','))
        return phrex_fail(PHREX_ERR_INPUT, "%s: a comma in the input path would be read as a file list",
                          input_path);
    FILE *f = std::fopen(input_path, "rb");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", input_path, std::strerror(errno));
    std::fclose(f);
    return PHREX_OK;
}

int default_threads() {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 16 ? 16 : static_cast<int>(n);
}

} // namespace

extern "C" int phrex_spm_train_with(const char *input_path, const char *model_prefix, int vocab_size,
                                    const char *model_type, const phrex_spm_train_options *options) {
    const phrex_spm_train_options o = options ? *options : phrex_spm_train_defaults();
    int rc = check_train_arguments(input_path, model_prefix, vocab_size, model_type, o);
    if (rc) return rc;
    try {
        // The map overload, unlike Train(string), does not log "Running
        // command", and `minloglevel` there silences the INFO progress lines.
        std::unordered_map<std::string, std::string> kw = {
            {"input", input_path},
            {"model_prefix", model_prefix},
            {"vocab_size", std::to_string(vocab_size)},
            {"model_type", model_type},
            {"normalization_rule_name", o.normalization},
            {"byte_fallback", o.byte_fallback ? "true" : "false"},
            {"num_threads", std::to_string(o.num_threads ? o.num_threads : default_threads())},
            {"minloglevel", "1"},
        };
        if (o.input_sentence_size > 0) kw["input_sentence_size"] = std::to_string(o.input_sentence_size);
        auto status = sentencepiece::SentencePieceTrainer::Train(kw);
        if (!status.ok()) {
            // File errors (the model or vocab not writable) come back as
            // NotFound/PermissionDenied; everything else is the trainer's.
            using sentencepiece::util::StatusCode;
            const StatusCode c = status.code();
            const int code = c == StatusCode::kNotFound || c == StatusCode::kPermissionDenied ? PHREX_ERR_IO
                                                                                              : PHREX_ERR_INTERNAL;
            return phrex_fail(code, "%s: sentencepiece training failed: %s", input_path, status_text(status));
        }
    } catch (...) {
        return fail_from_exception(input_path);
    }
    std::string model_path = std::string(model_prefix) + ".model";
    FILE *f = std::fopen(model_path.c_str(), "rb");
    if (!f)
        return phrex_fail(PHREX_ERR_IO, "%s: training reported success but the model is missing",
                          model_path.c_str());
    std::fclose(f);
    return PHREX_OK;
}

extern "C" int phrex_spm_train(const char *input_path, const char *model_prefix, int vocab_size,
                               const char *model_type) {
    return phrex_spm_train_with(input_path, model_prefix, vocab_size, model_type, nullptr);
}
