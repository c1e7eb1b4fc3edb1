// Strategies: their text form, what enumeration yields for a Dot, and the runtime contract checked
// numerically: every strategy of every op of the tiny GPT, MoE and Wide-ResNet training graphs,
// run device by device on the reference interpreter with local tiles and local attributes, gives
// each device its tile of the true output (partial outputs summed over their mesh axes).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "intra_test_util.h"
#include "strata/intra/strategy.h"

namespace strata::intra {
namespace {

using testing::test_cluster;

TEST(OpSharding, TextRoundTrip) {
  for (const std::string text : {"[S0R,RS1]->[S0S1]", "[S0R,]->[P0]", "[]->[RS01]", "[RRS1,R]->[RRRP01,R,R]"}) {
    auto parsed = parse_op_sharding(text);
    ASSERT_TRUE(parsed.is_ok()) << text << ": " << parsed.error().message();
    EXPECT_EQ(parsed->to_string(), text);
  }
  auto two = parse_op_sharding("[S0R,]->[P0]");
  ASSERT_TRUE(two.is_ok());
  ASSERT_EQ(two->inputs.size(), 2u);
  EXPECT_TRUE(two->inputs[1].dims.empty());
  EXPECT_TRUE(two->outputs[0].partial[0]);
  EXPECT_FALSE(two->outputs[0].partial[1]);
  for (const std::string bad : {"S0R->R", "[S0R]", "[S2]->[R]", "[P0]->[R]", "[R]->[RP]"}) {
    EXPECT_FALSE(parse_op_sharding(bad).is_ok()) << bad;
  }
  EXPECT_NE(parse_op_sharding("[R]->[RP0]").value(), parse_op_sharding("[R]->[RP1]").value());
}

// [B, K] x [K, N] on 2x2: b, k and n each over axis 0, 1, both or none, never one axis twice.
TEST(Strategies, DotOnTwoByTwo) {
  ir::Graph g;
  ir::Value x = g.input("x", {8, 16});
  ir::Value w = g.parameter("w", {16, 32});
  ir::OpId dot = g.add(ir::OpKind::Dot, {x, w},
                       {{"lhs_batch", std::vector<int64_t>{}}, {"rhs_batch", std::vector<int64_t>{}},
                        {"lhs_contract", std::vector<int64_t>{1}}, {"rhs_contract", std::vector<int64_t>{0}}},
                       "dot");
  const cost::ComputeModel compute(test_cluster());
  auto strategies = enumerate_strategies(g, dot, {2, 2}, compute);
  ASSERT_TRUE(strategies.is_ok()) << strategies.error().message();
  std::set<std::string> names;
  for (const Strategy& s : *strategies) names.insert(s.sharding.to_string());
  // 1 replicated + 3 labels × (axis 0 | axis 1 | both) + 3·2 ordered pairs of distinct labels.
  EXPECT_EQ(strategies->size(), 16u);
  EXPECT_EQ(names.size(), 16u);
  for (const char* expected : {"[RR,RR]->[RR]", "[S0R,RR]->[S0R]", "[RR,RS1]->[RS1]", "[RS0,S0R]->[RRP0]",
                               "[S0R,RS1]->[S0S1]", "[S0S1,S1R]->[S0RP1]", "[S01R,RR]->[S01R]", "[RS01,S01R]->[RRP01]"}) {
    EXPECT_TRUE(names.count(expected)) << expected;
  }
  // Splitting the work four ways divides the FLOPs by four; the replicated one is the slowest.
  const auto& replicated = strategies->front();
  EXPECT_EQ(replicated.sharding.to_string(), "[RR,RR]->[RR]");
  EXPECT_EQ(replicated.memory_bytes, 8 * 32 * 4);
  for (const Strategy& s : *strategies) EXPECT_LE(s.compute_seconds, replicated.compute_seconds);
  // A 1x1 mesh leaves one strategy; a 1x4 mesh uses only axis 1.
  EXPECT_EQ(enumerate_strategies(g, dot, {1, 1}, compute)->size(), 1u);
  auto row = enumerate_strategies(g, dot, {1, 4}, compute);
  ASSERT_TRUE(row.is_ok());
  for (const Strategy& s : *row) {
    EXPECT_EQ(s.sharding.to_string().find('0'), std::string::npos) << s.sharding.to_string();
  }
}

TEST(Strategies, LocalAttrsRejectsWhatCannotRun) {
  ir::Graph g;
  ir::Value x = g.input("x", {8, 16});
  ir::OpId softmax = g.add(ir::OpKind::Softmax, {x}, {{"axis", int64_t{1}}}, "softmax");
  ir::OpId reshape = g.add(ir::OpKind::Reshape, {x}, {{"shape", std::vector<int64_t>{4, 2, 16}}}, "reshape");
  ir::OpId max = g.add(ir::OpKind::ReduceMax, {x}, {{"axes", std::vector<int64_t>{1}}}, "max");
  const cluster::LogicalMesh mesh{2, 2};
  const std::vector<ir::TensorType> in{g.type(x)};
  auto ok = local_attrs(g.op(softmax), in, parse_op_sharding("[S0R]->[S0R]").value(), mesh);
  EXPECT_TRUE(ok.is_ok());
  auto across = local_attrs(g.op(softmax), in, parse_op_sharding("[RS1]->[RS1]").value(), mesh);
  ASSERT_FALSE(across.is_ok());
  EXPECT_NE(across.error().message().find("softmax"), std::string::npos);
  EXPECT_FALSE(local_attrs(g.op(softmax), in, parse_op_sharding("[S0R]->[RR]").value(), mesh).is_ok());
  EXPECT_FALSE(local_attrs(g.op(softmax), in, parse_op_sharding("[S0R]->[S0RP1]").value(), mesh).is_ok());
  EXPECT_FALSE(local_attrs(g.op(softmax), in, parse_op_sharding("[S0R,R]->[S0R]").value(), mesh).is_ok());
  EXPECT_FALSE(local_attrs(g.op(max), in, parse_op_sharding("[RS1]->[RP1]").value(), mesh).is_ok());
  auto local = local_attrs(g.op(reshape), in, parse_op_sharding("[S01R]->[S01RR]").value(), mesh);
  ASSERT_TRUE(local.is_ok()) << local.error().message();
  EXPECT_EQ(local->get_ints("shape").value(), (std::vector<int64_t>{1, 2, 16}));
  // [8,16] -> [4,2,16]: dim 1 of the output is inside the first group, never split on its own.
  EXPECT_FALSE(local_attrs(g.op(reshape), in, parse_op_sharding("[RR]->[RS0R]").value(), mesh).is_ok());
}

// --- the runtime contract, numerically ---

int block_of(DimSharding dim, const cluster::LogicalMesh& mesh, int i, int j, int& parts) {
  switch (dim) {
    case DimSharding::R: parts = 1; return 0;
    case DimSharding::S0: parts = mesh.n0; return i;
    case DimSharding::S1: parts = mesh.n1; return j;
    case DimSharding::S01: parts = mesh.n0 * mesh.n1; return i * mesh.n1 + j;
  }
  return 0;
}

// Device (i, j)'s tile of `t` under `spec`.
interp::Tensor tile(const interp::Tensor& t, const ShardingSpec& spec, const cluster::LogicalMesh& mesh, int i, int j) {
  ir::Shape shape = t.shape;
  std::vector<int64_t> offset(shape.size(), 0);
  for (size_t d = 0; d < shape.size(); ++d) {
    int parts = 1;
    const int block = block_of(spec.dims[d], mesh, i, j, parts);
    shape[d] /= parts;
    offset[d] = block * shape[d];
  }
  interp::Tensor out(shape);
  const std::vector<int64_t> strides = interp::row_major_strides(t.shape);
  for (int64_t k = 0; k < out.numel(); ++k) {
    int64_t rest = k, source = 0;
    for (size_t d = shape.size(); d-- > 0;) {
      source += (rest % shape[d] + offset[d]) * strides[d];
      rest /= shape[d];
    }
    out[k] = t[source];
  }
  return out;
}

// Runs one op on local inputs as a one-op graph of Input ops.
interp::Tensor run_local(const ir::Op& op, const std::vector<interp::Tensor>& inputs, const std::vector<ir::TensorType>& types,
                         const ir::Attrs& attrs, int output) {
  ir::Graph g;
  std::map<std::string, interp::Tensor> feeds;
  std::vector<ir::Value> values;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const std::string name = "in" + std::to_string(k);
    values.push_back(g.input(name, inputs[k].shape, types[k].dtype));
    feeds[name] = inputs[k];
  }
  auto id = g.try_add(op.kind, values, attrs, "op");
  STRATA_CHECK(id.is_ok(), id.is_ok() ? "" : id.error().message());
  g.mark_output(ir::Value{*id, output});
  auto out = interp::run(g, feeds, interp::Precision::f64);
  STRATA_CHECK(out.is_ok(), out.is_ok() ? "" : out.error().message());
  return out->outputs[0];
}

struct ContractCounts {
  int checked = 0;  // strategies run device by device
  int split = 0;    // of which split some operand
  std::set<ir::OpKind> kinds;
  std::set<std::string> names;  // "<op> <strategy>"
};

ContractCounts check_graph_contract(const ir::Graph& g, const std::string& config, int64_t classes,
                                    const cluster::LogicalMesh& mesh) {
  ContractCounts counts;
  auto values = interp::run(g, testing::feeds_for(g, classes), interp::Precision::f64, 7);
  EXPECT_TRUE(values.is_ok()) << values.error().message();
  if (!values.is_ok()) return counts;
  const cost::ComputeModel compute(test_cluster());
  int& checked = counts.checked;
  int& split = counts.split;
  std::set<ir::OpKind>& kinds = counts.kinds;
  for (ir::OpId id = 0; id < g.num_ops(); ++id) {
    const ir::Op& op = g.op(id);
    auto strategies = enumerate_strategies(g, id, mesh, compute);
    EXPECT_TRUE(strategies.is_ok()) << strategies.error().message();
    if (!strategies.is_ok()) return counts;
    std::vector<ir::TensorType> types;
    for (const ir::Value& v : op.inputs) types.push_back(g.type(v));
    for (const Strategy& s : *strategies) {
      auto attrs = local_attrs(op, types, s.sharding, mesh);
      EXPECT_TRUE(attrs.is_ok()) << attrs.error().message();
      if (!attrs.is_ok() || s.sharding.outputs.empty()) return counts;
      if (op_info(op.kind).is_source) {
        auto shape = local_shape(s.sharding.outputs[0], op.outputs[0].shape, mesh);
        EXPECT_EQ(attrs->get_ints("shape").value(), shape.value()) << op.name;
        continue;
      }
      kinds.insert(op.kind);
      if (s.sharding.to_string().find('S') != std::string::npos) ++split;
      for (size_t o = 0; o < op.outputs.size(); ++o) {
        const ShardingSpec& spec = s.sharding.outputs[o];
        const interp::Tensor& truth = values->value(ir::Value{id, static_cast<int32_t>(o)});
        std::vector<std::vector<interp::Tensor>> local(mesh.n0, std::vector<interp::Tensor>(mesh.n1));
        for (int i = 0; i < mesh.n0; ++i) {
          for (int j = 0; j < mesh.n1; ++j) {
            std::vector<interp::Tensor> in;
            for (size_t k = 0; k < op.inputs.size(); ++k) {
              in.push_back(tile(values->value(op.inputs[k]), s.sharding.inputs[k], mesh, i, j));
            }
            local[i][j] = run_local(op, in, types, *attrs, static_cast<int>(o));
          }
        }
        for (int i = 0; i < mesh.n0; ++i) {
          for (int j = 0; j < mesh.n1; ++j) {
            interp::Tensor sum(local[i][j].shape);
            for (int a = 0; a < mesh.n0; ++a) {
              for (int b = 0; b < mesh.n1; ++b) {
                if ((a != i && !spec.partial[0]) || (b != j && !spec.partial[1])) continue;
                for (int64_t k = 0; k < sum.numel(); ++k) sum[k] += local[a][b][k];
              }
            }
            const interp::Tensor expected = tile(truth, spec, mesh, i, j);
            EXPECT_EQ(sum.shape, expected.shape) << op.name << " " << s.name;
            if (sum.shape != expected.shape) return counts;
            for (int64_t k = 0; k < sum.numel(); ++k) {
              const bool near = std::abs(sum[k] - expected[k]) <= 1e-9 * (1 + std::abs(expected[k]));
              EXPECT_TRUE(near) << config << " " << op.name << " " << s.name << " output " << o << " device " << i
                                << "," << j << ": " << sum[k] << " vs " << expected[k];
              if (!near) return counts;
            }
          }
        }
      }
      ++checked;
      counts.names.insert(op.name + " " + s.sharding.to_string());
    }
  }
  return counts;
}

void check_contract(const std::string& config, int64_t micro_batch, int64_t classes, const cluster::LogicalMesh& mesh) {
  const ContractCounts counts = check_graph_contract(testing::training_graph(config, micro_batch), config, classes, mesh);
  EXPECT_GT(counts.checked, 100) << config;
  EXPECT_GT(counts.split, counts.checked / 2) << config;
  EXPECT_GE(counts.kinds.size(), 8u) << config;
}

TEST(StrategyContract, GptTinyTwoByTwo) { check_contract("gpt-tiny.yaml", 4, 64, {2, 2}); }
TEST(StrategyContract, GptTinyOneByFour) { check_contract("gpt-tiny.yaml", 4, 64, {1, 4}); }
TEST(StrategyContract, MoETinyTwoByTwo) { check_contract("moe-tiny.yaml", 4, 64, {2, 2}); }
TEST(StrategyContract, WresnetTinyTwoByTwo) { check_contract("wresnet-tiny.yaml", 4, 10, {2, 2}); }

// Attention and AttentionGrad split their batch and head dims (never rows, keys or head width):
// in layout bsnd the heads sit at dim 2 of q, k, v, out and the gradients, at dim 1 of lse and of
// a full bias; a bias without those dims (the causal [S, T] mask) stays whole.
ContractCounts attention_contract(bool bsnd, bool full_bias, const cluster::LogicalMesh& mesh) {
  const int64_t B = 2, N = 4, S = 3, T = 5, D = 2, Dv = 3;
  auto four = [&](int64_t rows, int64_t width) {
    return bsnd ? ir::Shape{B, rows, N, width} : ir::Shape{B, N, rows, width};
  };
  ir::Graph g;
  const ir::Value q = g.input("q", four(S, D)), k = g.input("k", four(T, D)), v = g.input("v", four(T, Dv));
  const ir::Value bias = g.input("bias", full_bias ? ir::Shape{B, N, S, T} : ir::Shape{S, T});
  const ir::Value dout = g.input("dout", four(S, Dv));
  ir::Attrs attrs{{"scale", 0.5}};
  if (bsnd) attrs.set("layout", std::string("bsnd"));
  const ir::OpId att = g.add(ir::OpKind::Attention, {q, k, v, bias}, attrs, "att");
  const ir::OpId grad = g.add(ir::OpKind::AttentionGrad,
                              {q, k, v, bias, ir::Value{att, 0}, ir::Value{att, 1}, dout}, attrs, "grad");
  for (int32_t i = 0; i < 3; ++i) g.mark_output(ir::Value{grad, i});
  return check_graph_contract(g, bsnd ? "attention bsnd" : "attention", 10, mesh);
}

TEST(StrategyContract, AttentionSplitsBatchAndHeads) {
  const ContractCounts bsnd = attention_contract(true, false, {2, 2});
  EXPECT_EQ(bsnd.kinds, (std::set<ir::OpKind>{ir::OpKind::Attention, ir::OpKind::AttentionGrad}));
  for (const char* expected : {
           // data parallel, tensor (head) parallel, both, and the two on one axis
           "att [S0RRR,S0RRR,S0RRR,RR]->[S0RRR,S0RR]", "att [RRS1R,RRS1R,RRS1R,RR]->[RRS1R,RS1R]",
           "att [S0RS1R,S0RS1R,S0RS1R,RR]->[S0RS1R,S0S1R]", "att [RRS01R,RRS01R,RRS01R,RR]->[RRS01R,RS01R]",
           "grad [S0RS1R,S0RS1R,S0RS1R,RR,S0RS1R,S0S1R,S0RS1R]->[S0RS1R,S0RS1R,S0RS1R]"}) {
    EXPECT_TRUE(bsnd.names.count(expected)) << expected;
  }
  for (const std::string& name : bsnd.names) {
    // Never a split of the rows, keys or head width: q's spec (the first operand) is R at 1 and 3.
    auto spec = parse_op_sharding(name.substr(name.find(' ') + 1));
    ASSERT_TRUE(spec.is_ok()) << name;
    EXPECT_EQ(spec->inputs[0].dims[1], DimSharding::R) << name;
    EXPECT_EQ(spec->inputs[0].dims[3], DimSharding::R) << name;
  }
  // Per op: replicated; B (2) over axis 0 or 1; N (4) over 0, 1 or both; B and N on distinct axes.
  EXPECT_EQ(bsnd.checked, 2 * 8);
  const ContractCounts full = attention_contract(true, true, {2, 2});
  EXPECT_TRUE(full.names.count("att [S0RS1R,S0RS1R,S0RS1R,S0S1RR]->[S0RS1R,S0S1R]"));
  const ContractCounts plain = attention_contract(false, true, {1, 2});
  EXPECT_TRUE(plain.names.count("att [RS1RR,RS1RR,RS1RR,RS1RR]->[RS1RR,RS1R]"));
  EXPECT_TRUE(plain.names.count("grad [S1RRR,S1RRR,S1RRR,S1RRR,S1RRR,S1RR,S1RRR]->[S1RRR,S1RRR,S1RRR]"));
  EXPECT_EQ(plain.checked, 2 * 3);  // per op: replicated, B over axis 1, N over axis 1
}

// Cross-entropy splits its rows (never the vocabulary): the loss is then a partial sum, each
// device's share of the mean dividing by the global row count (local_attrs' mean_rows), and the
// gradient's rows split with it. Run device by device, the shares and tiles match the whole op.
TEST(StrategyContract, CrossEntropySplitsRowsAsShareOfTheMean) {
  ir::Graph g;
  const ir::Value logits = g.input("logits", {8, 5});
  const ir::Value labels = g.input("labels", {8}, ir::DType::i32);
  const ir::Value dloss = g.input("dloss", {});
  const ir::OpId loss = g.add(ir::OpKind::CrossEntropy, {logits, labels}, {}, "loss");
  const ir::OpId grad = g.add(ir::OpKind::CrossEntropyGrad, {logits, labels, dloss}, {}, "grad");
  g.mark_output(ir::Value{loss, 0});
  g.mark_output(ir::Value{grad, 0});
  const ContractCounts counts = check_graph_contract(g, "cross entropy", 5, {2, 2});
  for (const char* expected : {"loss [S0R,S0]->[P0]", "loss [S01R,S01]->[P01]", "grad [S1R,S1,]->[S1R]",
                               "loss [RR,R]->[]"}) {
    EXPECT_TRUE(counts.names.count(expected)) << expected;
  }
  EXPECT_EQ(counts.checked, 2 * 4);  // per op: replicated, rows over axis 0, 1 or both
  const cluster::LogicalMesh mesh{2, 2};
  auto split = local_attrs(g.op(loss), {g.type(logits), g.type(labels)}, parse_op_sharding("[S01R,S01]->[P01]").value(), mesh);
  ASSERT_TRUE(split.is_ok()) << split.error().message();
  EXPECT_EQ(split->int_or("mean_rows", 0), 8);
  auto whole = local_attrs(g.op(loss), {g.type(logits), g.type(labels)}, parse_op_sharding("[RR,R]->[]").value(), mesh);
  ASSERT_TRUE(whole.is_ok());
  EXPECT_FALSE(whole->has("mean_rows"));
  // A share of fewer rows than the op holds is refused, naming the attribute.
  auto fewer = g.try_add(ir::OpKind::CrossEntropy, {logits, labels}, {{"mean_rows", int64_t{4}}}, "bad");
  ASSERT_FALSE(fewer.is_ok());
  EXPECT_NE(fewer.error().message().find("mean_rows"), std::string::npos) << fewer.error().message();
  // The vocabulary never splits: softmax spans it.
  EXPECT_FALSE(local_attrs(g.op(loss), {g.type(logits), g.type(labels)}, parse_op_sharding("[RS0,R]->[P0]").value(), mesh)
                   .is_ok());
}

}  // namespace
}  // namespace strata::intra
