// phrex: the command-line front end. Each subcommand lives in its own
// tools/cmd_<name>.c and is listed here.
#include "tools/cli.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} phrex_command;

static const phrex_command commands[] = {
    {"embed", cmd_embed, "encode lines of text from stdin into JSONL vectors"},
    {"build", cmd_build, "index a corpus into a phrase dump (FAISS + LMDB), resumable"},
    {"merge", cmd_merge, "merge dumps of parts of a corpus into one dump"},
    {"ask", cmd_ask, "answer questions over a dump (prompt, or JSON lines from a pipe)"},
    {"eval", cmd_eval, "answer a QA file and report EM, F1, passage recall@k and latency"},
    {"train-phrase", cmd_train_phrase, "train phrase and query encoders on SQuAD (DensePhrases), resumable"},
    {"train-rerank", cmd_train_rerank, "mine negatives and train the shallow cross-encoder reranker (gBCE), resumable"},
    {"rerank-eval", cmd_rerank_eval, "rerank a TREC DL run with a cross-encoder: nDCG@10 and latency per budget"},
    {"bench", cmd_bench, "time the encoder on this machine: passage tokens/s and one question's latency"},
    {"pack-model", cmd_pack_model, "store a trained model as int8 deltas from the base (for models/)"},
    {"train-query", cmd_train_query, "fine-tune the query encoders on a built dump (DensePhrases), resumable"},
    {"train-filter", cmd_train_filter, "train the phrase filter that build uses to drop unlikely tokens"},
    {"reindex", cmd_reindex, "rebuild a dump's FAISS index from its kept vectors with another factory"},
};

static void print_usage(FILE *f) {
    fprintf(f, "usage: phrex <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'phrex <command> --help' describes a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "phrex: unknown command '%s'\n\n", argv[1]);
    print_usage(stderr);
    return 2;
}
