// Cluster YAML parsing (units in the field names, converted to SI here), peak rates by dtype, and
// the submesh / logical-mesh shapes the planner enumerates.
#include "strata/cluster/cluster.h"

#include <yaml-cpp/yaml.h>

#include <optional>

#include "strata/cluster/comm.h"
#include "strata/core/units.h"

namespace strata::cluster {
namespace {

constexpr double kGiga = 1e9;
constexpr double kTera = 1e12;
constexpr int64_t kMaxDevices = int64_t{1} << 20;  // keeps num_devices() and device indices in an int

// Reads the fields of one YAML mapping, each check naming the file and field on failure.
class Fields {
 public:
  Fields(const YAML::Node& root, std::string file) : root_(root), file_(std::move(file)) {}

  Expected<std::string> text(const std::string& key) const {
    auto node = root_[key];
    if (!node) return make_error(file_, key, "missing field");
    if (!node.IsScalar()) return make_error(file_, key, "must be a string");
    return node.as<std::string>();
  }

  // A positive number; when `required` is false an absent field gives nullopt.
  Expected<std::optional<double>> positive(const std::string& key, bool required) const {
    auto node = root_[key];
    if (!node) {
      if (required) return make_error(file_, key, "missing field");
      return std::optional<double>();
    }
    double value = 0;
    if (!node.IsScalar() || !YAML::convert<double>::decode(node, value)) {
      return make_error(file_, key, "must be a number");
    }
    if (!(value > 0)) return make_error(file_, key, "must be positive, got " + node.as<std::string>());
    if (!(value < kLargest)) return make_error(file_, key, "too large: " + node.as<std::string>());
    return std::optional<double>(value);
  }

  // Far beyond any real rate or size, and small enough that bytes and FLOP/s stay finite and fit
  // an int64 after the unit conversion (1e6 GB = 1e15 bytes).
  static constexpr double kLargest = 1e6;

  Expected<int> positive_int(const std::string& key) const {
    auto node = root_[key];
    if (!node) return make_error(file_, key, "missing field");
    int value = 0;
    if (!node.IsScalar() || !YAML::convert<int>::decode(node, value)) {
      return make_error(file_, key, "must be an integer");
    }
    if (value <= 0) return make_error(file_, key, "must be positive, got " + std::to_string(value));
    return value;
  }

