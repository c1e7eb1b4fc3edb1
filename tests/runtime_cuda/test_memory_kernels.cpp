// GPU tests of the memory-bound kernels' fast paths against the fp64 interpreter: AdamW's vector
// kernel with its tail and the bf16 copy it writes for the next GEMM, the one-pass LayerNormGrad
// (dx and the column sums) and LayerNorm over many rows and widths that are not multiples of the
// vector width, the cross-entropy over long rows, and the sums' determinism.
#include <cuda_runtime.h>

#include "gpu_test_util.h"
#include "runtime/cuda/cuda_tensor.h"

namespace strata::runtime::cuda_test {
namespace {

using ir::OpKind;

struct Arg {
  ir::Shape shape;
  double lo = -1.0, hi = 1.0;
  bool fp32 = false;  // stored fp32 (a parameter, optimizer state) whatever the activations
  int64_t vocab = 0;  // > 0: i32 ids in [0, vocab)
};

// One op on the device and on the fp64 interpreter over the same random inputs.
struct OpRun {
  std::vector<TensorPtr> inputs;
  std::vector<TensorPtr> outputs;
  std::vector<interp::Tensor> want;
  std::map<std::string, interp::Tensor> feeds;
};

OpRun run_one(Backend& be, DType activations, OpKind kind, const std::vector<Arg>& args, const ir::Attrs& attrs,
              uint32_t seed = 99) {
  OpRun r;
  std::mt19937 rng(seed);
  ir::Graph graph;
  std::vector<ir::Value> values;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string name = "in" + std::to_string(i);
    const bool ids = args[i].vocab > 0;
    values.push_back(graph.input(name, args[i].shape, ids ? DType::i32 : DType::f32));
    r.feeds[name] =
        ids ? random_ids(args[i].shape, args[i].vocab, rng) : random_tensor(args[i].shape, rng, args[i].lo, args[i].hi);
    auto t = be.upload(r.feeds[name], ids ? DType::i32 : args[i].fp32 ? DType::f32 : activations);
    EXPECT_TRUE(t.is_ok()) << t.error().message();
    if (!t.is_ok()) return r;
    r.inputs.push_back(*t);
  }
  const ir::OpId id = graph.add(kind, values, attrs, "op");
  const ir::Op& op = graph.op(id);
  for (size_t i = 0; i < op.outputs.size(); ++i) graph.mark_output(ir::Value{id, static_cast<int32_t>(i)});
  auto ref = interp::run(graph, r.feeds, interp::Precision::f64);
  EXPECT_TRUE(ref.is_ok()) << ref.error().message();
  if (!ref.is_ok()) return r;
  r.want = ref->outputs;
  std::vector<const DeviceTensor*> in;
  for (const auto& t : r.inputs) in.push_back(t.get());
  auto out = be.run_op(op, in);
  EXPECT_TRUE(out.is_ok()) << out.error().message();
  if (out.is_ok()) r.outputs = *out;
  return r;
}

void expect_matches(Backend& be, const OpRun& r, double tol, const std::string& what) {
  ASSERT_EQ(r.outputs.size(), r.want.size()) << what;
  for (size_t i = 0; i < r.outputs.size(); ++i) {
    auto host = be.download(*r.outputs[i]);
    ASSERT_TRUE(host.is_ok()) << host.error().message();
    EXPECT_LE(relative_error(*host, r.want[i]), tol) << what << " output " << i;
  }
}

// Round to nearest even, as __float2bfloat16_rn (finite values).
uint16_t bf16_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

const ir::Attrs kAdam{{"lr", 1e-3},  {"beta1", 0.9},         {"beta2", 0.95},
                      {"eps", 1e-8}, {"weight_decay", 0.01}, {"step", int64_t{4}}};

std::vector<Arg> adam_args(const ir::Shape& shape) {
  return {{shape, -1.0, 1.0, true}, {shape, -0.01, 0.01, false}, {shape, -0.01, 0.01, true}, {shape, 0.0, 1e-4, true}};
}

// The vector kernel (groups of four) and the scalar tail, bf16 and fp32 gradients: every output
// against the interpreter, and for a matrix with bf16 activations the bf16 copy equal, bit for bit,
// to the new fp32 parameters rounded.
TEST(MemoryKernels, AdamVectorTailAndBf16Copy) {
  for (DType activations : {DType::bf16, DType::f32}) {
    for (const ir::Shape& shape : {ir::Shape{64, 40}, ir::Shape{7, 13}, ir::Shape{1003}, ir::Shape{3}}) {
      const std::string what = std::string(dtype_name(activations)) + " " + ir::shape_string(shape);
      Backend& be = backend(activations);
      OpRun r = run_one(be, activations, OpKind::AdamUpdate, adam_args(shape), kAdam);
      expect_matches(be, r, 1e-5, what);
      ASSERT_EQ(r.outputs.size(), 3u);
      const auto* param = dynamic_cast<const cuda::CudaTensor*>(r.outputs[0].get());
      ASSERT_NE(param, nullptr);
      const bool wants_copy = activations == DType::bf16 && shape.size() >= 2;
      ASSERT_EQ(param->held_bf16_copy() != nullptr, wants_copy) << what;
      if (!wants_copy) continue;
      auto host = be.download(*r.outputs[0]);
      ASSERT_TRUE(host.is_ok());
      std::vector<uint16_t> copy(static_cast<size_t>(param->numel()));
      ASSERT_TRUE(be.synchronize().is_ok());
      ASSERT_EQ(cudaMemcpy(copy.data(), param->held_bf16_copy(), copy.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
      int64_t wrong = 0;
      for (int64_t i = 0; i < param->numel(); ++i) {
        wrong += copy[static_cast<size_t>(i)] != bf16_bits(static_cast<float>((*host)[i]));
      }
      EXPECT_EQ(wrong, 0) << what << ": bf16 copy differs from the rounded parameters";
    }
  }
}

// The GEMM after an update reads the copy Adam wrote; after an in-place write (which must drop the
// copy) it reads a fresh cast, not the stale copy.
TEST(MemoryKernels, DotReadsTheAdamCopyUntilAnInPlaceWrite) {
  Backend& be = backend(DType::bf16);
  OpRun r = run_one(be, DType::bf16, OpKind::AdamUpdate, adam_args({48, 24}), kAdam);
  ASSERT_EQ(r.outputs.size(), 3u);
  auto updated = be.download(*r.outputs[0]);
  ASSERT_TRUE(updated.is_ok());
  std::mt19937 rng(5);
  const interp::Tensor x = random_tensor({3, 5, 48}, rng);
  auto xd = be.upload(x, DType::bf16);
  ASSERT_TRUE(xd.is_ok());
  ir::Graph graph;
  auto a = graph.input("x", {3, 5, 48}, DType::f32);
  auto w = graph.input("w", {48, 24}, DType::f32);
  const ir::OpId dot = graph.add(OpKind::Dot, {a, w},
                                 ir::Attrs{{"lhs_batch", std::vector<int64_t>{}},
                                           {"rhs_batch", std::vector<int64_t>{}},
                                           {"lhs_contract", std::vector<int64_t>{2}},
                                           {"rhs_contract", std::vector<int64_t>{0}}},
                                 "dot");
  graph.mark_output(ir::Value{dot, 0});
  for (double factor : {1.0, -2.0}) {
    if (factor != 1.0) {
      ASSERT_TRUE(be.scale(*r.outputs[0], factor).is_ok());
      const auto* param = dynamic_cast<const cuda::CudaTensor*>(r.outputs[0].get());
      EXPECT_EQ(param->held_bf16_copy(), nullptr) << "an in-place write keeps a stale bf16 copy";
    }
    interp::Tensor wf = *updated;
    for (double& v : wf.data) v *= factor;
    auto ref = interp::run(graph, {{"x", x}, {"w", wf}}, interp::Precision::f64);
    ASSERT_TRUE(ref.is_ok()) << ref.error().message();
    auto out = be.run_op(graph.op(dot), {xd->get(), r.outputs[0].get()});
    ASSERT_TRUE(out.is_ok()) << out.error().message();
    auto got = be.download(*(*out)[0]);
    ASSERT_TRUE(got.is_ok());
    EXPECT_LE(relative_error(*got, ref->outputs[0]), 2e-2) << "factor " << factor;
  }
}

// Widths for each warp-row size (4, 8, 16 words a lane), rows not a multiple of the warps in a
// block and many rows per block, a width not a multiple of 256 and one not a multiple of 8 (generic
// path).
const std::vector<ir::Shape> kLayerNormShapes{{1000, 512},   {333, 2048}, {130, 4096}, {257, 1000},
                                              {2, 25, 2056}, {65, 1004},  {4000, 64}};

TEST(MemoryKernels, LayerNormRowsAndWidths) {
  for (DType activations : {DType::bf16, DType::f32}) {
    Backend& be = backend(activations);
    for (const ir::Shape& x : kLayerNormShapes) {
      const ir::Shape p{x.back()};
      OpRun r = run_one(be, activations, OpKind::LayerNorm, {{x, -2, 3}, {p, -1, 1, true}, {p, -1, 1, true}},
                        {{"eps", 1e-5}});
      expect_matches(be, r, activations == DType::bf16 ? 2e-2 : 1e-4,
                     std::string("LayerNorm ") + dtype_name(activations) + " " + ir::shape_string(x));
    }
  }
}

TEST(MemoryKernels, LayerNormGradRowsAndWidths) {
  for (DType activations : {DType::bf16, DType::f32}) {
    Backend& be = backend(activations);
    for (const ir::Shape& x : kLayerNormShapes) {
      const ir::Shape p{x.back()};
      OpRun r = run_one(be, activations, OpKind::LayerNormGrad, {{x, -2, 3}, {p, -1, 1, true}, {x}}, {{"eps", 1e-5}});
      expect_matches(be, r, activations == DType::bf16 ? 2e-2 : 1e-4,
                     std::string("LayerNormGrad ") + dtype_name(activations) + " " + ir::shape_string(x));
    }
  }
}

// Softmax cross-entropy over long bf16 rows (the LM head's): several steps of four words a lane and
// a partial last step (8200 = 1025 words over 256 threads).
TEST(MemoryKernels, CrossEntropyLongRows) {
  for (DType activations : {DType::bf16, DType::f32}) {
    Backend& be = backend(activations);
    const double tol = activations == DType::bf16 ? 2e-2 : 1e-4;
    OpRun loss = run_one(be, activations, OpKind::CrossEntropy, {{{6, 8200}, -5, 5}, {{6}, 0, 0, false, 8200}}, {});
    expect_matches(be, loss, tol, std::string("CrossEntropy ") + dtype_name(activations));
    OpRun grad = run_one(be, activations, OpKind::CrossEntropyGrad,
                         {{{6, 8200}, -5, 5}, {{6}, 0, 0, false, 8200}, {{}, 0.5, 1.5, true}}, {});
    expect_matches(be, grad, tol, std::string("CrossEntropyGrad ") + dtype_name(activations));
  }
}

// The column sums go through fixed orders: two runs give the same bits.
TEST(MemoryKernels, LayerNormGradIsDeterministic) {
  Backend& be = backend(DType::bf16);
  const ir::Shape x{1500, 2048}, p{2048};
  std::vector<std::vector<double>> runs;
  for (int k = 0; k < 2; ++k) {
    OpRun r = run_one(be, DType::bf16, OpKind::LayerNormGrad, {{x, -2, 3}, {p, -1, 1, true}, {x}}, {{"eps", 1e-5}});
    ASSERT_EQ(r.outputs.size(), 3u);
    std::vector<double> all;
    for (const auto& t : r.outputs) {
      auto host = be.download(*t);
      ASSERT_TRUE(host.is_ok());
      all.insert(all.end(), host->data.begin(), host->data.end());
    }
    runs.push_back(std::move(all));
  }
  EXPECT_EQ(runs[0], runs[1]);
}

}  // namespace
}  // namespace strata::runtime::cuda_test
