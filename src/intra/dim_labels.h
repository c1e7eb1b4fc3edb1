// Per op kind, how the dims of an op's inputs and outputs relate (einsum-style labels): what a
// strategy may split. One table-like function keyed by op kind (STYLE.md: one place per concern).
#pragma once

#include <vector>

#include "strata/core/status.h"
#include "strata/ir/graph.h"

namespace strata::intra::detail {

// A label is an iteration dimension of the op. A tensor dim carrying label l is split exactly as
// l is; a dim carrying -1 is never split. Splitting a label the op is independent over gives each
// device its own block; splitting a label absent from an output is only allowed when `summed[l]`
// (the op is linear in it): that output becomes a pending partial sum over the split axes.
struct DimLabels {
  int num_labels = 0;
  std::vector<std::vector<int>> inputs;   // per input, per dim
  std::vector<std::vector<int>> outputs;  // per output, per dim
  std::vector<bool> summed;               // per label
};

// The labels of `op` given its inputs' global types. Errors name the attribute at fault.
Expected<DimLabels> dim_labels(const ir::Op& op, const std::vector<ir::TensorType>& inputs);

}  // namespace strata::intra::detail
