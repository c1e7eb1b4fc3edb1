// solve_stage's known answers (issue 4): data parallelism when the batch dominates, Megatron-style
// column/row splits when the hidden size dominates, both on a 2x2 mesh, weights sharded under a
// tight memory budget, Megatron attention + MLP for a GPT layer on 1x8, experts split with
// all-to-all for an MoE layer; plus the stage bookkeeping (every op has a sharding, costs by role).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "intra_test_util.h"
#include "strata/cluster/alpha_beta.h"
#include "strata/intra/stage_solver.h"

namespace strata::intra {
namespace {

using testing::test_cluster;

ir::Attrs matmul() {
  return {{"lhs_batch", std::vector<int64_t>{}}, {"rhs_batch", std::vector<int64_t>{}},
          {"lhs_contract", std::vector<int64_t>{1}}, {"rhs_contract", std::vector<int64_t>{0}}};
}

// x[B, D] -> fc1 [D, 4D] -> relu -> fc2 [4D, D] (-> relu -> fc3 [D, 4D] ...) -> sum of squares:
// an MLP of `layers` layers and its Adam step.
ir::Graph mlp(int64_t batch, int64_t hidden, int layers = 2) {
  ir::Graph g;
  ir::Value h = g.input("x", {batch, hidden});
  for (int l = 1; l <= layers; ++l) {
    const std::string n = std::to_string(l);
    if (l > 1) h = g.add_value(ir::OpKind::Relu, {h}, {}, l == 2 ? "relu" : "relu" + n);
    const int64_t in = g.type(h).shape[1];
    ir::Value w = g.parameter("w" + n, {in, in == hidden ? 4 * hidden : hidden});
    h = g.add_value(ir::OpKind::Dot, {h, w}, matmul(), "fc" + n);
  }
  ir::Value sq = g.add_value(ir::OpKind::Mul, {h, h}, {}, "square");
  g.mark_output(g.add_value(ir::OpKind::ReduceSum, {sq}, {}, "loss"));
  autodiff::TrainingOptions options;
  options.optimizer = autodiff::Optimizer::adam;
  auto training = autodiff::build_training_graph(g, options);
  STRATA_CHECK(training.is_ok(), training.is_ok() ? "" : training.error().message());
  return *training;
}

struct Fixture {
  cluster::ClusterSpec spec = test_cluster();
  cluster::AlphaBetaModel comm{test_cluster()};
  ilp::LpSolveSolver solver;
  // Four micro-batches per step unless a test says otherwise: with one, storing a weight sharded
  // and gathering it for the forward pass (ZeRO-3) ties data parallelism's one all-reduce.
  StageProblem problem(const ir::Graph& g, cluster::LogicalMesh mesh) {
    StageProblem p;
    p.num_micro_batches = 4;
    p.graph = &g;
    p.mesh = mesh;
    p.submesh = cluster::Submesh{1, mesh.num_devices()};
    p.cluster = &spec;
    p.comm = &comm;
    return p;
  }
};

void dump(const ir::Graph& g, const StageSolution& s) {
  if (std::getenv("STRATA_DUMP") == nullptr) return;
  for (ir::OpId id = 0; id < g.num_ops(); ++id) {
    auto it = s.shardings.find(g.op(id).name);
    if (it != s.shardings.end()) std::printf("%-40s %s\n", g.op(id).name.c_str(), it->second.to_string().c_str());
  }
  std::printf("fwd %g bwd %g upd %g sync %g\n", s.forward_seconds, s.backward_seconds, s.update_seconds, s.grad_sync_seconds);
}

std::string out_spec(const StageSolution& s, const std::string& op) {
  auto it = s.shardings.find(op);
  STRATA_CHECK(it != s.shardings.end(), "no sharding for " + op);
  return it->second.outputs[0].to_string();
}

TEST(StageSolver, MlpBatchDominatesIsDataParallel) {
  Fixture setup;
  const ir::Graph g = mlp(8192, 64);
  StageProblem problem = setup.problem(g, {1, 4});
  auto solution = solve_stage(problem, setup.solver);
  ASSERT_TRUE(solution.is_ok()) << solution.error().message();
  ASSERT_TRUE(solution->feasible) << solution->reason;
  EXPECT_EQ(solution->shardings.size(), static_cast<size_t>(g.num_ops()));
  dump(g, *solution);
  EXPECT_EQ(out_spec(*solution, "w1"), "RR");
  EXPECT_EQ(out_spec(*solution, "w2"), "RR");
  EXPECT_EQ(out_spec(*solution, "x"), "S1R");
  EXPECT_EQ(out_spec(*solution, "fc1"), "S1R");
  // The weight gradients are partial over the batch axis and all-reduced into the updates.
  EXPECT_GT(solution->grad_sync_seconds, 0);
  EXPECT_GT(solution->forward_seconds, 0);
  EXPECT_GT(solution->backward_seconds, solution->forward_seconds);
  EXPECT_GT(solution->update_seconds, 0);
  EXPECT_EQ(solution->weights_bytes, 2 * 64 * 256 * 4);
  EXPECT_EQ(solution->optimizer_state_bytes, 2 * solution->weights_bytes);
  EXPECT_GT(solution->activation_bytes, 0);
  EXPECT_GT(solution->num_variables, 0);
  // At one micro-batch per step the first weight, whose gradient needs no input gradient, may as
  // well be stored sharded: gather + reduce-scatter costs what one all-reduce costs, and its
  // update is four times cheaper. The second weight is needed again in the backward pass.
  problem.num_micro_batches = 1;
  auto single = solve_stage(problem, setup.solver);
  ASSERT_TRUE(single.is_ok() && single->feasible);
  EXPECT_EQ(out_spec(*single, "w1"), "S1R");
  EXPECT_EQ(out_spec(*single, "w2"), "RR");
  EXPECT_LT(single->update_seconds, solution->update_seconds);
  problem.num_micro_batches = 0;
  EXPECT_FALSE(solve_stage(problem, setup.solver).is_ok());
}

TEST(StageSolver, MlpHiddenDominatesIsMegatron) {
  Fixture setup;
  const ir::Graph g = mlp(8, 2048);
  auto solution = solve_stage(setup.problem(g, {1, 4}), setup.solver);
  ASSERT_TRUE(solution.is_ok()) << solution.error().message();
  ASSERT_TRUE(solution->feasible) << solution->reason;
  EXPECT_EQ(out_spec(*solution, "w1"), "RS1");  // columns
  EXPECT_EQ(out_spec(*solution, "w2"), "S1R");  // rows
  EXPECT_EQ(out_spec(*solution, "fc1"), "RS1");
  EXPECT_EQ(out_spec(*solution, "fc2"), "RRP1");  // the one all-reduce of the forward pass
  EXPECT_EQ(solution->weights_bytes, 2 * 2048 * 8192 * 4 / 4);
}

TEST(StageSolver, MlpTwoByTwoUsesBothAxes) {
  Fixture setup;
  const ir::Graph g = mlp(4096, 2048);
  auto solution = solve_stage(setup.problem(g, {2, 2}), setup.solver);
  ASSERT_TRUE(solution.is_ok()) << solution.error().message();
  ASSERT_TRUE(solution->feasible) << solution->reason;
  dump(g, *solution);
  const std::string x = out_spec(*solution, "x"), w1 = out_spec(*solution, "w1"), w2 = out_spec(*solution, "w2");
  // Batch over one axis, the weights' hidden dim over the other. w1 may also split its rows over
  // the batch axis: its gradient, summed over the 4 micro-batches, is then a quarter tile.
  const bool batch_on_0 = x == "S0R";
  ASSERT_TRUE(x == "S0R" || x == "S1R") << x;
  EXPECT_TRUE(w1 == (batch_on_0 ? "RS1" : "RS0") || w1 == (batch_on_0 ? "S0S1" : "S1S0")) << w1;
  EXPECT_EQ(w2, batch_on_0 ? "S1R" : "S0R");
}

TEST(StageSolver, MemoryBudgetForcesShardedWeights) {
  Fixture setup;
  const ir::Graph g = mlp(4096, 256);
  StageProblem problem = setup.problem(g, {1, 4});
  auto free = solve_stage(problem, setup.solver);
  ASSERT_TRUE(free.is_ok() && free->feasible);
  ASSERT_EQ(out_spec(*free, "w1"), "RR");
  const int64_t dp_bytes = free->weights_bytes + free->optimizer_state_bytes + free->activation_bytes;
  problem.memory_budget_bytes = dp_bytes - free->weights_bytes;  // less than data parallelism needs
  auto tight = solve_stage(problem, setup.solver);
  ASSERT_TRUE(tight.is_ok()) << tight.error().message();
  ASSERT_TRUE(tight->feasible) << tight->reason;
  EXPECT_LE(tight->weights_bytes + tight->optimizer_state_bytes + tight->activation_bytes, problem.memory_budget_bytes);
  EXPECT_LT(tight->weights_bytes, free->weights_bytes);
  EXPECT_GE(tight->forward_seconds + tight->backward_seconds + tight->grad_sync_seconds,
            free->forward_seconds + free->backward_seconds + free->grad_sync_seconds);
  // The state keeps the parameter's layout.
  EXPECT_EQ(out_spec(*tight, "w1.adam_m"), out_spec(*tight, "w1"));
  EXPECT_EQ(tight->shardings.at("w1.adam_m").outputs[0], tight->shardings.at("w1").outputs[0]);
  // A budget below any assignment: not feasible, and the reason says what was needed.
  problem.memory_budget_bytes = 1024;
  auto none = solve_stage(problem, setup.solver);
  ASSERT_TRUE(none.is_ok());
  EXPECT_FALSE(none->feasible);
  EXPECT_NE(none->reason.find("memory budget"), std::string::npos) << none->reason;
}

TEST(StageSolver, AllowRestrictsStrategies) {
  Fixture setup;
  const ir::Graph g = mlp(8, 2048);
  StageProblem problem = setup.problem(g, {1, 4});
  // Data parallelism only: parameters replicated.
  problem.allow = [](const ir::Op& op, const Strategy& s) {
    return op.kind != ir::OpKind::Parameter || s.sharding.outputs[0].to_string().find('S') == std::string::npos;
  };
  auto solution = solve_stage(problem, setup.solver);
  ASSERT_TRUE(solution.is_ok() && solution->feasible);
  EXPECT_EQ(out_spec(*solution, "w1"), "RR");
  EXPECT_EQ(out_spec(*solution, "w2"), "RR");
  problem.allow = [](const ir::Op& op, const Strategy&) { return op.name != "relu"; };
  auto refused = solve_stage(problem, setup.solver);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_NE(refused.error().message().find("relu"), std::string::npos);
}

TEST(StageSolver, BadProblems) {
  Fixture setup;
  const ir::Graph g = mlp(8, 64);
  StageProblem problem = setup.problem(g, {1, 4});
  problem.submesh = {1, 8};
  EXPECT_FALSE(solve_stage(problem, setup.solver).is_ok());
  problem = setup.problem(g, {1, 4});
  problem.ops = {0, g.num_ops()};
  EXPECT_FALSE(solve_stage(problem, setup.solver).is_ok());
  problem = setup.problem(g, {1, 4});
  problem.comm = nullptr;
  EXPECT_FALSE(solve_stage(problem, setup.solver).is_ok());
  problem = setup.problem(g, {1, 4});
  problem.budget_search_solves = -1;
  auto negative = solve_stage(problem, setup.solver);
  ASSERT_FALSE(negative.is_ok());
  EXPECT_NE(negative.error().message().find("budget_search_solves"), std::string::npos) << negative.error().message();
}

// Large stages are solved as several ILPs over consecutive layers; on a deep MLP the chunks come
// within 5% of the one ILP's optimum, never below it, and the memory budget still holds.
TEST(StageSolver, ChunkedSolveOfADeepStage) {
  Fixture setup;
  const ir::Graph g = mlp(4096, 256, 6);
  StageProblem problem = setup.problem(g, {1, 4});
  problem.max_ilp_decision_nodes = 0;
  auto whole = solve_stage(problem, setup.solver);
  ASSERT_TRUE(whole.is_ok() && whole->feasible);
  EXPECT_EQ(whole->num_ilps, 1);
  problem.max_ilp_decision_nodes = 8;
  auto chunked = solve_stage(problem, setup.solver);
  ASSERT_TRUE(chunked.is_ok()) << chunked.error().message();
  ASSERT_TRUE(chunked->feasible) << chunked->reason;
  EXPECT_GT(chunked->num_ilps, 2);
  EXPECT_EQ(chunked->shardings.size(), whole->shardings.size());
  EXPECT_GE(chunked->objective_seconds, whole->objective_seconds * (1 - 1e-9));
  EXPECT_LE(chunked->objective_seconds, whole->objective_seconds * 1.05);
  // Data parallel, replicated weights; a budget a quarter of the weights short of that forces
  // some weights to be sharded, and the chunks keep to it.
  EXPECT_EQ(out_spec(*whole, "w3"), "RR");
  const int64_t used = whole->weights_bytes + whole->optimizer_state_bytes + whole->activation_bytes;
  problem.memory_budget_bytes = used - whole->weights_bytes / 4;
  auto tight = solve_stage(problem, setup.solver);
  ASSERT_TRUE(tight.is_ok() && tight->feasible) << (tight.is_ok() ? tight->reason : tight.error().message());
  EXPECT_LE(tight->weights_bytes + tight->optimizer_state_bytes + tight->activation_bytes, problem.memory_budget_bytes);
  EXPECT_LT(tight->weights_bytes, whole->weights_bytes);
  problem.max_ilp_decision_nodes = -1;
  EXPECT_FALSE(solve_stage(problem, setup.solver).is_ok());
}

TEST(StageSolver, GptLayerOnOneByEightIsMegatron) {
  models::ModelSpec spec = testing::load_spec("gpt-tiny.yaml");
  spec.hidden = 2048;
  spec.ffn_hidden = 4 * 2048;
  spec.heads = 16;
  spec.seq_len = 128;
  spec.vocab = 512;
  spec.layers = 2;
  spec.global_batch = 2;
  const ir::Graph graph = testing::training_graph(spec, 2);
  Fixture setup;
  StageProblem problem = setup.problem(graph, {1, 8});
  problem.ops = ops_owned_by_prefix(graph, "layer1.");
  auto solution = solve_stage(problem, setup.solver);
  ASSERT_TRUE(solution.is_ok()) << solution.error().message();
  ASSERT_TRUE(solution->feasible) << solution->reason;
  EXPECT_EQ(solution->shardings.size(), problem.ops.size());
  EXPECT_EQ(out_spec(*solution, "layer1.attn.qkv.weight"), "RS1");
  EXPECT_EQ(out_spec(*solution, "layer1.attn.out.weight"), "S1R");
  EXPECT_EQ(out_spec(*solution, "layer1.mlp.fc1.weight"), "RS1");
  EXPECT_EQ(out_spec(*solution, "layer1.mlp.fc2.weight"), "S1R");
  // Heads split: the attention scores [B, N, S, S] are split over the head dim.
  EXPECT_EQ(out_spec(*solution, "layer1.attn.scores"), "RS1RR");
}

TEST(StageSolver, MoELayerShardsExpertsWithAllToAll) {
  models::ModelSpec spec = testing::load_spec("moe-tiny.yaml");
  spec.hidden = 1024;
  spec.ffn_hidden = 4096;
  spec.expert_ffn_hidden = 16384;  // GShard's regime: expert weights dwarf one micro-batch's tokens
  spec.experts = 8;
  spec.seq_len = 256;
  spec.expert_group_size = 256;
  spec.global_batch = 8;
  const ir::Graph graph = testing::training_graph(spec, 8, autodiff::Optimizer::sgd);
  Fixture setup;
  StageProblem problem = setup.problem(graph, {1, 8});
  std::string moe_layer;
  for (ir::OpId id = 0; id < graph.num_ops() && moe_layer.empty(); ++id) {
    const std::string& name = graph.op(id).name;
    if (name.find(".moe.expert.fc1.weight") != std::string::npos) moe_layer = name.substr(0, name.find('.') + 1);
  }
  ASSERT_FALSE(moe_layer.empty());
  problem.ops = ops_owned_by_prefix(graph, moe_layer);
  auto solution = solve_stage(problem, setup.solver);
  ASSERT_TRUE(solution.is_ok()) << solution.error().message();
  ASSERT_TRUE(solution->feasible) << solution->reason;
  EXPECT_EQ(out_spec(*solution, moe_layer + "moe.expert.fc1.weight"), "S1RR");
  EXPECT_EQ(out_spec(*solution, moe_layer + "moe.expert.fc2.weight"), "S1RR");
  // Tokens travel between their groups' devices and their experts' devices by all-to-all.
  dump(graph, *solution);
  int all_to_alls = 0;
  for (ir::OpId id : problem.ops) {
    const ir::Op& op = graph.op(id);
    for (size_t k = 0; k < op.inputs.size(); ++k) {
      auto from = solution->shardings.find(graph.op(op.inputs[k].op).name);
      if (from == solution->shardings.end()) continue;
      const ir::TensorType& type = graph.type(op.inputs[k]);
      auto plan = resharding_cost(from->second.outputs[op.inputs[k].index], solution->shardings.at(op.name).inputs[k],
                                  type.shape, type.dtype, problem.submesh, problem.mesh, setup.comm);
      ASSERT_TRUE(plan.is_ok());
      for (const ReshardStep& step : plan->steps) all_to_alls += step.kind == cluster::Collective::all_to_all ? 1 : 0;
    }
  }
  EXPECT_GE(all_to_alls, 2);
}

// Dominance pruning drops strategies before the ILP and keeps the optimum: on a GPT block on a 2x2
// mesh the ILP has fewer variables and the same objective as without pruning.
TEST(StageSolver, DominancePruningKeepsTheOptimum) {
  models::ModelSpec spec = testing::load_spec("gpt-tiny.yaml");
  spec.layers = 2;
  const ir::Graph graph = testing::training_graph(spec, 4);
  Fixture setup;
  StageProblem problem = setup.problem(graph, {2, 2});
  problem.ops = ops_owned_by_prefix(graph, "layer1.");
  problem.max_ilp_decision_nodes = 0;
  problem.prune_dominated = false;
  auto full_request = build_stage_request(problem);
  auto full = solve_stage(problem, setup.solver);
  problem.prune_dominated = true;
  auto pruned_request = build_stage_request(problem);
  auto pruned = solve_stage(problem, setup.solver);
  ASSERT_TRUE(full_request.is_ok() && pruned_request.is_ok() && full.is_ok() && pruned.is_ok());
  ASSERT_TRUE(full->feasible && pruned->feasible);
  EXPECT_EQ(full_request->strategies_before_pruning, pruned_request->strategies_before_pruning);
  EXPECT_EQ(full_request->strategies_after_pruning, full_request->strategies_before_pruning);
  EXPECT_LT(pruned_request->strategies_after_pruning, pruned_request->strategies_before_pruning);
  EXPECT_LT(pruned->num_variables, full->num_variables);
  std::printf("GPT block on 2x2: %d -> %d strategies over decision nodes, %d -> %d ILP variables\n",
              full_request->strategies_before_pruning, pruned_request->strategies_after_pruning, full->num_variables,
              pruned->num_variables);
  EXPECT_NEAR(pruned->objective_seconds, full->objective_seconds, 1e-9 * full->objective_seconds);
  EXPECT_EQ(pruned->shardings.size(), full->shardings.size());
}

// A stage of four identical GPT blocks (of ten) cut into about one chunk per block: with a ChunkCache the
// chunk ILPs that repeat (same blocks, same fixed neighbours) are answered from it, and the
// stage's solution is exactly the uncached one. Another stage over blocks of the same graph
// reuses chunks too, and the same stage again solves no ILP.
TEST(StageSolver, ChunkCacheReusesIdenticalBlocks) {
  models::ModelSpec spec = testing::load_spec("gpt-tiny.yaml");
  spec.layers = 10;
  const ir::Graph graph = testing::training_graph(spec, 4);
  Fixture setup;
  StageProblem problem = setup.problem(graph, {1, 2});
  problem.ops = ops_owned_by_prefix(graph, "layer1.");
  auto block = build_stage_request(problem);
  ASSERT_TRUE(block.is_ok());
  int per_block = 0;
  for (const SolverNode& node : block->request.nodes) per_block += node.follow < 0 ? 1 : 0;
  ASSERT_GT(per_block, 1);
  auto blocks = [&](int first) {
    std::vector<ir::OpId> ops;
    for (int l = first; l < first + 4; ++l) {
      for (ir::OpId id : ops_owned_by_prefix(graph, "layer" + std::to_string(l) + ".")) ops.push_back(id);
    }
    return ops;
  };
  problem.ops = blocks(1);
  problem.max_ilp_decision_nodes = per_block;
  auto uncached = solve_stage(problem, setup.solver);
  ASSERT_TRUE(uncached.is_ok() && uncached->feasible);
  EXPECT_EQ(uncached->num_ilps, 4);
  EXPECT_EQ(uncached->ilps_solved, 8);  // two passes over four chunks
  EXPECT_EQ(uncached->chunk_cache_hits, 0);
  ChunkCache cache;
  problem.chunk_cache = &cache;
  auto cached = solve_stage(problem, setup.solver);
  ASSERT_TRUE(cached.is_ok() && cached->feasible);
  EXPECT_EQ(cached->num_ilps, 4);
  EXPECT_GE(cached->chunk_cache_hits, 2);
  EXPECT_EQ(cached->ilps_solved + cached->chunk_cache_hits, 8);
  EXPECT_EQ(cache.misses(), cached->ilps_solved);
  EXPECT_NEAR(cached->objective_seconds, uncached->objective_seconds, 1e-12 * uncached->objective_seconds);
  EXPECT_EQ(cached->shardings.size(), uncached->shardings.size());
  for (const auto& [name, sharding] : uncached->shardings) EXPECT_EQ(cached->shardings.at(name), sharding) << name;
  // Blocks 2..5: most chunk requests were seen in blocks 1..4.
  problem.ops = blocks(2);
  auto shifted = solve_stage(problem, setup.solver);
  ASSERT_TRUE(shifted.is_ok() && shifted->feasible);
  EXPECT_GE(shifted->chunk_cache_hits, 4);
  EXPECT_EQ(shifted->ilps_solved + shifted->chunk_cache_hits, 8);
  // Blocks 1..4 again: nothing to solve, the same answer.
  problem.ops = blocks(1);
  auto again = solve_stage(problem, setup.solver);
  ASSERT_TRUE(again.is_ok() && again->feasible);
  EXPECT_EQ(again->ilps_solved, 0);
  EXPECT_EQ(again->chunk_cache_hits, 8);
  EXPECT_EQ(again->objective_seconds, cached->objective_seconds);

  // Under a memory budget that binds (a quarter of the weights short of the fastest sharding), the
  // cached solve (whose chunk budgets are what the other chunks leave, so they differ by position)
  // gives the uncached answer, and the budget holds.
  const int64_t used = again->weights_bytes + again->optimizer_state_bytes + again->activation_bytes;
  problem.memory_budget_bytes = used - again->weights_bytes / 4;
  problem.chunk_cache = nullptr;
  problem.budget_search_solves = 0;  // the chunk ILPs alone: two passes, 8 of them (the search adds its own)
  auto budget_uncached = solve_stage(problem, setup.solver);
  ChunkCache budget_cache;
  problem.chunk_cache = &budget_cache;
  auto budget_cached = solve_stage(problem, setup.solver);
  ASSERT_TRUE(budget_uncached.is_ok() && budget_cached.is_ok());
  ASSERT_TRUE(budget_uncached->feasible && budget_cached->feasible) << budget_cached->reason;
  const int64_t budget_used =
      budget_cached->weights_bytes + budget_cached->optimizer_state_bytes + budget_cached->activation_bytes;
  EXPECT_LE(budget_used, problem.memory_budget_bytes);
  EXPECT_LT(budget_cached->weights_bytes, again->weights_bytes);
  std::printf("4 blocks under a budget: %d chunk ILPs solved, %d from the cache\n", budget_cached->ilps_solved,
              budget_cached->chunk_cache_hits);
  EXPECT_EQ(budget_cached->ilps_solved + budget_cached->chunk_cache_hits, 8);
  EXPECT_NEAR(budget_cached->objective_seconds, budget_uncached->objective_seconds,
              1e-12 * budget_uncached->objective_seconds);

  // All ten blocks under a binding budget: the first pass gives each chunk its least memory plus a
  // share of the slack, equal for identical blocks, so once the fixed neighbours repeat the middle
  // chunks come from the cache. Here: 13 chunk ILPs solved and 7 from the cache; with first-pass
  // budgets "what the others leave", which differ by position, it was 14 and 6.
  std::vector<ir::OpId> all;
  for (int l = 0; l < 10; ++l) {
    for (ir::OpId id : ops_owned_by_prefix(graph, "layer" + std::to_string(l) + ".")) all.push_back(id);
  }
  problem.ops = all;
  problem.memory_budget_bytes = 0;
  problem.chunk_cache = nullptr;
  auto free_all = solve_stage(problem, setup.solver);
  ASSERT_TRUE(free_all.is_ok() && free_all->feasible);
  problem.memory_budget_bytes = free_all->weights_bytes + free_all->optimizer_state_bytes +
                                free_all->activation_bytes - free_all->weights_bytes / 4;
  ChunkCache all_cache;
  problem.chunk_cache = &all_cache;
  problem.budget_search_solves = 12;
  auto budget_all = solve_stage(problem, setup.solver);
  ASSERT_TRUE(budget_all.is_ok() && budget_all->feasible) << budget_all->reason;
  EXPECT_LE(budget_all->weights_bytes + budget_all->optimizer_state_bytes + budget_all->activation_bytes,
            problem.memory_budget_bytes);
  EXPECT_GE(budget_all->objective_seconds, free_all->objective_seconds);
  std::printf("10 blocks under a budget: %d chunk ILPs solved, %d from the cache, step %.6g s (free %.6g s)\n",
              budget_all->ilps_solved, budget_all->chunk_cache_hits, budget_all->objective_seconds,
              free_all->objective_seconds);
  EXPECT_GE(budget_all->chunk_cache_hits, 7);
  // The budget search beside the chunk ILPs is never worse than the chunk ILPs alone.
  problem.budget_search_solves = 0;
  auto chunks_alone = solve_stage(problem, setup.solver);
  ASSERT_TRUE(chunks_alone.is_ok() && chunks_alone->feasible);
  std::printf("10 blocks under a budget, chunk ILPs alone: step %.6g s\n", chunks_alone->objective_seconds);
  EXPECT_LE(budget_all->objective_seconds, chunks_alone->objective_seconds);
}

}  // namespace
}  // namespace strata::intra
