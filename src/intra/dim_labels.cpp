// The dimension-label table behind strategy enumeration. What is split and why, per family:
//   elementwise and updates: every output dim (broadcast size-1 dims never);
//   Dot: batch, lhs free, rhs free; contraction dims summed (partial sums);
//   reductions: kept dims; ReduceSum's reduced dims summed; Max/Mean reduced dims never (the kernel
//   divides by the local count, so a split mean is not a partial sum);
//   Softmax/LayerNorm/CrossEntropy: never the normalised dim (CrossEntropy's rows are summed, its
//   local op dividing by the global row count); BatchNorm: channels only;
//   layout ops: dims that map one to one (Reshape: the major dim of each group of equal product);
//   Gather/GatherGrad: never the vocabulary; MoEGate: groups only (top-k and capacity slots need
//   the whole expert and sequence dims); Attention (+grad): the batch and head dims only.
#include "intra/dim_labels.h"

#include <algorithm>
#include <numeric>

namespace strata::intra::detail {
namespace {

using ir::OpKind;
using ir::TensorType;

std::vector<int> unsplit(const TensorType& type) { return std::vector<int>(type.shape.size(), -1); }

// Adds a fresh label and returns it.
int fresh(DimLabels& labels, bool summed = false) {
  labels.summed.push_back(summed);
  return labels.num_labels++;
}

// Labels 0..rank-1 on the output; inputs aligned to the right, size-1 broadcast dims unsplit.
DimLabels elementwise(const ir::Op& op, const std::vector<TensorType>& inputs) {
  DimLabels labels;
  const TensorType& out = op.outputs[0];
  std::vector<int> out_labels;
  for (size_t d = 0; d < out.shape.size(); ++d) out_labels.push_back(fresh(labels));
  for (const TensorType& in : inputs) {
    std::vector<int> dims(in.shape.size(), -1);
    const size_t offset = out.shape.size() - in.shape.size();
    for (size_t d = 0; d < in.shape.size(); ++d) {
      if (in.shape[d] == out.shape[d + offset]) dims[d] = out_labels[d + offset];
    }
    labels.inputs.push_back(dims);
  }
  for (size_t o = 0; o < op.outputs.size(); ++o) labels.outputs.push_back(out_labels);
  return labels;
}

Expected<std::vector<bool>> reduced_dims(const ir::Attrs& attrs, int64_t rank) {
  std::vector<bool> reduced(static_cast<size_t>(rank), !attrs.has("axes"));
  if (attrs.has("axes")) {
    STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> axes, attrs.get_ints("axes"));
    for (int64_t axis : axes) {
      const int64_t a = axis < 0 ? axis + rank : axis;
      if (a < 0 || a >= rank) return make_error("", "axes", "axis " + std::to_string(axis) + " out of range");
      reduced[static_cast<size_t>(a)] = true;
    }
  }
  return reduced;
}

Expected<DimLabels> reduction(const ir::Op& op, const std::vector<TensorType>& inputs) {
  DimLabels labels;
  STRATA_ASSIGN_OR_RETURN(std::vector<bool> reduced, reduced_dims(op.attrs, inputs[0].rank()));
  const bool keepdims = op.attrs.int_or("keepdims", 0) == 1;
  std::vector<int> in, out;
  for (size_t d = 0; d < reduced.size(); ++d) {
    if (!reduced[d]) {
      in.push_back(fresh(labels));
      out.push_back(in.back());
    } else {
      in.push_back(op.kind == OpKind::ReduceSum ? fresh(labels, true) : -1);
      if (keepdims) out.push_back(-1);
    }
  }
  labels.inputs = {in};
  labels.outputs = {out};
  return labels;
}

Expected<DimLabels> dot(const ir::Op& op, const std::vector<TensorType>& inputs) {
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> lhs_batch, op.attrs.get_ints("lhs_batch"));
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> rhs_batch, op.attrs.get_ints("rhs_batch"));
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> lhs_contract, op.attrs.get_ints("lhs_contract"));
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> rhs_contract, op.attrs.get_ints("rhs_contract"));
  DimLabels labels;
  std::vector<int> lhs = unsplit(inputs[0]), rhs = unsplit(inputs[1]), out;
  for (size_t b = 0; b < lhs_batch.size(); ++b) {
    const int l = fresh(labels);
    lhs[lhs_batch[b]] = rhs[rhs_batch[b]] = l;
    out.push_back(l);
  }
  for (size_t c = 0; c < lhs_contract.size(); ++c) lhs[lhs_contract[c]] = rhs[rhs_contract[c]] = fresh(labels, true);
  for (int64_t d : ir::dot_free_dims(inputs[0].rank(), lhs_batch, lhs_contract)) out.push_back(lhs[d] = fresh(labels));
  for (int64_t d : ir::dot_free_dims(inputs[1].rank(), rhs_batch, rhs_contract)) out.push_back(rhs[d] = fresh(labels));
  labels.inputs = {lhs, rhs};
  labels.outputs = {out};
  return labels;
}

