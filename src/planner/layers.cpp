// Layer assignment of a training graph: forward ops clustered by FLOPs and cut bytes, every other
// op following the forward op it belongs to (the rules are in include/strata/planner/layers.h).
#include "strata/planner/layers.h"

#include <algorithm>
#include <string>

#include "strata/inter/layer_clustering.h"

namespace strata::planner {
namespace {

bool is_source(const ir::Op& op) { return ir::op_info(op.kind).is_source; }

// The text of an op name before its first '.': "layer3" for "layer3.attn.q".
std::string block_of(const std::string& name) { return name.substr(0, name.find('.')); }

// Cuts only between blocks (maximal runs of forward ops whose names share the first component,
// as the transformer builders name a block's ops "layer<i>."), balanced by FLOPs, fewest bytes
// among the balanced: identical blocks then make identical layers, whose stage problems share
// cache entries. Empty boundaries when the blocks are too few for num_layers, or their
// granularity makes the largest layer over 1.25 × the op-granular optimum.
Expected<inter::LayerClustering> cluster_by_blocks(const ir::Graph& graph, const std::vector<ir::OpId>& seq,
                                                   const std::vector<double>& cost, const std::vector<double>& cut,
                                                   int num_layers) {
  std::vector<int> starts = {0};  // first op position of each block
  for (size_t p = 1; p < seq.size(); ++p) {
    if (block_of(graph.op(seq[p]).name) != block_of(graph.op(seq[p - 1]).name)) starts.push_back(static_cast<int>(p));
  }
  if (static_cast<int>(starts.size()) < num_layers) return inter::LayerClustering{};
  std::vector<double> block_cost(starts.size(), 0.0), block_cut;
  for (size_t b = 0; b < starts.size(); ++b) {
    const size_t end = b + 1 < starts.size() ? starts[b + 1] : seq.size();
    for (size_t p = starts[b]; p < end; ++p) block_cost[b] += cost[p];
    if (b + 1 < starts.size()) block_cut.push_back(cut[end - 1]);
  }
  STRATA_ASSIGN_OR_RETURN(inter::LayerClustering fine, inter::cluster_layers(cost, cut, num_layers, 0.0));
  STRATA_ASSIGN_OR_RETURN(inter::LayerClustering coarse, inter::cluster_layers(block_cost, block_cut, num_layers, 0.0));
  if (coarse.max_layer_cost > 1.25 * fine.max_layer_cost) return inter::LayerClustering{};
  for (int& boundary : coarse.boundaries) {
    boundary = boundary < static_cast<int>(starts.size()) ? starts[boundary] : static_cast<int>(seq.size());
  }
  return coarse;
}

}  // namespace

std::vector<ir::OpId> clusterable_ops(const ir::Graph& graph) {
  std::vector<ir::OpId> ops;
  for (ir::OpId id = 0; id < graph.num_ops(); ++id) {
    const ir::Op& op = graph.op(id);
    if (op.role == ir::Role::forward && !is_source(op)) ops.push_back(id);
  }
  return ops;
}

Expected<LayerAssignment> assign_layers(const ir::Graph& graph, int num_layers, double comm_weight) {
  if (num_layers < 1) return make_error("", "num_layers", "must be at least 1, got " + std::to_string(num_layers));
  const std::vector<ir::OpId> seq = clusterable_ops(graph);
  const int count = static_cast<int>(seq.size());
  if (count < num_layers) {
    return make_error("", "num_layers", std::to_string(num_layers) + " layers but the forward graph has only " +
                                            std::to_string(count) + " ops to cluster");
  }
  const ir::OpId ops = graph.num_ops();
  std::vector<int> pos(static_cast<size_t>(ops), -1);
  for (int p = 0; p < count; ++p) pos[seq[p]] = p;

  // Where each forward value is produced and last read, in clustering positions; a forward
  // source counts as produced at its first forward user.
  std::vector<double> cost(count, 0.0);
  std::vector<double> delta(static_cast<size_t>(count) + 1, 0.0);  // difference array of cut bytes
  for (int p = 0; p < count; ++p) cost[p] = graph.op_flops(seq[p]);
  for (ir::OpId id = 0; id < ops; ++id) {
    const ir::Op& op = graph.op(id);
    // Parameters are not activations: a tied weight read on both sides of a cut crosses it once
    // per step, not per micro-batch, and would only add the same bytes to every cut.
    if (op.role != ir::Role::forward || op.kind == ir::OpKind::Parameter) continue;
    for (int32_t out = 0; out < static_cast<int32_t>(op.outputs.size()); ++out) {
      int first = is_source(op) ? count : pos[id], last = -1;
      for (const ir::Use& use : graph.uses(ir::Value{id, out})) {
        const int at = pos[use.user];
        if (at < 0) continue;
        if (is_source(op)) first = std::min(first, at);
        last = std::max(last, at);
      }
      if (last <= first) continue;
      const double bytes = static_cast<double>(op.outputs[out].bytes());
      delta[first] += bytes;  // crosses the cuts after positions first .. last-1
      delta[last] -= bytes;
    }
  }
  std::vector<double> cut(count > 1 ? count - 1 : 0, 0.0);
  double running = 0;
  for (int p = 0; p + 1 < count; ++p) {
    running += delta[p];
    cut[p] = running;
  }
  STRATA_ASSIGN_OR_RETURN(inter::LayerClustering clustering, cluster_by_blocks(graph, seq, cost, cut, num_layers));
  if (clustering.boundaries.empty()) {
    STRATA_ASSIGN_OR_RETURN(clustering, inter::cluster_layers(cost, cut, num_layers, comm_weight));
  }

  LayerAssignment result;
  result.num_layers = num_layers;
  result.layer_of.assign(static_cast<size_t>(ops), -1);
  result.layer_flops = clustering.layer_cost;
  for (int j = 0; j < num_layers; ++j) {
    for (int p = clustering.boundaries[j]; p < clustering.boundaries[j + 1]; ++p) result.layer_of[seq[p]] = j;
    if (j + 1 < num_layers) result.cut_bytes.push_back(static_cast<int64_t>(cut[clustering.boundaries[j + 1] - 1]));
  }
  std::vector<int>& layer = result.layer_of;
  // Forward sources: their first forward user's layer.
  for (ir::OpId id = 0; id < ops; ++id) {
    const ir::Op& op = graph.op(id);
    if (op.role != ir::Role::forward || !is_source(op)) continue;
    for (ir::OpId user : graph.users(id)) {
      if (pos[user] >= 0 && (layer[id] < 0 || layer[user] < layer[id])) layer[id] = layer[user];
    }
  }
  // Backward and update ops follow their forward op; what is still open takes its first user's
  // layer, else its last input's, until nothing changes; anything left is layer 0.
  bool changed = true;
  while (changed) {
    changed = false;
    for (ir::OpId id = ops - 1; id >= 0; --id) {
      if (layer[id] >= 0) continue;
      const ir::Op& op = graph.op(id);
      int pick = -1;
      if (op.forward_op != ir::kNoOp && op.forward_op != id) pick = layer[op.forward_op];
      if (pick < 0 && op.forward_op == ir::kNoOp) {
        for (ir::OpId user : graph.users(id)) {
          if (layer[user] >= 0 && (pick < 0 || layer[user] < pick)) pick = layer[user];
        }
        if (pick < 0) {
          for (const ir::Value& in : op.inputs) pick = std::max(pick, layer[in.op]);
        }
      }
      if (pick >= 0) {
        layer[id] = pick;
        changed = true;
      }
    }
  }
  for (int& l : layer) l = std::max(l, 0);
  return result;
}

std::vector<ir::OpId> stage_ops(const LayerAssignment& layers, int first, int last) {
  std::vector<ir::OpId> ops;
  for (ir::OpId id = 0; id < static_cast<ir::OpId>(layers.layer_of.size()); ++id) {
    const int l = layers.layer_of[id];
    if (l >= first && l <= last) ops.push_back(id);
  }
  return ops;
}

}  // namespace strata::planner
