// Sharding specs: text round trips, validity, local shapes, and resharding plans checked against
// hand-computed collectives priced by a fake CommModel.
#include <gtest/gtest.h>

#include "strata/intra/sharding.h"

namespace strata::intra {
namespace {

using cluster::Collective;

// seconds = factor(kind) · bytes · group size · 1e-9: easy to compute by hand, different per kind,
// per axis size and per byte count, so a wrong collective, axis or size changes the total.
class FakeCommModel final : public cluster::CommModel {
 public:
  double seconds(Collective kind, const cluster::CommGroup& group, int64_t bytes, DType) const override {
    const double factor = kind == Collective::all_reduce ? 2.0 : kind == Collective::all_to_all ? 0.5 : 1.0;
    return factor * static_cast<double>(bytes) * group.group_size() * 1e-9;
  }
  std::string describe() const override { return "fake"; }
};

ShardingSpec spec(const std::string& text) {
  auto parsed = parse_sharding(text);
  STRATA_CHECK(parsed.is_ok(), "test spec " + text);
  return *parsed;
}

TEST(IntraSharding, TextRoundTrips) {
  for (const char* text : {"S0R", "RS1", "S01R", "RR", "RS01", "S1S0", "RRP0", "RP1", "S0RP1", "RRP01", "R", "", "P0"}) {
    auto parsed = parse_sharding(text);
    ASSERT_TRUE(parsed.is_ok()) << text << ": " << parsed.error().message();
    EXPECT_EQ(parsed->to_string(), text);
  }
  const ShardingSpec s = spec("S01RP1");
  ASSERT_EQ(s.dims.size(), 2u);
  EXPECT_EQ(s.dims[0], DimSharding::S01);
  EXPECT_EQ(s.dims[1], DimSharding::R);
  EXPECT_FALSE(s.partial[0]);
  EXPECT_TRUE(s.partial[1]);
}

TEST(IntraSharding, BadTextIsAnError) {
  for (const char* text : {"S", "S10", "RX", "P0R", "P", "s0r"}) {
    auto parsed = parse_sharding(text);
    ASSERT_FALSE(parsed.is_ok()) << text;
    EXPECT_EQ(parsed.error().field, "sharding");
    EXPECT_NE(parsed.error().reason.find(text), std::string::npos);
  }
}

TEST(IntraSharding, LocalShapesAndValidity) {
  const cluster::LogicalMesh mesh{2, 4};
  EXPECT_EQ(*local_shape(spec("S01R"), {16, 4}, mesh), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(*local_shape(spec("RS1"), {16, 4}, mesh), (std::vector<int64_t>{16, 1}));
  EXPECT_EQ(*local_shape(spec("S1S0"), {16, 4}, mesh), (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(*local_shape(spec("RRP01"), {16, 4}, mesh), (std::vector<int64_t>{16, 4}));
  EXPECT_FALSE(local_shape(spec("S0S0"), {16, 4}, mesh).is_ok());    // axis 0 twice
  EXPECT_FALSE(local_shape(spec("S0RP0"), {16, 4}, mesh).is_ok());   // split and summed on axis 0
  EXPECT_FALSE(local_shape(spec("S01R"), {12, 4}, mesh).is_ok());    // 12 rows into 8 parts
  EXPECT_FALSE(local_shape(spec("RS1"), {16, 6}, mesh).is_ok());     // 6 columns into 4 parts
  EXPECT_FALSE(local_shape(spec("S0"), {16, 4}, mesh).is_ok());      // rank 1 spec, rank 2 tensor
  auto error = validate_sharding(spec("S01R"), {12, 4}, mesh);
  EXPECT_NE(error.error().reason.find("12"), std::string::npos);
  EXPECT_TRUE(validate_sharding(spec("S01R"), {24, 4}, mesh).is_ok());
}

struct Expect {
  Collective kind;
  int axis;
  int64_t bytes;
  const char* after;
};

// Tensor f32 [8, 16] = 512 bytes on a 2 × 4 mesh.
void check_plan(const std::string& from, const std::string& to, const std::vector<Expect>& expected) {
  SCOPED_TRACE(from + " -> " + to);
  const cluster::LogicalMesh mesh{2, 4};
  FakeCommModel comm;
  auto plan = resharding_cost(spec(from), spec(to), {8, 16}, DType::f32, cluster::Submesh{1, 8}, mesh, comm);
  ASSERT_TRUE(plan.is_ok()) << plan.error().message();
  ASSERT_EQ(plan->steps.size(), expected.size()) << plan->describe();
  double total = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(plan->steps[i].kind, expected[i].kind) << plan->describe();
    EXPECT_EQ(plan->steps[i].axis, expected[i].axis) << plan->describe();
    EXPECT_EQ(plan->steps[i].bytes, expected[i].bytes) << plan->describe();
    EXPECT_EQ(plan->steps[i].after, expected[i].after) << plan->describe();
    const double factor = expected[i].kind == Collective::all_reduce ? 2.0 : expected[i].kind == Collective::all_to_all ? 0.5 : 1.0;
    total += factor * expected[i].bytes * (expected[i].axis == 0 ? 2 : 4) * 1e-9;
  }
  EXPECT_DOUBLE_EQ(plan->seconds, total);
}

TEST(IntraSharding, ReshardingCostsMatchHandComputedPlans) {
  check_plan("RR", "RR", {});
  check_plan("RR", "S01R", {});  // slicing is local
  check_plan("S0R", "S01R", {});  // block i split further over axis 1: still local
  check_plan("RRP0", "RRP0", {});  // stays pending
  check_plan("RR", "RRP1", {});   // complete -> pending: keep one copy, free
  check_plan("S0R", "RR", {{Collective::all_gather, 0, 512, "RR"}});
  check_plan("RS1", "RR", {{Collective::all_gather, 1, 512, "RR"}});
  check_plan("RRP0", "RR", {{Collective::all_reduce, 0, 512, "RR"}});
  check_plan("RRP1", "RS1", {{Collective::reduce_scatter, 1, 512, "RS1"}});
  check_plan("RRP01", "S01R", {{Collective::reduce_scatter, 0, 512, "S0RP1"}, {Collective::reduce_scatter, 1, 256, "S01R"}});
  check_plan("RRP01", "RS1", {{Collective::all_reduce, 0, 512, "RRP1"}, {Collective::reduce_scatter, 1, 512, "RS1"}});
  check_plan("S0R", "RS0", {{Collective::all_to_all, 0, 256, "RS0"}});
  check_plan("S01R", "S0S1", {{Collective::all_to_all, 1, 64, "S0S1"}});
  check_plan("S01R", "RR", {{Collective::all_gather, 1, 256, "S0R"}, {Collective::all_gather, 0, 512, "RR"}});
  check_plan("S1R", "S01R", {{Collective::all_gather, 1, 512, "RR"}});  // block j is not inside block i·4+j
  check_plan("S01R", "S1S0", {{Collective::all_gather, 1, 256, "S0R"}, {Collective::all_to_all, 0, 256, "RS0"}});
  check_plan("S0RP1", "RS1", {{Collective::reduce_scatter, 1, 256, "S0S1"}, {Collective::all_gather, 0, 128, "RS1"}});
}

TEST(IntraSharding, AxesOfSizeOneCostNothing) {
  FakeCommModel comm;
  for (const char* from : {"S0R", "RRP0", "S0RP1"}) {
    auto plan = resharding_cost(spec(from), spec("RS0"), {8, 16}, DType::f32, cluster::Submesh{1, 8},
                                cluster::LogicalMesh{1, 8}, comm);
    ASSERT_TRUE(plan.is_ok()) << from;
    // Only the pending sum over axis 1 (8 devices) costs: an all-reduce of the 512-byte tensor.
    const bool sums_over_axis_1 = std::string(from) == "S0RP1";
    EXPECT_EQ(plan->steps.size(), sums_over_axis_1 ? 1u : 0u) << from << ": " << plan->describe();
    EXPECT_DOUBLE_EQ(plan->seconds, sums_over_axis_1 ? 2.0 * 512 * 8 * 1e-9 : 0.0) << from;
  }
}

TEST(IntraSharding, InvalidSpecsAreRejectedByResharding) {
  FakeCommModel comm;
  auto plan = resharding_cost(spec("S0R"), spec("S0S0"), {8, 16}, DType::f32, cluster::Submesh{1, 8},
                              cluster::LogicalMesh{2, 4}, comm);
  ASSERT_FALSE(plan.is_ok());
  EXPECT_NE(plan.error().reason.find("S0S0"), std::string::npos);
}

}  // namespace
}  // namespace strata::intra
