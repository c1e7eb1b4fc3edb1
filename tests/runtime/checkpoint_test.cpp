// Checkpoints: exact round trips, atomic replacement under a crash between write and rename,
// truncated and foreign files refused, multi-rank completeness, pruning and discarding.
#include "strata/runtime/checkpoint.h"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace strata::runtime {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = (fs::temp_directory_path() /
            ("strata_ckpt_" + std::string(info->name()) + "_" + std::to_string(::getpid())))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A state whose values differ per rank and step, so that mixing them up fails the comparisons.
  static TrainingState make_state(int64_t step, int rank, int world_size, const std::string& hash = "fnv1a64:abc") {
    TrainingState state;
    state.plan_hash = hash;
    state.step = step;
    state.data_position = step * 3 + 1;
    state.rank = rank;
    state.world_size = world_size;
    CheckpointTensor weight;
    weight.name = "param/blocks.0/attn.qkv";  // '/' and '.' in names are fine
    weight.sharding = "S0R";
    weight.global_shape = {4, 3};
    weight.dtype = DType::f32;
    weight.value = interp::Tensor({2, 3}, {0.5, -1.25, 3.0, 1024.0, -0.0078125, static_cast<double>(step + rank)});
    CheckpointTensor moment;
    moment.name = "adam_v/blocks.0/attn.qkv";
    moment.sharding = "S0R";
    moment.global_shape = {4, 3};
    moment.dtype = DType::f64;
    moment.value = interp::Tensor({2, 3}, {0.1, 0.2, 0.3, 1e-300, 2.5e-7, 100.0 * step + rank});
    CheckpointTensor count;
    count.name = "adam/count";
    count.dtype = DType::i32;
    count.value = interp::Tensor({}, std::vector<double>{static_cast<double>(step)});
    CheckpointTensor empty;
    empty.name = "param/empty";
    empty.sharding = "R";
    empty.global_shape = {0};
    empty.value = interp::Tensor({0}, std::vector<double>{});
    state.tensors = {weight, moment, count, empty};
    return state;
  }

  static CheckpointExpectation expect(int rank, int world_size, const std::string& hash = "fnv1a64:abc") {
    return {hash, rank, world_size};
  }

  std::string dir_;
};

TEST_F(CheckpointTest, RoundTripIsExact) {
  const TrainingState saved = make_state(120, 1, 2);
  ASSERT_TRUE(save_checkpoint(dir_, saved).is_ok());
  EXPECT_TRUE(fs::exists(dir_ + "/step-000000120/rank-00001.h5"));
  auto loaded = load_checkpoint(dir_, 120, expect(1, 2));
  ASSERT_TRUE(loaded.is_ok()) << loaded.error().message();
  EXPECT_EQ(loaded->plan_hash, "fnv1a64:abc");
  EXPECT_EQ(loaded->step, 120);
  EXPECT_EQ(loaded->data_position, 361);
  EXPECT_EQ(loaded->rank, 1);
  EXPECT_EQ(loaded->world_size, 2);
  ASSERT_EQ(loaded->tensors.size(), 4u);
  for (size_t i = 0; i < saved.tensors.size(); ++i) {
    const CheckpointTensor& a = saved.tensors[i];
    const CheckpointTensor& b = loaded->tensors[i];
    EXPECT_EQ(b.name, a.name);
    EXPECT_EQ(b.sharding, a.sharding);
    EXPECT_EQ(b.global_shape, a.global_shape);
    EXPECT_EQ(b.dtype, a.dtype);
    EXPECT_EQ(b.value.shape, a.value.shape);
    EXPECT_EQ(b.value.data, a.value.data) << a.name;  // all chosen exactly representable in their dtype
  }
  EXPECT_EQ(loaded->tensors[0].value.data[5], 121.0);
  EXPECT_EQ(loaded->tensors[1].value.data[3], 1e-300);  // f64 kept in full
}

TEST_F(CheckpointTest, Float32TensorsAreRoundedToFloat) {
  TrainingState state = make_state(1, 0, 1);
  state.tensors[0].value.data[0] = 0.1;
  ASSERT_TRUE(save_checkpoint(dir_, state).is_ok());
  auto loaded = load_checkpoint(dir_, 1, expect(0, 1));
  ASSERT_TRUE(loaded.is_ok()) << loaded.error().message();
  EXPECT_EQ(loaded->tensors[0].value.data[0], static_cast<double>(0.1f));
  EXPECT_NE(loaded->tensors[0].value.data[0], 0.1);
}

