// The ILP against exhaustive enumeration on the real strategy sets: random small graphs (Dot,
// elementwise, layout and reduction ops over random shapes) on 1x2, 2x1 and 2x2 meshes, with and
// without a memory budget. lp_solve's optimum must equal brute force's on every one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "intra_test_util.h"
#include "strata/cluster/alpha_beta.h"
#include "strata/intra/stage_solver.h"

namespace strata::intra {
namespace {

ir::Attrs matmul() {
  return {{"lhs_batch", std::vector<int64_t>{}}, {"rhs_batch", std::vector<int64_t>{}},
          {"lhs_contract", std::vector<int64_t>{1}}, {"rhs_contract", std::vector<int64_t>{0}}};
}

ir::Graph random_graph(std::mt19937& rng, int num_ops) {
  ir::Graph g;
  std::uniform_int_distribution<int> pick_dim(0, 2), pick_op(0, 6);
  const int64_t sizes[3] = {2, 4, 8};
  std::vector<ir::Value> values{g.input("x", {sizes[pick_dim(rng)], sizes[pick_dim(rng)]})};
  for (int n = 0; n < num_ops; ++n) {
    const ir::Value v = values[std::uniform_int_distribution<size_t>(0, values.size() - 1)(rng)];
    const ir::Shape shape = g.type(v).shape;
    const std::string name = "op" + std::to_string(n);
    switch (pick_op(rng)) {
      case 0:
      case 1: {
        ir::Value w = g.parameter("w" + std::to_string(n), {shape[1], sizes[pick_dim(rng)]});
        values.push_back(g.add_value(ir::OpKind::Dot, {v, w}, matmul(), name));
        break;
      }
      case 2: values.push_back(g.add_value(ir::OpKind::Relu, {v}, {}, name)); break;
      case 3: values.push_back(g.add_value(ir::OpKind::Transpose, {v}, {{"perm", std::vector<int64_t>{1, 0}}}, name)); break;
      case 4: {
        ir::Value other = v;
        for (const ir::Value& u : values) {
          if (u != v && g.type(u).shape == shape) other = u;
        }
        values.push_back(g.add_value(ir::OpKind::Add, {v, other}, {}, name));
        break;
      }
      case 5:
        values.push_back(g.add_value(ir::OpKind::ReduceSum, {v},
                                     {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t{1}}}, name));
        break;
      default: values.push_back(g.add_value(ir::OpKind::Scale, {v}, {{"scalar", 0.5}}, name)); break;
    }
  }
  return g;
}

TEST(StageRandom, LpSolveMatchesBruteForce) {
  const cluster::ClusterSpec spec = testing::test_cluster();
  const cluster::AlphaBetaModel comm(spec);
  std::mt19937 rng(20261123);
  const cluster::LogicalMesh meshes[3] = {{1, 2}, {2, 1}, {2, 2}};
  int compared = 0, with_budget = 0, binding = 0;
  for (int trial = 0; trial < 200 && compared < 40; ++trial) {
    const cluster::LogicalMesh mesh = meshes[trial % 3];
    const ir::Graph g = random_graph(rng, mesh.num_devices() == 4 ? 3 : 6);
    StageProblem problem;
    problem.graph = &g;
    problem.mesh = mesh;
    problem.submesh = {1, mesh.num_devices()};
    problem.cluster = &spec;
    problem.comm = &comm;
    auto stage = build_stage_request(problem);
    ASSERT_TRUE(stage.is_ok()) << stage.error().message();
    double assignments = 1;
    for (const SolverNode& node : stage->request.nodes) assignments *= static_cast<double>(node.strategy_cost.size());
    if (assignments > 2e6) continue;
    SolverRequest& request = stage->request;
    if (trial % 2 == 1) {
      // A budget between the least and the most memory any strategy choice uses.
      int64_t least = 0, most = 0;
      for (const SolverNode& node : request.nodes) {
        least += *std::min_element(node.strategy_memory_bytes.begin(), node.strategy_memory_bytes.end());
        most += *std::max_element(node.strategy_memory_bytes.begin(), node.strategy_memory_bytes.end());
      }
      if (most > least) {
        request.memory_budget_bytes = least + (most - least) / 3;
        ++with_budget;
      }
    }
    ilp::BruteForceSolver brute;
    ilp::LpSolveSolver lp;
    auto expected = brute.solve(request);
    auto actual = lp.solve(request);
    ASSERT_TRUE(expected.is_ok()) << expected.error().message();
    ASSERT_TRUE(actual.is_ok()) << actual.error().message();
    ASSERT_EQ(actual->status == SolverStatus::infeasible, expected->status == SolverStatus::infeasible) << trial;
    if (expected->status == SolverStatus::infeasible) continue;
    EXPECT_NEAR(actual->objective, expected->objective, 1e-9 * expected->objective + 1e-15) << "trial " << trial;
    EXPECT_NEAR(evaluate_cost(request, actual->choice), actual->objective, 1e-12 + 1e-9 * actual->objective);
    EXPECT_TRUE(respects_follow(request, actual->choice));
    if (request.memory_budget_bytes > 0) {
      EXPECT_LE(evaluate_memory_bytes(request, actual->choice), request.memory_budget_bytes);
      request.memory_budget_bytes = 0;
      auto unconstrained = brute.solve(request);
      ASSERT_TRUE(unconstrained.is_ok());
      if (unconstrained->objective < expected->objective) ++binding;
    }
    ++compared;
  }
  EXPECT_GE(compared, 30);
  EXPECT_GE(with_budget, 10);
  EXPECT_GE(binding, 1);
}

}  // namespace
}  // namespace strata::intra
