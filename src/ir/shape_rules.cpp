// Shape rules for sources, elementwise ops, reductions, layout ops and dot_general, plus the
// helpers every rule file shares. Errors name the attribute or "inputs[i]" and say what is wrong.
#include <algorithm>
#include <set>

#include "ir/rules.h"

namespace strata::ir::rules {

std::string input_field(size_t i) { return "inputs[" + std::to_string(i) + "]"; }

Error input_error(size_t i, std::string reason) { return make_error("", input_field(i), std::move(reason)); }

Expected<int64_t> optional_int(const Attrs& attrs, const std::string& key, int64_t fallback) {
  if (!attrs.has(key)) return fallback;
  return attrs.get_int(key);
}

Expected<double> optional_real(const Attrs& attrs, const std::string& key, double fallback) {
  if (!attrs.has(key)) return fallback;
  return attrs.get_real(key);
}

Expected<int64_t> normalize_axis(int64_t axis, int64_t rank, const std::string& key) {
  if (axis < -rank || axis >= rank) {
    return make_error("", key, "axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  }
  return axis < 0 ? axis + rank : axis;
}

Status require_float(const Types& inputs, size_t i) {
  if (!is_float(inputs[i].dtype)) {
    return input_error(i, std::string("expected a floating-point type, got ") + type_string(inputs[i]));
  }
  return Status::ok();
}

Status require_int(const Types& inputs, size_t i) {
  if (inputs[i].dtype != DType::i32) {
    return input_error(i, std::string("expected an i32 tensor, got ") + type_string(inputs[i]));
  }
  return Status::ok();
}

Status require_same_type(const Types& inputs, size_t a, size_t b) {
  if (inputs[a] != inputs[b]) {
    return input_error(b, "expected " + type_string(inputs[a]) + " like " + input_field(a) + ", got " +
                              type_string(inputs[b]));
  }
  return Status::ok();
}

Status require_rank(const Types& inputs, size_t i, int64_t rank) {
  if (inputs[i].rank() != rank) {
    return input_error(i, "expected rank " + std::to_string(rank) + ", got " + type_string(inputs[i]));
  }
  return Status::ok();
}

Expected<DType> dtype_attr(const Attrs& attrs) {
  if (!attrs.has("dtype")) return DType::f32;
  STRATA_ASSIGN_OR_RETURN(std::string name, attrs.get_string("dtype"));
  auto dtype = parse_dtype(name);
  if (!dtype) return make_error("", "dtype", "unknown dtype \"" + name + "\"");
  return *dtype;
}

Expected<Shape> shape_attr(const Attrs& attrs, const std::string& key) {
  STRATA_ASSIGN_OR_RETURN(Shape shape, attrs.get_ints(key));
  for (int64_t d : shape) {
    if (d < 0) return make_error("", key, "negative dimension in " + shape_string(shape));
  }
  return shape;
}

// --- sources ---

Expected<Types> source(const Types&, const Attrs& attrs) {
  STRATA_ASSIGN_OR_RETURN(Shape shape, shape_attr(attrs, "shape"));
  STRATA_ASSIGN_OR_RETURN(DType dtype, dtype_attr(attrs));
  return Types{TensorType{shape, dtype}};
}

Expected<Types> parameter(const Types& inputs, const Attrs& attrs) {
  STRATA_ASSIGN_OR_RETURN(Types out, source(inputs, attrs));
  if (!is_float(out[0].dtype)) {
    return make_error("", "dtype", std::string("a parameter must be floating-point, got ") + dtype_name(out[0].dtype));
  }
  if (attrs.has("init")) {
    STRATA_ASSIGN_OR_RETURN(std::string init, attrs.get_string("init"));
    if (init != "normal" && init != "zeros" && init != "ones") {
      return make_error("", "init", "unknown init \"" + init + "\" (expected normal, zeros or ones)");
    }
  }
  STRATA_ASSIGN_OR_RETURN(double init_std, optional_real(attrs, "init_std", 0.02));
  if (init_std < 0) return make_error("", "init_std", "negative standard deviation " + std::to_string(init_std));
  return out;
}

Expected<Types> constant(const Types& inputs, const Attrs& attrs) {
  STRATA_RETURN_IF_ERROR(attrs.get_real("value"));
  return source(inputs, attrs);
}

// --- elementwise ---

Expected<Types> unary(const Types& inputs, const Attrs&) { return Types{inputs[0]}; }

Expected<Types> unary_float(const Types& inputs, const Attrs&) {
  STRATA_RETURN_IF_ERROR(require_float(inputs, 0));
  return Types{inputs[0]};
}

Expected<Types> scale(const Types& inputs, const Attrs& attrs) {
  STRATA_RETURN_IF_ERROR(attrs.get_real("scalar"));
  return Types{inputs[0]};
}

Expected<Types> same_pair(const Types& inputs, const Attrs&) {
  STRATA_RETURN_IF_ERROR(require_same_type(inputs, 0, 1));
  return Types{inputs[0]};
}

// numpy broadcasting: align trailing dims; each pair must be equal or contain a 1.
Expected<Types> binary(const Types& inputs, const Attrs&) {
  const TensorType& a = inputs[0];
  const TensorType& b = inputs[1];
  if (a.dtype != b.dtype) {
    return input_error(1, std::string("dtype ") + dtype_name(b.dtype) + " differs from inputs[0]'s " +
                              dtype_name(a.dtype));
  }
  const size_t rank = std::max(a.shape.size(), b.shape.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.shape.size() ? 1 : a.shape[i - (rank - a.shape.size())];
    const int64_t db = i < rank - b.shape.size() ? 1 : b.shape[i - (rank - b.shape.size())];
    if (da != db && da != 1 && db != 1) {
      return input_error(1, "cannot broadcast " + shape_string(a.shape) + " with " + shape_string(b.shape) +
                                ": " + std::to_string(da) + " vs " + std::to_string(db) + " at output dim " +
                                std::to_string(i));
    }
    out[i] = da == 1 ? db : da;
  }
  return Types{TensorType{out, a.dtype}};
}

// --- reductions: {axes} (absent: all dims), {keepdims} 0|1 ---

Expected<Types> reduce(const Types& inputs, const Attrs& attrs) {
  const TensorType& x = inputs[0];
  std::vector<bool> reduced(x.shape.size(), !attrs.has("axes"));
  if (attrs.has("axes")) {
    STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> axes, attrs.get_ints("axes"));
    for (int64_t axis : axes) {
      STRATA_ASSIGN_OR_RETURN(int64_t a, normalize_axis(axis, x.rank(), "axes"));
      if (reduced[a]) return make_error("", "axes", "axis " + std::to_string(axis) + " listed twice");
      reduced[a] = true;
    }
  }
  STRATA_ASSIGN_OR_RETURN(int64_t keepdims, optional_int(attrs, "keepdims", 0));
  if (keepdims != 0 && keepdims != 1) {
    return make_error("", "keepdims", "expected 0 or 1, got " + std::to_string(keepdims));
  }
  Shape out;
  for (size_t i = 0; i < x.shape.size(); ++i) {
    if (!reduced[i]) {
      out.push_back(x.shape[i]);
    } else if (keepdims == 1) {
      out.push_back(1);
    }
  }
  return Types{TensorType{out, x.dtype}};
}

// --- layout ---

// {shape}: one dim may be -1, inferred from the element count.
Expected<Types> reshape(const Types& inputs, const Attrs& attrs) {
  STRATA_ASSIGN_OR_RETURN(Shape shape, attrs.get_ints("shape"));
  int64_t known = 1;
  int inferred = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1 && inferred < 0) {
      inferred = static_cast<int>(i);
    } else if (shape[i] < 0) {
      return make_error("", "shape", "bad dimension " + std::to_string(shape[i]) + " in " + shape_string(shape));
    } else {
      known *= shape[i];
    }
  }
  const int64_t numel = inputs[0].numel();
  if (inferred >= 0) {
    if (known == 0 || numel % known != 0) {
      return make_error("", "shape", "cannot infer -1 in " + shape_string(shape) + " from " +
                                         std::to_string(numel) + " elements");
    }
    shape[inferred] = numel / known;
  } else if (known != numel) {
    return make_error("", "shape", shape_string(shape) + " has " + std::to_string(known) + " elements, input " +
                                       type_string(inputs[0]) + " has " + std::to_string(numel));
  }
  return Types{TensorType{shape, inputs[0].dtype}};
}

