// Fuzz target: model YAML (parse_model_config), then build_forward_graph when the sizes are small
// enough to build in microseconds. Any crash, sanitizer report or malformed Error is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_util.h"
#include "strata/models/models.h"

namespace {

bool tiny(const strata::models::ModelSpec& spec) {
  using strata::models::Family;
  switch (spec.family) {
    case Family::gpt:
    case Family::moe:
      return spec.hidden <= 64 && spec.layers <= 4 && spec.seq_len <= 64 && spec.vocab <= 512 &&
             spec.ffn_hidden <= 256 && spec.global_batch <= 16 && spec.experts <= 8 && spec.expert_ffn_hidden <= 256 &&
             spec.expert_group_size <= 4096;
    case Family::wresnet:
      return spec.image_size <= 128 && spec.depth <= 50 && spec.base_channels <= 16 && spec.width_factor <= 4 &&
             spec.num_classes <= 64 && spec.global_batch <= 4;
    case Family::graph: return spec.ops.size() <= 256;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string file = "fuzz-model.yaml";
  auto loaded = strata::models::parse_model_config(strata::fuzz::as_text(data, size), file);
  const strata::models::ModelSpec* spec = strata::fuzz::loaded_or_checked(loaded, file);
  if (spec == nullptr || !tiny(*spec)) return 0;
  auto graph = strata::models::build_forward_graph(*spec, 0);
  strata::fuzz::loaded_or_checked(graph, file);
  return 0;
}
