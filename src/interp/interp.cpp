// The interpreter's driver: the kernel table keyed by OpKind, parameter initialisation from an
// explicit seed, feed checking, and the run over ops in id (topological) order.
#include "strata/interp/interp.h"

#include <array>
#include <cmath>
#include <cstring>

#include "kernels.h"

namespace strata::interp {

Tensor::Tensor(ir::Shape s, double fill) : shape(std::move(s)), data(static_cast<size_t>(shape_numel(shape)), fill) {}

Tensor::Tensor(ir::Shape s, std::vector<double> values) : shape(std::move(s)), data(std::move(values)) {
  STRATA_CHECK(static_cast<int64_t>(data.size()) == shape_numel(shape), "Tensor: value count differs from shape");
}

int64_t shape_numel(const ir::Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<int64_t> row_major_strides(const ir::Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

const Tensor& Outputs::value(ir::Value v) const {
  STRATA_CHECK(v.op >= 0 && static_cast<size_t>(v.op) < values.size(), "Outputs::value: unknown op");
  STRATA_CHECK(v.index >= 0 && static_cast<size_t>(v.index) < values[v.op].size(), "Outputs::value: bad index");
  return values[v.op][v.index];
}

namespace kernels {

void unravel(int64_t flat, const ir::Shape& shape, std::vector<int64_t>& index) {
  index.resize(shape.size());
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    index[i] = shape[i] == 0 ? 0 : flat % shape[i];
    flat = shape[i] == 0 ? 0 : flat / shape[i];
  }
}

int64_t attr_int(const ir::Op& op, const char* key, int64_t fallback) { return op.attrs.int_or(key, fallback); }
double attr_real(const ir::Op& op, const char* key, double fallback) { return op.attrs.real_or(key, fallback); }
std::vector<int64_t> attr_ints(const ir::Op& op, const char* key) {
  auto values = op.attrs.get_ints(key);
  STRATA_CHECK(values.is_ok(), "op " + op.name + ": " + values.error().message());
  return *values;
}
int64_t norm_axis(int64_t axis, int64_t rank) { return axis < 0 ? axis + rank : axis; }

}  // namespace kernels

namespace {

using KernelTable = std::array<kernels::Kernel, static_cast<size_t>(ir::OpKind::kCount)>;

KernelTable build_table() {
  KernelTable table{};
  for (auto list : {kernels::elementwise_kernels, kernels::layout_kernels, kernels::dot_kernels, kernels::nn_kernels,
                    kernels::moe_loss_kernels, kernels::optimizer_kernels}) {
    for (const kernels::Entry& e : list()) {
      auto& slot = table[static_cast<size_t>(e.kind)];
      STRATA_CHECK(slot == nullptr, std::string("two kernels for ") + ir::op_kind_name(e.kind));
      slot = e.kernel;
    }
  }
  for (size_t k = 0; k < table.size(); ++k) {
    STRATA_CHECK(table[k] != nullptr, std::string("no kernel for ") + ir::op_kind_name(static_cast<ir::OpKind>(k)));
  }
  return table;
}

// SplitMix64: a small, portable, well-mixed generator (std::normal_distribution differs by library).
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
};

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

double round_to(double x, Precision precision) {
  return precision == Precision::f32 ? static_cast<double>(static_cast<float>(x)) : x;
}

}  // namespace

Tensor init_parameter(const ir::Op& op, uint64_t seed) {
  const ir::Shape& shape = op.outputs.at(0).shape;
  const std::string init = op.attrs.has("init") ? op.attrs.get_string("init").value() : "normal";
  if (init == "zeros") return Tensor(shape, 0.0);
  if (init == "ones") return Tensor(shape, 1.0);
  STRATA_CHECK(init == "normal", "op " + op.name + ": unknown init '" + init + "'");
  const double std_dev = op.attrs.real_or("init_std", 0.02);
  SplitMix64 rng{seed ^ fnv1a(op.name)};
  Tensor t(shape);
  for (double& x : t.data) {  // Box-Muller, one normal per pair of uniforms for simplicity
    const double u1 = rng.uniform();
    const double u2 = rng.uniform();
    x = std_dev * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }
  return t;
}

Expected<Outputs> run(const ir::Graph& graph, const std::map<std::string, Tensor>& feeds, Precision precision,
                      uint64_t seed) {
  static const KernelTable kTable = build_table();  // immutable after first use
  for (const auto& [name, tensor] : feeds) {
    auto id = graph.find(name);
    if (!id) return make_error("", "feeds." + name, "no op of that name in the graph");
    const ir::Op& op = graph.op(*id);
    if (op.kind != ir::OpKind::Input && op.kind != ir::OpKind::Parameter) {
      return make_error("", "feeds." + name, std::string("op is a ") + ir::op_kind_name(op.kind) +
                                                 ", only Input and Parameter ops can be fed");
    }
    if (tensor.shape != op.outputs[0].shape || tensor.numel() != shape_numel(tensor.shape)) {
      return make_error("", "feeds." + name, "shape " + ir::shape_string(tensor.shape) + " differs from the op's " +
                                                 ir::shape_string(op.outputs[0].shape));
    }
  }
  Outputs result;
  result.values.resize(static_cast<size_t>(graph.num_ops()));
  for (ir::OpId id = 0; id < graph.num_ops(); ++id) {
    const ir::Op& op = graph.op(id);
    std::vector<Tensor>& outs = result.values[id];
    if (op.kind == ir::OpKind::Input || op.kind == ir::OpKind::Parameter) {
      auto fed = feeds.find(op.name);
      if (fed != feeds.end()) {
        outs.push_back(fed->second);
      } else if (op.kind == ir::OpKind::Input) {
        return make_error("", "feeds." + op.name, "missing feed for input '" + op.name + "'");
      } else {
        outs.push_back(init_parameter(op, seed));
      }
      for (double& x : outs[0].data) x = round_to(x, is_float(op.outputs[0].dtype) ? precision : Precision::f64);
      continue;
    }
    for (const ir::TensorType& t : op.outputs) outs.emplace_back(t.shape);
    std::vector<const Tensor*> inputs;
    for (ir::Value v : op.inputs) inputs.push_back(&result.values[v.op][v.index]);
    kernels::Args args{op, std::move(inputs), outs};
    Status status = kTable[static_cast<size_t>(op.kind)](args);
    if (!status.is_ok()) return status.error().under("ops." + op.name);
    for (size_t i = 0; i < outs.size(); ++i) {
      if (!is_float(op.outputs[i].dtype)) continue;
      for (double& x : outs[i].data) x = round_to(x, precision);
    }
  }
  for (ir::Value v : graph.outputs()) result.outputs.push_back(result.values[v.op][v.index]);
  return result;
}

}  // namespace strata::interp
