// Reverse-mode autodiff on ir::Graph: appends backward ops (Role::backward) for the gradient of
// the single scalar output w.r.t. every Parameter, then optimizer-update ops (Role::update).
#pragma once

#include <map>
#include <string>

#include "strata/core/status.h"
#include "strata/ir/graph.h"

namespace strata::autodiff {

enum class Optimizer { sgd, adam };

struct TrainingOptions {
  Optimizer optimizer = Optimizer::sgd;
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  int64_t step = 1;  // Adam's 1-based step for bias correction
};

// The forward graph plus its backward ops, and each parameter's gradient value.
struct GradientGraph {
  ir::Graph graph;
  ir::Value loss;
  std::map<ir::OpId, ir::Value> gradients;  // Parameter op id -> gradient of the loss w.r.t. it
};

// Errors: not exactly one output, a non-scalar or non-float output, or an op on the path from a
// parameter to the loss that has no gradient rule (a *Grad or update op in the forward graph).
Expected<GradientGraph> build_gradient_graph(const ir::Graph& forward);

// The gradient graph plus one update per parameter: SgdUpdate(p, g){lr}, or AdamUpdate(p, g, m, v)
// with state Parameters "<param>.adam_m" / "<param>.adam_v" (init "zeros", Role::update). The
// update ops' outputs replace the parameter (and m, v) for the next step.
Expected<ir::Graph> build_training_graph(const ir::Graph& forward, const TrainingOptions& options);

}  // namespace strata::autodiff
