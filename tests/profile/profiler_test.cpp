// The profiler's pure parts: the message sizes it sweeps and nccl-tests' bus-bandwidth factors.
#include <gtest/gtest.h>

#include "strata/profile/profiler.h"

namespace strata::profile {
namespace {

TEST(Profiler, SizesGrowByFourUpToMax) {
  EXPECT_EQ(profile_sizes(65536), (std::vector<int64_t>{1024, 4096, 16384, 65536}));
  EXPECT_EQ(profile_sizes(100000), (std::vector<int64_t>{1024, 4096, 16384, 65536}));
  EXPECT_EQ(profile_sizes(1024), (std::vector<int64_t>{1024}));
  EXPECT_EQ(profile_sizes(int64_t{1} << 30).size(), 11u);  // 1 KiB .. 1 GiB
}

TEST(Profiler, BusBandwidthFactors) {
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor(cluster::Collective::all_reduce, 8), 1.75);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor(cluster::Collective::all_gather, 4), 0.75);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor(cluster::Collective::reduce_scatter, 2), 0.5);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor(cluster::Collective::all_to_all, 8), 0.875);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor(cluster::Collective::send_recv, 2), 1.0);
}

}  // namespace
}  // namespace strata::profile