// Every dim its own label except those in `fixed`, shared by all inputs and outputs of equal rank.
DimLabels same_dims_except(const ir::Op& op, const std::vector<TensorType>& inputs, const std::vector<bool>& fixed) {
  DimLabels labels;
  std::vector<int> dims;
  for (bool f : fixed) dims.push_back(f ? -1 : fresh(labels));
  for (const TensorType& in : inputs) labels.inputs.push_back(in.shape.size() == dims.size() ? dims : unsplit(in));
  for (const TensorType& out : op.outputs) labels.outputs.push_back(out.shape.size() == dims.size() ? dims : unsplit(out));
  return labels;
}

std::vector<bool> only_last_fixed(int64_t rank) {
  std::vector<bool> fixed(static_cast<size_t>(rank), false);
  if (rank > 0) fixed.back() = true;
  return fixed;
}

// Attention (+grad): the batch and head dims only, shared by every operand; the bias where its
// dim is not broadcast. Rows, keys and head dims stay whole (the softmax spans the keys).
DimLabels attention(const ir::Op& op, const std::vector<TensorType>& inputs) {
  DimLabels labels;
  const bool bsnd = ir::attention_bsnd(op.attrs);
  // The scores' leading dims: [B, N] in layout bsnd (q, k, v, out and their gradients are
  // [B, S, N, D] there: B at 0, N at 2), else every dim of q before its last two.
  const size_t lead = bsnd ? 2 : inputs[0].shape.size() - 2;
  std::vector<int> dims;
  std::vector<int64_t> extent;
  for (size_t d = 0; d < lead; ++d) {
    dims.push_back(fresh(labels));
    extent.push_back(inputs[0].shape[bsnd && d == 1 ? 2 : d]);
  }
  // Where leading dim d sits in an operand: lse ([lead..., S]) and the bias (aligned to the
  // scores' [lead..., S, T] from the right) hold them in order; bsnd's rank-4 operands at 0 and 2.
  auto labelled = [&](const TensorType& t, bool bias) {
    std::vector<int> out = unsplit(t);
    const size_t rank = t.shape.size();
    const bool in_order = bias || !bsnd || rank == 3;
    for (size_t d = 0; d < lead; ++d) {
      size_t at = d;
      if (bias) {
        if (rank + d < lead + 2) continue;  // broadcast: the bias has no such dim
        at = d + rank - (lead + 2);
      } else if (!in_order) {
        at = d == 0 ? 0 : 2;
      }
      if (at < rank && t.shape[at] == extent[d]) out[at] = dims[d];
    }
    return out;
  };
  for (size_t i = 0; i < inputs.size(); ++i) labels.inputs.push_back(labelled(inputs[i], i == 3));
  for (const TensorType& out : op.outputs) labels.outputs.push_back(labelled(out, false));
  return labels;
}

// Splits of a Reshape: dims group into runs of equal product; the major non-1 dim of each run
// carries the run's label on both sides (a block of the major dim is a block of the whole run).
DimLabels reshape(const ir::Op& op, const std::vector<TensorType>& inputs) {
  DimLabels labels;
  const ir::Shape& a = inputs[0].shape;
  const ir::Shape& b = op.outputs[0].shape;
  std::vector<int> in(a.size(), -1), out(b.size(), -1);
  size_t i = 0, j = 0;
  auto skip_ones = [](const ir::Shape& s, size_t& k) {
    while (k < s.size() && s[k] == 1) ++k;
  };
  while (true) {
    skip_ones(a, i);
    skip_ones(b, j);
    if (i >= a.size() || j >= b.size()) break;
    const int l = fresh(labels);
    in[i] = l;
    out[j] = l;
    int64_t pa = a[i++], pb = b[j++];
    while (pa != pb) {
      if (pa < pb) {
        if (i >= a.size()) break;
        pa *= a[i++];
      } else {
        if (j >= b.size()) break;
        pb *= b[j++];
      }
    }
  }
  labels.inputs = {in};
  labels.outputs = {out};
  return labels;
}

Expected<DimLabels> broadcast(const ir::Op& op, const std::vector<TensorType>& inputs) {
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> dims, op.attrs.get_ints("dims"));
  DimLabels labels;
  const ir::Shape& out_shape = op.outputs[0].shape;
  std::vector<int> out;
  for (size_t d = 0; d < out_shape.size(); ++d) out.push_back(fresh(labels));
  std::vector<int> in = unsplit(inputs[0]);
  for (size_t d = 0; d < dims.size() && d < in.size(); ++d) {
    if (dims[d] < 0 || dims[d] >= static_cast<int64_t>(out.size())) return make_error("", "dims", "out of range");
    if (inputs[0].shape[d] == out_shape[dims[d]]) in[d] = out[dims[d]];
  }
  labels.inputs = {in};
  labels.outputs = {out};
  return labels;
}

