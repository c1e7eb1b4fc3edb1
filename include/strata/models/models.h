// Model builders: a model config (YAML) becomes a ModelSpec, and a ModelSpec becomes a forward
// ir::Graph ending in a scalar loss. Families: GPT, GShard MoE, Wide-ResNet, and a generic op list.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "strata/core/status.h"
#include "strata/ir/graph.h"

namespace strata::models {

enum class Family : uint8_t { gpt, moe, wresnet, graph };
const char* family_name(Family family);  // "gpt", "moe", "wresnet", "graph"

// An op's input in a generic graph config: "name" (output 0) or "name:1".
struct ValueRef {
  std::string op;
  int32_t index = 0;
};

// One op of a generic graph config (family: graph).
struct GraphOpSpec {
  std::string name;
  ir::OpKind kind = ir::OpKind::Constant;
  std::vector<ValueRef> inputs;
  ir::Attrs attrs;
};

// Everything a builder needs, already validated by load_model_config. Fields that a family does
// not use keep their defaults. YAML keys are the field names below, all under `model:`.
struct ModelSpec {
  std::string file;  // where it was read from ("" when built in code)
  std::string name;  // model.name, else the file's stem
  Family family = Family::gpt;
  DType dtype = DType::f32;    // parameters and float inputs
  int64_t global_batch = 0;    // sequences (gpt, moe) or images (wresnet) per training step

  // Transformers (gpt, moe). The token embedding is tied with the LM head (as in Megatron and
  // Alpa's benchmarks), and the attention is causal through an Input "causal_mask" f32[S, S]
  // that the runtime feeds: 0 where key <= query, -1e9 above the diagonal (added to the scores).
  int64_t hidden = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t seq_len = 1024;
  int64_t vocab = 51200;       // moe default 32000
  int64_t ffn_hidden = 0;      // dense MLP width; 0 -> 4*hidden (gpt) or 8*hidden (moe, as Alpa)
  double layer_norm_eps = 1e-5;

  // GShard MoE: layers 1, 3, 5, ... (every other one) have `experts` expert FFNs behind top-2
  // gating. Tokens are split into groups of expert_group_size (clamped to the micro-batch's
  // tokens); capacity per expert and group = ceil(capacity_factor * 2 * group / experts).
  int64_t experts = 0;
  int64_t expert_ffn_hidden = 0;  // 0 -> 8*hidden
  int64_t expert_group_size = 2048;
  double capacity_factor = 1.0;

  // Wide-ResNet (bottleneck blocks as in Alpa's benchmark): a 7x7/2 stem conv, 3x3/2 max pool,
  // four stages of bottleneck blocks (1x1 -> 3x3 with width_factor -> 1x1 to 4x filters), global
  // average pool, a dense classifier. depth 50, 101 or 152 (or 26: two blocks per stage).
  int64_t image_size = 224;
  int64_t depth = 50;
  int64_t base_channels = 64;
  int64_t width_factor = 2;
  int64_t num_classes = 1024;
  double batch_norm_eps = 1e-5;

  // Generic graph (family: graph): ops in order (inputs must come before their users) and the
  // graph outputs; the batch is whatever the ops' shapes say, so micro_batch is ignored.
  std::vector<GraphOpSpec> ops;
  std::vector<ValueRef> outputs;
};

// Reads and validates a config. Every error is one Error{file, field ("model.hidden",
// "model.ops[3].inputs[1]"), reason}: missing field, wrong type, non-positive size, heads not
// dividing hidden, unknown family, unknown op, dangling input, unknown field.
Expected<ModelSpec> load_model_config(const std::string& path);
// The same from YAML text; `file` only labels errors.
Expected<ModelSpec> parse_model_config(const std::string& yaml_text, const std::string& file);

// The forward graph of one micro-batch of `micro_batch` samples (0: the global batch), ending in
// a scalar loss marked as the graph's output. micro_batch must divide the global batch.
Expected<ir::Graph> build_forward_graph(const ModelSpec& spec, int64_t micro_batch);

// The batch a graph built with `micro_batch` has (the global batch when 0; 0 for family graph).
int64_t effective_batch(const ModelSpec& spec, int64_t micro_batch);

// Writes any graph as a family-graph config that parse_model_config reads back to an equal graph.
std::string graph_to_yaml(const ir::Graph& graph, const std::string& name);

}  // namespace strata::models