TEST_F(CheckpointTest, ForeignPlanAndWorldSizeAreRefused) {
  ASSERT_TRUE(save_checkpoint(dir_, make_state(5, 0, 1)).is_ok());
  auto other_plan = load_checkpoint(dir_, 5, expect(0, 1, "fnv1a64:def"));
  ASSERT_FALSE(other_plan.is_ok());
  EXPECT_EQ(other_plan.error().field, "plan_hash");
  EXPECT_NE(other_plan.error().message().find("another plan"), std::string::npos);
  EXPECT_NE(other_plan.error().message().find("rank-00000.h5"), std::string::npos);
  auto other_world = load_checkpoint(dir_, 5, expect(0, 4));
  ASSERT_FALSE(other_world.is_ok());
  EXPECT_EQ(other_world.error().field, "world_size");
  auto missing_step = load_checkpoint(dir_, 6, expect(0, 1));
  ASSERT_FALSE(missing_step.is_ok());
  EXPECT_NE(missing_step.error().message().find("missing"), std::string::npos);
}

TEST_F(CheckpointTest, LatestIsTheNewestCompleteStep) {
  auto none = latest_checkpoint(dir_);
  ASSERT_TRUE(none.is_ok());
  EXPECT_FALSE(none->has_value());
  for (int rank = 0; rank < 3; ++rank) ASSERT_TRUE(save_checkpoint(dir_, make_state(10, rank, 3)).is_ok());
  for (int rank = 0; rank < 3; ++rank) ASSERT_TRUE(save_checkpoint(dir_, make_state(20, rank, 3)).is_ok());
  // Step 30: rank 1 never saved (killed); the step must not count.
  ASSERT_TRUE(save_checkpoint(dir_, make_state(30, 0, 3)).is_ok());
  ASSERT_TRUE(save_checkpoint(dir_, make_state(30, 2, 3)).is_ok());
  auto latest = latest_checkpoint(dir_);
  ASSERT_TRUE(latest.is_ok()) << latest.error().message();
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->step, 20);
  EXPECT_EQ((*latest)->world_size, 3);
  EXPECT_EQ((*latest)->plan_hash, "fnv1a64:abc");
  EXPECT_EQ((*latest)->step_dir, dir_ + "/step-000000020");
  ASSERT_EQ((*latest)->skipped.size(), 1u);
  EXPECT_NE((*latest)->skipped[0].find("step 30: rank 1"), std::string::npos) << (*latest)->skipped[0];
  // Rank 1 catches up: now step 30 is complete.
  ASSERT_TRUE(save_checkpoint(dir_, make_state(30, 1, 3)).is_ok());
  latest = latest_checkpoint(dir_);
  ASSERT_TRUE(latest.is_ok());
  EXPECT_EQ((*latest)->step, 30);
  EXPECT_TRUE((*latest)->skipped.empty());
}

TEST_F(CheckpointTest, RankFilesOfMixedWorldSizesDoNotMakeAStep) {
  ASSERT_TRUE(save_checkpoint(dir_, make_state(10, 0, 1)).is_ok());
  ASSERT_TRUE(save_checkpoint(dir_, make_state(20, 0, 2)).is_ok());
  ASSERT_TRUE(save_checkpoint(dir_, make_state(20, 1, 2, "fnv1a64:other")).is_ok());
  auto latest = latest_checkpoint(dir_);
  ASSERT_TRUE(latest.is_ok());
  EXPECT_EQ((*latest)->step, 10);
  ASSERT_EQ((*latest)->skipped.size(), 1u);
  EXPECT_NE((*latest)->skipped[0].find("disagrees"), std::string::npos);
}

