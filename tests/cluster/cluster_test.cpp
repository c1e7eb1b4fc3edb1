// Cluster YAML parsing and its errors, mesh enumeration counts, and alpha-beta values computed by hand.
#include <gtest/gtest.h>

#include <string>

#include "strata/cluster/alpha_beta.h"
#include "strata/cluster/cluster.h"

namespace strata::cluster {
namespace {

const std::string kSource = STRATA_SOURCE_DIR;

const char* kTiny = R"(name: tiny
gpu_model: cpu
num_nodes: 2
gpus_per_node: 4
gpu_memory_gbytes: 1
peak_tflops_f32: 2
memory_bandwidth_gbytes_per_s: 10
intra_node_bandwidth_gbytes_per_s_per_gpu: 10
intra_node_latency_us: 2
inter_node_bandwidth_gbits_per_s_per_node: 32
inter_node_latency_us: 10
)";

std::string replace_line(const std::string& text, const std::string& key, const std::string& line) {
  const size_t at = text.find(key + ":");
  EXPECT_NE(at, std::string::npos);
  const size_t end = text.find('\n', at);
  return text.substr(0, at) + line + text.substr(end);
}

TEST(Cluster, ParsesAndConvertsUnits) {
  auto spec = parse_cluster(kTiny, "tiny.yaml");
  ASSERT_TRUE(spec.is_ok()) << spec.error().message();
  EXPECT_EQ(spec->name, "tiny");
  EXPECT_EQ(spec->num_devices(), 8);
  EXPECT_EQ(spec->gpu_memory_bytes, 1000000000);
  EXPECT_DOUBLE_EQ(spec->intra_node.bandwidth_bytes_per_second, 10e9);
  EXPECT_DOUBLE_EQ(spec->intra_node.latency_seconds, 2e-6);
  // 32 Gbit/s per node = 4 GB/s, shared by 4 GPUs.
  EXPECT_DOUBLE_EQ(spec->inter_node.bandwidth_bytes_per_second, 1e9);
  EXPECT_DOUBLE_EQ(spec->inter_node.latency_seconds, 10e-6);
  EXPECT_DOUBLE_EQ(spec->peak_flops(DType::f32), 2e12);
  EXPECT_DOUBLE_EQ(spec->peak_flops(DType::f64), 1e12);
  EXPECT_DOUBLE_EQ(spec->peak_flops(DType::bf16), 2e12);  // no bf16 rate: the f32 one
}

TEST(Cluster, LoadsEveryShippedConfig) {
  const char* names[] = {"aws-p3-1node", "aws-p3-2node", "aws-p3-4node", "aws-p3-8node", "h200-1node",
                         "dgx-h100-4node", "cpu-8", "cpu-4"};
  for (const char* name : names) {
    auto spec = load_cluster(kSource + "/configs/clusters/" + name + ".yaml");
    ASSERT_TRUE(spec.is_ok()) << spec.error().message();
    EXPECT_EQ(spec->name, name);
  }
  auto p3 = load_cluster(kSource + "/configs/clusters/aws-p3-4node.yaml");
  EXPECT_EQ(p3->num_devices(), 32);
  EXPECT_DOUBLE_EQ(p3->peak_flops(DType::f16), 125e12);
  EXPECT_DOUBLE_EQ(p3->inter_node.bandwidth_bytes_per_second, 25e9 / 8 / 8);
  auto h200 = load_cluster(kSource + "/configs/clusters/h200-1node.yaml");
  EXPECT_DOUBLE_EQ(h200->peak_flops(DType::bf16), 989e12);
  EXPECT_EQ(h200->gpu_memory_bytes, 141000000000);
  auto dgx = load_cluster(kSource + "/configs/clusters/dgx-h100-4node.yaml");
  EXPECT_DOUBLE_EQ(dgx->inter_node.bandwidth_bytes_per_second, 50e9);
}

TEST(Cluster, MissingFieldNamesFileAndField) {
  std::string text = kTiny;
  text = replace_line(text, "gpus_per_node", "");
  auto spec = parse_cluster(text, "c.yaml");
  ASSERT_FALSE(spec.is_ok());
  EXPECT_EQ(spec.error().message(), "c.yaml: gpus_per_node: missing field");
}

TEST(Cluster, WrongTypeIsAnError) {
  auto spec = parse_cluster(replace_line(kTiny, "peak_tflops_f32", "peak_tflops_f32: fast"), "c.yaml");
  ASSERT_FALSE(spec.is_ok());
  EXPECT_EQ(spec.error().field, "peak_tflops_f32");
  EXPECT_EQ(spec.error().reason, "must be a number");
  auto nodes = parse_cluster(replace_line(kTiny, "num_nodes", "num_nodes: 1.5"), "c.yaml");
  ASSERT_FALSE(nodes.is_ok());
  EXPECT_EQ(nodes.error().message(), "c.yaml: num_nodes: must be an integer");
  auto name = parse_cluster(replace_line(kTiny, "name", "name: [a, b]"), "c.yaml");
  ASSERT_FALSE(name.is_ok());
  EXPECT_EQ(name.error().message(), "c.yaml: name: must be a string");
}

TEST(Cluster, NonPositiveIsAnError) {
  auto spec = parse_cluster(replace_line(kTiny, "intra_node_latency_us", "intra_node_latency_us: 0"), "c.yaml");
  ASSERT_FALSE(spec.is_ok());
  EXPECT_EQ(spec.error().message(), "c.yaml: intra_node_latency_us: must be positive, got 0");
  auto nodes = parse_cluster(replace_line(kTiny, "num_nodes", "num_nodes: -2"), "c.yaml");
  ASSERT_FALSE(nodes.is_ok());
  EXPECT_EQ(nodes.error().field, "num_nodes");
}

TEST(Cluster, UnknownFieldAndBadYamlAreErrors) {
  auto typo = parse_cluster(std::string(kTiny) + "gpus_per_nod: 3\n", "c.yaml");
  ASSERT_FALSE(typo.is_ok());
  EXPECT_EQ(typo.error().message(), "c.yaml: gpus_per_nod: unknown field");
  auto bad = parse_cluster("name: [unclosed", "c.yaml");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.error().file, "c.yaml");
  auto missing = load_cluster("/nonexistent/cluster.yaml");
  EXPECT_FALSE(missing.is_ok());
}

