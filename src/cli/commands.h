// The strata subcommands: each is `int run_<name>(int argc, char** argv)` with argv[0] its name,
// returning the process exit code (0 success, 2 bad input, 1 other failure).
#pragma once

namespace strata::cli {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);
};

int run_inspect(int argc, char** argv);
int run_profile(int argc, char** argv);
int run_plan(int argc, char** argv);
int run_simulate(int argc, char** argv);
int run_compare(int argc, char** argv);
int run_train(int argc, char** argv);

// Every subcommand, in the order `strata --help` lists them.
inline constexpr Command kCommands[] = {
    {"inspect", "graph size, parameters, FLOPs, memory; DOT/JSON export", run_inspect},
    {"profile", "measure a cluster's collectives, p2p and GEMM into an HDF5 profile (mpirun)", run_profile},
    {"plan", "search a plan: pipeline stages and meshes (DP) over intra-op sharding (ILP)", run_plan},
    {"simulate", "simulate a plan's pipeline schedule: step time, bubbles, memory, trace", run_simulate},
    {"compare", "Strata against data parallel, ZeRO, Megatron grid, intra-/inter-only; weak-scaling plots", run_compare},
    {"train", "train a plan on its meshes under mpirun/srun (cpu or cuda backend)", run_train},
};

}  // namespace strata::cli
