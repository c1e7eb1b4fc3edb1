// What `strata train` and the runtime tests share: the training graph a plan runs (its model at
// micro-batch size with the plan's optimizer), and the per-micro-batch feeds cut from a step's
// global-batch inputs.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "strata/autodiff/autodiff.h"
#include "strata/core/status.h"
#include "strata/interp/interp.h"
#include "strata/models/models.h"
#include "strata/plan/plan.h"
#include "strata/runtime/executor.h"

namespace strata::runtime {

// The plan's model (model_file), its training graph at the plan's micro-batch size, checked
// against the plan's strategies. Errors name the plan file and field.
struct PlannedModel {
  models::ModelSpec spec;
  ir::Graph training_graph;
};
Expected<PlannedModel> load_planned_model(const plan::Plan& plan);

// Micro-batch `k` of a global-batch input: its dim-0 rows k·n/B .. (k+1)·n/B when the micro-batch
// graph's input is smaller, else the whole tensor (the causal mask).
interp::Tensor micro_batch_slice(const interp::Tensor& global, const ir::Shape& micro_shape, int k);

// A Feeder over one step's global-batch inputs (by Input name).
Feeder feeder_of(const std::map<std::string, interp::Tensor>& global_inputs);

// Language-model inputs for one step from `global_batch` sequences of seq_len + 1 tokens
// (row-major): tokens = each sequence but its last token, labels = each but its first, and the
// causal mask.
Expected<std::map<std::string, interp::Tensor>> language_model_inputs(const std::vector<int64_t>& sequences,
                                                                      int64_t global_batch, int64_t seq_len);

}  // namespace strata::runtime