 private:
  YAML::Node root_;
  std::string file_;
};

const char* const kKnownFields[] = {
    "name", "gpu_model", "num_nodes", "gpus_per_node", "gpu_memory_gbytes", "peak_tflops_f32",
    "peak_tflops_f16", "peak_tflops_bf16", "memory_bandwidth_gbytes_per_s",
    "intra_node_bandwidth_gbytes_per_s_per_gpu", "intra_node_latency_us",
    "inter_node_bandwidth_gbits_per_s_per_node", "inter_node_latency_us"};

}  // namespace

double ClusterSpec::peak_flops(DType dtype) const {
  switch (dtype) {
    case DType::f64: return peak_flops_f32 / 2;
    case DType::f16: return peak_flops_f16 > 0 ? peak_flops_f16 : peak_flops_f32;
    case DType::bf16: return peak_flops_bf16 > 0 ? peak_flops_bf16 : peak_flops_f32;
    case DType::f32:
    case DType::i32: return peak_flops_f32;
  }
  STRATA_UNREACHABLE("unknown dtype");
}

Expected<ClusterSpec> parse_cluster(const std::string& yaml_text, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return make_error(file, "", "invalid YAML: " + std::string(e.what()));
  }
  if (!root.IsMap()) return make_error(file, "", "a cluster file must be a YAML mapping");
  for (const auto& entry : root) {
    if (!entry.first.IsScalar()) return make_error(file, "", "a key is not a field name (a list or map as key)");
    const std::string key = entry.first.Scalar();
    bool known = false;
    for (const char* field : kKnownFields) known = known || key == field;
    if (!known) return make_error(file, key, "unknown field");
  }
  Fields fields(root, file);
  ClusterSpec spec;
  spec.source_file = file;
  STRATA_ASSIGN_OR_RETURN(spec.name, fields.text("name"));
  STRATA_ASSIGN_OR_RETURN(spec.gpu_model, fields.text("gpu_model"));
  STRATA_ASSIGN_OR_RETURN(spec.num_nodes, fields.positive_int("num_nodes"));
  STRATA_ASSIGN_OR_RETURN(spec.gpus_per_node, fields.positive_int("gpus_per_node"));
  if (static_cast<int64_t>(spec.num_nodes) * spec.gpus_per_node > kMaxDevices) {
    return make_error(file, "num_nodes", std::to_string(spec.num_nodes) + " nodes x " +
                                             std::to_string(spec.gpus_per_node) + " GPUs is more than " +
                                             std::to_string(kMaxDevices) + " devices");
  }
  STRATA_ASSIGN_OR_RETURN(auto memory, fields.positive("gpu_memory_gbytes", true));
  spec.gpu_memory_bytes = static_cast<int64_t>(*memory * kGiga);
  if (spec.gpu_memory_bytes < 1) return make_error(file, "gpu_memory_gbytes", "is less than one byte");
  STRATA_ASSIGN_OR_RETURN(auto f32, fields.positive("peak_tflops_f32", true));
  spec.peak_flops_f32 = *f32 * kTera;
  STRATA_ASSIGN_OR_RETURN(auto f16, fields.positive("peak_tflops_f16", false));
  spec.peak_flops_f16 = f16.value_or(0) * kTera;
  STRATA_ASSIGN_OR_RETURN(auto bf16, fields.positive("peak_tflops_bf16", false));
  spec.peak_flops_bf16 = bf16.value_or(0) * kTera;
  STRATA_ASSIGN_OR_RETURN(auto hbm, fields.positive("memory_bandwidth_gbytes_per_s", true));
  spec.memory_bandwidth_bytes_per_second = *hbm * kGiga;
  STRATA_ASSIGN_OR_RETURN(auto intra_bw, fields.positive("intra_node_bandwidth_gbytes_per_s_per_gpu", true));
  STRATA_ASSIGN_OR_RETURN(auto intra_latency, fields.positive("intra_node_latency_us", true));
  spec.intra_node = Link{*intra_bw * kGiga, *intra_latency * 1e-6};
  // Between nodes the NIC is shared by the node's GPUs (all of them talk at once under SPMD), so
  // the per-GPU link gets 1/gpus_per_node of the node's network bandwidth.
  const bool need_inter = spec.num_nodes > 1;
  STRATA_ASSIGN_OR_RETURN(auto inter_bw, fields.positive("inter_node_bandwidth_gbits_per_s_per_node", need_inter));
  STRATA_ASSIGN_OR_RETURN(auto inter_latency, fields.positive("inter_node_latency_us", need_inter));
  spec.inter_node = spec.intra_node;
  if (inter_bw) spec.inter_node.bandwidth_bytes_per_second = *inter_bw * kGiga / 8 / spec.gpus_per_node;
  if (inter_latency) spec.inter_node.latency_seconds = *inter_latency * 1e-6;
  return spec;
}

Expected<ClusterSpec> load_cluster(const std::string& path) {
  STRATA_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  return parse_cluster(text, path);
}

std::vector<Submesh> submesh_shapes(const ClusterSpec& spec) {
  std::vector<Submesh> shapes;
  for (int cols = 1; cols < spec.gpus_per_node; cols *= 2) shapes.push_back(Submesh{1, cols});
  for (int rows = 1; rows <= spec.num_nodes; ++rows) shapes.push_back(Submesh{rows, spec.gpus_per_node});
  return shapes;
}

std::vector<LogicalMesh> logical_meshes(const Submesh& submesh) {
  std::vector<LogicalMesh> meshes;
  const int devices = submesh.num_devices();
  for (int n0 = 1; n0 <= devices; ++n0) {
    if (devices % n0 == 0) meshes.push_back(LogicalMesh{n0, devices / n0});
  }
  return meshes;
}

const char* collective_name(Collective kind) {
  switch (kind) {
    case Collective::all_reduce: return "all_reduce";
    case Collective::all_gather: return "all_gather";
    case Collective::reduce_scatter: return "reduce_scatter";
    case Collective::all_to_all: return "all_to_all";
    case Collective::send_recv: return "send_recv";
  }
  STRATA_UNREACHABLE("unknown collective");
}

}  // namespace strata::cluster
