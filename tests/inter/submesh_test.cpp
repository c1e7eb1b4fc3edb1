// Submesh shapes, logical meshes, and placements that tile the cluster exactly.
#include <gtest/gtest.h>

#include <random>

#include "strata/inter/submesh.h"

namespace strata::inter {
namespace {

using cluster::LogicalMesh;
using cluster::Submesh;

TEST(Submesh, ShapesOfATwoByFourCluster) {
  EXPECT_EQ(stage_submesh_shapes(2, 4),
            (std::vector<Submesh>{{1, 1}, {1, 2}, {1, 4}, {2, 4}}));
  EXPECT_EQ(stage_submesh_shapes(3, 1), (std::vector<Submesh>{{1, 1}, {2, 1}, {3, 1}}));
  EXPECT_EQ(stage_logical_meshes({2, 4}),
            (std::vector<LogicalMesh>{{1, 8}, {2, 4}, {4, 2}, {8, 1}}));
}

// Every device covered exactly once, every submesh inside the cluster.
void expect_tiles(const std::vector<Submesh>& submeshes, const std::vector<SubmeshPlacement>& at,
                  int nodes, int gpus) {
  std::vector<int> owner(nodes * gpus, -1);
  ASSERT_EQ(at.size(), submeshes.size());
  for (size_t i = 0; i < submeshes.size(); ++i) {
    for (int r = 0; r < submeshes[i].rows; ++r) {
      for (int c = 0; c < submeshes[i].cols; ++c) {
        const int node = at[i].first_node + r, gpu = at[i].first_gpu + c;
        ASSERT_LT(node, nodes);
        ASSERT_LT(gpu, gpus);
        ASSERT_EQ(owner[node * gpus + gpu], -1) << "overlap at node " << node << " gpu " << gpu;
        owner[node * gpus + gpu] = static_cast<int>(i);
      }
    }
  }
  for (int d = 0; d < nodes * gpus; ++d) EXPECT_NE(owner[d], -1) << "device " << d << " unused";
}

TEST(Submesh, RandomMultisetsThatAddUpAlwaysTile) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    const int nodes = 1 + static_cast<int>(rng() % 4);
    const int gpus = 1 << (rng() % 4);
    const auto shapes = stage_submesh_shapes(nodes, gpus);
    std::vector<Submesh> picked;
    int left = nodes * gpus;
    while (left > 0) {
      const Submesh& s = shapes[rng() % shapes.size()];
      if (s.num_devices() <= left) {
        picked.push_back(s);
        left -= s.num_devices();
      }
    }
    auto placement = place_submeshes(picked, nodes, gpus);
    ASSERT_TRUE(placement.is_ok()) << placement.error().message();
    expect_tiles(picked, *placement, nodes, gpus);
  }
}

TEST(Submesh, WholeNodesFirstThenInNodePieces) {
  // 3 x 4: the (2, 4) takes nodes 0-1 although listed second; the two (1, 2) share node 2.
  auto placement = place_submeshes({{1, 2}, {2, 4}, {1, 2}}, 3, 4);
  ASSERT_TRUE(placement.is_ok());
  EXPECT_EQ((*placement)[1].first_node, 0);
  EXPECT_EQ((*placement)[0].first_node, 2);
  EXPECT_EQ((*placement)[0].first_gpu, 0);
  EXPECT_EQ((*placement)[2].first_node, 2);
  EXPECT_EQ((*placement)[2].first_gpu, 2);
}

TEST(Submesh, RejectsWrongInput) {
  EXPECT_EQ(place_submeshes({{1, 4}}, 2, 4).error().field, "submeshes");
  EXPECT_EQ(place_submeshes({{1, 3}, {1, 1}}, 1, 4).error().field, "submeshes[0]");
  EXPECT_EQ(place_submeshes({{1, 6}}, 1, 6).error().field, "cluster.gpus_per_node");
}

}  // namespace
}  // namespace strata::inter
