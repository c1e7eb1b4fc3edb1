// TokenSource: windows and labels cut from the right place, a seeded per-epoch permutation, the
// data-parallel split, exact resumption, the three file formats, and every bad input an error.
#include "strata/runtime/data.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>

namespace strata::runtime {
namespace {

namespace fs = std::filesystem;

class DataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("strata_data_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write_bytes(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  std::string write_tokens(const std::string& name, const std::vector<uint16_t>& tokens, bool llmc_header = false) {
    std::string bytes;
    auto put32 = [&](int32_t v) {
      for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((static_cast<uint32_t>(v) >> (8 * i)) & 0xff));
    };
    if (llmc_header) {
      put32(20240520);
      put32(1);
      put32(static_cast<int32_t>(tokens.size()));
      for (int i = 3; i < 256; ++i) put32(0);
    }
    for (uint16_t t : tokens) {
      bytes.push_back(static_cast<char>(t & 0xff));
      bytes.push_back(static_cast<char>(t >> 8));
    }
    return write_bytes(name, bytes);
  }

  // Text whose byte at index i is 32 + (i * 7) % 90: windows at different offsets differ.
  std::string text_corpus(int64_t size) {
    std::string text;
    for (int64_t i = 0; i < size; ++i) text.push_back(static_cast<char>(32 + (i * 7) % 90));
    return write_bytes("corpus.txt", text);
  }

  fs::path dir_;
};

DataOptions options(const std::string& path, int64_t global_batch, int64_t seq_len, uint64_t seed = 1) {
  DataOptions o;
  o.path = path;
  o.global_batch = global_batch;
  o.seq_len = seq_len;
  o.seed = seed;
  return o;
}

TEST_F(DataTest, WindowsAndLabelsComeFromTheFile) {
  const std::string path = text_corpus(81);  // (81 - 1) / 8 = 10 windows
  auto source = TokenSource::open(options(path, 2, 8));
  ASSERT_TRUE(source.is_ok()) << source.error().message();
  EXPECT_EQ(source->format(), TokenFormat::text_bytes);
  EXPECT_EQ(source->num_tokens(), 81);
  EXPECT_EQ(source->num_windows(), 10);
  for (int step = 0; step < 7; ++step) {
    TokenBatch batch = source->next();
    ASSERT_EQ(batch.batch, 2);
    ASSERT_EQ(batch.seq_len, 8);
    ASSERT_EQ(batch.input_ids.size(), 16u);
    ASSERT_EQ(batch.labels.size(), 16u);
    for (int64_t row = 0; row < 2; ++row) {
      const int64_t start = batch.windows[row] * 8;
      for (int64_t t = 0; t < 8; ++t) {
        EXPECT_EQ(batch.input_ids[row * 8 + t], 32 + ((start + t) * 7) % 90);
        EXPECT_EQ(batch.labels[row * 8 + t], 32 + ((start + t + 1) * 7) % 90);
      }
    }
  }
  EXPECT_EQ(source->position(), 7);
  // As whole windows: row r is the 9 tokens starting at its window's offset.
  TokenBatch batch = source->batch_at(2);
  std::vector<int64_t> windows = window_tokens(batch);
  ASSERT_EQ(windows.size(), 18u);
  for (int64_t row = 0; row < 2; ++row) {
    for (int64_t t = 0; t <= 8; ++t) {
      EXPECT_EQ(windows[row * 9 + t], source->token(batch.windows[row] * 8 + t));
    }
  }
}

TEST_F(DataTest, EachEpochIsASeededPermutation) {
  const std::string path = text_corpus(201);  // 20 windows of 10 + 1 tokens
  auto a = TokenSource::open(options(path, 4, 10, 42));
  auto b = TokenSource::open(options(path, 4, 10, 42));
  auto c = TokenSource::open(options(path, 4, 10, 43));
  ASSERT_TRUE(a.is_ok() && b.is_ok() && c.is_ok());
  std::vector<int64_t> order_a, order_b, order_c;
  for (int step = 0; step < 10; ++step) {  // two epochs of 5 batches
    for (int64_t w : a->next().windows) order_a.push_back(w);
    for (int64_t w : b->next().windows) order_b.push_back(w);
    for (int64_t w : c->next().windows) order_c.push_back(w);
  }
  EXPECT_EQ(order_a, order_b);
  EXPECT_NE(order_a, order_c);
  std::vector<int64_t> identity(20);
  std::iota(identity.begin(), identity.end(), 0);
  std::vector<int64_t> epoch0(order_a.begin(), order_a.begin() + 20), epoch1(order_a.begin() + 20, order_a.end());
  EXPECT_NE(epoch0, identity);
  EXPECT_NE(epoch0, epoch1);
  std::sort(epoch0.begin(), epoch0.end());
  std::sort(epoch1.begin(), epoch1.end());
  EXPECT_EQ(epoch0, identity);
  EXPECT_EQ(epoch1, identity);
}

TEST_F(DataTest, DataParallelRanksSplitTheGlobalBatch) {
  const std::string path = text_corpus(500);
  auto whole = TokenSource::open(options(path, 6, 7));
  ASSERT_TRUE(whole.is_ok());
  std::vector<TokenSource> ranks;
  for (int r = 0; r < 3; ++r) {
    DataOptions o = options(path, 6, 7);
    o.dp_rank = r;
    o.dp_size = 3;
    auto source = TokenSource::open(o);
    ASSERT_TRUE(source.is_ok()) << source.error().message();
    EXPECT_EQ(source->local_batch(), 2);
    ranks.push_back(std::move(*source));
  }
  for (int step = 0; step < 30; ++step) {  // several epochs (71 windows, 6 per batch)
    TokenBatch global = whole->next();
    std::vector<int32_t> joined_ids, joined_labels;
    for (auto& rank : ranks) {
      TokenBatch part = rank.next();
      EXPECT_EQ(part.batch, 2);
      joined_ids.insert(joined_ids.end(), part.input_ids.begin(), part.input_ids.end());
      joined_labels.insert(joined_labels.end(), part.labels.begin(), part.labels.end());
    }
    EXPECT_EQ(joined_ids, global.input_ids) << "step " << step;
    EXPECT_EQ(joined_labels, global.labels) << "step " << step;
  }
}