Expected<DimLabels> slice_or_pad(const ir::Op& op, const std::vector<TensorType>& inputs) {
  const bool is_slice = op.kind == OpKind::Slice;
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> first, op.attrs.get_ints(is_slice ? "starts" : "low"));
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> second, op.attrs.get_ints(is_slice ? "limits" : "high"));
  const ir::Shape& shape = inputs[0].shape;
  if (first.size() != shape.size() || second.size() != shape.size()) {
    return make_error("", is_slice ? "starts" : "low", "needs one entry per dim");
  }
  std::vector<bool> fixed;
  for (size_t d = 0; d < shape.size(); ++d) {
    const bool whole = is_slice ? (first[d] == 0 && second[d] == shape[d]) : (first[d] == 0 && second[d] == 0);
    fixed.push_back(!whole);
  }
  return same_dims_except(op, inputs, fixed);
}

// Conv-like ops: the dims of x[N,C,H,W], w[K,C,R,S], y[N,K,H',W'] as labels n, c (summed when
// absent from the output), k; spatial dims unsplit.
DimLabels conv(const ir::Op& op) {
  DimLabels labels;
  const int n = fresh(labels), c = fresh(labels), k = fresh(labels);
  const std::vector<int> x{n, c, -1, -1}, w{k, c, -1, -1}, y{n, k, -1, -1};
  switch (op.kind) {
    case OpKind::Conv2d:
      labels.summed[c] = true;
      labels.inputs = {x, w};
      labels.outputs = {y};
      break;
    case OpKind::Conv2dGradInput:  // (w, dy) -> dx
      labels.summed[k] = true;
      labels.inputs = {w, y};
      labels.outputs = {x};
      break;
    default:  // Conv2dGradFilter (x, dy) -> dw
      labels.summed[n] = true;
      labels.inputs = {x, y};
      labels.outputs = {w};
      break;
  }
  return labels;
}

// Ops over x[N, C, ...] that may split the batch and/or the channels (pooling), or only the
// channels (batch norm, whose statistics span the batch and space).
DimLabels channel_ops(const ir::Op& op, const std::vector<TensorType>& inputs, bool batch_too) {
  DimLabels labels;
  const int n = batch_too ? fresh(labels) : -1;
  const int c = fresh(labels);
  auto map = [&](const TensorType& type) {
    std::vector<int> dims = unsplit(type);
    if (type.shape.size() == 1) {
      dims[0] = c;  // gamma / beta / dgamma / dbeta [C]
    } else if (type.shape.size() >= 2) {
      dims[0] = n;
      dims[1] = c;
    }
    return dims;
  };
  for (const TensorType& in : inputs) labels.inputs.push_back(map(in));
  for (const TensorType& out : op.outputs) labels.outputs.push_back(map(out));
  return labels;
}

DimLabels gather(const std::vector<TensorType>& inputs) {
  DimLabels labels;
  std::vector<int> table = unsplit(inputs[0]), ids, out;
  for (size_t d = 0; d < inputs[1].shape.size(); ++d) ids.push_back(fresh(labels));
  out = ids;
  for (size_t d = 1; d < table.size(); ++d) out.push_back(table[d] = fresh(labels));
  labels.inputs = {table, ids};
  labels.outputs = {out};
  return labels;
}

DimLabels gather_grad(const ir::Op& op, const std::vector<TensorType>& inputs) {
  DimLabels labels;
  std::vector<int> ids, dy, out{-1};
  for (size_t d = 0; d < inputs[0].shape.size(); ++d) ids.push_back(fresh(labels, true));
  dy = ids;
  for (size_t d = ids.size(); d < inputs[1].shape.size(); ++d) {
    dy.push_back(fresh(labels));
    out.push_back(dy.back());
  }
  out.resize(op.outputs[0].shape.size(), -1);
  labels.inputs = {ids, dy};
  labels.outputs = {out};
  return labels;
}

// LayerNormGrad (x, gamma, dy) -> dx, dgamma, dbeta: rows split; dgamma/dbeta sum over rows.
DimLabels layer_norm_grad(const std::vector<TensorType>& inputs) {
  DimLabels labels;
  std::vector<int> rows;
  for (int64_t d = 0; d + 1 < inputs[0].rank(); ++d) rows.push_back(fresh(labels, true));
  std::vector<int> x = rows;
  x.push_back(-1);
  labels.inputs = {x, {-1}, x};
  labels.outputs = {x, {-1}, {-1}};
  return labels;
}

}  // namespace