Expected<Types> transpose(const Types& inputs, const Attrs& attrs) {
  const TensorType& x = inputs[0];
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> perm, attrs.get_ints("perm"));
  if (static_cast<int64_t>(perm.size()) != x.rank()) {
    return make_error("", "perm", "has " + std::to_string(perm.size()) + " entries for rank " +
                                      std::to_string(x.rank()));
  }
  std::vector<bool> seen(perm.size(), false);
  Shape out;
  for (int64_t p : perm) {
    if (p < 0 || p >= x.rank() || seen[p]) {
      return make_error("", "perm", shape_string(perm) + " is not a permutation of 0.." + std::to_string(x.rank() - 1));
    }
    seen[p] = true;
    out.push_back(x.shape[p]);
  }
  return Types{TensorType{out, x.dtype}};
}

Expected<Types> broadcast(const Types& inputs, const Attrs& attrs) {
  const TensorType& x = inputs[0];
  STRATA_ASSIGN_OR_RETURN(Shape shape, shape_attr(attrs, "shape"));
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> dims, attrs.get_ints("dims"));
  if (static_cast<int64_t>(dims.size()) != x.rank()) {
    return make_error("", "dims", "has " + std::to_string(dims.size()) + " entries for input rank " +
                                      std::to_string(x.rank()));
  }
  std::set<int64_t> used;
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = dims[i];
    if (d < 0 || d >= static_cast<int64_t>(shape.size())) {
      return make_error("", "dims", "dim " + std::to_string(d) + " out of range for output rank " +
                                        std::to_string(shape.size()));
    }
    if (!used.insert(d).second) return make_error("", "dims", "output dim " + std::to_string(d) + " listed twice");
    if (x.shape[i] != shape[d] && x.shape[i] != 1) {
      return make_error("", "dims", "input dim " + std::to_string(i) + " of size " + std::to_string(x.shape[i]) +
                                        " cannot become output dim " + std::to_string(d) + " of size " +
                                        std::to_string(shape[d]));
    }
  }
  return Types{TensorType{shape, x.dtype}};
}

