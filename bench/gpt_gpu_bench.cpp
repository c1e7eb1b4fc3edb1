// Throughput of one GPT training step (forward, backward, Adam) on one device through a runtime
// Backend, op by op in graph order with each value freed after its last use. Prints step time,
// tokens/s, TFLOP/s (the graph's FLOPs and the usual 6N + 12LHS model FLOPs) and MFU, then a
// per-op-kind time table from one step synchronised after every op.
// With --fuse 1 (the default; cuda builds only) the graph first goes through fuse_for_cuda.
//   mpirun -np 1 gpt_gpu_bench --model configs/models/gpt-1.3b.yaml --micro-batch 8 [--backend cuda] [--fuse 0|1]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "strata/autodiff/autodiff.h"
#include "strata/core/args.h"
#include "strata/models/models.h"
#include "strata/runtime/backend.h"
#include "strata/runtime/cuda_backend.h"

namespace {

using namespace strata;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string model = "configs/models/gpt-1.3b.yaml";
  std::string backend = "cuda";
  int64_t micro_batch = 8;
  int steps = 5;
  int warmup = 2;
  double peak_tflops = 989.0;  // H100/H200 SXM dense bf16
  bool fuse = true;
};

Expected<Options> parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    if (i + 1 >= argc) return make_error("", key, "needs a value");
    const std::string value = argv[++i];
    try {
      if (key == "--model") o.model = value;
      else if (key == "--backend") o.backend = value;
      else if (key == "--micro-batch") o.micro_batch = std::stoll(value);
      else if (key == "--steps") o.steps = std::stoi(value);
      else if (key == "--warmup") o.warmup = std::stoi(value);
      else if (key == "--peak-tflops") o.peak_tflops = std::stod(value);
      else if (key == "--fuse" && (value == "0" || value == "1")) o.fuse = value == "1";
      else if (key == "--fuse") return make_error("", key, "must be 0 or 1, got '" + value + "'");
      else return make_error("", key, "unknown flag");
    } catch (const std::exception&) {
      return make_error("", key, "'" + value + "' is not a number");
    }
  }
  if (o.micro_batch <= 0 || o.steps <= 0 || o.warmup < 0) return make_error("", "--steps", "must be positive");
  return o;
}

