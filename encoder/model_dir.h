// A phrex model folder: what `--model DIR` names on every command.
//
// Two layouts are accepted:
//   - a trained DensePhrases model: DIR/phrex_model.json (format
//     "phrex-densephrases") naming three encoder folders, by default
//     DIR/phrase (every passage token's start/end vector), DIR/query_start
//     and DIR/query_end (the question's [CLS] vectors), plus an optional
//     phrase filter;
//   - a plain Hugging Face BERT folder (config.json, model.safetensors,
//     vocab.txt): the phrase encoder, with questions mean-pooled by the same
//     model (the untrained baseline).
// Each encoder folder is either a full HF folder or a *delta* folder
// (phrex_delta.json + delta.safetensors over a base HF folder; see
// encoder/weights.h): phrex_bert_init, phrex_train_bert_init and
// phrex_embedder_init read both the same way.
#ifndef PHREX_ENCODER_MODEL_DIR_H
#define PHREX_ENCODER_MODEL_DIR_H

#define PHREX_MODEL_JSON "phrex_model.json"
#define PHREX_MODEL_FORMAT "phrex-densephrases"
#define PHREX_MODEL_PATH_MAX 4096

typedef struct {
    char phrase[PHREX_MODEL_PATH_MAX];      // phrase encoder folder
    char query_start[PHREX_MODEL_PATH_MAX]; // "" for a plain folder
    char query_end[PHREX_MODEL_PATH_MAX];   // "" for a plain folder
    char filter[PHREX_MODEL_PATH_MAX];      // phrase filter file, "" when none
    int trained;                            // 1: phrex_model.json, 0: plain HF folder
    int max_answer_len;                     // tokens (10 for a plain folder)
} phrex_model_paths;

// Fills *out for dir. Errors name the file and field: PHREX_ERR_IO when dir
// or a named part is missing, PHREX_ERR_FORMAT for a bad phrex_model.json
// (wrong format or a version newer than this build reads).
int phrex_model_dir_resolve(const char *dir, phrex_model_paths *out);

#endif
