// Layer clustering against brute force on random inputs, and its input checks.
#include <gtest/gtest.h>

#include <random>

#include "strata/inter/layer_clustering.h"

namespace strata::inter {
namespace {

TEST(LayerClustering, BalancesAHandExample) {
  // Ops 1..6: best 3-way split of {1,2,3,4,5,6} by max is [1,2,3],[4,5],[6]: 6, 9, 6 -> 9.
  auto result = cluster_layers({1, 2, 3, 4, 5, 6}, {0, 0, 0, 0, 0}, 3, 0.0);
  ASSERT_TRUE(result.is_ok()) << result.error().message();
  EXPECT_DOUBLE_EQ(result->max_layer_cost, 9.0);
  EXPECT_EQ(result->boundaries.front(), 0);
  EXPECT_EQ(result->boundaries.back(), 6);
}

TEST(LayerClustering, CommWeightMovesACutToACheapBoundary) {
  // Equal ops; cutting after op 1 (the balanced cut) costs 100 bytes, after op 2 costs 0.
  std::vector<double> cost{1, 1, 1, 1};
  std::vector<double> bytes{50, 100, 0};
  auto balanced = cluster_layers(cost, bytes, 2, 0.0);
  ASSERT_TRUE(balanced.is_ok());
  EXPECT_EQ(balanced->boundaries, (std::vector<int>{0, 2, 4}));
  auto cheap = cluster_layers(cost, bytes, 2, 0.1);  // 1 extra cost < 0.1 × 100 bytes
  ASSERT_TRUE(cheap.is_ok());
  EXPECT_EQ(cheap->boundaries, (std::vector<int>{0, 3, 4}));
  EXPECT_DOUBLE_EQ(cheap->objective, 3.0);
  EXPECT_DOUBLE_EQ(cheap->cut_bytes_total, 0.0);
}

TEST(LayerClustering, MatchesBruteForceOnRandomInputs) {
  std::mt19937_64 rng(20261123);
  std::uniform_real_distribution<double> cost(0.0, 10.0), bytes(0.0, 100.0);
  std::uniform_int_distribution<int> size(1, 11);
  const double weights[] = {0.0, 0.01, 0.1, 1.0};
  for (int trial = 0; trial < 200; ++trial) {
    const int n = size(rng);
    std::vector<double> op_cost(n), cut(n - 1);
    for (auto& c : op_cost) c = (rng() % 5 == 0) ? 0.0 : cost(rng);
    for (auto& b : cut) b = bytes(rng);
    const int layers = 1 + static_cast<int>(rng() % n);
    const double w = weights[trial % 4];
    auto fast = cluster_layers(op_cost, cut, layers, w);
    auto slow = cluster_layers_brute_force(op_cost, cut, layers, w);
    ASSERT_TRUE(fast.is_ok()) << fast.error().message();
    ASSERT_TRUE(slow.is_ok());
    EXPECT_NEAR(fast->objective, slow->objective, 1e-9) << "trial " << trial;
    ASSERT_EQ(fast->boundaries.size(), static_cast<size_t>(layers + 1));
    for (int j = 0; j < layers; ++j) EXPECT_LT(fast->boundaries[j], fast->boundaries[j + 1]);
    // Deterministic: a second run gives the same cuts.
    EXPECT_EQ(cluster_layers(op_cost, cut, layers, w)->boundaries, fast->boundaries);
  }
}

TEST(LayerClustering, RejectsBadInput) {
  EXPECT_EQ(cluster_layers({1, 2}, {0}, 3, 0).error().field, "num_layers");
  EXPECT_EQ(cluster_layers({1, 2}, {0}, 0, 0).error().field, "num_layers");
  EXPECT_EQ(cluster_layers({1, 2, 3}, {0}, 2, 0).error().field, "cut_bytes");
  EXPECT_EQ(cluster_layers({1, -2}, {0}, 1, 0).error().field, "op_cost[1]");
  EXPECT_EQ(cluster_layers({1, 2}, {0}, 1, -1).error().field, "comm_weight");
  EXPECT_EQ(cluster_layers({}, {}, 1, 0).error().field, "op_cost");
  // cut_bytes with one entry per op is accepted; the last entry is ignored.
  auto ok = cluster_layers({1, 2}, {5, 1000}, 2, 1.0);
  ASSERT_TRUE(ok.is_ok());
  EXPECT_DOUBLE_EQ(ok->cut_bytes_total, 5.0);
}

}  // namespace
}  // namespace strata::inter