Expected<Types> slice(const Types& inputs, const Attrs& attrs) {
  const TensorType& x = inputs[0];
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> starts, attrs.get_ints("starts"));
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> limits, attrs.get_ints("limits"));
  if (static_cast<int64_t>(starts.size()) != x.rank()) {
    return make_error("", "starts", "has " + std::to_string(starts.size()) + " entries for rank " +
                                        std::to_string(x.rank()));
  }
  if (static_cast<int64_t>(limits.size()) != x.rank()) {
    return make_error("", "limits", "has " + std::to_string(limits.size()) + " entries for rank " +
                                        std::to_string(x.rank()));
  }
  Shape out;
  for (size_t i = 0; i < starts.size(); ++i) {
    if (starts[i] < 0 || starts[i] > x.shape[i]) {
      return make_error("", "starts", "start " + std::to_string(starts[i]) + " outside dim " + std::to_string(i) +
                                          " of size " + std::to_string(x.shape[i]));
    }
    if (limits[i] < starts[i] || limits[i] > x.shape[i]) {
      return make_error("", "limits", "limit " + std::to_string(limits[i]) + " outside [" +
                                          std::to_string(starts[i]) + ", " + std::to_string(x.shape[i]) +
                                          "] for dim " + std::to_string(i));
    }
    out.push_back(limits[i] - starts[i]);
  }
  return Types{TensorType{out, x.dtype}};
}

Expected<Types> concat(const Types& inputs, const Attrs& attrs) {
  const TensorType& first = inputs[0];
  STRATA_ASSIGN_OR_RETURN(int64_t axis_attr, attrs.get_int("axis"));
  STRATA_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(axis_attr, first.rank(), "axis"));
  TensorType out = first;
  for (size_t i = 1; i < inputs.size(); ++i) {
    const TensorType& x = inputs[i];
    if (x.dtype != first.dtype || x.rank() != first.rank()) {
      return input_error(i, "expected " + std::string(dtype_name(first.dtype)) + " of rank " +
                                std::to_string(first.rank()) + ", got " + type_string(x));
    }
    for (int64_t d = 0; d < x.rank(); ++d) {
      if (d != axis && x.shape[d] != first.shape[d]) {
        return input_error(i, "dim " + std::to_string(d) + " is " + std::to_string(x.shape[d]) + ", inputs[0] has " +
                                  std::to_string(first.shape[d]));
      }
    }
    out.shape[axis] += x.shape[axis];
  }
  return Types{out};
}

Expected<Types> pad(const Types& inputs, const Attrs& attrs) {
  TensorType out = inputs[0];
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> low, attrs.get_ints("low"));
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> high, attrs.get_ints("high"));
  for (const auto& [key, values] : {std::pair{"low", &low}, std::pair{"high", &high}}) {
    if (static_cast<int64_t>(values->size()) != out.rank()) {
      return make_error("", key, "has " + std::to_string(values->size()) + " entries for rank " +
                                     std::to_string(out.rank()));
    }
    for (int64_t v : *values) {
      if (v < 0) return make_error("", key, "negative padding in " + shape_string(*values));
    }
  }
  for (size_t i = 0; i < out.shape.size(); ++i) out.shape[i] += low[i] + high[i];
  return Types{out};
}

