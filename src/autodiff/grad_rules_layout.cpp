// Gradient rules of layout ops (each is the adjoint layout op: Slice<->Pad, Broadcast->ReduceSum,
// Transpose->inverse Transpose) and of Dot (two dot_generals, then a transpose into operand order).
#include <algorithm>

#include "grad_rules.h"

namespace strata::autodiff::rules {
namespace {

std::vector<int64_t> ints(const ir::Op& op, const char* key) {
  return op.attrs.has(key) ? op.attrs.get_ints(key).value() : std::vector<int64_t>{};
}

Grads reshape(Emitter& e, const RuleArgs& a) {
  return {e.value(OpKind::Reshape, {a.dy}, {{"shape", e.type(a.x(0)).shape}})};
}

Grads transpose(Emitter& e, const RuleArgs& a) {
  const std::vector<int64_t> perm = ints(a.op, "perm");
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = static_cast<int64_t>(i);
  return {e.value(OpKind::Transpose, {a.dy}, {{"perm", inverse}})};
}

// Broadcast: sum over output dims that no input dim maps to, put the rest in input order, then
// sum over input dims of size 1 that were expanded.
Grads broadcast(Emitter& e, const RuleArgs& a) {
  const Shape x = e.type(a.x(0)).shape;
  const Shape out = e.type(a.y()).shape;
  const std::vector<int64_t> dims = ints(a.op, "dims");
  Value g = a.dy;
  std::vector<int64_t> unmapped;
  for (int64_t d = 0; d < static_cast<int64_t>(out.size()); ++d) {
    if (std::find(dims.begin(), dims.end(), d) == dims.end()) unmapped.push_back(d);
  }
  if (!unmapped.empty()) g = e.value(OpKind::ReduceSum, {g}, {{"axes", unmapped}, {"keepdims", int64_t{0}}});
  std::vector<int64_t> sorted = dims;
  std::sort(sorted.begin(), sorted.end());
  if (sorted != dims) {  // g's dims follow sorted(dims); input dim i sits where dims[i] is in sorted
    std::vector<int64_t> perm;
    for (int64_t d : dims) perm.push_back(std::find(sorted.begin(), sorted.end(), d) - sorted.begin());
    g = e.value(OpKind::Transpose, {g}, {{"perm", perm}});
  }
  std::vector<int64_t> expanded;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] == 1 && out[dims[i]] != 1) expanded.push_back(static_cast<int64_t>(i));
  }
  if (!expanded.empty()) g = e.value(OpKind::ReduceSum, {g}, {{"axes", expanded}, {"keepdims", int64_t{1}}});
  return {g};
}

Grads slice(Emitter& e, const RuleArgs& a) {
  const Shape x = e.type(a.x(0)).shape;
  const std::vector<int64_t> limits = ints(a.op, "limits");
  std::vector<int64_t> high;
  for (size_t i = 0; i < x.size(); ++i) high.push_back(x[i] - limits[i]);
  return {e.value(OpKind::Pad, {a.dy}, {{"low", ints(a.op, "starts")}, {"high", high}})};
}

Grads pad(Emitter& e, const RuleArgs& a) {
  const Shape x = e.type(a.x(0)).shape;
  const std::vector<int64_t> low = ints(a.op, "low");
  std::vector<int64_t> limits;
  for (size_t i = 0; i < x.size(); ++i) limits.push_back(low[i] + x[i]);
  return {e.value(OpKind::Slice, {a.dy}, {{"starts", low}, {"limits", limits}})};
}

Grads concat(Emitter& e, const RuleArgs& a) {
  const Shape out = e.type(a.y()).shape;
  const auto rank = static_cast<int64_t>(out.size());
  int64_t axis = a.op.attrs.int_or("axis", 0);
  if (axis < 0) axis += rank;
  Grads g(a.op.inputs.size());
  int64_t offset = 0;
  for (size_t i = 0; i < a.op.inputs.size(); ++i) {
    const Shape x = e.type(a.x(i)).shape;
    if (a.needed[i]) {
      std::vector<int64_t> starts(out.size(), 0), limits = out;
      starts[axis] = offset;
      limits[axis] = offset + x[axis];
      g[i] = e.value(OpKind::Slice, {a.dy}, {{"starts", starts}, {"limits", limits}});
    }
    offset += x[axis];
  }
  return g;
}


