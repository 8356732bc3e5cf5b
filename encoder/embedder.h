// A text encoder as a user sees it: a model directory in Hugging Face layout
// (config.json, model.safetensors, vocab.txt, optional tokenizer_config.json)
// turned into a WordPiece tokenizer, BERT weights and a forward workspace.
// Everything that encodes text (embed, the dump builder, query encoding)
// goes through this, so tokenization is the same everywhere.
#ifndef PHREX_EMBEDDER_H
#define PHREX_EMBEDDER_H

#include "encoder/bert.h"
#include "encoder/tokens.h"
#include "encoder/wordpiece.h"

#include <stddef.h>

typedef struct phrex_embedder phrex_embedder;

// Loads the model in model_dir with a workspace for max_tokens packed tokens.
// do_lower_case is read from tokenizer_config.json (true when absent, as for
// BERT uncased models).
int phrex_embedder_init(phrex_embedder **out, const char *model_dir, int max_tokens);
void phrex_embedder_free(phrex_embedder *e);

// The WordPiece tokenizer of a model directory: vocab.txt, lower-cased or
// not as tokenizer_config.json's do_lower_case says (true when absent).
// Every part of phrex that tokenizes for a model loads it this way.
int phrex_embedder_load_tokenizer(const char *model_dir, phrex_wordpiece **out);

const phrex_bert_config *phrex_embedder_config(const phrex_embedder *e);
const phrex_wordpiece *phrex_embedder_tokenizer(const phrex_embedder *e);
phrex_encoder *phrex_embedder_encoder(phrex_embedder *e);

// Appends "[CLS] pieces [SEP]" for text[0, len) to `out` and sets *n_added
// to the count. A text with no tokens is PHREX_ERR_INPUT ("empty"). A text
// over the model's max positions is PHREX_ERR_INPUT unless `truncate`, which
// keeps the first max_positions - 2 pieces. Offsets are bytes into `text`;
// [CLS] and [SEP] get -1. On error `out` is left as it was.
int phrex_embedder_tokenize(const phrex_embedder *e, const char *text, size_t len, int truncate, phrex_tokens *out,
                            int *n_added);

#endif
