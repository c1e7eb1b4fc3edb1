// Runs the tiny bundled models on the reference interpreter: the graphs execute, the loss at
// initialisation is near ln(classes), and GPT attention is causal through the fed mask.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "strata/interp/interp.h"
#include "strata/models/models.h"

namespace strata::models {
namespace {

ModelSpec load(const std::string& name) {
  const char* dir = std::getenv("STRATA_SOURCE_DIR");
  return load_model_config(std::string(dir ? dir : STRATA_SOURCE_DIR) + "/configs/models/" + name + ".yaml").value();
}

interp::Tensor random_ids(const ir::Shape& shape, int64_t limit, std::mt19937& rng) {
  interp::Tensor t(shape);
  std::uniform_int_distribution<int64_t> pick(0, limit - 1);
  for (auto& v : t.data) v = static_cast<double>(pick(rng));
  return t;
}

// 0 where key <= query, -1e9 above the diagonal (ModelSpec's contract for "causal_mask").
interp::Tensor causal_mask(int64_t S) {
  interp::Tensor mask({S, S});
  for (int64_t q = 0; q < S; ++q)
    for (int64_t k = q + 1; k < S; ++k) mask[q * S + k] = -1e9;
  return mask;
}

std::map<std::string, interp::Tensor> transformer_feeds(const ModelSpec& s, int64_t batch, std::mt19937& rng) {
  return {{"tokens", random_ids({batch, s.seq_len}, s.vocab, rng)},
          {"labels", random_ids({batch * s.seq_len}, s.vocab, rng)},
          {"causal_mask", causal_mask(s.seq_len)}};
}

TEST(RunModels, GptTinyLossAtInitIsNearLnVocab) {
  const ModelSpec s = load("gpt-tiny");
  const ir::Graph graph = build_forward_graph(s, 2).value();
  std::mt19937 rng(7);
  auto out = interp::run(graph, transformer_feeds(s, 2, rng), interp::Precision::f64, 1);
  ASSERT_TRUE(out.is_ok()) << out.error().message();
  EXPECT_NEAR(out->outputs[0][0], std::log(static_cast<double>(s.vocab)), 0.1);
}

TEST(RunModels, GptTinyAttentionIsCausal) {
  const ModelSpec s = load("gpt-tiny");
  const ir::Graph graph = build_forward_graph(s, 1).value();
  std::mt19937 rng(11);
  auto feeds = transformer_feeds(s, 1, rng);
  auto first = interp::run(graph, feeds, interp::Precision::f64, 1);
  ASSERT_TRUE(first.is_ok()) << first.error().message();
  // Change the token at position 10: positions 0..9 must not see it, position 10 must.
  feeds["tokens"][10] = std::fmod(feeds["tokens"][10] + 1, static_cast<double>(s.vocab));
  auto second = interp::run(graph, feeds, interp::Precision::f64, 1);
  ASSERT_TRUE(second.is_ok());
  const ir::Value hidden{graph.find("final.ln").value(), 0};
  const auto& a = first->value(hidden);
  const auto& b = second->value(hidden);
  ASSERT_EQ(a.shape, (ir::Shape{1, s.seq_len, s.hidden}));
  double before = 0, at = 0;
  for (int64_t pos = 0; pos < s.seq_len; ++pos)
    for (int64_t h = 0; h < s.hidden; ++h) {
      const double d = std::abs(a[pos * s.hidden + h] - b[pos * s.hidden + h]);
      if (pos < 10) before = std::max(before, d);
      if (pos == 10) at = std::max(at, d);
    }
  EXPECT_EQ(before, 0.0);
  EXPECT_GT(at, 1e-3);
}

TEST(RunModels, MoeTinyRunsWithFiniteLoss) {
  const ModelSpec s = load("moe-tiny");
  const ir::Graph graph = build_forward_graph(s, 0).value();
  std::mt19937 rng(3);
  auto out = interp::run(graph, transformer_feeds(s, s.global_batch, rng), interp::Precision::f64, 2);
  ASSERT_TRUE(out.is_ok()) << out.error().message();
  EXPECT_NEAR(out->outputs[0][0], std::log(static_cast<double>(s.vocab)), 0.1);
  // Top-2 gating: each token has at most 2 non-zero combine weights.
  const auto& combine = out->value({graph.find("layer1.moe.top2").value(), 0});
  int64_t nonzero = 0;
  for (double v : combine.data) nonzero += v != 0;
  EXPECT_GT(nonzero, 0);
  EXPECT_LE(nonzero, 2 * s.global_batch * s.seq_len);
}

TEST(RunModels, WresnetTinyLossAtInitIsNearLnClasses) {
  const ModelSpec s = load("wresnet-tiny");
  const ir::Graph graph = build_forward_graph(s, 0).value();
  std::mt19937 rng(5);
  interp::Tensor images({s.global_batch, 3, s.image_size, s.image_size});
  std::normal_distribution<double> normal;
  for (auto& v : images.data) v = normal(rng);
  auto out = interp::run(graph, {{"images", images}, {"labels", random_ids({s.global_batch}, s.num_classes, rng)}},
                         interp::Precision::f64, 3);
  ASSERT_TRUE(out.is_ok()) << out.error().message();
  EXPECT_NEAR(out->outputs[0][0], std::log(static_cast<double>(s.num_classes)), 0.3);
}

}  // namespace
}  // namespace strata::models
