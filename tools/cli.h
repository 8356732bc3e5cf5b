// Subcommands of the phrex CLI. Each returns the process exit status:
// 0 on success, 1 on a runtime error (message already printed), 2 on misuse.
#ifndef PHREX_TOOLS_CLI_H
#define PHREX_TOOLS_CLI_H

int cmd_embed(int argc, char **argv);
int cmd_build(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_ask(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_train_phrase(int argc, char **argv);
int cmd_train_rerank(int argc, char **argv);
int cmd_rerank_eval(int argc, char **argv);
int cmd_pack_model(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_train_query(int argc, char **argv);
int cmd_train_filter(int argc, char **argv);
int cmd_reindex(int argc, char **argv);

#endif
