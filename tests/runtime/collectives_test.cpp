// The choice of the cuda backend's collectives (`--collectives`): parsing and the one-line error for
// ranks that share a GPU under NCCL (the device run is bench/gpu_multirank_check.sh).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "strata/runtime/cuda_backend.h"

namespace strata::runtime {
namespace {

TEST(Collectives, ParsesBothNamesAndRoundTrips) {
  for (const Collectives c : {Collectives::nccl, Collectives::mpi}) {
    auto parsed = parse_collectives(collectives_name(c));
    ASSERT_TRUE(parsed) << parsed.error().message();
    EXPECT_EQ(*parsed, c);
  }
  EXPECT_STREQ(collectives_name(Collectives::mpi), "mpi");
  EXPECT_STREQ(collectives_name(Collectives::nccl), "nccl");
  EXPECT_EQ(CudaOptions{}.collectives, Collectives::nccl);  // NCCL unless asked
}

TEST(Collectives, UnknownNameIsAnErrorNamingTheField) {
  auto parsed = parse_collectives("gloo");
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().message(), "--collectives: must be nccl or mpi, got 'gloo'");
  auto env = parse_collectives("MPI", "STRATA_CUDA_COLLECTIVES");  // names are lower case
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().message(), "STRATA_CUDA_COLLECTIVES: must be nccl or mpi, got 'MPI'");
}

TEST(Collectives, DistinctDevicesPass) {
  EXPECT_TRUE(check_distinct_devices({}).is_ok());
  EXPECT_TRUE(check_distinct_devices({"gpu-a"}).is_ok());
  EXPECT_TRUE(check_distinct_devices({"gpu-a", "gpu-b", "gpu-c", "gpu-d"}).is_ok());
}

TEST(Collectives, SharedDeviceNamesTheFirstPairAndTheWayOut) {
  // Ranks 1 and 3 share a GPU, and so do 2 and 4: the first pair closed in rank order is reported.
  const Status s = check_distinct_devices({"gpu-a", "gpu-b", "gpu-c", "gpu-b", "gpu-c"});
  ASSERT_FALSE(s.is_ok());
  const std::string message = s.message();
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_EQ(message.rfind("--collectives: ranks 1 and 3 share one GPU", 0), 0u) << message;
  EXPECT_NE(message.find("Duplicate GPU detected"), std::string::npos) << message;
  EXPECT_NE(message.find("pass --collectives mpi"), std::string::npos) << message;
  // Every rank on one GPU (the one-GPU machine): ranks 0 and 1.
  const Status all = check_distinct_devices(std::vector<std::string>(8, "gpu-a"));
  ASSERT_FALSE(all.is_ok());
  EXPECT_EQ(all.message().rfind("--collectives: ranks 0 and 1 share", 0), 0u) << all.message();
}

}  // namespace
}  // namespace strata::runtime