Expected<DimLabels> dim_labels(const ir::Op& op, const std::vector<TensorType>& inputs) {
  const OpKind kind = op.kind;
  if (op_info(kind).is_source) {
    DimLabels labels;
    std::vector<int> out;
    for (size_t d = 0; d < op.outputs[0].shape.size(); ++d) out.push_back(fresh(labels));
    labels.outputs = {out};
    return labels;
  }
  if (op_info(kind).elementwise) return elementwise(op, inputs);
  switch (kind) {
    case OpKind::ReduceSum:
    case OpKind::ReduceMax:
    case OpKind::ReduceMean: return reduction(op, inputs);
    case OpKind::Reshape: return reshape(op, inputs);
    case OpKind::Transpose: {
      STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> perm, op.attrs.get_ints("perm"));
      DimLabels labels;
      std::vector<int> in, out;
      for (size_t d = 0; d < inputs[0].shape.size(); ++d) in.push_back(fresh(labels));
      for (int64_t p : perm) {
        if (p < 0 || p >= static_cast<int64_t>(in.size())) return make_error("", "perm", "out of range");
        out.push_back(in[p]);
      }
      labels.inputs = {in};
      labels.outputs = {out};
      return labels;
    }
    case OpKind::Broadcast: return broadcast(op, inputs);
    case OpKind::Slice:
    case OpKind::Pad: return slice_or_pad(op, inputs);
    case OpKind::Concat: {
      STRATA_ASSIGN_OR_RETURN(int64_t axis, op.attrs.get_int("axis"));
      const int64_t rank = inputs[0].rank();
      if (axis < 0) axis += rank;
      std::vector<bool> fixed(static_cast<size_t>(rank), false);
      if (axis < 0 || axis >= rank) return make_error("", "axis", "out of range");
      fixed[static_cast<size_t>(axis)] = true;
      return same_dims_except(op, inputs, fixed);
    }
    case OpKind::Dot: return dot(op, inputs);
    case OpKind::Gather: return gather(inputs);
    case OpKind::GatherGrad: return gather_grad(op, inputs);
    case OpKind::Softmax:
    case OpKind::SoftmaxGrad: {
      const int64_t rank = inputs[0].rank();
      int64_t axis = op.attrs.int_or("axis", -1);
      if (axis < 0) axis += rank;
      std::vector<bool> fixed(static_cast<size_t>(rank), false);
      if (axis < 0 || axis >= rank) return make_error("", "axis", "out of range");
      fixed[static_cast<size_t>(axis)] = true;
      return same_dims_except(op, inputs, fixed);
    }
    case OpKind::LayerNorm: return same_dims_except(op, inputs, only_last_fixed(inputs[0].rank()));
    case OpKind::LayerNormGrad: return layer_norm_grad(inputs);
    case OpKind::Conv2d:
    case OpKind::Conv2dGradInput:
    case OpKind::Conv2dGradFilter: return conv(op);
    case OpKind::BatchNorm:
    case OpKind::BatchNormGrad: return channel_ops(op, inputs, false);
    case OpKind::AvgPool2d:
    case OpKind::AvgPool2dGrad:
    case OpKind::MaxPool2d:
    case OpKind::MaxPool2dGrad: return channel_ops(op, inputs, true);
    case OpKind::MoEGate:
    case OpKind::MoEGateGrad: {
      std::vector<bool> fixed{false, true, true};
      DimLabels labels = same_dims_except(op, inputs, fixed);
      // The combine weights [G, S, E, C] (MoEGate's output, MoEGateGrad's second input): G only.
      const std::vector<int> combine{labels.inputs[0][0], -1, -1, -1};
      if (kind == OpKind::MoEGate) labels.outputs = {combine};
      else labels.inputs[1] = combine;
      return labels;
    }
    case OpKind::Attention:
    case OpKind::AttentionGrad: return attention(op, inputs);
    case OpKind::CrossEntropy:
    case OpKind::CrossEntropyGrad: {
      // The rows of logits, labels (and dlogits): the loss sums them (each device's share of the
      // mean divides by the global row count, local_attrs' mean_rows); the vocabulary never.
      DimLabels labels;
      const int rows = fresh(labels, kind == OpKind::CrossEntropy);
      for (const TensorType& in : inputs) labels.inputs.push_back(unsplit(in));
      labels.inputs[0][0] = rows;
      labels.inputs[1][0] = rows;
      for (const TensorType& out : op.outputs) labels.outputs.push_back(unsplit(out));
      if (kind == OpKind::CrossEntropyGrad) labels.outputs[0][0] = rows;
      return labels;
    }
    default: break;
  }
  return make_error("", "kind", std::string("no sharding rule for op kind ") + op_kind_name(kind));
}

}  // namespace strata::intra::detail