int64_t position(const std::vector<int64_t>& v, int64_t x) { return std::find(v.begin(), v.end(), x) - v.begin(); }
int64_t rank_in_sorted(std::vector<int64_t> v, int64_t x) {
  std::sort(v.begin(), v.end());
  return position(v, x);
}
std::vector<int64_t> iota(int64_t from, int64_t count) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < count; ++i) v.push_back(from + i);
  return v;
}

Value transpose_unless_identity(Emitter& e, Value v, const std::vector<int64_t>& perm) {
  for (size_t i = 0; i < perm.size(); ++i) {
    if (perm[i] != static_cast<int64_t>(i)) return e.value(OpKind::Transpose, {v}, {{"perm", perm}});
  }
  return v;
}

// y = dot(lhs, rhs) with y = [B, Fl, Fr]. dlhs = dot(dy, rhs) contracting Fr with rhs's free dims
// gives [B, Fl, lhs-contract dims in ascending rhs-axis order]; drhs = dot(lhs, dy) contracting
// lhs's free dims with Fl gives [B, rhs-contract dims in ascending lhs-axis order, Fr].
Grads dot(Emitter& e, const RuleArgs& a) {
  const auto lb = ints(a.op, "lhs_batch"), rb = ints(a.op, "rhs_batch");
  const auto lc = ints(a.op, "lhs_contract"), rc = ints(a.op, "rhs_contract");
  const int64_t lrank = e.type(a.x(0)).rank(), rrank = e.type(a.x(1)).rank();
  const auto lf = ir::dot_free_dims(lrank, lb, lc), rf = ir::dot_free_dims(rrank, rb, rc);
  const auto nb = static_cast<int64_t>(lb.size()), nlf = static_cast<int64_t>(lf.size());
  const auto nrf = static_cast<int64_t>(rf.size()), nc = static_cast<int64_t>(lc.size());
  Grads g(2);
  if (a.needed[0]) {
    Value r = e.value(OpKind::Dot, {a.dy, a.x(1)},
                      {{"lhs_batch", iota(0, nb)}, {"rhs_batch", rb}, {"lhs_contract", iota(nb + nlf, nrf)},
                       {"rhs_contract", rf}});
    std::vector<int64_t> perm(static_cast<size_t>(lrank));
    for (int64_t d = 0; d < lrank; ++d) {
      if (position(lb, d) < nb) {
        perm[d] = position(lb, d);
      } else if (position(lf, d) < nlf) {
        perm[d] = nb + position(lf, d);
      } else {
        perm[d] = nb + nlf + rank_in_sorted(rc, rc[position(lc, d)]);
      }
    }
    g[0] = transpose_unless_identity(e, r, perm);
  }
  if (a.needed[1]) {
    Value r = e.value(OpKind::Dot, {a.x(0), a.dy},
                      {{"lhs_batch", lb}, {"rhs_batch", iota(0, nb)}, {"lhs_contract", lf},
                       {"rhs_contract", iota(nb, nlf)}});
    std::vector<int64_t> perm(static_cast<size_t>(rrank));
    for (int64_t d = 0; d < rrank; ++d) {
      if (position(rb, d) < nb) {
        perm[d] = position(rb, d);
      } else if (position(rf, d) < nrf) {
        perm[d] = nb + nc + position(rf, d);
      } else {
        perm[d] = nb + rank_in_sorted(lc, lc[position(rc, d)]);
      }
    }
    g[1] = transpose_unless_identity(e, r, perm);
  }
  return g;
}

}  // namespace

std::vector<Entry> layout_rules() {
  return {
      {OpKind::Reshape, reshape}, {OpKind::Transpose, transpose}, {OpKind::Broadcast, broadcast},
      {OpKind::Slice, slice},     {OpKind::Pad, pad},             {OpKind::Concat, concat},
      {OpKind::Dot, dot},
  };
}

}  // namespace strata::autodiff::rules
