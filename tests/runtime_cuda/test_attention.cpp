// The fused attention of the cuda backend: fuse_for_cuda's rewrite of GPT attention blocks (on the
// fp64 interpreter, no GPU needed) and the Attention/AttentionGrad kernels against the fp64
// interpreter in bf16 tolerance (tile edges, head dims 8 to 128, causal, random and broadcast
// biases, fully masked rows).
#include <limits>

#include "gpu_test_util.h"
#include "strata/autodiff/autodiff.h"
#include "strata/models/models.h"

namespace strata::runtime::cuda_test {
namespace {

using ir::OpKind;
using Ints = std::vector<int64_t>;

int count_kind(const ir::Graph& g, OpKind kind) { return static_cast<int>(g.ops_of_kind(kind).size()); }

// The Adam training graph of `spec` (micro-batch `batch`).
ir::Graph training_graph(const models::ModelSpec& spec, int64_t batch) {
  auto forward = models::build_forward_graph(spec, batch);
  STRATA_CHECK(forward.is_ok(), forward.error().message());
  autodiff::TrainingOptions options;
  options.optimizer = autodiff::Optimizer::adam;
  options.lr = 1e-2;
  options.eps = 1e-3;
  auto graph = autodiff::build_training_graph(*forward, options);
  STRATA_CHECK(graph.is_ok(), graph.error().message());
  return std::move(graph).value();
}

models::ModelSpec gpt_spec(const std::string& config) {
  auto spec = models::load_model_config(std::string(STRATA_SOURCE_DIR) + "/configs/models/" + config);
  STRATA_CHECK(spec.is_ok(), spec.error().message());
  return *spec;
}

std::map<std::string, interp::Tensor> gpt_feeds(const models::ModelSpec& spec, int64_t batch) {
  const int64_t S = spec.seq_len;
  std::mt19937 rng(11);
  std::map<std::string, interp::Tensor> feeds;
  feeds["tokens"] = random_ids({batch, S}, spec.vocab, rng);
  feeds["labels"] = random_ids({batch * S}, spec.vocab, rng);
  interp::Tensor mask({S, S});
  for (int64_t q = 0; q < S; ++q)
    for (int64_t k = 0; k < S; ++k) mask[q * S + k] = k <= q ? 0.0 : -1e9;
  feeds["causal_mask"] = mask;
  return feeds;
}

// The fused graph of `spec` computes the loss and every Adam update of the graph as built.
void expect_fused_values(const models::ModelSpec& spec, int64_t batch) {
  const ir::Graph graph = training_graph(spec, batch);
  FusionStats stats;
  auto fused = fuse_for_cuda(graph, &stats);
  ASSERT_TRUE(fused.is_ok()) << fused.error().message();
  EXPECT_EQ(stats.attentions, spec.layers);
  EXPECT_EQ(count_kind(*fused, OpKind::Attention), spec.layers);
  EXPECT_EQ(count_kind(*fused, OpKind::AttentionGrad), spec.layers);
  EXPECT_EQ(count_kind(*fused, OpKind::Softmax), 0);
  EXPECT_EQ(count_kind(*fused, OpKind::SoftmaxGrad), 0);
  EXPECT_EQ(stats.bias_adds_into_softmax, 0);
  EXPECT_EQ(stats.pad_sums_to_concat, spec.layers);  // the q/k/v gradient Pads still become Concats
  const auto feeds = gpt_feeds(spec, batch);
  auto want = interp::run(graph, feeds, interp::Precision::f64, 5);
  auto got = interp::run(*fused, feeds, interp::Precision::f64, 5);
  ASSERT_TRUE(want.is_ok()) << want.error().message();
  ASSERT_TRUE(got.is_ok()) << got.error().message();
  EXPECT_NEAR(got->outputs[0][0], want->outputs[0][0], 1e-12 * std::abs(want->outputs[0][0]));
  int compared = 0;
  for (ir::OpId id : fused->ops_of_kind(OpKind::AdamUpdate)) {
    auto ref_id = graph.find(fused->op(id).name);
    ASSERT_TRUE(ref_id.is_ok());
    for (int32_t k = 0; k < 3; ++k) {
      EXPECT_LE(relative_error(got->values[id][k], want->values[*ref_id][k]), 1e-12) << fused->op(id).name;
    }
    ++compared;
  }
  EXPECT_EQ(compared, count_kind(graph, OpKind::AdamUpdate));
}

TEST(CudaFusion, AttentionOnGptTinyKeepsItsValues) { expect_fused_values(gpt_spec("gpt-tiny.yaml"), 2); }

// A 1.3B-shaped layer (head dim 64) with a short sequence, so that the interpreter stays quick.
TEST(CudaFusion, AttentionOnAHeadDim64LayerKeepsItsValues) {
  models::ModelSpec spec = gpt_spec("gpt-tiny.yaml");
  spec.hidden = 256;
  spec.heads = 4;
  spec.layers = 1;
  spec.seq_len = 24;
  expect_fused_values(spec, 2);
}

// GPT-1.3B itself (one layer, micro-batch 8): the rewrite fires with the shapes of the bench.
TEST(CudaFusion, AttentionFiresOnAGpt13bLayer) {
  models::ModelSpec spec = gpt_spec("gpt-1.3b.yaml");
  spec.layers = 1;
  const ir::Graph graph = training_graph(spec, 8);
  FusionStats stats;
  auto fused = fuse_for_cuda(graph, &stats);
  ASSERT_TRUE(fused.is_ok()) << fused.error().message();
  EXPECT_EQ(stats.attentions, 1);
  const ir::Op& att = fused->op(fused->ops_of_kind(OpKind::Attention).at(0));
  EXPECT_EQ(att.name, "layer0.attn.context");
  // The [B, S, N, D] layout: q, k, v straight from the model, no head Transposes left.
  EXPECT_EQ(att.attrs.get_string("layout").value(), "bsnd");
  EXPECT_EQ(att.outputs[0].shape, (ir::Shape{8, 1024, 32, 64}));
  EXPECT_EQ(att.outputs[1].shape, (ir::Shape{8, 32, 1024}));
  auto head_transposes = [](const ir::Graph& x) {
    int n = 0;
    for (ir::OpId t : x.ops_of_kind(OpKind::Transpose)) n += x.op(t).outputs[0].rank() == 4;
    return n;
  };
  EXPECT_EQ(head_transposes(*fused), 0);
  EXPECT_EQ(head_transposes(graph), 5);  // merge_heads, its gradient, and the dq, dk, dv Transposes
  EXPECT_NEAR(att.attrs.real_or("scale", 0.0), 0.125, 1e-15);
  EXPECT_EQ(fused->type(att.inputs[3]).shape, (ir::Shape{1024, 1024}));
  const ir::Op& grad = fused->op(fused->ops_of_kind(OpKind::AttentionGrad).at(0));
  EXPECT_EQ(grad.outputs[0].shape, (ir::Shape{8, 1024, 32, 64}));
  EXPECT_EQ(count_kind(*fused, OpKind::Softmax) + count_kind(*fused, OpKind::SoftmaxGrad), 0);
  // No Dot over the [8, 32, 1024, 1024] scores is left.
  for (ir::OpId id : fused->ops_of_kind(OpKind::Dot)) {
    if (fused->op(id).name.find("attn") == std::string::npos) continue;  // the LM head's logits are larger
    for (const ir::Value& v : fused->op(id).inputs) EXPECT_LT(fused->type(v).numel(), 8LL * 32 * 1024 * 1024);
    EXPECT_LT(fused->op(id).outputs[0].numel(), 8LL * 32 * 1024 * 1024) << fused->op(id).name;
  }
  // Off by option: today's rewrites only.
  FusionStats off;
  auto unfused = fuse_for_cuda(graph, &off, FusionOptions{false});
  ASSERT_TRUE(unfused.is_ok());
  EXPECT_EQ(off.attentions, 0);
  EXPECT_EQ(off.bias_adds_into_softmax, 1);
  EXPECT_EQ(count_kind(*unfused, OpKind::Attention), 0);
}

// Left alone: probabilities read outside the pattern, a head dim above 128.
TEST(CudaFusion, AttentionLeftAloneWhenAnIntermediateEscapes) {
  auto build = [](int64_t d, bool export_probs) {
    ir::Graph g;
    const ir::Value q = g.input("q", {2, 8, 2, d}), k = g.input("k", {2, 8, 2, d}), v = g.input("v", {2, 8, 2, d});
    const ir::Value mask = g.input("mask", {8, 8});
    const ir::Attrs qk{{"lhs_batch", Ints{0, 2}}, {"rhs_batch", Ints{0, 2}}, {"lhs_contract", Ints{3}}, {"rhs_contract", Ints{3}}};
    const ir::Attrs pv{{"lhs_batch", Ints{0, 1}}, {"rhs_batch", Ints{0, 2}}, {"lhs_contract", Ints{3}}, {"rhs_contract", Ints{1}}};
    ir::Value s = g.add_value(OpKind::Dot, {q, k}, qk, "scores");
    s = g.add_value(OpKind::Scale, {s}, {{"scalar", 0.5}}, "scale");
    s = g.add_value(OpKind::Add, {s, mask}, {}, "mask_add");
    const ir::Value p = g.add_value(OpKind::Softmax, {s}, {{"axis", int64_t{-1}}}, "probs");
    g.mark_output(g.add_value(OpKind::Dot, {p, v}, pv, "context"));
    if (export_probs) g.mark_output(p);
    return g;
  };
  FusionStats stats;
  ASSERT_TRUE(fuse_for_cuda(build(16, false), &stats).is_ok());
  EXPECT_EQ(stats.attentions, 1);  // the forward-only pattern fuses
  auto escaped = fuse_for_cuda(build(16, true), &stats);
  ASSERT_TRUE(escaped.is_ok()) << escaped.error().message();
  EXPECT_EQ(stats.attentions, 0);
  ASSERT_TRUE(fuse_for_cuda(build(136, false), &stats).is_ok());
  EXPECT_EQ(stats.attentions, 0);
}

// --- the kernels on the device --------------------------------------------------------------

enum class BiasKind { causal, random, broadcast, sparse };

struct AttentionCase {
  std::string name;
  ir::Shape lead;
  int64_t s = 0, t = 0, d = 0, dv = 0;
  BiasKind bias = BiasKind::causal;
  DType activations = DType::bf16;
  bool bias_bf16 = false;
  std::vector<int64_t> dead_rows;  // query rows whose every bias entry is -inf (or -1e9: dead_finite)
  bool dead_finite = false;
  bool bsnd = false;  // layout bsnd: lead {B, N}, tensors [B, S, N, D]
};

std::ostream& operator<<(std::ostream& os, const AttentionCase& c) { return os << c.name; }

// The same case in the [B, S, N, D] layout (lead = {B, N}).
AttentionCase bsnd_case(AttentionCase c) {
  c.name = "Bsnd" + c.name;
  c.bsnd = true;
  return c;
}

AttentionCase make_case(std::string name, ir::Shape lead, int64_t s, int64_t t, int64_t d, int64_t dv,
                        BiasKind bias = BiasKind::causal, DType activations = DType::bf16, bool bias_bf16 = false,
                        std::vector<int64_t> dead_rows = {}, bool dead_finite = false) {
  AttentionCase c;
  c.name = std::move(name);
  c.lead = std::move(lead);
  c.s = s;
  c.t = t;
  c.d = d;
  c.dv = dv;
  c.bias = bias;
  c.activations = activations;
  c.bias_bf16 = bias_bf16;
  c.dead_rows = std::move(dead_rows);
  c.dead_finite = dead_finite;
  return c;
}

class AttentionKernelTest : public ::testing::TestWithParam<AttentionCase> {};

ir::Shape with(ir::Shape lead, std::initializer_list<int64_t> tail) {
  lead.insert(lead.end(), tail);
  return lead;
}

// ||got - want|| / ||want|| over the finite entries of want; a -inf of want must be -inf in got.
double lse_error(const interp::Tensor& got, const interp::Tensor& want) {
  double diff = 0.0, ref = 0.0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    if (std::isinf(want[i])) {
      if (got[i] != want[i]) return INFINITY;
      continue;
    }
    if (!std::isfinite(got[i])) return INFINITY;
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    ref += want[i] * want[i];
  }
  return ref > 0 ? std::sqrt(diff / ref) : std::sqrt(diff);
}

TEST_P(AttentionKernelTest, MatchesInterpreter) {
  const AttentionCase& c = GetParam();
  Backend& be = backend(c.activations);
  std::mt19937 rng(1234);
  ir::Shape bias_shape = c.bias == BiasKind::causal ? ir::Shape{c.s, c.t}
                         : c.bias == BiasKind::random || c.bias == BiasKind::sparse ? with(c.lead, {c.s, c.t})
                                                      : ir::Shape{c.lead[0], 1, 1, c.t};
  ir::Graph g;
  // [lead..., rows, width], or [B, rows, N, width] in the bsnd layout.
  auto operand = [&](int64_t rows, int64_t width) {
    return c.bsnd ? ir::Shape{c.lead[0], rows, c.lead[1], width} : with(c.lead, {rows, width});
  };
  const ir::Value q = g.input("q", operand(c.s, c.d)), k = g.input("k", operand(c.t, c.d));
  const ir::Value v = g.input("v", operand(c.t, c.dv)), bias = g.input("bias", bias_shape);
  const ir::Value dout = g.input("dout", operand(c.s, c.dv));
  ir::Attrs scale{{"scale", 1.0 / std::sqrt(static_cast<double>(c.d))}};
  if (c.bsnd) scale.set("layout", std::string("bsnd"));
  const ir::OpId att = g.add(OpKind::Attention, {q, k, v, bias}, scale, "att");
  const ir::OpId grad = g.add(OpKind::AttentionGrad, {q, k, v, bias, ir::Value{att, 0}, ir::Value{att, 1}, dout}, scale,
                              "att_grad");
  std::map<std::string, interp::Tensor> feeds;
  for (const auto& [name, value] : std::vector<std::pair<const char*, ir::Value>>{{"q", q}, {"k", k}, {"v", v}, {"dout", dout}}) {
    feeds[name] = random_tensor(g.type(value).shape, rng, -2, 2);
  }
  interp::Tensor b = random_tensor(bias_shape, rng, -1, 1);
  if (c.bias == BiasKind::causal) {
    for (int64_t i = 0; i < c.s; ++i)
      for (int64_t j = 0; j < c.t; ++j) b[i * c.t + j] = j <= i ? 0.0 : -1e9;
  }
  for (int64_t row : c.dead_rows) {
    STRATA_CHECK(c.bias == BiasKind::causal, "dead rows need the [S, T] bias");
    for (int64_t j = 0; j < c.t; ++j) b[row * c.t + j] = c.dead_finite ? -1e9 : -std::numeric_limits<double>::infinity();
  }
  if (c.bias == BiasKind::sparse) {  // about half the entries masked, rows and tiles in every pattern
    std::bernoulli_distribution masked(0.5);
    for (int64_t i = 0; i < b.numel(); ++i) b[i] = masked(rng) ? -1e9 : b[i];
  }
  feeds["bias"] = b;
  auto want = interp::run(g, feeds, interp::Precision::f64);
  ASSERT_TRUE(want.is_ok()) << want.error().message();

  std::map<std::string, TensorPtr> dev;
  for (const auto& [name, host] : feeds) {
    const DType dtype = name == "bias" ? (c.bias_bf16 ? DType::bf16 : DType::f32) : c.activations;
    auto t = be.upload(host, dtype);
    ASSERT_TRUE(t.is_ok()) << t.error().message();
    dev[name] = *t;
  }
  auto fwd = be.run_op(g.op(att), {dev["q"].get(), dev["k"].get(), dev["v"].get(), dev["bias"].get()});
  ASSERT_TRUE(fwd.is_ok()) << fwd.error().message();
  auto bwd = be.run_op(g.op(grad), {dev["q"].get(), dev["k"].get(), dev["v"].get(), dev["bias"].get(), (*fwd)[0].get(),
                                    (*fwd)[1].get(), dev["dout"].get()});
  ASSERT_TRUE(bwd.is_ok()) << bwd.error().message();
  auto out = be.download(*(*fwd)[0]);
  auto lse = be.download(*(*fwd)[1]);
  ASSERT_TRUE(out.is_ok() && lse.is_ok());
  EXPECT_LE(relative_error(*out, want->values[att][0]), 2e-2) << "out";
  EXPECT_LE(lse_error(*lse, want->values[att][1]), 1e-2) << "lse";
  const char* names[3] = {"dq", "dk", "dv"};
  for (int i = 0; i < 3; ++i) {
    auto got = be.download(*(*bwd)[i]);
    ASSERT_TRUE(got.is_ok());
    const double err = relative_error(*got, want->values[grad][i]);
    EXPECT_LE(err, 3e-2) << names[i];
    std::printf("attention %s: %s relative error %.2e\n", c.name.c_str(), names[i], err);
  }
  STRATA_CHECK(!c.bsnd || c.dead_rows.empty(), "the dead-row check indexes the default layout");
  for (int64_t row : c.dead_rows) {  // out 0, lse -inf for every leading index (a masked row attends to nothing)
    for (int64_t l = 0; l < want->values[att][1].numel() / c.s; ++l) {
      EXPECT_EQ((*lse)[l * c.s + row], -std::numeric_limits<double>::infinity());
      for (int64_t j = 0; j < c.dv; ++j) EXPECT_EQ((*out)[(l * c.s + row) * c.dv + j], 0.0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Kernels, AttentionKernelTest,
    ::testing::Values(make_case("Causal64", {2, 3}, 64, 64, 64, 64),
                      make_case("CausalOdd100", {2, 2}, 100, 100, 64, 64),
                      make_case("RandomCross37x130Head8", {3}, 37, 130, 8, 8, BiasKind::random),
                      make_case("BroadcastHead80", {2, 2}, 70, 90, 80, 80, BiasKind::broadcast),
                      make_case("CausalHead128", {1, 2}, 200, 200, 128, 128),
                      make_case("RandomD32Dv48Bf16Bias", {2}, 50, 60, 32, 48, BiasKind::random, DType::bf16, true),
                      make_case("CausalFp32Activations", {2, 2}, 96, 96, 64, 64, BiasKind::causal, DType::f32),
                      make_case("FullyMaskedRows", {2}, 80, 80, 64, 64, BiasKind::causal, DType::bf16, false, {5, 70}),
                      // Rows of finite -1e9s: masked (<= -1e6) entries only, so out 0 and lse -inf as for -inf.
                      make_case("FiniteMaskedRows", {2}, 160, 160, 64, 64, BiasKind::causal, DType::bf16, false,
                                {5, 130}, true),
                      // Half of a random bias masked: rows whose first tiles are all masked, then not.
                      make_case("SparseMask130", {2}, 130, 200, 64, 64, BiasKind::sparse),
                      // A causal mask over S < T: diagonal tiles (the causal class, compared by index, not
                      // read) whole and cut by S, and tiles past the last query masked.
                      make_case("CausalCross130x200", {2}, 130, 200, 64, 64),
                      // D 18 / Dv 12: the row pre-pass and the dq conversion one value per lane.
                      make_case("RandomD18Dv12", {2}, 40, 70, 18, 12, BiasKind::random),
                      // The backward's 128-key blocks and 32-query tiles (head dims <= 64) cut by S and T,
                      // and their warps whose own key tile is masked (sparse, head 32; head 16: loads
                      // one chunk at a time).
                      make_case("RandomCross70x333", {2}, 70, 333, 64, 64, BiasKind::random),
                      make_case("SparseMask260Head32", {1}, 260, 260, 32, 32, BiasKind::sparse),
                      make_case("CausalHead16", {2}, 160, 160, 16, 16),
                      // [B, S, N, D] operands (strided heads), as fuse_for_cuda emits them.
                      bsnd_case(make_case("Causal300", {2, 4}, 300, 300, 64, 64)),
                      bsnd_case(make_case("Causal100", {2, 3}, 100, 100, 64, 64)),
                      bsnd_case(make_case("BroadcastHead80", {2, 2}, 70, 90, 80, 80, BiasKind::broadcast)),
                      bsnd_case(make_case("CausalHead80", {2, 2}, 192, 192, 80, 80)),
                      bsnd_case(make_case("SparseHead8", {2, 2}, 60, 130, 8, 8, BiasKind::sparse)),
                      bsnd_case(make_case("RandomD32Dv48Bf16Bias", {2, 3}, 50, 60, 32, 48, BiasKind::random,
                                          DType::bf16, true))),
    [](const ::testing::TestParamInfo<AttentionCase>& info) { return info.param.name; });

}  // namespace
}  // namespace strata::runtime::cuda_test