TEST(Cluster, InterNodeFieldsOptionalOnOneNode) {
  std::string text = replace_line(kTiny, "num_nodes", "num_nodes: 1");
  text = replace_line(text, "inter_node_bandwidth_gbits_per_s_per_node", "");
  text = replace_line(text, "inter_node_latency_us", "");
  auto spec = parse_cluster(text, "c.yaml");
  ASSERT_TRUE(spec.is_ok()) << spec.error().message();
  EXPECT_DOUBLE_EQ(spec->inter_node.bandwidth_bytes_per_second, 10e9);
  auto two = parse_cluster(replace_line(kTiny, "inter_node_latency_us", ""), "c.yaml");
  ASSERT_FALSE(two.is_ok());
  EXPECT_EQ(two.error().field, "inter_node_latency_us");
}

TEST(Cluster, SubmeshShapes) {
  ClusterSpec spec;
  spec.num_nodes = 4;
  spec.gpus_per_node = 8;
  auto shapes = submesh_shapes(spec);
  std::vector<Submesh> expected = {{1, 1}, {1, 2}, {1, 4}, {1, 8}, {2, 8}, {3, 8}, {4, 8}};
  EXPECT_EQ(shapes, expected);
  spec.num_nodes = 1;
  spec.gpus_per_node = 1;
  EXPECT_EQ(submesh_shapes(spec), (std::vector<Submesh>{{1, 1}}));
}

