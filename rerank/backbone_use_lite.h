// USE-lite (encoder/use_lite_train.h) as a backbone of the shallow
// cross-encoder (rerank/rerank_train.h's vtable), the alternative start to
// the lower layers of MiniLM that issue #6 asks to measure.
//
// Its input is phrex_use_lite_pair_tokens' layout (encoder/use_lite.h):
//   <s> question </s> title [5] passage [3] span [4] passage </s>
// with SentencePiece ids (phrex_use_lite_tokenizer_init); the head reads the
// first token (<s>) as BERT's reads [CLS]. USE-lite has no token types: the
// vtable's `types` are ignored.
#ifndef PHREX_RERANK_BACKBONE_USE_LITE_H
#define PHREX_RERANK_BACKBONE_USE_LITE_H

#include "rerank/rerank_train.h"

#define PHREX_RERANK_BACKBONE_USE_LITE "use-lite" // the vtable's name, for phrex_reranker.json
#define PHREX_USE_LITE_WEIGHTS_FILE "use_lite.safetensors"
#define PHREX_USE_LITE_VOCAB_FILE "vocab_spm_unigram.json"

// Loads safetensors_path (use_lite.safetensors or a saved one) with a
// workspace for max_tokens packed tokens in sequences of up to max_seq
// (<= PHREX_USE_LITE_MAX_SEQ). Dropout p goes to both hidden and attention.
// save(dir, dtype, tok_dir) writes dir/use_lite.safetensors (dtype F32 or
// F16) and copies tok_dir/vocab_spm_unigram.json when tok_dir has one.
// train_bert() answers NULL: encoder/checkpoint.h's state files take a
// phrex_train_bert, so a USE-lite run cannot write train_state.bin yet.
int phrex_rerank_backbone_use_lite(phrex_rerank_backbone *out, const char *safetensors_path, int max_tokens,
                                   int max_seq, int freeze_word_embeddings);

#endif
