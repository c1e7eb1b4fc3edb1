// Loading a model config: YAML -> validated ModelSpec, with one Error{file, field, reason} for
// anything wrong. The generic op list (family: graph) is read in graph_yaml.cpp.
#include <yaml-cpp/yaml.h>

#include <filesystem>

#include "models/internal.h"
#include "models/yaml_util.h"
#include "strata/core/units.h"
#include "strata/models/models.h"

namespace strata::models {

const char* family_name(Family family) {
  switch (family) {
    case Family::gpt: return "gpt";
    case Family::moe: return "moe";
    case Family::wresnet: return "wresnet";
    case Family::graph: return "graph";
  }
  STRATA_UNREACHABLE("bad Family");
}

namespace {

constexpr const char* kPath = "model";

Status read_transformer(const yaml::Reader& in, const YAML::Node& m, ModelSpec& spec) {
  STRATA_ASSIGN_OR_RETURN(spec.hidden, in.positive_int(m, "hidden", kPath));
  STRATA_ASSIGN_OR_RETURN(spec.layers, in.positive_int(m, "layers", kPath));
  STRATA_ASSIGN_OR_RETURN(spec.heads, in.positive_int(m, "heads", kPath));
  if (spec.hidden % spec.heads != 0)
    return in.error("model.heads", "heads (" + std::to_string(spec.heads) + ") must divide hidden (" +
                                       std::to_string(spec.hidden) + ")");
  STRATA_ASSIGN_OR_RETURN(spec.seq_len, in.positive_int_or(m, "seq_len", kPath, 1024));
  const int64_t default_vocab = spec.family == Family::moe ? 32000 : 51200;
  STRATA_ASSIGN_OR_RETURN(spec.vocab, in.positive_int_or(m, "vocab", kPath, default_vocab));
  const int64_t default_ffn = (spec.family == Family::moe ? 8 : 4) * spec.hidden;
  STRATA_ASSIGN_OR_RETURN(spec.ffn_hidden, in.positive_int_or(m, "ffn_hidden", kPath, default_ffn));
  STRATA_ASSIGN_OR_RETURN(spec.layer_norm_eps, in.positive_real_or(m, "layer_norm_eps", kPath, 1e-5));
  if (spec.family != Family::moe) return Status::ok();
  STRATA_ASSIGN_OR_RETURN(spec.experts, in.positive_int(m, "experts", kPath));
  if (spec.experts < 2) return in.error("model.experts", "top-2 gating needs at least 2 experts");
  STRATA_ASSIGN_OR_RETURN(spec.expert_ffn_hidden,
                          in.positive_int_or(m, "expert_ffn_hidden", kPath, 8 * spec.hidden));
  STRATA_ASSIGN_OR_RETURN(spec.expert_group_size, in.positive_int_or(m, "expert_group_size", kPath, 2048));
  STRATA_ASSIGN_OR_RETURN(spec.capacity_factor, in.positive_real_or(m, "capacity_factor", kPath, 1.0));
  return Status::ok();
}

Status read_wresnet(const yaml::Reader& in, const YAML::Node& m, ModelSpec& spec) {
  STRATA_ASSIGN_OR_RETURN(spec.image_size, in.positive_int_or(m, "image_size", kPath, 224));
  STRATA_ASSIGN_OR_RETURN(spec.depth, in.positive_int(m, "depth", kPath));
  if (wresnet_stages(spec.depth).empty())
    return in.error("model.depth", "must be 26, 50, 101 or 152, got " + std::to_string(spec.depth));
  STRATA_ASSIGN_OR_RETURN(spec.base_channels, in.positive_int(m, "base_channels", kPath));
  STRATA_ASSIGN_OR_RETURN(spec.width_factor, in.positive_int(m, "width_factor", kPath));
  STRATA_ASSIGN_OR_RETURN(spec.num_classes, in.positive_int_or(m, "num_classes", kPath, 1024));
  STRATA_ASSIGN_OR_RETURN(spec.batch_norm_eps, in.positive_real_or(m, "batch_norm_eps", kPath, 1e-5));
  if (spec.image_size < 32)
    return in.error("model.image_size", "must be at least 32 (the network downsamples by 32)");
  return Status::ok();
}

}  // namespace

Expected<ModelSpec> parse_model_config(const std::string& yaml_text, const std::string& file) {
  const yaml::Reader in{file};
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return in.error("", "YAML parse error at line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root.IsMap() || !root["model"].IsDefined()) return in.error("model", "missing field");
  const YAML::Node m = root["model"];
  if (!m.IsMap()) return in.error("model", "must be a map of model fields");
  STRATA_RETURN_IF_ERROR(in.only_keys(root, "", {"model"}));

  ModelSpec spec;
  spec.file = file;
  STRATA_ASSIGN_OR_RETURN(const std::string family, in.string(m, "family", kPath));
  std::set<std::string> allowed = {"name", "family", "dtype", "global_batch"};
  if (family == "gpt" || family == "moe") {
    spec.family = family == "gpt" ? Family::gpt : Family::moe;
    allowed.insert({"hidden", "layers", "heads", "seq_len", "vocab", "ffn_hidden", "layer_norm_eps"});
    if (family == "moe") allowed.insert({"experts", "expert_ffn_hidden", "expert_group_size", "capacity_factor"});
  } else if (family == "wresnet") {
    spec.family = Family::wresnet;
    allowed.insert({"image_size", "depth", "base_channels", "width_factor", "num_classes", "batch_norm_eps"});
  } else if (family == "graph") {
    spec.family = Family::graph;
    allowed.insert({"ops", "outputs"});
  } else {
    return in.error("model.family", "unknown family '" + family + "' (expected gpt, moe, wresnet or graph)");
  }
  STRATA_RETURN_IF_ERROR(in.only_keys(m, kPath, allowed));

  const std::string stem = file.empty() ? "model" : std::filesystem::path(file).stem().string();
  STRATA_ASSIGN_OR_RETURN(spec.name, in.string_or(m, "name", kPath, stem));
  STRATA_ASSIGN_OR_RETURN(const std::string dtype, in.string_or(m, "dtype", kPath, "f32"));
  Expected<DType> parsed_dtype = parse_dtype(dtype);
  if (!parsed_dtype) return in.error("model.dtype", parsed_dtype.error().reason);
  if (!is_float(*parsed_dtype)) return in.error("model.dtype", "must be a floating-point type, got " + dtype);
  spec.dtype = *parsed_dtype;

  if (spec.family == Family::graph) {
    if (m["global_batch"].IsDefined()) {
      STRATA_ASSIGN_OR_RETURN(spec.global_batch, in.positive_int(m, "global_batch", kPath));
    }
    STRATA_RETURN_IF_ERROR(read_graph_ops(in, m, spec));
    return spec;
  }
  STRATA_ASSIGN_OR_RETURN(spec.global_batch, in.positive_int(m, "global_batch", kPath));
  if (spec.family == Family::wresnet) {
    STRATA_RETURN_IF_ERROR(read_wresnet(in, m, spec));
  } else {
    STRATA_RETURN_IF_ERROR(read_transformer(in, m, spec));
  }
  return spec;
}

Expected<ModelSpec> load_model_config(const std::string& path) {
  Expected<std::string> text = read_text_file(path);
  if (!text) return text.error().in_file(path);
  return parse_model_config(*text, path);
}

int64_t effective_batch(const ModelSpec& spec, int64_t micro_batch) {
  if (spec.family == Family::graph) return 0;
  return micro_batch == 0 ? spec.global_batch : micro_batch;
}

Expected<ir::Graph> build_forward_graph(const ModelSpec& spec, int64_t micro_batch) {
  if (spec.family == Family::graph) return build_graph_family(spec);
  if (micro_batch < 0 || (micro_batch > 0 && spec.global_batch % micro_batch != 0))
    return make_error(spec.file, "micro_batch",
                      "must be positive and divide the global batch " + std::to_string(spec.global_batch) +
                          ", got " + std::to_string(micro_batch));
  const int64_t batch = effective_batch(spec, micro_batch);
  switch (spec.family) {
    case Family::gpt:
    case Family::moe: return build_transformer(spec, batch);
    case Family::wresnet: return build_wresnet(spec, batch);
    case Family::graph: break;
  }
  STRATA_UNREACHABLE("bad Family");
}

}  // namespace strata::models