TEST(Cluster, LogicalMeshes) {
  EXPECT_EQ(logical_meshes(Submesh{2, 8}).size(), 5u);  // 1x16 2x8 4x4 8x2 16x1
  EXPECT_EQ(logical_meshes(Submesh{3, 8}).size(), 8u);  // divisors of 24
  EXPECT_EQ(logical_meshes(Submesh{1, 1}), (std::vector<LogicalMesh>{{1, 1}}));
  auto meshes = logical_meshes(Submesh{1, 4});
  EXPECT_EQ(meshes, (std::vector<LogicalMesh>{{1, 4}, {2, 2}, {4, 1}}));
}

TEST(Cluster, CollectiveNames) {
  EXPECT_STREQ(collective_name(Collective::all_reduce), "all_reduce");
  EXPECT_STREQ(collective_name(Collective::reduce_scatter), "reduce_scatter");
  EXPECT_STREQ(collective_name(Collective::send_recv), "send_recv");
}

TEST(AlphaBeta, GroupsSpanningNodes) {
  // (2, 4) submesh: devices 0-3 on node 0, 4-7 on node 1.
  EXPECT_FALSE(group_spans_nodes({2, 4}, {2, 4}, 1));
  EXPECT_TRUE(group_spans_nodes({2, 4}, {2, 4}, 0));
  EXPECT_FALSE(group_spans_nodes({2, 4}, {4, 2}, 1));
  EXPECT_TRUE(group_spans_nodes({2, 4}, {4, 2}, 0));
  EXPECT_TRUE(group_spans_nodes({2, 4}, {1, 8}, 1));
  EXPECT_TRUE(group_spans_nodes({2, 4}, {2, 4}, -1));
  EXPECT_FALSE(group_spans_nodes({1, 4}, {2, 2}, 0));
}

TEST(AlphaBeta, HandComputedValues) {
  auto spec = parse_cluster(kTiny, "tiny.yaml");
  ASSERT_TRUE(spec.is_ok());
  AlphaBetaModel model(*spec);
  const int64_t bytes = 8'000'000;
  // Axis 1 of (2,4) over (2,4): 4 GPUs in one node, 10 GB/s, 2 us.
  CommGroup intra{{2, 4}, {2, 4}, 1, false};
  EXPECT_NEAR(model.seconds(Collective::all_reduce, intra, bytes, DType::f32),
              2.0 * 3 / 4 * 8e6 / 10e9 + 2 * 3 * 2e-6, 1e-12);  // 1.212 ms
  EXPECT_NEAR(model.seconds(Collective::all_gather, intra, bytes, DType::f32), 0.75 * 8e-4 + 3 * 2e-6, 1e-12);
  EXPECT_NEAR(model.seconds(Collective::reduce_scatter, intra, bytes, DType::f32), 0.000606, 1e-12);
  // Axis 0: 2 GPUs on two nodes, 1 GB/s per GPU, 10 us.
  CommGroup inter{{2, 4}, {2, 4}, 0, false};
  EXPECT_NEAR(model.seconds(Collective::all_reduce, inter, bytes, DType::f32), 2 * 0.5 * 8e-3 + 2 * 10e-6, 1e-12);
  EXPECT_NEAR(model.seconds(Collective::all_to_all, inter, bytes, DType::f32), 0.5 * 8e-3 + 10e-6, 1e-12);
  CommGroup p2p_inter{{}, {}, -1, true};
  EXPECT_NEAR(model.seconds(Collective::send_recv, p2p_inter, bytes, DType::f32), 8e-3 + 10e-6, 1e-12);
  CommGroup p2p_intra{{}, {}, -1, false};
  EXPECT_NEAR(model.seconds(Collective::send_recv, p2p_intra, bytes, DType::f32), 8e-4 + 2e-6, 1e-12);
  CommGroup single{{1, 1}, {1, 1}, 0, false};
  EXPECT_EQ(model.seconds(Collective::all_reduce, single, bytes, DType::f32), 0);
  EXPECT_NE(model.describe().find("tiny"), std::string::npos);
}

}  // namespace
}  // namespace strata::cluster
