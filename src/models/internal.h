// Internal to src/models: the per-family builders and the generic op-list reader.
#pragma once

#include <yaml-cpp/yaml.h>

#include <vector>

#include "models/yaml_util.h"
#include "strata/models/models.h"

namespace strata::models {

// Bottleneck blocks per stage for a Wide-ResNet depth; empty for an unsupported depth.
std::vector<int64_t> wresnet_stages(int64_t depth);

Expected<ir::Graph> build_transformer(const ModelSpec& spec, int64_t batch);  // gpt and moe
Expected<ir::Graph> build_wresnet(const ModelSpec& spec, int64_t batch);
Expected<ir::Graph> build_graph_family(const ModelSpec& spec);

// Reads model.ops and model.outputs into spec (family: graph).
Status read_graph_ops(const yaml::Reader& in, const YAML::Node& model, ModelSpec& spec);

}  // namespace strata::models
