// The profiling harness: builds every replica group with MPI_Comm_split, times each collective
// with the chosen backend, takes the max over ranks, prints an nccl-tests-style table on rank 0.
#include "strata/profile/profiler.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>

#include "backend.h"
#include "strata/core/units.h"

namespace strata::profile {
namespace {

using cluster::Collective;

constexpr Collective kKinds[] = {Collective::all_reduce, Collective::all_gather, Collective::reduce_scatter,
                                 Collective::all_to_all};

// Owns a communicator from MPI_Comm_split (MPI_COMM_NULL for ranks outside every group).
class SplitComm {
 public:
  SplitComm() = default;
  SplitComm(const SplitComm&) = delete;
  SplitComm& operator=(const SplitComm&) = delete;
  ~SplitComm() {
    if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  }
  MPI_Comm comm = MPI_COMM_NULL;
};

// Agrees across `world` on a local result: the max of the times, or the first failure (the
// failing rank keeps its own message; the others learn that some rank failed).
Expected<double> agree(MPI_Comm world, const Expected<double>& local) {
  double mine[2] = {local.is_ok() ? *local : 0.0, local.is_ok() ? 0.0 : 1.0};
  double all[2] = {0, 0};
  STRATA_MPI_CALL(MPI_Allreduce(mine, all, 2, MPI_DOUBLE, MPI_MAX, world));
  if (!local.is_ok()) return local.error();
  if (all[1] > 0) return make_error("", "", "another rank failed (see its message)");
  return all[0];
}

std::string utc_now() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm parts{};
  gmtime_r(&now, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

void print_header(std::ostream& table, const std::string& title) {
  table << "# " << title << "\n";
  char line[160];
  std::snprintf(line, sizeof line, "#%12s %12s %6s %7s %12s %9s %9s\n", "size", "count", "type", "redop", "time",
                "algbw", "busbw");
  table << line;
  std::snprintf(line, sizeof line, "#%12s %12s %6s %7s %12s %9s %9s\n", "(B)", "(elements)", "", "", "(us)",
                "(GB/s)", "(GB/s)");
  table << line;
}

void print_row(std::ostream& table, int64_t bytes, int64_t count, const char* type, const char* redop, double seconds,
               double bus_factor) {
  const double algbw = static_cast<double>(bytes) / seconds / 1e9;
  char line[160];
  std::snprintf(line, sizeof line, " %12lld %12lld %6s %7s %12.2f %9.3f %9.3f\n", static_cast<long long>(bytes),
                static_cast<long long>(count), type, redop, seconds * 1e6, algbw, algbw * bus_factor);
  table << line;
}

struct Context {
  const cluster::ClusterSpec& spec;
  MPI_Comm world;
  int rank;
  Backend& backend;
  int warmup;
  int iterations;
  std::vector<int64_t> sizes;
  std::ostream& table;
};

// Times every collective, dtype and size over the groups of one (submesh, mesh, axis).
Status profile_axis(Context& context, const cluster::Submesh& submesh, const cluster::LogicalMesh& mesh, int axis,
                    const std::vector<DType>& dtypes, Profile& profile) {
  const int n = axis == 0 ? mesh.n0 : mesh.n1;
  // Submesh device i sits on node i / cols, GPU i % cols: world rank (i / cols)·gpus_per_node + i % cols.
  int color = MPI_UNDEFINED;
  int key = 0;
  for (int i = 0; i < submesh.num_devices(); ++i) {
    if ((i / submesh.cols) * context.spec.gpus_per_node + i % submesh.cols != context.rank) continue;
    color = axis == 0 ? i % mesh.n1 : i / mesh.n1;
    key = axis == 0 ? i / mesh.n1 : i % mesh.n1;
  }
  SplitComm group;
  STRATA_MPI_CALL(MPI_Comm_split(context.world, color, key, &group.comm));
  std::unique_ptr<GroupTimer> timer;
  if (group.comm != MPI_COMM_NULL) {
    auto made = context.backend.group(group.comm);
    STRATA_ASSIGN_OR_RETURN(auto agreed, agree(context.world, made.is_ok() ? Expected<double>(0.0) : made.error()));
    (void)agreed;
    timer = std::move(made).value();
  } else {
    STRATA_ASSIGN_OR_RETURN(auto agreed, agree(context.world, Expected<double>(0.0)));
    (void)agreed;
  }
  for (DType dtype : dtypes) {
    for (Collective kind : kKinds) {
      if (context.rank == 0) {
        char title[160];
        std::snprintf(title, sizeof title, "%s  submesh %dx%d  mesh %dx%d  axis %d  (%d groups of %d)",
                      cluster::collective_name(kind), submesh.rows, submesh.cols, mesh.n0, mesh.n1, axis,
                      mesh.num_devices() / n, n);
        print_header(context.table, title);
      }
      CollectiveCurve curve{kind, submesh, mesh, axis, dtype, {}, {}};
      for (int64_t nominal : context.sizes) {
        // Whole elements, divisible into n equal chunks (sizes stay strictly increasing).
        const int64_t count = nominal / dtype_bytes(dtype) / n * n;
        const int64_t bytes = count * dtype_bytes(dtype);
        Expected<double> local = 0.0;
        if (timer) local = timer->collective(kind, count, dtype, context.warmup, context.iterations);
        STRATA_ASSIGN_OR_RETURN(double seconds, agree(context.world, local));
        curve.sizes_bytes.push_back(bytes);
        curve.seconds.push_back(seconds);
        if (context.rank == 0) {
          print_row(context.table, bytes, count, dtype_name(dtype), kind == Collective::all_to_all || kind == Collective::all_gather ? "none" : "sum",
                    seconds, bus_bandwidth_factor(kind, n));
        }
      }
      profile.collectives.push_back(std::move(curve));
    }
  }
  return Status::ok();
}

Status profile_p2p(Context& context, int peer, bool cross_node, Profile& profile) {
  SplitComm pair;
  const bool member = context.rank == 0 || context.rank == peer;
  STRATA_MPI_CALL(MPI_Comm_split(context.world, member ? 0 : MPI_UNDEFINED, context.rank, &pair.comm));
  std::unique_ptr<GroupTimer> timer;
  Expected<double> made_status = 0.0;
  if (member) {
    auto made = context.backend.group(pair.comm);
    if (made.is_ok()) timer = std::move(made).value();
    else made_status = made.error();
  }
  STRATA_ASSIGN_OR_RETURN(double agreed, agree(context.world, made_status));
  (void)agreed;
  if (context.rank == 0) {
    print_header(context.table, std::string("send_recv ") + (cross_node ? "inter_node" : "intra_node") +
                                    "  ranks 0 <-> " + std::to_string(peer) + "  (half round trip)");
  }
  P2PCurve curve{cross_node, {}, {}};
  for (int64_t bytes : context.sizes) {
    Expected<double> local = 0.0;
    if (timer) local = timer->ping_pong(bytes, context.warmup, context.iterations);
    STRATA_ASSIGN_OR_RETURN(double seconds, agree(context.world, local));
    curve.sizes_bytes.push_back(bytes);
    curve.seconds.push_back(seconds);
    if (context.rank == 0) print_row(context.table, bytes, bytes, "int8", "none", seconds, 1.0);
  }
  profile.p2p.push_back(std::move(curve));
  return Status::ok();
}

Status profile_gemm(Context& context, const std::vector<DType>& dtypes, Profile& profile) {
  if (context.rank == 0) context.table << "# gemm on rank 0\n#     m      n      k   type     time(us)   TFLOP/s\n";
  for (DType dtype : context.backend.gemm_dtypes(dtypes)) {
    for (const GemmShape& shape : context.backend.gemm_shapes()) {
      Expected<double> local = 0.0;
      if (context.rank == 0) local = context.backend.gemm(shape, dtype, context.warmup, context.iterations);
      STRATA_ASSIGN_OR_RETURN(double seconds, agree(context.world, local));
      profile.gemm.push_back({shape.m, shape.n, shape.k, dtype, seconds});
      if (context.rank == 0) {
        char line[160];
        std::snprintf(line, sizeof line, " %6lld %6lld %6lld %6s %12.2f %9.3f\n", static_cast<long long>(shape.m),
                      static_cast<long long>(shape.n), static_cast<long long>(shape.k), dtype_name(dtype),
                      seconds * 1e6, 2.0 * shape.m * shape.n * shape.k / seconds / 1e12);
        context.table << line;
      }
    }
  }
  return Status::ok();
}

}  // namespace

std::vector<int64_t> profile_sizes(int64_t max_bytes) {
  std::vector<int64_t> sizes;
  for (int64_t bytes = 1024; bytes <= max_bytes; bytes *= 4) sizes.push_back(bytes);
  return sizes;
}

double bus_bandwidth_factor(Collective kind, int n) {
  if (kind == Collective::send_recv) return 1.0;
  const double fraction = static_cast<double>(n - 1) / n;
  return kind == Collective::all_reduce ? 2 * fraction : fraction;
}

Expected<Profile> run_profiler(const cluster::ClusterSpec& spec, const ProfilerOptions& options, MPI_Comm world,
                               std::ostream& table) {
  int rank = 0, size = 0;
  STRATA_MPI_CALL(MPI_Comm_rank(world, &rank));
  STRATA_MPI_CALL(MPI_Comm_size(world, &size));
  if (size != spec.num_devices()) {
    return make_error(spec.source_file, "num_nodes",
                      "the cluster has " + std::to_string(spec.num_devices()) + " devices (" +
                          std::to_string(spec.num_nodes) + " nodes x " + std::to_string(spec.gpus_per_node) +
                          ") but " + std::to_string(size) + " MPI ranks were started: run one rank per device");
  }
  const bool nccl = options.backend == "nccl";
  if (!nccl && options.backend != "cpu") {
    return make_error("", "--backend", "unknown backend '" + options.backend + "' (cpu or nccl)");
  }
  const int64_t max_bytes = options.max_bytes > 0 ? options.max_bytes : nccl ? kGiB : 4 * kMiB;
  if (max_bytes < 1024) return make_error("", "--max-bytes", "must be at least 1024");
  auto make_backend = [&]() -> Expected<std::unique_ptr<Backend>> {
    if (!nccl) return make_cpu_backend(max_bytes);
#ifdef STRATA_HAVE_CUDA
    return make_nccl_backend(world, max_bytes);
#else
    return make_error("", "--backend", "nccl needs a build with CUDA (configure with -DSTRATA_CUDA=ON)");
#endif
  };
  Expected<std::unique_ptr<Backend>> made = make_backend();
  // A device problem on one rank must stop every rank before the first collective.
  STRATA_ASSIGN_OR_RETURN(double agreed, agree(world, made.is_ok() ? Expected<double>(0.0) : made.error()));
  (void)agreed;
  std::unique_ptr<Backend> backend = std::move(made).value();
  for (DType dtype : options.dtypes) STRATA_RETURN_IF_ERROR(backend->check_dtype(dtype));

  Profile profile;
  profile.cluster_name = spec.name;
  profile.gpu_model = spec.gpu_model;
  profile.backend = backend->name();
  profile.library_versions = backend->library_versions();
  profile.date = utc_now();
  Context context{spec,
                  world,
                  rank,
                  *backend,
                  options.warmup_iterations > 0 ? options.warmup_iterations : backend->default_warmup(),
                  options.timed_iterations > 0 ? options.timed_iterations : backend->default_iterations(),
                  profile_sizes(max_bytes),
                  table};
  if (rank == 0) {
    table << "# strata profile: cluster " << spec.name << ", " << size << " ranks, backend " << backend->name()
          << " on " << backend->device_name() << ", " << context.warmup << " warmup + " << context.iterations
          << " timed iterations, time = max over ranks\n";
  }
  for (const cluster::Submesh& submesh : cluster::submesh_shapes(spec)) {
    for (const cluster::LogicalMesh& mesh : cluster::logical_meshes(submesh)) {
      for (int axis : {0, 1}) {
        if ((axis == 0 ? mesh.n0 : mesh.n1) <= 1) continue;
        STRATA_RETURN_IF_ERROR(profile_axis(context, submesh, mesh, axis, options.dtypes, profile));
      }
    }
  }
  if (spec.gpus_per_node > 1) STRATA_RETURN_IF_ERROR(profile_p2p(context, 1, false, profile));
  if (spec.num_nodes > 1) STRATA_RETURN_IF_ERROR(profile_p2p(context, spec.gpus_per_node, true, profile));
  STRATA_RETURN_IF_ERROR(profile_gemm(context, options.dtypes, profile));
  if (rank != 0) return Profile{};
  return profile;
}

}  // namespace strata::profile
