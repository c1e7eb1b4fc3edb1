// The training graph a plan runs and the feeds of one step (runtime/train.h).
#include "strata/runtime/train.h"

namespace strata::runtime {

Expected<PlannedModel> load_planned_model(const plan::Plan& plan) {
  const std::string path = plan.model_path();
  if (path.empty()) return make_error(plan.source_file, "model_file", "the plan names no model file to train");
  PlannedModel out;
  STRATA_ASSIGN_OR_RETURN(out.spec, models::load_model_config(path));
  if (out.spec.global_batch != plan.global_batch) {
    return make_error(plan.source_file, "global_batch", std::to_string(plan.global_batch) + " differs from the model's " +
                                                            std::to_string(out.spec.global_batch) + " (" + path + ")");
  }
  STRATA_ASSIGN_OR_RETURN(ir::Graph forward, models::build_forward_graph(out.spec, plan.micro_batch_size()));
  auto train = autodiff::build_training_graph(forward, plan::autodiff_options(plan.training));
  if (!train) return train.error().in_file(path);
  out.training_graph = std::move(*train);
  STRATA_RETURN_IF_ERROR(plan::validate_strategies(plan, out.training_graph));
  for (const plan::Stage& s : plan.stages) {
    if (s.strategies.empty()) {
      return make_error(plan.source_file, "stages", "a cost-only plan (no strategies) cannot be trained");
    }
  }
  return out;
}

interp::Tensor micro_batch_slice(const interp::Tensor& global, const ir::Shape& micro_shape, int k) {
  if (global.shape == micro_shape) return global;
  const int64_t per = interp::shape_numel(micro_shape);
  return interp::Tensor(micro_shape, std::vector<double>(global.data.begin() + k * per, global.data.begin() + (k + 1) * per));
}

Feeder feeder_of(const std::map<std::string, interp::Tensor>& global_inputs) {
  return [&global_inputs](const ir::Op& input, int k) -> Expected<interp::Tensor> {
    auto it = global_inputs.find(input.name);
    if (it == global_inputs.end()) return make_error("", "inputs." + input.name, "no data for this input");
    const int64_t micro = interp::shape_numel(input.outputs[0].shape);
    if (it->second.shape != input.outputs[0].shape && it->second.numel() < (k + 1) * micro) {
      return make_error("", "inputs." + input.name, "global batch " + ir::shape_string(it->second.shape) +
                                                        " holds no micro-batch " + std::to_string(k));
    }
    return micro_batch_slice(it->second, input.outputs[0].shape, k);
  };
}

Expected<std::map<std::string, interp::Tensor>> language_model_inputs(const std::vector<int64_t>& sequences,
                                                                      int64_t global_batch, int64_t seq_len) {
  if (static_cast<int64_t>(sequences.size()) != global_batch * (seq_len + 1)) {
    return make_error("", "data", std::to_string(sequences.size()) + " tokens for " + std::to_string(global_batch) +
                                      " sequences of " + std::to_string(seq_len + 1));
  }
  interp::Tensor tokens({global_batch, seq_len}), labels({global_batch * seq_len});
  for (int64_t b = 0; b < global_batch; ++b) {
    for (int64_t s = 0; s < seq_len; ++s) {
      tokens[b * seq_len + s] = static_cast<double>(sequences[b * (seq_len + 1) + s]);
      labels[b * seq_len + s] = static_cast<double>(sequences[b * (seq_len + 1) + s + 1]);
    }
  }
  return std::map<std::string, interp::Tensor>{{"tokens", tokens}, {"labels", labels}, {"causal_mask", causal_mask(seq_len)}};
}

}  // namespace strata::runtime