// --- dot_general ---

namespace {

std::vector<int64_t> ints_or_empty(const Attrs& attrs, const std::string& key, Status& status) {
  if (!attrs.has(key) || !status.is_ok()) return {};
  auto values = attrs.get_ints(key);
  if (!values) {
    status = values.error();
    return {};
  }
  return *values;
}

// Checks one operand's batch + contracting dims: in range and all distinct.
Status check_dims(const std::vector<int64_t>& batch, const std::vector<int64_t>& contract, int64_t rank,
                  const std::string& batch_key, const std::string& contract_key) {
  std::set<int64_t> seen;
  for (const auto& [key, dims] : {std::pair{&batch_key, &batch}, std::pair{&contract_key, &contract}}) {
    for (int64_t d : *dims) {
      if (d < 0 || d >= rank) {
        return make_error("", *key, "dim " + std::to_string(d) + " out of range for rank " + std::to_string(rank));
      }
      if (!seen.insert(d).second) {
        return make_error("", *key, "dim " + std::to_string(d) + " is used twice among batch and contracting dims");
      }
    }
  }
  return Status::ok();
}

}  // namespace

Expected<Types> dot(const Types& inputs, const Attrs& attrs) {
  const TensorType& lhs = inputs[0];
  const TensorType& rhs = inputs[1];
  Status status;
  const auto lhs_batch = ints_or_empty(attrs, "lhs_batch", status);
  const auto rhs_batch = ints_or_empty(attrs, "rhs_batch", status);
  const auto lhs_contract = ints_or_empty(attrs, "lhs_contract", status);
  const auto rhs_contract = ints_or_empty(attrs, "rhs_contract", status);
  STRATA_RETURN_IF_ERROR(status);
  if (lhs.dtype != rhs.dtype) {
    return input_error(1, std::string("dtype ") + dtype_name(rhs.dtype) + " differs from inputs[0]'s " +
                              dtype_name(lhs.dtype));
  }
  if (lhs_batch.size() != rhs_batch.size()) {
    return make_error("", "rhs_batch", "has " + std::to_string(rhs_batch.size()) + " dims, lhs_batch has " +
                                           std::to_string(lhs_batch.size()));
  }
  if (lhs_contract.size() != rhs_contract.size()) {
    return make_error("", "rhs_contract", "has " + std::to_string(rhs_contract.size()) +
                                              " dims, lhs_contract has " + std::to_string(lhs_contract.size()));
  }
  STRATA_RETURN_IF_ERROR(check_dims(lhs_batch, lhs_contract, lhs.rank(), "lhs_batch", "lhs_contract"));
  STRATA_RETURN_IF_ERROR(check_dims(rhs_batch, rhs_contract, rhs.rank(), "rhs_batch", "rhs_contract"));
  for (size_t i = 0; i < lhs_batch.size(); ++i) {
    const int64_t a = lhs.shape[lhs_batch[i]];
    const int64_t b = rhs.shape[rhs_batch[i]];
    if (a != b) {
      return make_error("", "rhs_batch", "batch dims differ: " + std::to_string(a) + " vs " + std::to_string(b));
    }
  }
  for (size_t i = 0; i < lhs_contract.size(); ++i) {
    const int64_t a = lhs.shape[lhs_contract[i]];
    const int64_t b = rhs.shape[rhs_contract[i]];
    if (a != b) {
      return make_error("", "rhs_contract",
                        "contracting dims differ: " + std::to_string(a) + " vs " + std::to_string(b));
    }
  }
  Shape out;
  for (int64_t d : lhs_batch) out.push_back(lhs.shape[d]);
  auto append_free = [&out](const TensorType& t, const std::vector<int64_t>& batch,
                            const std::vector<int64_t>& contract) {
    for (int64_t d = 0; d < t.rank(); ++d) {
      if (std::find(batch.begin(), batch.end(), d) == batch.end() &&
          std::find(contract.begin(), contract.end(), d) == contract.end()) {
        out.push_back(t.shape[d]);
      }
    }
  };
  append_free(lhs, lhs_batch, lhs_contract);
  append_free(rhs, rhs_batch, rhs_contract);
  return Types{TensorType{out, lhs.dtype}};
}

}  // namespace strata::ir::rules
