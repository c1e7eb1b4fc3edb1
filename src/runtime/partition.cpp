// The SPMD partitioner: local tiles, reshard steps from intra's collective planner, cross-mesh
// tile intersection, rank layout, and the StageGraph that the executor walks.
#include "strata/runtime/partition.h"

#include <algorithm>
#include <set>
#include <sstream>

namespace strata::runtime {
namespace {

using intra::DimSharding;
using intra::ShardingSpec;

int axis_size(const cluster::LogicalMesh& mesh, int axis) { return axis == 0 ? mesh.n0 : mesh.n1; }
int axis_coord(Coord c, int axis) { return axis == 0 ? c.i : c.j; }

// Costs do not matter for execution: the step sequence is all we take from resharding_cost.
class NoCost : public cluster::CommModel {
 public:
  double seconds(cluster::Collective, const cluster::CommGroup&, int64_t, DType) const override { return 0; }
  std::string describe() const override { return "none"; }
};

// Block index and count of a dim split over `axes` (major first) at `coord`.
std::pair<int64_t, int64_t> block_of(const std::vector<int>& axes, const cluster::LogicalMesh& mesh, Coord coord) {
  int64_t index = 0, count = 1;
  for (int axis : axes) {
    index = index * axis_size(mesh, axis) + axis_coord(coord, axis);
    count *= axis_size(mesh, axis);
  }
  return {index, count};
}

std::vector<int> nontrivial(std::vector<int> axes, const cluster::LogicalMesh& mesh) {
  axes.erase(std::remove_if(axes.begin(), axes.end(), [&](int axis) { return axis_size(mesh, axis) == 1; }), axes.end());
  return axes;
}

int find_dim_with_axis(const ShardingSpec& spec, int axis) {
  for (size_t d = 0; d < spec.dims.size(); ++d) {
    for (int a : intra::mesh_axes(spec.dims[d])) {
      if (a == axis) return static_cast<int>(d);
    }
  }
  return -1;
}

std::string box_string(const Box& box) { return ir::shape_string(box.starts) + "+" + ir::shape_string(box.sizes); }

// The intersection of two boxes in global coordinates, or an empty box.
Box intersect(const Box& a, const Box& b) {
  Box out;
  for (size_t d = 0; d < a.starts.size(); ++d) {
    const int64_t lo = std::max(a.starts[d], b.starts[d]);
    const int64_t hi = std::min(a.starts[d] + a.sizes[d], b.starts[d] + b.sizes[d]);
    out.starts.push_back(lo);
    out.sizes.push_back(std::max<int64_t>(0, hi - lo));
  }
  return out;
}

Box relative_to(const Box& box, const Box& tile) {
  Box out = box;
  for (size_t d = 0; d < box.starts.size(); ++d) out.starts[d] -= tile.starts[d];
  return out;
}

}  // namespace

Coord coord_of(int device, const cluster::LogicalMesh& mesh) { return Coord{device / mesh.n1, device % mesh.n1}; }

int64_t Box::numel() const {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  return n;
}

Box tile_box(const ShardingSpec& spec, const ir::Shape& global_shape, const cluster::LogicalMesh& mesh, Coord coord) {
  Box box;
  for (size_t d = 0; d < global_shape.size(); ++d) {
    const auto [index, count] = block_of(intra::mesh_axes(spec.dims[d]), mesh, coord);
    const int64_t size = global_shape[d] / count;
    box.starts.push_back(index * size);
    box.sizes.push_back(size);
  }
  return box;
}

const char* step_kind_name(StepKind kind) {
  switch (kind) {
    case StepKind::all_reduce: return "all_reduce";
    case StepKind::reduce_scatter: return "reduce_scatter";
    case StepKind::all_gather: return "all_gather";
    case StepKind::all_to_all: return "all_to_all";
    case StepKind::slice: return "slice";
    case StepKind::zero: return "zero";
  }
  return "?";
}

std::string LocalStep::describe() const {
  std::ostringstream text;
  text << step_kind_name(kind) << "(";
  switch (kind) {
    case StepKind::all_reduce: text << "axis " << axis; break;
    case StepKind::reduce_scatter:
    case StepKind::all_gather: text << "axis " << axis << ", dim " << dim; break;
    case StepKind::all_to_all: text << "axis " << axis << ", dim " << dim << " -> " << dim2; break;
    case StepKind::slice: text << box_string(box); break;
    case StepKind::zero: text << "axis " << axis; break;
  }
  text << ")";
  return text.str();
}

Expected<std::vector<LocalStep>> reshard_steps(const ShardingSpec& from, const ShardingSpec& to,
                                               const ir::Shape& global_shape, const cluster::LogicalMesh& mesh,
                                               Coord coord) {
  static const NoCost kNoCost;
  STRATA_ASSIGN_OR_RETURN(intra::ReshardPlan plan, intra::resharding_cost(from, to, global_shape, DType::f32,
                                                                          cluster::Submesh{mesh.n0, mesh.n1}, mesh, kNoCost));
  std::vector<LocalStep> steps;
  ShardingSpec state = from;
  for (const intra::ReshardStep& s : plan.steps) {
    STRATA_ASSIGN_OR_RETURN(ShardingSpec after, intra::parse_sharding(s.after));
    if (after.dims.size() != state.dims.size()) after.dims.resize(state.dims.size(), DimSharding::R);  // rank 0: ""
    LocalStep step;
    step.axis = s.axis;
    const int lost = find_dim_with_axis(state, s.axis);   // the dim giving the axis up, if any
    const int gained = find_dim_with_axis(after, s.axis);  // the dim taking it, if any
    switch (s.kind) {
      case cluster::Collective::all_reduce: step.kind = StepKind::all_reduce; break;
      case cluster::Collective::reduce_scatter:
        step.kind = StepKind::reduce_scatter;
        step.dim = gained;
        break;
      case cluster::Collective::all_gather:
        step.kind = StepKind::all_gather;
        step.dim = lost;
        break;
      case cluster::Collective::all_to_all:
        step.kind = StepKind::all_to_all;
        step.dim = gained;  // split here ...
        step.dim2 = lost;   // ... and concatenate here
        break;
      case cluster::Collective::send_recv: return make_error("", "sharding", "resharding inside a mesh planned a send");
    }
    STRATA_CHECK(step.kind == StepKind::all_reduce || step.dim >= 0, "reshard step without its dimension: " + s.after);
    steps.push_back(step);
    state = after;
  }
  // What is left: per dim, `state`'s axes are a prefix of `to`'s; keep this device's block.
  ir::Shape local = global_shape;
  for (size_t d = 0; d < local.size(); ++d) local[d] /= block_of(intra::mesh_axes(state.dims[d]), mesh, coord).second;
  Box keep{std::vector<int64_t>(local.size(), 0), local};
  bool slicing = false;
  for (size_t d = 0; d < local.size(); ++d) {
    // Axes of size 1 move nothing, and resharding_cost drops them without a step.
    const std::vector<int> have = nontrivial(intra::mesh_axes(state.dims[d]), mesh);
    const std::vector<int> want = nontrivial(intra::mesh_axes(to.dims[d]), mesh);
    STRATA_CHECK(have.size() <= want.size() && std::equal(have.begin(), have.end(), want.begin()),
                 "resharding left dim " + std::to_string(d) + " split differently from " + to.to_string());
    const auto [index, count] = block_of(std::vector<int>(want.begin() + static_cast<long>(have.size()), want.end()), mesh, coord);
    if (count == 1) continue;
    keep.sizes[d] = local[d] / count;
    keep.starts[d] = index * keep.sizes[d];
    slicing = true;
  }
  if (slicing) steps.push_back(LocalStep{StepKind::slice, -1, -1, -1, keep});
  for (int axis = 0; axis < 2; ++axis) {
    if (to.partial[axis] && !state.partial[axis] && axis_size(mesh, axis) > 1 && axis_coord(coord, axis) != 0) {
      steps.push_back(LocalStep{StepKind::zero, axis, -1, -1, {}});
    }
  }
  return steps;
}

Expected<std::vector<Message>> cross_mesh_messages(const ShardingSpec& from, const cluster::LogicalMesh& a,
                                                   const ShardingSpec& to, const cluster::LogicalMesh& b,
                                                   const ir::Shape& global_shape) {
  if (from.partial[0] || from.partial[1] || to.partial[0] || to.partial[1]) {
    return make_error("", "sharding", "a cross-mesh transfer moves complete values, not pending sums (" +
                                          from.to_string() + " -> " + to.to_string() + ")");
  }
  STRATA_RETURN_IF_ERROR(intra::validate_sharding(from, global_shape, a));
  STRATA_RETURN_IF_ERROR(intra::validate_sharding(to, global_shape, b));
  // Distinct sender tiles (they partition the tensor) and the replicas holding each.
  std::vector<Box> tiles;
  std::vector<std::vector<int>> holders;
  for (int device = 0; device < a.num_devices(); ++device) {
    const Box box = tile_box(from, global_shape, a, coord_of(device, a));
    auto it = std::find(tiles.begin(), tiles.end(), box);
    if (it == tiles.end()) {
      tiles.push_back(box);
      holders.push_back({device});
    } else {
      holders[static_cast<size_t>(it - tiles.begin())].push_back(device);
    }
  }
  std::vector<Message> messages;
  for (int device = 0; device < b.num_devices(); ++device) {
    const Box want = tile_box(to, global_shape, b, coord_of(device, b));
    for (size_t t = 0; t < tiles.size(); ++t) {
      const Box common = intersect(tiles[t], want);
      if (common.numel() == 0 && !global_shape.empty()) continue;
      const int sender = holders[t][static_cast<size_t>(device) % holders[t].size()];
      messages.push_back(Message{sender, device, relative_to(common, tiles[t]), relative_to(common, want)});
    }
  }
  return messages;
}

int64_t message_elements(const std::vector<Message>& messages) {
  int64_t n = 0;
  for (const Message& m : messages) n += m.from_box.numel();
  return n;
}

std::vector<std::vector<int>> stage_ranks(const plan::Plan& plan) {
  std::vector<std::vector<int>> ranks;
  for (const plan::Stage& stage : plan.stages) {
    std::vector<int> list;
    for (int r = 0; r < stage.submesh.rows; ++r) {
      for (int c = 0; c < stage.submesh.cols; ++c) {
        list.push_back((stage.first_node + r) * plan.cluster.gpus_per_node + stage.first_gpu + c);
      }
    }
    ranks.push_back(std::move(list));
  }
  return ranks;
}

std::pair<int, int> locate_rank(const plan::Plan& plan, int rank) {
  const auto ranks = stage_ranks(plan);
  for (size_t s = 0; s < ranks.size(); ++s) {
    for (size_t d = 0; d < ranks[s].size(); ++d) {
      if (ranks[s][d] == rank) return {static_cast<int>(s), static_cast<int>(d)};
    }
  }
  return {-1, -1};
}

const Transfer* StageGraph::transfer_to(ir::Value value, int stage) const {
  for (const Transfer& t : transfers) {
    if (t.value == value && t.to_stage == stage) return &t;
  }
  return nullptr;
}

Expected<ShardingSpec> StageGraph::spec_on(ir::Value value, int stage) const {
  if (stage_of[value.op] == stage) return sharding[value.op].outputs[value.index];
  if (const Transfer* t = transfer_to(value, stage)) return t->landing;
  return make_error("", "", "value " + std::to_string(value.op) + ":" + std::to_string(value.index) +
                                " never reaches stage " + std::to_string(stage));
}

namespace {

// The landing spec on the receiving mesh: the consumer's own spec, or that spec further split
// over mesh axes it leaves unused when that moves fewer elements between meshes (the receivers
// then all-gather inside their mesh: "send once, gather inside").
Expected<ShardingSpec> choose_landing(const ShardingSpec& sent, const cluster::LogicalMesh& a, const ShardingSpec& want,
                                      const cluster::LogicalMesh& b, const ir::Shape& shape) {
  STRATA_ASSIGN_OR_RETURN(auto direct, cross_mesh_messages(sent, a, want, b, shape));
  ShardingSpec best = want;
  int64_t best_elements = message_elements(direct);
  std::set<int> used;
  for (DimSharding d : want.dims) {
    for (int axis : intra::mesh_axes(d)) used.insert(axis);
  }
  for (size_t d = 0; d < want.dims.size(); ++d) {
    for (DimSharding grown : {DimSharding::S0, DimSharding::S1, DimSharding::S01}) {
      const std::vector<int> have = intra::mesh_axes(want.dims[d]);
      const std::vector<int> next = intra::mesh_axes(grown);
      if (next.size() <= have.size() || !std::equal(have.begin(), have.end(), next.begin())) continue;
      bool free_axes = true;
      for (size_t k = have.size(); k < next.size(); ++k) free_axes = free_axes && !used.count(next[k]);
      if (!free_axes) continue;
      ShardingSpec candidate = want;
      candidate.dims[d] = grown;
      if (!intra::validate_sharding(candidate, shape, b).is_ok()) continue;
      auto messages = cross_mesh_messages(sent, a, candidate, b, shape);
      if (messages && message_elements(*messages) < best_elements) {
        best_elements = message_elements(*messages);
        best = candidate;
      }
    }
  }
  return best;
}

bool is_update(ir::OpKind kind) { return kind == ir::OpKind::SgdUpdate || kind == ir::OpKind::AdamUpdate; }

}  // namespace

Expected<StageGraph> partition(const ir::Graph& graph, const plan::Plan& plan) {
  const std::string& file = plan.source_file;
  const int n = graph.num_ops();
  StageGraph sg;
  sg.stage_of.assign(static_cast<size_t>(n), -1);
  sg.sharding.resize(static_cast<size_t>(n));
  sg.local_ops.resize(static_cast<size_t>(n));
  sg.stage_ops.resize(static_cast<size_t>(plan.num_stages()));
  auto field = [](int s, const std::string& op) { return "stages[" + std::to_string(s) + "].strategies." + op; };

  for (int s = 0; s < plan.num_stages(); ++s) {
    for (const auto& [name, text] : plan.stages[s].strategies) {
      auto id = graph.find(name);
      if (!id) return make_error(file, field(s, name), "no op of that name in the training graph");
      if (sg.stage_of[*id] >= 0) {
        return make_error(file, field(s, name), "the op is also in stage " + std::to_string(sg.stage_of[*id]));
      }
      auto parsed = intra::parse_op_sharding(text);
      if (!parsed) return make_error(file, field(s, name), parsed.error().reason);
      sg.stage_of[*id] = s;
      sg.sharding[*id] = *parsed;
    }
  }
  for (ir::OpId id = 0; id < n; ++id) {
    if (sg.stage_of[id] < 0) {
      return make_error(file, "stages", "op '" + graph.op(id).name + "' has a strategy in no stage");
    }
  }

  // Local ops: check each spec against the op's global types and localise the attributes.
  for (ir::OpId id = 0; id < n; ++id) {
    const ir::Op& op = graph.op(id);
    const int s = sg.stage_of[id];
    const cluster::LogicalMesh& mesh = plan.stages[s].logical_mesh;
    intra::OpSharding& sh = sg.sharding[id];
    auto bad = [&](const std::string& why) { return make_error(file, field(s, op.name), why); };
    // "[]" reads as no specs; where the op has one rank-0 tensor it is that tensor's empty spec.
    if (sh.inputs.empty() && op.inputs.size() == 1 && graph.type(op.inputs[0]).rank() == 0) sh.inputs.emplace_back();
    if (sh.outputs.empty() && op.outputs.size() == 1 && op.outputs[0].rank() == 0) sh.outputs.emplace_back();
    if (sh.inputs.size() != op.inputs.size() || sh.outputs.size() != op.outputs.size()) {
      return bad("'" + sh.to_string() + "' has " + std::to_string(sh.inputs.size()) + " inputs and " +
                 std::to_string(sh.outputs.size()) + " outputs, the op " + std::to_string(op.inputs.size()) + " and " +
                 std::to_string(op.outputs.size()));
    }
    std::vector<ir::TensorType> global_inputs;
    for (size_t k = 0; k < op.inputs.size(); ++k) {
      global_inputs.push_back(graph.type(op.inputs[k]));
      if (sh.inputs[k].partial[0] || sh.inputs[k].partial[1]) return bad("input " + std::to_string(k) + " is consumed as a pending sum");
      Status ok = intra::validate_sharding(sh.inputs[k], global_inputs.back().shape, mesh);
      if (!ok) return bad("input " + std::to_string(k) + ": " + ok.error().reason);
    }
    ir::Op local = op;
    for (size_t k = 0; k < op.outputs.size(); ++k) {
      auto shape = intra::local_shape(sh.outputs[k], op.outputs[k].shape, mesh);
      if (!shape) return bad("output " + std::to_string(k) + ": " + shape.error().reason);
      local.outputs[k].shape = *shape;
    }
    auto attrs = intra::local_attrs(op, global_inputs, sh, mesh);
    if (!attrs) return bad(attrs.error().reason);
    local.attrs = *attrs;
    sg.local_ops[id] = std::move(local);
    sg.stage_ops[s].push_back(id);
  }

  // Update ops write their Parameters back: same stage, same specs.
  for (ir::OpId id = 0; id < n; ++id) {
    const ir::Op& op = graph.op(id);
    if (!is_update(op.kind)) continue;
    const int s = sg.stage_of[id];
    const std::vector<int> state_inputs = op.kind == ir::OpKind::SgdUpdate ? std::vector<int>{0} : std::vector<int>{0, 2, 3};
    for (size_t k = 0; k < state_inputs.size(); ++k) {
      const ir::Value param = op.inputs[state_inputs[k]];
      if (graph.op(param.op).kind != ir::OpKind::Parameter) {
        return make_error(file, field(s, op.name), "input " + std::to_string(state_inputs[k]) + " is not a Parameter");
      }
      if (sg.stage_of[param.op] != s) {
        return make_error(file, field(s, op.name), "updates Parameter '" + graph.op(param.op).name + "' of stage " +
                                                        std::to_string(sg.stage_of[param.op]));
      }
      if (!(sg.sharding[id].outputs[k] == sg.sharding[param.op].outputs[0])) {
        return make_error(file, field(s, op.name), "output " + std::to_string(k) + " in " +
                                                        sg.sharding[id].outputs[k].to_string() + " but Parameter '" +
                                                        graph.op(param.op).name + "' is " +
                                                        sg.sharding[param.op].outputs[0].to_string());
      }
    }
    sg.update_grad[id] = op.inputs[1];
  }

  // Cross-stage transfers, one per (value, receiving stage, phase), in op order.
  for (ir::OpId id = 0; id < n; ++id) {
    const ir::Op& op = graph.op(id);
    const int s = sg.stage_of[id];
    for (size_t k = 0; k < op.inputs.size(); ++k) {
      const ir::Value v = op.inputs[k];
      const int from = sg.stage_of[v.op];
      if (from == s || sg.transfer_to(v, s) != nullptr) continue;
      const bool per_step = is_update(op.kind) && k == 1;
      if (is_update(op.kind) && k != 1) continue;  // state inputs were checked to be local
      Transfer t;
      t.id = static_cast<int>(sg.transfers.size());
      t.value = v;
      t.from_stage = from;
      t.to_stage = s;
      t.per_step = per_step;
      t.sent = sg.sharding[v.op].outputs[v.index];
      t.sent.partial[0] = t.sent.partial[1] = false;
      const ir::Shape& shape = graph.type(v).shape;
      auto landing = choose_landing(t.sent, plan.stages[from].logical_mesh, sg.sharding[id].inputs[k],
                                    plan.stages[s].logical_mesh, shape);
      if (!landing) return make_error(file, field(s, op.name), landing.error().reason);
      t.landing = *landing;
      auto messages = cross_mesh_messages(t.sent, plan.stages[from].logical_mesh, t.landing, plan.stages[s].logical_mesh, shape);
      if (!messages) return make_error(file, field(s, op.name), messages.error().reason);
      t.messages = std::move(*messages);
      sg.transfers.push_back(std::move(t));
    }
  }
  return sg;
}

}  // namespace strata::runtime
