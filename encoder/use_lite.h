// USE-lite (Google's Universal Sentence Encoder lite, English; see
// ../shared/models/use-lite/README.md): a 2-layer pre-LayerNorm transformer
// with a SentencePiece vocabulary, read from use_lite.safetensors.
//
//   x      = 2·emb[id] + timing(pos)                         (N, 256)
//   layer 0: a = Attn(LN(x)) (4 heads of 64, 256 wide, projected to 512)
//            x = a + x·Wr + br                               (N, 512)
//            x = x + FFN(LN(x))     FFN = relu(·W1 + b1)·W2 + b2, 512→1536→512
//   layer 1: x = x + Attn(LN(x)) (4 heads of 128);  x = x + FFN(LN(x))
//   sentence = L2(tanh(mean(x)·Wp + bp))                      (n, 512)
// LayerNorm eps 1e-6, timing(pos) = [sin(pos·w) | cos(pos·w)] with the 128
// stored inverse timescales w, positions restarting at 0 in every sequence.
// The factor 2 on the embedding is a quirk of the frozen TF graph (it adds
// the embedding twice); it is kept so the golden embeddings reproduce.
//
// Like encoder/bert.h: phrex_use_lite holds the weights (one arena,
// read-only, shareable between threads); phrex_use_lite_encoder is a
// workspace sized once for a token budget, for one caller at a time. A batch
// is packed: sequences back to back, each attending only to itself.
#ifndef PHREX_USE_LITE_H
#define PHREX_USE_LITE_H

#include "encoder/spm.h"
#include "encoder/tokens.h"

#include <stddef.h>
#include <stdint.h>

#define PHREX_USE_LITE_VOCAB 8002   // embedding rows (the SentencePiece vocabulary has 8000)
#define PHREX_USE_LITE_EMBED 256    // embedding width, layer 0's attention width
#define PHREX_USE_LITE_DIM 512      // hidden width after layer 0, output width
#define PHREX_USE_LITE_FFN 1536     // FFN inner width
#define PHREX_USE_LITE_HEADS 4      // per layer (64 wide in layer 0, 128 in layer 1)
#define PHREX_USE_LITE_LAYERS 2
#define PHREX_USE_LITE_TIMING 128   // inverse timescales (half the embedding width)
#define PHREX_USE_LITE_EPS 1e-6f
#define PHREX_USE_LITE_TRAINED_LEN 128 // the longest sequence it was trained on
// Longest sequence a workspace accepts. The timing signal is computed, so any
// length works, but positions past the trained 128 are extrapolation.
#define PHREX_USE_LITE_MAX_SEQ 1024

// Special ids of the vocabulary (vocab_spm_unigram.json): 0 unknown, 1 <s>,
// 2 </s> (CONTROL), 3..5 "extra_token_id_1..3" (USER_DEFINED, never produced
// by encoding ordinary text, and unused by the pretrained model).
#define PHREX_USE_LITE_ID_UNK 0
#define PHREX_USE_LITE_ID_BOS 1
#define PHREX_USE_LITE_ID_EOS 2
#define PHREX_USE_LITE_ID_SPAN_START 3 // before the candidate answer span
#define PHREX_USE_LITE_ID_SPAN_END 4   // after it
#define PHREX_USE_LITE_ID_TITLE_SEP 5  // between a passage's title and its text

typedef struct phrex_use_lite phrex_use_lite;
typedef struct phrex_use_lite_encoder phrex_use_lite_encoder;

// Loads use_lite.safetensors (F32/F16/BF16, every tensor shape-checked; the
// file stores matrices [in, out], transposed here into the (out, in) layout
// of the linear kernels). PHREX_ERR_IO / FORMAT / MISMATCH naming the file
// and tensor.
int phrex_use_lite_init(phrex_use_lite **out, const char *safetensors_path);
void phrex_use_lite_free(phrex_use_lite *m);

// A workspace for batches of up to max_tokens packed tokens in sequences of
// up to max_seq tokens (1..PHREX_USE_LITE_MAX_SEQ, <= max_tokens).
int phrex_use_lite_encoder_init(phrex_use_lite_encoder **out, const phrex_use_lite *m, int max_tokens, int max_seq);
void phrex_use_lite_encoder_free(phrex_use_lite_encoder *e);

