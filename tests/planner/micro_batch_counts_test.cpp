// The micro-batch counts the planner searches by default: 1 (one stage runs fastest on a whole
// micro-batch that fits) and the 4 largest powers of two dividing the global batch (the fewest
// pipeline bubbles), at most 1024.
#include <gtest/gtest.h>

#include <vector>

#include "planner/context.h"

namespace strata::planner {
namespace {

TEST(MicroBatchCounts, OneAndTheFourLargest) {
  EXPECT_EQ(default_micro_batch_counts(16), (std::vector<int>{1, 2, 4, 8, 16}));
  EXPECT_EQ(default_micro_batch_counts(1024), (std::vector<int>{1, 128, 256, 512, 1024}));
  EXPECT_EQ(default_micro_batch_counts(4096), (std::vector<int>{1, 128, 256, 512, 1024}));
  EXPECT_EQ(default_micro_batch_counts(32), (std::vector<int>{1, 4, 8, 16, 32}));
  EXPECT_EQ(default_micro_batch_counts(8), (std::vector<int>{1, 2, 4, 8}));
  EXPECT_EQ(default_micro_batch_counts(12), (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(default_micro_batch_counts(1), (std::vector<int>{1}));
}

}  // namespace
}  // namespace strata::planner
