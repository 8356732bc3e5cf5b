// The subset of a Hugging Face BERT config.json that the forward pass needs.
// Anything the forward pass would silently get wrong (another activation,
// relative positions, a decoder) is rejected when the file is read, with the
// file and the field named, rather than producing plausible wrong vectors.
#ifndef PHREX_BERT_CONFIG_H
#define PHREX_BERT_CONFIG_H

#include <stddef.h>
#include <stdint.h>

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

// Checks a packed batch before a forward pass: n_seqs in min_seqs..max_tokens,
// every sequence 1..max_seq tokens, the total at most max_tokens, every id
// and type id in range. Sets *n_tokens to the total. `who` names the caller
// in messages, `max_seq_name` what bounds a sequence.
// ids, type_ids: (N), type_ids may be NULL; seq_lens: (n_seqs).
int phrex_bert_check_packed(const phrex_bert_config *c, const char *who, const int32_t *ids, const int32_t *type_ids,
                            const int32_t *seq_lens, int n_seqs, int min_seqs, int max_seq, const char *max_seq_name,
                            int max_tokens, int *n_tokens);

#endif
