// `strata profile`: measure a cluster's collectives, point-to-point and GEMM under MPI (one rank
// per device) and write the HDF5 profile the planner reads (docs/profile_schema.md).
// The MPI C API only: Open MPI's deprecated C++ bindings would need libmpi_cxx.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "cli/common.h"
#include "strata/cluster/cluster.h"
#include "strata/core/args.h"
#include "strata/profile/profiler.h"
#include "strata/profile/store.h"
#include "strata/runtime/cuda_backend.h"

namespace strata::cli {
namespace {

Expected<std::vector<DType>> parse_dtypes(const std::string& text) {
  std::vector<DType> dtypes;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    auto dtype = parse_dtype(item);
    if (!dtype) return make_error("", "--dtypes", "unknown dtype '" + item + "'");
    dtypes.push_back(*dtype);
  }
  if (dtypes.empty()) return make_error("", "--dtypes", "needs at least one dtype");
  return dtypes;
}

// Runs after MPI_Init on every rank; returns the exit code (2 for bad input).
int profile_on_rank(const ArgParser& args, int rank) {
  auto fail = [&](const Error& error, int code) {
    // Errors every rank sees alike ("another rank ...") are printed once, by rank 0.
    if (rank != 0 && error.reason.find("another rank") != std::string::npos) return code;
    return report_failure("profile", error, code);
  };
  auto spec = cluster::load_cluster(args.get("cluster"));
  if (!spec) return fail(spec.error(), 2);
  profile::ProfilerOptions options;
  options.backend = args.get("backend", "cpu");
  auto max_bytes = args.get_int("max-bytes", 0);
  if (!max_bytes) return fail(max_bytes.error(), 2);
  options.max_bytes = *max_bytes;
  auto dtypes = parse_dtypes(args.get("dtypes", "f32"));
  if (!dtypes) return fail(dtypes.error(), 2);
  options.dtypes = *dtypes;
  auto warmup = args.get_int("warmup", 0);
  auto iterations = args.get_int("iterations", 0);
  if (!warmup) return fail(warmup.error(), 2);
  if (!iterations) return fail(iterations.error(), 2);
  options.warmup_iterations = static_cast<int>(*warmup);
  options.timed_iterations = static_cast<int>(*iterations);
  std::ostringstream table;
  auto result = profile::run_profiler(*spec, options, MPI_COMM_WORLD, rank == 0 ? std::cout : table);
  if (!result) {
    const bool input = !result.error().field.empty();  // a flag or cluster field: the user's input
    return fail(result.error(), input ? 2 : 1);
  }
  if (rank != 0) return 0;
#ifdef STRATA_HAVE_CUDA
  if (options.backend == "nccl") {  // the runtime's own costs, on rank 0's GPU (cost model: compute.h)
    auto backend = runtime::make_cuda_backend(0);  // rank 0: the first GPU of the first node
    std::string text;
    auto costs = backend ? runtime::measure_op_costs(**backend, &text) : Expected<runtime::RuntimeCosts>(backend.error());
    if (!costs) return fail(costs.error(), 1);
    std::printf("%s", text.c_str());
    result->op_overhead_seconds = costs->op_overhead_seconds;
    result->memory_ops = costs->memory_ops;
    result->attention = costs->attention;
    result->gemm.insert(result->gemm.end(), costs->gemm.begin(), costs->gemm.end());
  }
#endif
  const std::string out = args.get("out");
  Status written = profile::Store::write(out, *result);
  if (!written.is_ok()) return fail(output_error(written.error(), "out"), kExitBadInput);
  std::printf("# wrote %s (%zu collective curves, %zu p2p curves, %zu GEMM points)\n", out.c_str(),
              result->collectives.size(), result->p2p.size(), result->gemm.size());
  const auto bandwidth = result->memory_bandwidth();
  std::printf("# runtime costs: per-op overhead %s, memory-bound ops %s\n",
              result->op_overhead_seconds ? (std::to_string(*result->op_overhead_seconds * 1e6) + " us").c_str()
                                          : "not measured",
              bandwidth ? (std::to_string(*bandwidth / 1e12) + " TB/s").c_str()
                        : "not measured (the cost model keeps the cluster file's datasheet bandwidth)");
  return 0;
}

}  // namespace

int run_profile(int argc, char** argv) {
  ArgParser args("profile", "measure collectives, p2p and GEMM of a cluster into an HDF5 profile (under mpirun)");
  args.option("cluster", "cluster YAML (configs/clusters/*.yaml)", "FILE")
      .option("out", "profile to write (HDF5)", "FILE")
      .option("backend", "cpu (host MPI) or nccl (GPUs; needs a CUDA build)", "NAME")
      .option("max-bytes", "largest message size (default 4 MiB cpu, 1 GiB nccl)", "N")
      .option("dtypes", "comma-separated dtypes (default f32)", "LIST")
      .option("warmup", "warmup iterations (default: backend's)", "N")
      .option("iterations", "timed iterations (default: backend's)", "N")
      .required("cluster")
      .required("out");
  Status parsed = args.parse(argc, argv);
  if (args.help_requested()) {
    std::printf("%s", args.help_text().c_str());
    return 0;
  }
  if (!parsed.is_ok()) return report_failure("profile", parsed.error(), kExitBadInput);
  // Paths are checked before MPI starts and long before the measurements end.
  if (Status status = check_input_file(args.get("cluster"), "cluster"); !status)
    return report_failure("profile", status.error(), kExitBadInput);
  if (Status status = check_output_file(args.get("out"), "out"); !status)
    return report_failure("profile", status.error(), kExitBadInput);
  if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
    std::fprintf(stderr, "strata profile: MPI_Init failed\n");
    return 1;
  }
  int rank = 0;
  if (MPI_Comm_rank(MPI_COMM_WORLD, &rank) != MPI_SUCCESS) {
    std::fprintf(stderr, "strata profile: MPI_Comm_rank failed\n");
    MPI_Finalize();
    return 1;
  }
  const int code = profile_on_rank(args, rank);
  // Every rank reaches here with the same verdict except for local input errors, which every
  // rank sees alike (same flags, same files), so finalizing together cannot hang.
  MPI_Finalize();
  return code;
}

}  // namespace strata::cli
