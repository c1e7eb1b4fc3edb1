// Tests of ir::Graph: building, errors with the op name as field, uses/users, queries, totals,
// DOT/JSON export and copy semantics.
#include <gtest/gtest.h>

#include "strata/ir/graph.h"

namespace strata::ir {
namespace {

using Ints = std::vector<int64_t>;

Attrs matmul() { return Attrs{{"lhs_contract", Ints{1}}, {"rhs_contract", Ints{0}}}; }

// x[4, 8] -> Dot(w[8, 16]) -> Add(b[16]) -> Relu -> ReduceSum = loss
struct Mlp {
  Graph g;
  Value x, w, b, y, h, r, loss;
  Mlp() {
    x = g.input("x", {4, 8});
    w = g.parameter("w", {8, 16});
    b = g.parameter("b", {16}, DType::f32, "zeros");
    y = g.add_value(OpKind::Dot, {x, w}, matmul(), "matmul");
    h = g.add_value(OpKind::Add, {y, b}, {}, "bias");
    r = g.add_value(OpKind::Relu, {h});
    loss = g.add_value(OpKind::ReduceSum, {r}, {}, "loss");
    g.mark_output(loss);
  }
};

TEST(Graph, BuildsWithInferredTypesAndTopologicalIds) {
  Mlp m;
  EXPECT_EQ(m.g.num_ops(), 7);
  EXPECT_EQ(type_string(m.g.type(m.y)), "f32[4, 16]");
  EXPECT_EQ(type_string(m.g.type(m.loss)), "f32[]");
  EXPECT_EQ(m.g.op(m.r.op).name, "Relu_5");  // generated name: <kind>_<id>
  EXPECT_EQ(m.g.op(m.y.op).kind, OpKind::Dot);
  EXPECT_EQ(m.g.op(m.y.op).id, 3);
  EXPECT_EQ(m.g.op(m.h.op).inputs, (std::vector<Value>{m.y, m.b}));
  for (OpId id = 0; id < m.g.num_ops(); ++id) {
    for (const Value& v : m.g.op(id).inputs) EXPECT_LT(v.op, id);
  }
  EXPECT_EQ(*m.g.find("bias"), m.h.op);
  EXPECT_FALSE(m.g.find("nope").is_ok());
  EXPECT_EQ(m.g.outputs(), (std::vector<Value>{m.loss}));
  EXPECT_EQ(m.g.parameters(), (std::vector<OpId>{1, 2}));
  EXPECT_EQ(m.g.inputs(), (std::vector<OpId>{0}));
  EXPECT_EQ(m.g.ops_of_kind(OpKind::Relu), (std::vector<OpId>{5}));
  EXPECT_TRUE(m.g.ops_of_kind(OpKind::Conv2d).empty());
  EXPECT_EQ(m.g.op(m.b.op).attrs.get_string("init").value(), "zeros");
}

TEST(Graph, ParameterTotalsAndFlops) {
  Mlp m;
  EXPECT_EQ(m.g.parameter_count(), 8 * 16 + 16);
  EXPECT_EQ(m.g.parameter_bytes(), (8 * 16 + 16) * 4);
  EXPECT_DOUBLE_EQ(m.g.op_flops(m.y.op), 2.0 * 4 * 16 * 8);
  // Dot + Add + Relu + ReduceSum (each elementwise/reduction = numel).
  EXPECT_DOUBLE_EQ(m.g.total_flops(), 2.0 * 4 * 16 * 8 + 64 + 64 + 64);
  Graph half;
  half.parameter("p", {10, 10}, DType::bf16);
  EXPECT_EQ(half.parameter_bytes(), 200);
}

TEST(Graph, UsesAndUsersAreOrdered) {
  Graph g;
  Value a = g.input("a", {3});
  Value s = g.add_value(OpKind::Exp, {a});
  Value m = g.add_value(OpKind::Mul, {a, a});
  Value d = g.add_value(OpKind::Sub, {s, a});
  auto uses = g.uses(a);
  ASSERT_EQ(uses.size(), 4u);
  EXPECT_EQ(uses[0].user, s.op);
  EXPECT_EQ(uses[0].input_index, 0);
  EXPECT_EQ(uses[1].user, m.op);
  EXPECT_EQ(uses[1].input_index, 0);
  EXPECT_EQ(uses[2].user, m.op);
  EXPECT_EQ(uses[2].input_index, 1);
  EXPECT_EQ(uses[3].user, d.op);
  EXPECT_EQ(uses[3].input_index, 1);
  EXPECT_EQ(g.users(a.op), (std::vector<OpId>{s.op, m.op, d.op}));
  EXPECT_TRUE(g.users(d.op).empty());
  EXPECT_TRUE(g.uses(d).empty());
}

TEST(Graph, UsesDistinguishOutputIndices) {
  Graph g;
  Value x = g.input("x", {2, 8});
  Value gamma = g.parameter("gamma", {8});
  Value dy = g.input("dy", {2, 8});
  OpId grad = g.add(OpKind::LayerNormGrad, {x, gamma, dy}, {}, "lng", Role::backward);
  ASSERT_EQ(g.op(grad).outputs.size(), 3u);
  Value dgamma{grad, 1};
  Value dbeta{grad, 2};
  OpId sum = g.add(OpKind::Add, {dgamma, dbeta});
  OpId neg = g.add(OpKind::Neg, {dbeta});
  EXPECT_TRUE(g.uses(Value{grad, 0}).empty());
  ASSERT_EQ(g.uses(dgamma).size(), 1u);
  EXPECT_EQ(g.uses(dgamma)[0].user, sum);
  ASSERT_EQ(g.uses(dbeta).size(), 2u);
  EXPECT_EQ(g.uses(dbeta)[0].user, sum);
  EXPECT_EQ(g.uses(dbeta)[0].input_index, 1);
  EXPECT_EQ(g.uses(dbeta)[1].user, neg);
  EXPECT_EQ(g.users(grad), (std::vector<OpId>{sum, neg}));
  EXPECT_EQ(type_string(g.type(dbeta)), "f32[8]");
}

TEST(Graph, ErrorsNameTheOp) {
  Mlp m;
  auto dup = m.g.try_add(OpKind::Relu, {m.h}, {}, "bias");
  ASSERT_FALSE(dup.is_ok());
  EXPECT_EQ(dup.error().field, "bias");
  EXPECT_EQ(dup.error().reason, "duplicate op name");

  auto dangling = m.g.try_add(OpKind::Relu, {Value{42, 0}}, {}, "r2");
  ASSERT_FALSE(dangling.is_ok());
  EXPECT_EQ(dangling.error().field, "r2.inputs[0]");
  EXPECT_NE(dangling.error().reason.find("op 42"), std::string::npos);

  auto bad_index = m.g.try_add(OpKind::Add, {m.h, Value{m.h.op, 1}}, {}, "r3");
  ASSERT_FALSE(bad_index.is_ok());
  EXPECT_EQ(bad_index.error().field, "r3.inputs[1]");
  EXPECT_NE(bad_index.error().reason.find("output 1 of bias"), std::string::npos);

  auto bad_shape = m.g.try_add(OpKind::Dot, {m.x, m.x}, matmul(), "mm2");
  ASSERT_FALSE(bad_shape.is_ok());
  EXPECT_EQ(bad_shape.error().field, "mm2.rhs_contract");
  EXPECT_EQ(bad_shape.error().reason, "contracting dims differ: 8 vs 4");

  auto bad_input = m.g.try_add(OpKind::Add, {m.x, m.y}, {}, "add2");
  ASSERT_FALSE(bad_input.is_ok());
  EXPECT_EQ(bad_input.error().field, "add2.inputs[1]");

  auto bad_forward = m.g.try_add(OpKind::Neg, {m.x}, {}, "n", Role::backward, 99);
  ASSERT_FALSE(bad_forward.is_ok());
  EXPECT_EQ(bad_forward.error().field, "n.forward_op");

  // Nothing was added by the failed calls.
  EXPECT_EQ(m.g.num_ops(), 7);
  EXPECT_FALSE(m.g.find("r2").is_ok());
  EXPECT_DEATH(m.g.add(OpKind::Relu, {m.h}, {}, "bias"), "duplicate op name");
}

TEST(Graph, GeneratedNamesAvoidUserNames) {
  Graph g;
  Value x = g.input("Neg_1", {2});  // a user name that looks generated
  Value n = g.add_value(OpKind::Neg, {x});
  EXPECT_EQ(g.op(n.op).name, "Neg_1_2");
  EXPECT_EQ(*g.find("Neg_1"), x.op);
}

TEST(Graph, RolesAndSetRole) {
  Mlp m;
  OpId back = m.g.add(OpKind::Neg, {m.h}, {}, "back", Role::backward, m.h.op);
  EXPECT_EQ(m.g.op(back).role, Role::backward);
  EXPECT_EQ(m.g.op(back).forward_op, m.h.op);
  m.g.set_role(back, Role::update, m.w.op);
  EXPECT_EQ(m.g.op(back).role, Role::update);
  EXPECT_EQ(m.g.op(back).forward_op, m.w.op);
}

TEST(Graph, DotOutputIsValidAndNamesOps) {
  Mlp m;
  m.g.input("say \"hi\"", {1});
  const std::string dot = m.g.to_dot();
  EXPECT_EQ(dot.rfind("digraph strata {", 0), 0u);
  EXPECT_EQ(dot.substr(dot.size() - 2), "}\n");
  EXPECT_NE(dot.find("n3 [label=\"matmul\\nDot\\nf32[4, 16]\"]"), std::string::npos) << dot;
  EXPECT_NE(dot.find("n0 -> n3"), std::string::npos);
  EXPECT_NE(dot.find("n2 -> n4"), std::string::npos);
  EXPECT_NE(dot.find("say \\\"hi\\\""), std::string::npos);
  // Every line between the braces ends with ';'.
  size_t lines = 0;
  for (size_t start = dot.find('\n') + 1; start < dot.size() - 2;) {
    const size_t end = dot.find('\n', start);
    EXPECT_EQ(dot[end - 1], ';') << dot.substr(start, end - start);
    start = end + 1;
    ++lines;
  }
  EXPECT_EQ(lines, 1u + 8u + 6u);  // node defaults, 8 ops, 6 edges
}

TEST(Graph, JsonOutputRoundTripsThroughTheParser) {
  Mlp m;
  auto parsed = Json::parse(m.g.to_json().dump(2));
  ASSERT_TRUE(parsed.is_ok()) << parsed.error().message();
  const Json& ops = (*parsed)["ops"];
  ASSERT_EQ(ops.size(), 7u);
  const Json& dot = ops[3];
  EXPECT_EQ(dot["name"].as_string(), "matmul");
  EXPECT_EQ(dot["kind"].as_string(), "Dot");
  EXPECT_EQ(dot["role"].as_string(), "forward");
  EXPECT_EQ(dot["attrs"]["lhs_contract"][0].as_int(), 1);
  EXPECT_EQ(dot["inputs"][1]["op"].as_int(), 1);
  EXPECT_EQ(dot["outputs"][0]["dtype"].as_string(), "f32");
  EXPECT_EQ(dot["outputs"][0]["shape"][1].as_int(), 16);
  EXPECT_DOUBLE_EQ(dot["flops"].as_number(), 1024);
  EXPECT_EQ(ops[2]["attrs"]["init"].as_string(), "zeros");
  EXPECT_EQ((*parsed)["outputs"][0]["op"].as_int(), 6);
  EXPECT_EQ((*parsed)["parameter_count"].as_int(), 144);
}

TEST(Graph, CopiesAreDeepAndMovesTransfer) {
  Mlp m;
  Graph copy = m.g;
  copy.add(OpKind::Exp, {m.loss}, {}, "extra");
  copy.mark_output(Value{7, 0});
  EXPECT_EQ(copy.num_ops(), 8);
  EXPECT_EQ(m.g.num_ops(), 7);
  EXPECT_EQ(copy.uses(m.loss).size(), 1u);
  EXPECT_TRUE(m.g.uses(m.loss).empty());
  EXPECT_EQ(m.g.outputs().size(), 1u);
  EXPECT_FALSE(m.g.find("extra").is_ok());

  Graph assigned;
  assigned = copy;
  EXPECT_EQ(assigned.num_ops(), 8);
  EXPECT_EQ(*assigned.find("extra"), 7);
  Graph moved = std::move(assigned);
  EXPECT_EQ(moved.num_ops(), 8);
  EXPECT_EQ(moved.outputs().size(), 2u);
}

}  // namespace
}  // namespace strata::ir
