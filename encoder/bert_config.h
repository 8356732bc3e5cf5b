// The subset of a Hugging Face BERT config.json that the forward pass needs.
// Anything the forward pass would silently get wrong (another activation,
// relative positions, a decoder) is rejected when the file is read, with the
// file and the field named, rather than producing plausible wrong vectors.
#ifndef PHREX_BERT_CONFIG_H
#define PHREX_BERT_CONFIG_H

#include <stddef.h>

typedef struct {
    int vocab_size;              // V
    int hidden_size;             // C
    int num_hidden_layers;       // L
    int num_attention_heads;     // H
    int head_dim;                // D = C / H
    int intermediate_size;       // F
    int max_position_embeddings; // P: the longest sequence
    int type_vocab_size;         // T
    float layer_norm_eps;
} phrex_bert_config;

// Reads and validates `path` (a config.json).
int phrex_bert_config_read(phrex_bert_config *cfg, const char *path);

// Same from `len` bytes of JSON text; `name` is used in messages.
int phrex_bert_config_parse(phrex_bert_config *cfg, const char *text, size_t len, const char *name);

#endif
