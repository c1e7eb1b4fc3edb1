// The `strata` command: dispatches to a subcommand in src/cli/.
#include <cstdio>
#include <cstring>

#include "cli/commands.h"

int main(int argc, char** argv) {
  using strata::cli::kCommands;
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::printf("usage: strata <command> [flags]   (strata <command> --help for its flags)\n\ncommands:\n");
    for (const auto& command : kCommands) std::printf("  %-10s %s\n", command.name, command.summary);
    return argc < 2 ? 2 : 0;
  }
  for (const auto& command : kCommands)
    if (std::strcmp(argv[1], command.name) == 0) return command.run(argc - 1, argv + 1);
  std::fprintf(stderr, "strata: '%s' is not a command (see strata --help)\n", argv[1]);
  return 2;
}