TEST_F(CheckpointTest, CrashBetweenWriteAndRenameKeepsTheLastGoodCheckpoint) {
  ASSERT_TRUE(save_checkpoint(dir_, make_state(10, 0, 1)).is_ok());
  ASSERT_TRUE(save_checkpoint(dir_, make_state(20, 0, 1)).is_ok());
  // The process dies after the temp file of step 30 is written and fsync'ed, before the rename;
  // and another dies while re-saving step 20 with different contents.
  SaveHooks crash;
  crash.before_rename = [](const std::string&) { ::_exit(7); };
  EXPECT_EXIT((void)save_checkpoint(dir_, make_state(30, 0, 1), crash), ::testing::ExitedWithCode(7), "");
  TrainingState changed = make_state(20, 0, 1);
  changed.data_position = 999;
  EXPECT_EXIT((void)save_checkpoint(dir_, changed, crash), ::testing::ExitedWithCode(7), "");

  bool temp_left = false;
  for (const auto& entry : fs::directory_iterator(dir_ + "/step-000000030")) {
    temp_left = temp_left || entry.path().filename().string().rfind("rank-00000.h5.tmp.", 0) == 0;
  }
  EXPECT_TRUE(temp_left);
  EXPECT_FALSE(fs::exists(dir_ + "/step-000000030/rank-00000.h5"));
  auto latest = latest_checkpoint(dir_);
  ASSERT_TRUE(latest.is_ok());
  EXPECT_EQ((*latest)->step, 20);
  auto loaded = load_checkpoint(dir_, 20, expect(0, 1));
  ASSERT_TRUE(loaded.is_ok());
  EXPECT_EQ(loaded->data_position, 61);  // the old step-20 file, not the crashed re-save (999)

  // Pruning to one step drops the older step 10 and nothing newer than 20.
  ASSERT_TRUE(prune_checkpoints(dir_, 0, 1).is_ok());
  EXPECT_FALSE(fs::exists(dir_ + "/step-000000010"));
  EXPECT_TRUE(fs::exists(dir_ + "/step-000000020/rank-00000.h5"));
  EXPECT_TRUE(fs::exists(dir_ + "/step-000000030"));
  // Resuming at 20 discards the crashed step 30 with its temp file; a new save of 30 works.
  ASSERT_TRUE(discard_checkpoints_after(dir_, 20, 0).is_ok());
  EXPECT_FALSE(fs::exists(dir_ + "/step-000000030"));
  ASSERT_TRUE(save_checkpoint(dir_, make_state(30, 0, 1)).is_ok());
  latest = latest_checkpoint(dir_);
  ASSERT_TRUE(latest.is_ok());
  EXPECT_EQ((*latest)->step, 30);
}

TEST_F(CheckpointTest, TruncatedFileIsRefusedAndResumePicksThePreviousStep) {
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(save_checkpoint(dir_, make_state(10, rank, 2)).is_ok());
    ASSERT_TRUE(save_checkpoint(dir_, make_state(20, rank, 2)).is_ok());
  }
  const std::string victim = checkpoint_rank_file(dir_, 20, 1);
  const auto size = fs::file_size(victim);
  for (auto keep : {size / 2, size - 1, uintmax_t{100}, uintmax_t{0}}) {
    SCOPED_TRACE("truncated to " + std::to_string(keep) + " of " + std::to_string(size) + " bytes");
    fs::resize_file(victim, keep);
    auto loaded = load_checkpoint(dir_, 20, expect(1, 2));
    ASSERT_FALSE(loaded.is_ok());
    EXPECT_EQ(loaded.error().file, victim);
    auto latest = latest_checkpoint(dir_);
    ASSERT_TRUE(latest.is_ok());
    ASSERT_TRUE(latest->has_value());
    EXPECT_EQ((*latest)->step, 10);
    ASSERT_EQ((*latest)->skipped.size(), 1u);
    EXPECT_NE((*latest)->skipped[0].find("step 20: rank 1"), std::string::npos) << (*latest)->skipped[0];
  }
  auto loaded = load_checkpoint(dir_, 10, expect(1, 2));
  ASSERT_TRUE(loaded.is_ok()) << loaded.error().message();
  EXPECT_EQ(loaded->tensors[1].value.data[5], 1001.0);  // step 10, rank 1
}

TEST_F(CheckpointTest, ForeignAndGarbageFilesAreRefused) {
  fs::create_directories(checkpoint_step_dir(dir_, 7));
  const std::string path = checkpoint_rank_file(dir_, 7, 0);
  {
    std::ofstream out(path);
    out << "not hdf5 at all";
  }
  auto garbage = load_checkpoint(dir_, 7, expect(0, 1));
  ASSERT_FALSE(garbage.is_ok());
  EXPECT_NE(garbage.error().reason.find("not a readable HDF5 file"), std::string::npos);
  // A valid HDF5 file that is not a checkpoint (say, a profile copied to the wrong place).
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  H5Fclose(file);
  auto foreign = load_checkpoint(dir_, 7, expect(0, 1));
  ASSERT_FALSE(foreign.is_ok());
  EXPECT_EQ(foreign.error().field, "format");
  auto latest = latest_checkpoint(dir_);
  ASSERT_TRUE(latest.is_ok());
  EXPECT_FALSE(latest->has_value());
}

