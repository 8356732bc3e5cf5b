// Small helpers shared by the CLI subcommands.
#ifndef PHREX_TOOLS_CLI_UTIL_H
#define PHREX_TOOLS_CLI_UTIL_H

#include <stddef.h>
#include <stdio.h>

// The model used when --model is not given: $PHREX_MODEL if set, else the
// committed trained model models/phrase (when its phrex_model.json is
// there), else the base model that scripts/setup fetched.
const char *phrex_cli_default_model_dir(void);

// The committed default reranker, models/reranker in the source tree
// ($PHREX_RERANKER overrides it; see rerank/rerank_search.h).
const char *phrex_cli_default_reranker_dir(void);

// The base encoder scripts/setup fetched (models/base/all-MiniLM-L6-v2):
// where training starts, and what `phrex embed` embeds sentences with.
const char *phrex_cli_base_model_dir(void);

// The phrase encoder folder of a model folder (encoder/model_dir.h): DIR
// itself for a plain BERT folder, DIR/phrase (or what phrex_model.json
// names) for a trained one. Static storage, valid until the next call;
// NULL after printing "phrex <cmd>: <why>" to stderr.
const char *phrex_cli_phrase_encoder_dir(const char *cmd, const char *model_dir);

// Parses a whole decimal integer in [lo, hi] for option `name`; on failure
// prints "phrex: <name> expects ..." and returns 2 (the misuse exit code).
int phrex_cli_parse_int(const char *name, const char *text, int lo, int hi, int *out);

// Parses a whole finite decimal number in [lo, hi] for option `name`; on
// failure prints "phrex: <name> expects ..." and returns 2.
int phrex_cli_parse_double(const char *name, const char *text, double lo, double hi, double *out);
int phrex_cli_parse_float(const char *name, const char *text, double lo, double hi, float *out);

// Parses a non-negative decimal integer for --seed; 2 (after a message) on failure.
int phrex_cli_parse_seed(const char *text, unsigned long long *out);

// Writes "dir/name" into buf (n bytes, truncated if longer).
void phrex_cli_path_join(char *buf, size_t n, const char *dir, const char *name);

// Opens a trainer's progress log for appending: log_path when given (--log),
// else out_dir/train.log. PHREX_ERR_IO naming the file when it cannot.
int phrex_cli_open_train_log(const char *log_path, const char *out_dir, FILE **out);

#endif