// Fast deterministic uniform values with the std of the parameter's normal init (the bench needs
// realistic magnitudes, not the interpreter's exact stream, and 1.3B Box-Muller draws are slow).
interp::Tensor init_fast(const ir::Op& op, uint64_t seed) {
  const ir::Shape& shape = op.outputs[0].shape;
  const std::string init = op.attrs.has("init") ? op.attrs.get_string("init").value() : "normal";
  if (init == "ones") return interp::Tensor(shape, 1.0);
  if (init == "zeros") return interp::Tensor(shape, 0.0);
  const double scale = op.attrs.real_or("init_std", 0.02) * 1.7320508;  // uniform(-a, a) has std a/sqrt(3)
  interp::Tensor t(shape);
  uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (double& x : t.data) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x = scale * (static_cast<double>(s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
  }
  return t;
}

int run(int argc, char** argv) {
  auto options = parse(argc, argv);
  if (!options.is_ok()) {
    std::fprintf(stderr, "gpt_gpu_bench: %s\n", options.error().message().c_str());
    return 2;
  }
  const Options& o = *options;
  auto spec = models::load_model_config(o.model);
  if (!spec.is_ok()) {
    std::fprintf(stderr, "gpt_gpu_bench: %s\n", spec.error().message().c_str());
    return 2;
  }
  auto forward = models::build_forward_graph(*spec, o.micro_batch);
  if (!forward.is_ok()) {
    std::fprintf(stderr, "gpt_gpu_bench: %s\n", forward.error().in_file(o.model).message().c_str());
    return 2;
  }
  autodiff::TrainingOptions training;
  training.optimizer = autodiff::Optimizer::adam;
  training.lr = 1e-4;
  auto built = autodiff::build_training_graph(*forward, training);
  if (!built.is_ok()) {
    std::fprintf(stderr, "gpt_gpu_bench: %s\n", built.error().message().c_str());
    return 2;
  }
  std::string fusion = "none";
#ifdef STRATA_HAVE_CUDA
  if (o.fuse && o.backend == "cuda") {
    runtime::FusionStats stats;
    auto fused = runtime::fuse_for_cuda(*built, &stats);
    if (!fused.is_ok()) {
      std::fprintf(stderr, "gpt_gpu_bench: %s\n", fused.error().message().c_str());
      return 1;
    }
    *built = std::move(fused).value();
    char text[256];
    std::snprintf(text, sizeof(text),
                  "fuse_for_cuda (%d attentions, %d scales into operands, %d after dots, %d pad sums to concats, %d "
                  "mask adds into softmax)",
                  stats.attentions, stats.scales_into_operand, stats.scales_after_dot, stats.pad_sums_to_concat,
                  stats.bias_adds_into_softmax);
    fusion = text;
  }
#endif
  const ir::Graph& g = *built;
  auto made = runtime::make_backend(o.backend, 0);
  if (!made.is_ok()) {
    std::fprintf(stderr, "gpt_gpu_bench: %s\n", made.error().message().c_str());
    return 2;
  }
  runtime::Backend& be = **made;

  // Last use of every op's outputs, so that values die as soon as possible.
  const int32_t n = g.num_ops();
  std::vector<int32_t> last_use(static_cast<size_t>(n), -1);
  for (ir::OpId id = 0; id < n; ++id)
    for (ir::Value v : g.op(id).inputs) last_use[v.op] = std::max(last_use[v.op], id);
  for (ir::Value v : g.outputs()) last_use[v.op] = n;

  // Sources: parameters (and Adam state) persist across steps; inputs are fed once.
  const int64_t B = o.micro_batch, S = spec->seq_len, V = spec->vocab;
  std::vector<std::vector<runtime::TensorPtr>> values(static_cast<size_t>(n));
  uint64_t seed = 1;
  for (ir::OpId id = 0; id < n; ++id) {
    const ir::Op& op = g.op(id);
    if (op.kind != ir::OpKind::Parameter && op.kind != ir::OpKind::Input) continue;
    interp::Tensor host;
    if (op.name == "tokens" || op.name == "labels") {
      host = interp::Tensor(op.outputs[0].shape);
      for (int64_t i = 0; i < host.numel(); ++i) host[i] = static_cast<double>((i * 7919 + 13) % V);
    } else if (op.name == "causal_mask") {
      host = interp::Tensor({S, S});
      for (int64_t q = 0; q < S; ++q)
        for (int64_t k = 0; k < S; ++k) host[q * S + k] = k <= q ? 0.0 : -1e9;
    } else {
      host = init_fast(op, seed++);
    }
    auto t = be.upload(host, be.storage_dtype(op.outputs[0].dtype));
    if (!t.is_ok()) {
      std::fprintf(stderr, "gpt_gpu_bench: %s: %s\n", op.name.c_str(), t.error().message().c_str());
      return 1;
    }
    values[id] = {*t};
  }
  // AdamUpdate(param, grad, m, v) outputs replace param, m, v for the next step.
  std::vector<std::pair<ir::OpId, std::vector<ir::OpId>>> updates;
  for (ir::OpId id : g.ops_of_kind(ir::OpKind::AdamUpdate)) {
    const ir::Op& op = g.op(id);
    updates.push_back({id, {op.inputs[0].op, op.inputs[2].op, op.inputs[3].op}});
  }

  std::map<std::string, double> kind_seconds;
  std::map<std::string, int> kind_count;
  std::vector<std::pair<double, std::string>> op_seconds;
  double loss = 0.0;
  double issue_seconds = 0.0;  // host time to issue every op of the last step (no synchronisation)
  auto step = [&](bool profile) -> Status {
    const auto issue_start = Clock::now();
    std::vector<std::vector<runtime::TensorPtr>> live = values;
    for (ir::OpId id = 0; id < n; ++id) {
      const ir::Op& op = g.op(id);
      if (op.kind == ir::OpKind::Parameter || op.kind == ir::OpKind::Input) continue;
      std::vector<const runtime::DeviceTensor*> inputs;
      for (ir::Value v : op.inputs) inputs.push_back(live[v.op][v.index].get());
      const auto t0 = Clock::now();
      STRATA_ASSIGN_OR_RETURN(live[id], be.run_op(op, inputs));
      if (profile) {
        STRATA_RETURN_IF_ERROR(be.synchronize());
        std::string key = ir::op_kind_name(op.kind);
        if (op.kind == ir::OpKind::Dot) key += op.role == ir::Role::forward ? " (fwd)" : " (bwd)";
        const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
        kind_seconds[key] += sec;
        kind_count[key] += 1;
        std::string shapes;
        for (const auto* t : inputs) {
          if (!shapes.empty()) shapes += ' ';
          shapes += ir::shape_string(t->shape());
        }
        op_seconds.push_back({sec, op.name + " (" + ir::op_kind_name(op.kind) + " " + shapes + ")"});
      }
      for (ir::Value v : op.inputs) {
        const ir::Op& src = g.op(v.op);
        if (last_use[v.op] == id && src.kind != ir::OpKind::Parameter && src.kind != ir::OpKind::Input) {
          live[v.op].clear();
        }
      }
    }
    for (const auto& [update, targets] : updates) {
      for (size_t k = 0; k < 3; ++k) values[targets[k]] = {live[update][k]};
    }
    issue_seconds = std::chrono::duration<double>(Clock::now() - issue_start).count();
    const ir::Value out = g.outputs().at(0);
    STRATA_ASSIGN_OR_RETURN(interp::Tensor l, be.download(*live[out.op][out.index]));
    loss = l[0];
    return Status::ok();
  };

  const double graph_flops = g.total_flops();
  const double params = static_cast<double>(forward->parameter_count());
  const double tokens = static_cast<double>(B * S);
  const double model_flops = 6.0 * params * tokens + 12.0 * spec->layers * spec->hidden * S * tokens;
  std::printf("gpt_gpu_bench: %s, micro-batch %lld x seq %lld, %.3fB parameters, %d ops, backend %s, fusion %s\n",
              spec->name.c_str(), static_cast<long long>(B), static_cast<long long>(S), params / 1e9, n,
              o.backend.c_str(), fusion.c_str());
  for (int i = 0; i < o.warmup; ++i) {
    Status s = step(false);
    if (!s.is_ok()) {
      std::fprintf(stderr, "gpt_gpu_bench: warm-up step: %s\n", s.message().c_str());
      return 1;
    }
    std::printf("warm-up step %d: loss %.5f\n", i + 1, loss);
  }
  std::vector<double> times;
  for (int i = 0; i < o.steps; ++i) {
    const auto t0 = Clock::now();
    Status s = step(false);
    if (!s.is_ok()) {
      std::fprintf(stderr, "gpt_gpu_bench: step: %s\n", s.message().c_str());
      return 1;
    }
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    std::printf("step %d: %.1f ms (host issued its ops in %.1f ms), loss %.5f\n", i + 1, times.back() * 1e3,
                issue_seconds * 1e3, loss);
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  std::printf("RESULT strata backend=%s model=%s micro_batch=%lld step_ms=%.1f tokens_per_s=%.0f "
              "graph_tflops=%.1f model_tflops=%.1f mfu=%.3f\n",
              o.backend.c_str(), spec->name.c_str(), static_cast<long long>(B), median * 1e3, tokens / median,
              graph_flops / median / 1e12, model_flops / median / 1e12, model_flops / median / 1e12 / o.peak_tflops);
  Status s = step(true);
  if (!s.is_ok()) {
    std::fprintf(stderr, "gpt_gpu_bench: profiled step: %s\n", s.message().c_str());
    return 1;
  }
  std::vector<std::pair<double, std::string>> rows;
  double total = 0.0;
  for (const auto& [k, sec] : kind_seconds) {
    rows.push_back({sec, k});
    total += sec;
  }
  std::sort(rows.rbegin(), rows.rend());
  std::printf("per-op-kind time of one step synchronised after every op (total %.1f ms):\n", total * 1e3);
  std::printf("  %-22s %6s %10s %6s\n", "kind", "ops", "ms", "share");
  for (const auto& [sec, k] : rows) {
    std::printf("  %-22s %6d %10.2f %5.1f%%\n", k.c_str(), kind_count[k], sec * 1e3, 100.0 * sec / total);
  }
  std::sort(op_seconds.rbegin(), op_seconds.rend());
  std::printf("slowest ops of that step:\n");
  for (size_t i = 0; i < std::min<size_t>(15, op_seconds.size()); ++i) {
    std::printf("  %8.3f ms  %s\n", op_seconds[i].first * 1e3, op_seconds[i].second.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const int rc = run(argc, argv);
  MPI_Finalize();
  return rc;
}
