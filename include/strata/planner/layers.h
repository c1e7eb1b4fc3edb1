// Which layer every op of a training graph belongs to. The forward ops (sources aside) are cut
// into contiguous layers of balanced FLOPs: between blocks (runs of ops whose names share their
// first component, "layer3." in the transformers) when that balances within 25% of the best
// op-granular split, so identical blocks make identical layers; else anywhere, by
// inter::cluster_layers with bytes crossing a cut (activations, not parameters) weighed by
// `comm_weight`. Every other op follows a forward op:
//  - a source (Parameter, Input, Constant) of the forward graph goes with its FIRST forward user,
//    so a parameter read by two layers (GPT's tied token embedding: the embedding lookup and the
//    LM head) lives, with its gradient sum, optimizer state and update, in the earlier layer; the
//    later one receives its value from there and sends its gradient contribution back;
//  - a backward or update op goes with its Op::forward_op (for Adam's m and v and the update op
//    that is the parameter, so a parameter's whole optimizer step stays in one stage);
//  - anything left (a source nothing in the forward graph reads) goes with its first user.
// A stage of layers [k, i] runs exactly the ops whose layer is in [k, i].
#pragma once

#include <vector>

#include "strata/core/status.h"
#include "strata/ir/graph.h"

namespace strata::planner {

struct LayerAssignment {
  int num_layers = 0;
  std::vector<int> layer_of;          // per op id of the training graph
  std::vector<double> layer_flops;    // forward FLOPs of each layer
  std::vector<int64_t> cut_bytes;     // bytes of forward activations crossing the cut after layer j (L − 1)
};

// `comm_weight` weighs the bytes crossing the cuts against FLOPs (FLOPs per byte). Errors: fewer
// clusterable forward ops than layers, or num_layers < 1.
Expected<LayerAssignment> assign_layers(const ir::Graph& training_graph, int num_layers, double comm_weight);

// The ops of layers [first, last], ascending ids.
std::vector<ir::OpId> stage_ops(const LayerAssignment& layers, int first, int last);

// Forward ops that take part in the clustering (non-source forward ops), in id order.
std::vector<ir::OpId> clusterable_ops(const ir::Graph& graph);

}  // namespace strata::planner