TEST_F(CheckpointTest, BadStatesAndPlacesAreErrors) {
  TrainingState duplicate = make_state(1, 0, 1);
  duplicate.tensors[1].name = duplicate.tensors[0].name;
  Status status = save_checkpoint(dir_, duplicate);
  ASSERT_FALSE(status.is_ok());
  EXPECT_EQ(status.error().field, "tensors[1].name");

  TrainingState ragged = make_state(1, 0, 1);
  ragged.tensors[0].value.data.pop_back();
  status = save_checkpoint(dir_, ragged);
  ASSERT_FALSE(status.is_ok());
  EXPECT_EQ(status.error().field, "tensors[0].value");

  TrainingState outside = make_state(1, 3, 2);
  status = save_checkpoint(dir_, outside);
  ASSERT_FALSE(status.is_ok());
  EXPECT_EQ(status.error().field, "rank");

  fs::create_directories(dir_);
  const std::string blocker = dir_ + "/a_file";
  std::ofstream(blocker) << "x";
  status = save_checkpoint(blocker, make_state(1, 0, 1));
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.error().message().find("step-000000001"), std::string::npos);
  auto latest = latest_checkpoint(blocker);
  ASSERT_FALSE(latest.is_ok());
  EXPECT_NE(latest.error().reason.find("not a directory"), std::string::npos);
  EXPECT_FALSE(prune_checkpoints(dir_, 0, 0).is_ok());
}

TEST_F(CheckpointTest, PruneKeepsTheNewestCompleteSteps) {
  for (int64_t step : {10, 20, 30}) {
    for (int rank = 0; rank < 2; ++rank) ASSERT_TRUE(save_checkpoint(dir_, make_state(step, rank, 2)).is_ok());
  }
  ASSERT_TRUE(save_checkpoint(dir_, make_state(40, 1, 2)).is_ok());  // incomplete, newest
  // Rank 0 prunes first: the step-10 directory still holds rank 1's file, so it stays.
  ASSERT_TRUE(prune_checkpoints(dir_, 0, 2).is_ok());
  EXPECT_FALSE(fs::exists(checkpoint_rank_file(dir_, 10, 0)));
  EXPECT_TRUE(fs::exists(checkpoint_rank_file(dir_, 10, 1)));
  ASSERT_TRUE(prune_checkpoints(dir_, 1, 2).is_ok());
  EXPECT_FALSE(fs::exists(checkpoint_rank_file(dir_, 10, 1)));
  ASSERT_TRUE(prune_checkpoints(dir_, 0, 2).is_ok());  // rank 0's next prune removes the empty dir
  EXPECT_FALSE(fs::exists(checkpoint_step_dir(dir_, 10)));
  for (int64_t step : {20, 30}) {
    for (int rank = 0; rank < 2; ++rank) EXPECT_TRUE(fs::exists(checkpoint_rank_file(dir_, step, rank)));
  }
  EXPECT_TRUE(fs::exists(checkpoint_rank_file(dir_, 40, 1)));
  auto latest = latest_checkpoint(dir_);
  ASSERT_TRUE(latest.is_ok());
  EXPECT_EQ((*latest)->step, 30);
}

TEST(PlanHash, IsFnv1aOfThePlanText) {
  EXPECT_EQ(text_hash(""), "fnv1a64:cbf29ce484222325");
  EXPECT_EQ(text_hash("a"), "fnv1a64:af63dc4c8601ec8c");
  plan::Plan one;
  one.model = "gpt-tiny";
  one.global_batch = 8;
  plan::Plan two = one;
  two.num_micro_batches = 2;
  EXPECT_EQ(plan_hash(one), text_hash(plan::plan_to_yaml(one)));
  EXPECT_EQ(plan_hash(one), plan_hash(one));
  EXPECT_NE(plan_hash(one), plan_hash(two));
}

}  // namespace
}  // namespace strata::runtime