TEST_F(DataTest, ResumesExactlyFromAPosition) {
  const std::string path = text_corpus(300);
  auto run = TokenSource::open(options(path, 3, 5, 9));
  ASSERT_TRUE(run.is_ok());
  std::vector<TokenBatch> batches;
  for (int step = 0; step < 40; ++step) batches.push_back(run->next());  // crosses epochs (59 windows)
  auto resumed = TokenSource::open(options(path, 3, 5, 9));
  ASSERT_TRUE(resumed.is_ok());
  ASSERT_TRUE(resumed->seek(25).is_ok());
  for (int step = 25; step < 40; ++step) {
    TokenBatch batch = resumed->next();
    EXPECT_EQ(batch.position, step);
    EXPECT_EQ(batch.windows, batches[step].windows);
    EXPECT_EQ(batch.input_ids, batches[step].input_ids);
  }
  EXPECT_EQ(resumed->batch_at(3).input_ids, batches[3].input_ids);
  EXPECT_EQ(resumed->position(), 40);
  EXPECT_NE(batches[25].windows, batches[26].windows);
  EXPECT_FALSE(resumed->seek(-1).is_ok());
}

TEST_F(DataTest, Uint16TokenFiles) {
  std::vector<uint16_t> tokens(1000);
  std::iota(tokens.begin(), tokens.end(), uint16_t{0});
  tokens[999] = 65535;
  for (bool header : {false, true}) {
    SCOPED_TRACE(header ? "llm.c header" : "raw");
    const std::string path = write_tokens(header ? "llmc.bin" : "raw.bin", tokens, header);
    DataOptions o = options(path, 4, 9);
    o.vocab = 65536;
    auto source = TokenSource::open(o);
    ASSERT_TRUE(source.is_ok()) << source.error().message();
    EXPECT_EQ(source->format(), header ? TokenFormat::uint16_llmc : TokenFormat::uint16_raw);
    EXPECT_EQ(source->num_tokens(), 1000);
    EXPECT_EQ(source->token(0), 0);
    EXPECT_EQ(source->token(300), 300);
    EXPECT_EQ(source->token(999), 65535);
    TokenBatch batch = source->next();
    for (int64_t row = 0; row < 4; ++row) {
      EXPECT_EQ(batch.input_ids[row * 9], batch.windows[row] * 9);
      EXPECT_EQ(batch.labels[row * 9 + 8], batch.windows[row] * 9 + 9);
    }
    o.vocab = 500;
    auto too_small = TokenSource::open(o);
    ASSERT_FALSE(too_small.is_ok());
    EXPECT_EQ(too_small.error().file, path);
    EXPECT_EQ(too_small.error().field, "tokens");
    EXPECT_NE(too_small.error().reason.find("token 500 at index 500"), std::string::npos) << too_small.error().reason;
  }
}

TEST_F(DataTest, BadFilesAndOptionsAreErrorsNamingThem) {
  struct Case {
    std::string label;
    DataOptions options;
    std::string field;
    std::string reason_part;
  };
  const std::string good = text_corpus(100);
  const std::string empty = write_bytes("empty.txt", "");
  const std::string odd = write_bytes("odd.bin", std::string(7, 'x'));
  const std::string short_text = write_bytes("short.txt", "abcdefghij");
  const std::string missing = (dir_ / "missing.txt").string();
  DataOptions small_vocab = options(good, 2, 8);
  small_vocab.vocab = 64;
  DataOptions uneven = options(good, 5, 8);
  uneven.dp_size = 2;
  DataOptions bad_rank = options(good, 4, 8);
  bad_rank.dp_size = 2;
  bad_rank.dp_rank = 2;
  const std::vector<Case> cases = {
      {"missing", options(missing, 2, 8), "", "cannot open"},
      {"empty", options(empty, 2, 8), "", "empty"},
      {"directory", options(dir_.string(), 2, 8), "", "not a regular file"},
      {"odd .bin", options(odd, 1, 1), "", "odd"},
      {"too short", options(short_text, 2, 8), "", "too short"},
      {"byte tokens over vocab", small_vocab, "tokens", "at least 256"},
      {"seq_len 0", options(good, 2, 0), "seq_len", ">= 1"},
      {"global_batch 0", options(good, 0, 8), "global_batch", ">= 1"},
      {"uneven dp split", uneven, "global_batch", "do not split evenly"},
      {"dp rank outside", bad_rank, "dp_rank", "not in 0..1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    auto source = TokenSource::open(c.options);
    ASSERT_FALSE(source.is_ok());
    EXPECT_EQ(source.error().file, c.options.path);
    EXPECT_EQ(source.error().field, c.field);
    EXPECT_NE(source.error().reason.find(c.reason_part), std::string::npos) << source.error().message();
  }
  // Exactly one global batch of windows is enough: 2 * 8 + 1 tokens.
  EXPECT_TRUE(TokenSource::open(options(write_bytes("just.txt", std::string(17, 'a')), 2, 8)).is_ok());
  EXPECT_FALSE(TokenSource::open(options(write_bytes("less.txt", std::string(16, 'a')), 2, 8)).is_ok());
}

}  // namespace
}  // namespace strata::runtime
