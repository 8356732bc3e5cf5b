#include "tools/cli.h"
#include <stdio.h>
int cmd_embed(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "phrex embed: not built yet\n"); return 1; }
