// Small helpers shared by the CLI subcommands.
#ifndef PHREX_TOOLS_CLI_UTIL_H
#define PHREX_TOOLS_CLI_UTIL_H

// The model used when --model is not given: $PHREX_MODEL if set, else the
// base model that scripts/setup fetched next to the sources.
const char *phrex_cli_default_model_dir(void);

// Parses a whole decimal integer in [lo, hi] for option `name`; on failure
// prints "phrex: <name> expects ..." and returns 2 (the misuse exit code).
int phrex_cli_parse_int(const char *name, const char *text, int lo, int hi, int *out);

#endif
