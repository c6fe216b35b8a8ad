/* Placeholder until this subcommand lands; it refuses to run rather than pretend. */
#include "cli.h"

int cmd_eval(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_usage_error("'eval' is not implemented yet");
}
