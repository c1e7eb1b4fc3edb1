// measure_op_costs: what `strata profile --backend nccl` records of the runtime itself (the cost
// model's per-op overhead and memory bandwidth), timed through the same Executor and Backend that
// `strata train --backend cuda` runs.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "strata/autodiff/autodiff.h"
#include "strata/runtime/cuda_backend.h"
#include "strata/runtime/executor.h"

namespace strata::runtime {
namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// A one-device plan that runs every op of `train` whole (all specs R).
plan::Plan whole_plan(const ir::Graph& train) {
  plan::Plan p;
  p.model = "op-overhead-chain";
  p.cluster = {"one-device", 1, 1};
  p.global_batch = 1;
  p.num_micro_batches = 1;
  p.training.optimizer = "sgd";
  plan::Stage stage;
  for (ir::OpId id = 0; id < train.num_ops(); ++id) {
    const ir::Op& op = train.op(id);
    intra::OpSharding sharding;
    for (const ir::Value& v : op.inputs) sharding.inputs.push_back({std::vector<intra::DimSharding>(train.type(v).rank(), intra::DimSharding::R)});
    for (const ir::TensorType& t : op.outputs) sharding.outputs.push_back({std::vector<intra::DimSharding>(t.rank(), intra::DimSharding::R)});
    stage.strategies[op.name] = sharding.to_string();
  }
  p.stages.push_back(stage);
  return p;
}

struct ChainTiming {
  int64_t ops = 0;       // ops the executor runs per step (sources excluded)
  double seconds = 0;    // median step
};

// One training step of x -> tanh^chain -> mean on a [width] tensor: almost nothing for the device
// to do, so the step is the executor's and backend's cost of issuing its ops.
Expected<ChainTiming> time_chain(Backend& backend, int chain, int64_t width, int steps) {
  ir::Graph forward;
  ir::Value h = forward.input("x", {width}, DType::bf16);
  const ir::Value w = forward.parameter("w", {width}, DType::bf16);
  h = forward.add_value(ir::OpKind::Mul, {h, w});
  for (int i = 0; i < chain; ++i) h = forward.add_value(ir::OpKind::Tanh, {h});
  forward.mark_output(forward.add_value(ir::OpKind::ReduceMean, {h}));
  autodiff::TrainingOptions options;
  options.lr = 1e-3;
  STRATA_ASSIGN_OR_RETURN(ir::Graph train, autodiff::build_training_graph(forward, options));
  const plan::Plan p = whole_plan(train);
  STRATA_ASSIGN_OR_RETURN(auto exec, Executor::create(train, p, backend, MPI_COMM_SELF, 1));
  interp::Tensor x({width});
  for (int64_t i = 0; i < width; ++i) x[i] = 0.25 + 0.5 * static_cast<double>(i % 7) / 7.0;
  const Feeder feed = [&x](const ir::Op&, int) -> Expected<interp::Tensor> { return x; };
  std::vector<double> seconds;
  for (int s = 1; s <= steps + 3; ++s) {
    STRATA_ASSIGN_OR_RETURN(StepResult r, exec->step(feed, s));
    if (s > 3) seconds.push_back(r.seconds);
  }
  ChainTiming out;
  const ir::Graph& ran = exec->graph();
  for (ir::OpId id = 0; id < ran.num_ops(); ++id) {
    if (!ir::op_info(ran.op(id).kind).is_source) ++out.ops;
  }
  out.seconds = median(seconds);
  return out;
}

// Seconds of one run_op of `op` (inputs uploaded once), the median of `iterations` timed runs.
Expected<double> time_op(Backend& backend, const ir::Graph& g, ir::OpId id, const std::vector<TensorPtr>& inputs,
                         int iterations) {
  std::vector<const DeviceTensor*> raw;
  for (const TensorPtr& t : inputs) raw.push_back(t.get());
  // Back to back as the executor issues them; one synchronisation per batch of `iterations`.
  std::vector<double> seconds;
  for (int round = 0; round < 4; ++round) {
    STRATA_RETURN_IF_ERROR(backend.synchronize());
    const double start = now();
    for (int i = 0; i < iterations; ++i) STRATA_RETURN_IF_ERROR(backend.run_op(g.op(id), raw).status());
    STRATA_RETURN_IF_ERROR(backend.synchronize());
    if (round > 0) seconds.push_back((now() - start) / iterations);
  }
  return median(seconds);
}

// Attention and AttentionGrad on q, k, v [B, S, N, D] bf16 (the layout fuse_for_cuda emits) under
// a causal [S, S] mask: the kernels skip its masked blocks, as in GPT's training step.
Expected<profile::AttentionPoint> time_attention(Backend& backend, int64_t batch, int64_t heads, int64_t seq,
                                                 int64_t head_dim) {
  ir::Graph g;
  const ir::Shape shape{batch, seq, heads, head_dim};
  const ir::Value q = g.input("q", shape, DType::bf16), k = g.input("k", shape, DType::bf16);
  const ir::Value v = g.input("v", shape, DType::bf16), dout = g.input("dout", shape, DType::bf16);
  const ir::Value mask = g.input("mask", {seq, seq}, DType::f32);
  ir::Attrs attrs{{"layout", std::string("bsnd")}};
  attrs.set("scale", 1.0 / std::sqrt(static_cast<double>(head_dim)));
  const ir::OpId att = g.add(ir::OpKind::Attention, {q, k, v, mask}, attrs, "attention");
  const ir::OpId grad =
      g.add(ir::OpKind::AttentionGrad, {q, k, v, mask, ir::Value{att, 0}, ir::Value{att, 1}, dout}, attrs, "attention_grad");
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  std::vector<TensorPtr> in;
  for (const ir::Value& x : {q, k, v, dout}) {
    interp::Tensor host(shape);
    for (int64_t i = 0; i < host.numel(); ++i) host[i] = uniform(rng);
    STRATA_ASSIGN_OR_RETURN(TensorPtr d, backend.upload(host, g.type(x).dtype));
    in.push_back(d);
  }
  interp::Tensor causal({seq, seq});
  for (int64_t i = 0; i < seq; ++i)
    for (int64_t j = 0; j < seq; ++j) causal[i * seq + j] = j <= i ? 0.0 : -1e9;
  STRATA_ASSIGN_OR_RETURN(TensorPtr bias, backend.upload(causal, DType::f32));
  const std::vector<TensorPtr> forward_in{in[0], in[1], in[2], bias};
  STRATA_ASSIGN_OR_RETURN(std::vector<TensorPtr> out, backend.run_op(g.op(att), {in[0].get(), in[1].get(), in[2].get(), bias.get()}));
  const std::vector<TensorPtr> backward_in{in[0], in[1], in[2], bias, out[0], out[1], in[3]};
  profile::AttentionPoint point{head_dim, batch * heads, seq, 0, 0};
  STRATA_ASSIGN_OR_RETURN(point.forward_seconds, time_op(backend, g, att, forward_in, 10));
  STRATA_ASSIGN_OR_RETURN(point.backward_seconds, time_op(backend, g, grad, backward_in, 10));
  if (!(point.forward_seconds > 0) || !(point.backward_seconds > 0)) {
    return make_error("", "attention", "timed at zero seconds");
  }
  return point;
}

// C[m, n] = A.B through the backend's Dot on bf16 operands, as a GPT's layers run it: A [m, k]
// (activations) times B [k, n] (a weight), or with `weight_grad` the weight gradient x^T.dy, A
// given as [k, m] and contracted over its first dim (the tokens).
Expected<profile::GemmPoint> time_gemm(Backend& backend, int64_t m, int64_t n, int64_t k, bool weight_grad) {
  ir::Graph g;
  const ir::Value a = g.input("a", weight_grad ? ir::Shape{k, m} : ir::Shape{m, k}, DType::bf16);
  const ir::Value b = g.input("b", {k, n}, DType::bf16);
  ir::Attrs attrs{{"lhs_batch", std::vector<int64_t>{}}, {"rhs_batch", std::vector<int64_t>{}}};
  attrs.set("lhs_contract", std::vector<int64_t>{weight_grad ? 0 : 1});
  attrs.set("rhs_contract", std::vector<int64_t>{0});
  const ir::OpId dot = g.add(ir::OpKind::Dot, {a, b}, attrs, "gemm");
  std::vector<TensorPtr> in;
  for (const ir::Value& x : {a, b}) {  // a cheap pattern in [-0.5, 0.5): the head's operands are 400M values
    interp::Tensor host(g.type(x).shape);
    for (int64_t i = 0; i < host.numel(); ++i) host[i] = static_cast<double>((i * 7919) % 1000) / 1000.0 - 0.5;
    STRATA_ASSIGN_OR_RETURN(TensorPtr d, backend.upload(host, DType::bf16));
    in.push_back(d);
  }
  profile::GemmPoint point{m, n, k, DType::bf16, 0};
  STRATA_ASSIGN_OR_RETURN(point.seconds, time_op(backend, g, dot, in, 10));
  if (!(point.seconds > 0)) return make_error("", "gemm", "timed at zero seconds");
  return point;
}

}  // namespace

