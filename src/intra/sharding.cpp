// Sharding-spec algebra: text form, validity, local shapes, and the collective sequence (with its
// CommModel cost) that reshards one tensor from one spec to another.
#include "strata/intra/sharding.h"

#include <algorithm>
#include <sstream>

namespace strata::intra {
namespace {

using AxisList = std::vector<int>;  // mesh axes splitting one dimension, major first

DimSharding dim_of(const AxisList& axes) {
  if (axes.empty()) return DimSharding::R;
  if (axes.size() == 2) {
    STRATA_CHECK(axes[0] == 0 && axes[1] == 1, "only axis order 0,1 is representable");
    return DimSharding::S01;
  }
  return axes[0] == 0 ? DimSharding::S0 : DimSharding::S1;
}

const char* dim_text(DimSharding dim) {
  switch (dim) {
    case DimSharding::R: return "R";
    case DimSharding::S0: return "S0";
    case DimSharding::S1: return "S1";
    case DimSharding::S01: return "S01";
  }
  return "?";
}

int axis_size(const cluster::LogicalMesh& mesh, int axis) { return axis == 0 ? mesh.n0 : mesh.n1; }

bool is_prefix(const AxisList& prefix, const AxisList& list) {
  return prefix.size() <= list.size() && std::equal(prefix.begin(), prefix.end(), list.begin());
}

// The working state of a resharding: per-dimension axis lists and pending sums.
struct State {
  std::vector<AxisList> dims;
  bool partial[2] = {false, false};

  explicit State(const ShardingSpec& spec) {
    for (DimSharding dim : spec.dims) dims.push_back(mesh_axes(dim));
    partial[0] = spec.partial[0];
    partial[1] = spec.partial[1];
  }
  ShardingSpec spec() const {
    ShardingSpec out;
    for (const AxisList& axes : dims) out.dims.push_back(dim_of(axes));
    out.partial[0] = partial[0];
    out.partial[1] = partial[1];
    return out;
  }
  // Bytes one device holds: mesh axes are never reused, so the split factors simply multiply.
  int64_t local_bytes(int64_t global_elements, DType dtype, const cluster::LogicalMesh& mesh) const {
    int64_t devices = 1;
    for (const AxisList& axes : dims) {
      for (int axis : axes) devices *= axis_size(mesh, axis);
    }
    return global_elements / devices * dtype_bytes(dtype);
  }
};

}  // namespace

std::string ShardingSpec::to_string() const {
  std::string text;
  for (DimSharding dim : dims) text += dim_text(dim);
  if (partial[0] || partial[1]) text += std::string("P") + (partial[0] ? "0" : "") + (partial[1] ? "1" : "");
  return text;
}

bool ShardingSpec::operator==(const ShardingSpec& other) const {
  return dims == other.dims && partial[0] == other.partial[0] && partial[1] == other.partial[1];
}

Expected<ShardingSpec> parse_sharding(const std::string& text) {
  ShardingSpec spec;
  size_t i = 0;
  auto bad = [&](const std::string& why) {
    return make_error("", "sharding", "'" + text + "' at character " + std::to_string(i) + ": " + why);
  };
  auto read_axes = [&](bool& zero, bool& one) {
    zero = i < text.size() && text[i] == '0';
    if (zero) ++i;
    one = i < text.size() && text[i] == '1';
    if (one) ++i;
  };
  while (i < text.size()) {
    const char c = text[i];
    if (c == 'R') {
      spec.dims.push_back(DimSharding::R);
      ++i;
    } else if (c == 'S') {
      ++i;
      bool zero = false, one = false;
      read_axes(zero, one);
      if (!zero && !one) return bad("S needs mesh axes 0, 1 or 01");
      spec.dims.push_back(zero && one ? DimSharding::S01 : zero ? DimSharding::S0 : DimSharding::S1);
    } else if (c == 'P') {
      ++i;
      read_axes(spec.partial[0], spec.partial[1]);
      if (!spec.partial[0] && !spec.partial[1]) return bad("P needs mesh axes 0, 1 or 01");
      if (i != text.size()) return bad("the partial-sum suffix must come last");
    } else {
      return bad(std::string("expected R, S or P, got '") + c + "'");
    }
  }
  return spec;
}

Status validate_sharding(const ShardingSpec& spec, const std::vector<int64_t>& global_shape,
                         const cluster::LogicalMesh& mesh) {
  const std::string text = spec.to_string();
  auto bad = [&](const std::string& why) { return make_error("", "sharding", "'" + text + "': " + why); };
  if (spec.dims.size() != global_shape.size()) {
    return bad("has " + std::to_string(spec.dims.size()) + " dimensions, the tensor " + std::to_string(global_shape.size()));
  }
  int uses[2] = {spec.partial[0] ? 1 : 0, spec.partial[1] ? 1 : 0};
  for (size_t d = 0; d < spec.dims.size(); ++d) {
    int64_t parts = 1;
    for (int axis : mesh_axes(spec.dims[d])) {
      ++uses[axis];
      parts *= axis_size(mesh, axis);
    }
    if (global_shape[d] % parts != 0) {
      return bad("dimension " + std::to_string(d) + " of size " + std::to_string(global_shape[d]) +
                 " does not split evenly into " + std::to_string(parts) + " parts");
    }
  }
  for (int axis = 0; axis < 2; ++axis) {
    if (uses[axis] > 1) return bad("mesh axis " + std::to_string(axis) + " is used more than once");
  }
  return Status::ok();
}

Expected<std::vector<int64_t>> local_shape(const ShardingSpec& spec, const std::vector<int64_t>& global_shape,
                                           const cluster::LogicalMesh& mesh) {
  STRATA_RETURN_IF_ERROR(validate_sharding(spec, global_shape, mesh));
  std::vector<int64_t> shape = global_shape;
  for (size_t d = 0; d < shape.size(); ++d) {
    for (int axis : mesh_axes(spec.dims[d])) shape[d] /= axis_size(mesh, axis);
  }
  return shape;
}

std::string ReshardPlan::describe() const {
  if (steps.empty()) return "free";
  std::ostringstream text;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (i > 0) text << "; ";
    text << cluster::collective_name(steps[i].kind) << "(axis " << steps[i].axis << ", " << steps[i].bytes << " B) -> "
         << steps[i].after;
  }
  return text.str();
}