// The forward of n_seqs packed sequences.
// ids: (N), each 0..PHREX_USE_LITE_VOCAB-1; seq_lens: (n_seqs), each
// 1..max_seq, N = Σ seq_lens <= max_tokens.
// tokens: (N, 512) the last layer's token states (no final LayerNorm);
// sentences: (n_seqs, 512) the sentence embeddings (masked mean, tanh
// dense, L2), or NULL to skip the pooler. Inputs are checked before any
// work; PHREX_ERR_INPUT names the offending sequence or token.
int phrex_use_lite_forward(phrex_use_lite_encoder *e, const int32_t *ids, const int32_t *seq_lens, int n_seqs,
                           float *tokens, float *sentences);

// The checks of a packed batch, shared by inference and training (named
// `who` in messages): n_seqs >= 1, each length in 1..max_seq, the total
// <= max_tokens, every id (ids may be NULL: not checked) in 0..vocab-1.
// *n_tokens gets the total.
int phrex_use_lite_check_batch(const char *who, const int32_t *ids, const int32_t *seq_lens, int n_seqs, int max_seq,
                               int max_tokens, int vocab, int *n_tokens);

// The pooler alone: sentences (n_seqs, 512) = L2(tanh(mean(tokens)·Wp + bp))
// for token states (N, 512) packed as seq_lens says. Uses the workspace's
// scratch (n_seqs <= max_tokens).
int phrex_use_lite_pool(phrex_use_lite_encoder *e, const float *tokens, const int32_t *seq_lens, int n_seqs,
                        float *sentences);

// timing(pos) for one position: out (256) = [sin(pos·w_j) | cos(pos·w_j)],
// computed in double and rounded (shared by the training forward).
void phrex_use_lite_timing(float *out, const float *inv_timescales, int pos);

// The SentencePiece tokenizer of USE-lite, built in memory from
// vocab_spm_unigram.json (encoder/spm_vocab.h). Free with phrex_spm_free.
int phrex_use_lite_tokenizer_init(phrex_spm **out, const char *vocab_json_path);

// --- cross-encoder input ------------------------------------------------------
//
// One (question, passage) pair as a single sequence:
//
//   <s> question </s> title [5] passage-before [3] span [4] passage-after </s>
//
// <s> = 1 and </s> = 2 are the vocabulary's own control ids (the BERT
// [CLS]/[SEP] roles); the span is marked by the user-defined ids 3 (start)
// and 4 (end), and id 5 separates the title from the text. The three are
// pieces the pretrained model never saw, so fine-tuning gives them their
// meaning, as [unused] tokens are used with BERT; a colon piece was
// avoided because USE-lite's colon pieces have null upstream scores. With
// no title the title and its [5] are left out; with span (-1, -1) the
// markers are left out.
//
// Lengths: the question keeps at most max_question tokens (its head), the
// title at most max_title, and the passage a window of whatever remains of
// max_len, placed to keep the span whole and centred (a span longer than
// the window keeps its beginning and the end marker closes the window).

typedef struct {
    int max_len;      // whole sequence, specials included (8..PHREX_USE_LITE_MAX_SEQ)
    int max_question; // e.g. 64
    int max_title;    // e.g. 16
} phrex_use_lite_pair_limits;

// max_len 128 (what USE-lite was trained on), question 64, title 16.
phrex_use_lite_pair_limits phrex_use_lite_pair_defaults(void);

// Writes the pair's ids into ids (room for limits->max_len) and their count
// into *n_out. `title` may be NULL (or empty); span_start/end are byte
// offsets into `text`, [start, end), or -1, -1 for no span. `scratch` is
// the caller's reusable token buffer (grown as needed, no other allocation).
// PHREX_ERR_INPUT: bad limits, a span outside the text or empty, invalid
// UTF-8 (named by the tokenizer); a span that covers no token (e.g. only
// whitespace) is PHREX_ERR_INPUT too.
int phrex_use_lite_pair_tokens(const phrex_spm *spm, const phrex_use_lite_pair_limits *limits, const char *question,
                               size_t question_len, const char *title, size_t title_len, const char *text,
                               size_t text_len, int32_t span_start, int32_t span_end, phrex_tokens *scratch,
                               int32_t *ids, int *n_out);

#endif