Expected<RuntimeCosts> measure_op_costs(Backend& backend, std::string* table) {
  RuntimeCosts costs;
  char line[200];
  // Per-op cost: the slope of step time over ops issued, between a short and a long chain (the
  // step's fixed costs — loss download, synchronisation — cancel).
  constexpr int64_t kWidth = 256;
  STRATA_ASSIGN_OR_RETURN(ChainTiming short_chain, time_chain(backend, 16, kWidth, 20));
  STRATA_ASSIGN_OR_RETURN(ChainTiming long_chain, time_chain(backend, 256, kWidth, 20));
  if (long_chain.ops <= short_chain.ops) return make_error("", "op_overhead", "the long chain has no more ops");
  const double per_op = std::max(0.0, (long_chain.seconds - short_chain.seconds) /
                                          static_cast<double>(long_chain.ops - short_chain.ops));
  costs.op_overhead_seconds = per_op;
  if (table != nullptr) {
    std::snprintf(line, sizeof line, "# executor per-op cost: %lld ops %.3f ms, %lld ops %.3f ms -> %.2f us per op\n",
                  static_cast<long long>(short_chain.ops), short_chain.seconds * 1e3,
                  static_cast<long long>(long_chain.ops), long_chain.seconds * 1e3, per_op * 1e6);
    *table += line;
    *table += "# memory-bound ops through the backend (bytes: inputs + outputs in the IR dtype)\n"
              "#   op          elements        bytes     time(us)    GB/s\n";
  }
  // Memory-bound ops on bf16 activations of a GPT-like row width, well past the L2.
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> uniform(-2.0, 2.0);
  const int64_t row = 1024;
  for (const char* name : {"add", "gelu", "softmax", "layer_norm"}) {
    profile::MemoryOpCurve curve;
    curve.op = name;
    for (int64_t elements : {int64_t{16} << 20, int64_t{64} << 20}) {
      const int64_t rows = elements / row;
      ir::Graph g;
      const ir::Value x = g.input("x", {rows, row}, DType::bf16);
      ir::Value out;
      std::vector<ir::Value> ins = {x};
      const std::string op = name;
      if (op == "add") {
        ins.push_back(g.input("y", {rows, row}, DType::bf16));
        out = g.add_value(ir::OpKind::Add, ins);
      } else if (op == "gelu") {
        out = g.add_value(ir::OpKind::Gelu, ins);
      } else if (op == "softmax") {
        out = g.add_value(ir::OpKind::Softmax, ins, ir::Attrs{{"axis", int64_t{-1}}});
      } else {
        ins.push_back(g.input("gamma", {row}, DType::bf16));
        ins.push_back(g.input("beta", {row}, DType::bf16));
        out = g.add_value(ir::OpKind::LayerNorm, ins, ir::Attrs{{"eps", 1e-5}});
      }
      std::vector<TensorPtr> uploaded;
      int64_t bytes = g.type(out).bytes();
      for (const ir::Value& v : ins) {
        const ir::TensorType& t = g.type(v);
        bytes += t.bytes();
        interp::Tensor host(t.shape);
        for (int64_t i = 0; i < host.numel(); ++i) host[i] = uniform(rng);
        STRATA_ASSIGN_OR_RETURN(TensorPtr d, backend.upload(host, t.shape.size() == 1 ? DType::f32 : DType::bf16));
        uploaded.push_back(d);
      }
      STRATA_ASSIGN_OR_RETURN(double seconds, time_op(backend, g, out.op, uploaded, 10));
      if (!(seconds > 0)) return make_error("", "memory_ops." + op, "timed at zero seconds");
      curve.bytes.push_back(bytes);
      curve.seconds.push_back(seconds);
      if (table != nullptr) {
        std::snprintf(line, sizeof line, "  %-12s %10lld %12lld %12.1f %7.0f\n", name, static_cast<long long>(elements),
                      static_cast<long long>(bytes), seconds * 1e6, static_cast<double>(bytes) / seconds / 1e9);
        *table += line;
      }
    }
    costs.memory_ops.push_back(std::move(curve));
  }
  // The fused attention at GPT shapes: S 1024, 32 heads of 64 (GPT-1.3B, 350M) or 80 (GPT-2.6B),
  // batch * heads from 64 to 512 (micro-batches 2 to 16).
  if (table != nullptr) *table += "# fused attention through the backend (causal, S x S mask)\n#   head_dim  batch*heads   seq  forward(us)  backward(us)\n";
  for (int64_t head_dim : {int64_t{64}, int64_t{80}}) {
    for (int64_t batch : {int64_t{2}, int64_t{4}, int64_t{8}, int64_t{16}}) {
      STRATA_ASSIGN_OR_RETURN(profile::AttentionPoint point, time_attention(backend, batch, 32, 1024, head_dim));
      if (table != nullptr) {
        std::snprintf(line, sizeof line, "  %8lld %12lld %5lld %12.1f %13.1f\n", static_cast<long long>(point.head_dim),
                      static_cast<long long>(point.batch_heads), static_cast<long long>(point.seq),
                      point.forward_seconds * 1e6, point.backward_seconds * 1e6);
        *table += line;
      }
      costs.attention.push_back(point);
    }
  }
  // The GEMMs of GPT layers (hidden 1024, 2048, 2560; 2048 to 8192 tokens a micro-batch), forward
  // and weight gradient, and the 51200-word head: cuBLAS's rate varies with the shape by more than
  // the nearest square point of the profiler's sweep tells.
  // A weight [h, n] on `tokens` rows: the forward, the weight gradient and the input gradient.
  auto time_layer_gemms = [&](int64_t tokens, int64_t h, int64_t n) -> Status {
    STRATA_ASSIGN_OR_RETURN(profile::GemmPoint forward, time_gemm(backend, tokens, n, h, false));
    STRATA_ASSIGN_OR_RETURN(profile::GemmPoint weight_grad, time_gemm(backend, h, n, tokens, true));
    STRATA_ASSIGN_OR_RETURN(profile::GemmPoint input_grad, time_gemm(backend, tokens, h, n, false));
    costs.gemm.insert(costs.gemm.end(), {forward, weight_grad, input_grad});
    return Status::ok();
  };
  for (int64_t h : {int64_t{1024}, int64_t{2048}, int64_t{2560}}) {
    for (int64_t tokens : {int64_t{2048}, int64_t{4096}, int64_t{8192}}) {
      for (int64_t n : {3 * h, h, 4 * h}) STRATA_RETURN_IF_ERROR(time_layer_gemms(tokens, h, n));
    }
    STRATA_RETURN_IF_ERROR(time_layer_gemms(8192, h, 51200));
  }
  if (table != nullptr) {
    *table += "# GEMMs through the backend's Dot (bf16), GPT shapes\n#        m        n        k    time(us)  TFLOP/s\n";
    for (const profile::GemmPoint& p : costs.gemm) {
      std::snprintf(line, sizeof line, "  %8lld %8lld %8lld %11.1f %8.0f\n", static_cast<long long>(p.m),
                    static_cast<long long>(p.n), static_cast<long long>(p.k), p.seconds * 1e6,
                    2.0 * static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k) / p.seconds / 1e12);
      *table += line;
    }
  }
  return costs;
}

}  // namespace strata::runtime