Expected<ReshardPlan> resharding_cost(const ShardingSpec& from, const ShardingSpec& to,
                                      const std::vector<int64_t>& global_shape, DType dtype,
                                      const cluster::Submesh& submesh, const cluster::LogicalMesh& mesh,
                                      const cluster::CommModel& comm) {
  STRATA_RETURN_IF_ERROR(validate_sharding(from, global_shape, mesh));
  STRATA_RETURN_IF_ERROR(validate_sharding(to, global_shape, mesh));
  int64_t elements = 1;
  for (int64_t size : global_shape) elements *= size;

  State state(from);
  const State target(to);
  ReshardPlan plan;
  auto emit = [&](cluster::Collective kind, int axis, int64_t bytes) {
    if (axis_size(mesh, axis) == 1) return;  // a group of one: nothing moves
    ReshardStep step;
    step.kind = kind;
    step.axis = axis;
    step.bytes = bytes;
    step.seconds = comm.seconds(kind, cluster::CommGroup{submesh, mesh, axis, false}, bytes, dtype);
    step.after = state.spec().to_string();
    plan.seconds += step.seconds;
    plan.steps.push_back(std::move(step));
  };

  // 1. Pending sums, while the tensor is still as split as it will get.
  for (int axis = 0; axis < 2; ++axis) {
    if (!state.partial[axis] || target.partial[axis]) continue;
    const int64_t bytes = state.local_bytes(elements, dtype, mesh);
    state.partial[axis] = false;
    bool scattered = false;
    for (size_t d = 0; d < state.dims.size() && !scattered; ++d) {
      AxisList grown = state.dims[d];
      grown.push_back(axis);
      if (is_prefix(grown, target.dims[d])) {
        state.dims[d] = grown;
        scattered = true;
      }
    }
    emit(scattered ? cluster::Collective::reduce_scatter : cluster::Collective::all_reduce, axis, bytes);
  }

  // 2. Give up the mesh axes each dimension must lose, innermost first.
  for (size_t d = 0; d < state.dims.size(); ++d) {
    while (!is_prefix(state.dims[d], target.dims[d])) {
      const int axis = state.dims[d].back();
      state.dims[d].pop_back();
      size_t moved_to = state.dims.size();
      for (size_t e = 0; e < state.dims.size() && moved_to == state.dims.size(); ++e) {
        if (e == d) continue;
        AxisList grown = state.dims[e];
        grown.push_back(axis);
        if (is_prefix(grown, target.dims[e])) moved_to = e;
      }
      if (moved_to != state.dims.size()) {
        state.dims[moved_to].push_back(axis);
        emit(cluster::Collective::all_to_all, axis, state.local_bytes(elements, dtype, mesh));
      } else {
        emit(cluster::Collective::all_gather, axis, state.local_bytes(elements, dtype, mesh));
      }
    }
  }
  // 3. What is left is local slicing, and turning complete values into pending sums (keep one
  // device's copy, zero the rest): both free.
  return plan;
}

std::vector<int> mesh_axes(DimSharding dim) {
  switch (dim) {
    case DimSharding::R: return {};
    case DimSharding::S0: return {0};
    case DimSharding::S1: return {1};
    case DimSharding::S01: return {0, 1};
  }
  return {};
}

}  // namespace strata::intra
