// GPU tests of the memory-bound kernels' fast paths against the fp64 interpreter: AdamW's vector
// kernel with its tail and the bf16 copy it writes for the next GEMM, the batched AdamW (bit for
// bit the one-at-a-time kernel's values), the one-pass LayerNormGrad (dx and the column sums) and
// LayerNorm over many rows and widths that are not multiples of the vector width, the
// cross-entropy over long rows, the sums' determinism, and the word copies of Slice and Concat.
#include <cuda_runtime.h>

#include <cstdlib>

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

// A backend with STRATA_CUDA_MULTI_ADAM set to `multi` (0: each AdamUpdate on its own).
std::unique_ptr<Backend> adam_backend(DType activations, const char* multi) {
  setenv("STRATA_CUDA_MULTI_ADAM", multi, 1);
  auto made = make_cuda_backend(0, CudaOptions{activations});
  unsetenv("STRATA_CUDA_MULTI_ADAM");
  EXPECT_TRUE(made.is_ok()) << made.error().message();
  return made.is_ok() ? std::move(made).value() : nullptr;
}

// 53 AdamUpdates (two launches of adam_batch, then a batch of other hyper-parameters) on the
// batching backend and one at a time on the other, from the same values: odd sizes (tails of 1-3,
// blocks of many chunks, a single value), bf16 and fp32 gradients, matrices with their bf16 copy
// and vectors without, weight decay on and off. The gradients and state are dropped before the
// batch runs and their memory handed out again (the batch must keep it). Every output and copy
// equal bit for bit.
TEST(MemoryKernels, BatchedAdamEqualsOneAtATime) {
  const std::vector<ir::Shape> shapes{{64, 40}, {7, 13}, {1003}, {3}, {1}, {2048}, {999, 41}, {33, 65}, {5000}};
  for (DType activations : {DType::bf16, DType::f32}) {
    auto one = adam_backend(activations, "0");
    auto batched = adam_backend(activations, "1");
    ASSERT_TRUE(one && batched);
    std::vector<std::vector<TensorPtr>> want, got;
    std::mt19937 rng(11);
    for (int k = 0; k < 53; ++k) {
      const ir::Shape& shape = shapes[static_cast<size_t>(k) % shapes.size()];
      ir::Attrs attrs = kAdam;
      if (k >= 45) attrs.set("weight_decay", 0.0);  // other hyper-parameters: a new batch
      ir::Graph graph;
      std::vector<ir::Value> values;
      std::vector<interp::Tensor> host;
      for (const Arg& a : adam_args(shape)) {
        values.push_back(graph.input("in" + std::to_string(values.size()), shape, DType::f32));
        host.push_back(random_tensor(shape, rng, a.lo, a.hi));
      }
      const ir::Op& op = graph.op(graph.add(OpKind::AdamUpdate, values, attrs, "adam"));
      for (auto [be, outs] : {std::pair{one.get(), &want}, std::pair{batched.get(), &got}}) {
        std::vector<TensorPtr> in;
        const DType grad = activations == DType::bf16 && k % 3 != 0 ? DType::bf16 : DType::f32;
        for (size_t i = 0; i < host.size(); ++i) {
          auto t = be->upload(host[i], i == 1 ? grad : DType::f32);
          ASSERT_TRUE(t.is_ok()) << t.error().message();
          in.push_back(*t);
        }
        auto out = be->run_op(op, {in[0].get(), in[1].get(), in[2].get(), in[3].get()});
        ASSERT_TRUE(out.is_ok()) << out.error().message();
        outs->push_back(*out);
      }
    }
    for (int k = 0; k < 20; ++k) {  // reuse of freed memory, were the batch not keeping it
      auto junk = batched->upload(random_tensor({4096}, rng), DType::f32);
      ASSERT_TRUE(junk.is_ok());
    }
    for (size_t k = 0; k < want.size(); ++k) {
      for (size_t i = 0; i < 3; ++i) {
        auto a = one->download(*want[k][i]);
        auto b = batched->download(*got[k][i]);
        ASSERT_TRUE(a.is_ok() && b.is_ok());
        int64_t wrong = 0;
        for (int64_t j = 0; j < a->numel(); ++j) wrong += (*a)[j] != (*b)[j];
        EXPECT_EQ(wrong, 0) << "update " << k << " output " << i << " " << dtype_name(activations);
      }
      const auto* pa = dynamic_cast<const cuda::CudaTensor*>(want[k][0].get());
      const auto* pb = dynamic_cast<const cuda::CudaTensor*>(got[k][0].get());
      ASSERT_TRUE(pa != nullptr && pb != nullptr);
      ASSERT_EQ(pa->held_bf16_copy() != nullptr, pb->held_bf16_copy() != nullptr) << "update " << k;
      if (pa->held_bf16_copy() == nullptr) continue;
      std::vector<uint16_t> ca(static_cast<size_t>(pa->numel())), cb(ca.size());
      ASSERT_EQ(cudaMemcpy(ca.data(), pa->held_bf16_copy(), ca.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(cb.data(), pb->held_bf16_copy(), cb.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
      EXPECT_EQ(ca, cb) << "bf16 copy of update " << k;
    }
  }
}

// An output read before anything else runs the batch (here: the next AdamUpdate takes the previous
// one's new parameters, as a second step would): the values match the interpreter's two steps.
TEST(MemoryKernels, BatchedAdamRunsWhenItsOutputIsRead) {
  auto be = adam_backend(DType::bf16, "1");
  ASSERT_TRUE(be);
  OpRun r = run_one(*be, DType::bf16, OpKind::AdamUpdate, adam_args({37, 11}), kAdam);
  ASSERT_EQ(r.outputs.size(), 3u);
  ir::Graph graph;
  std::vector<ir::Value> values;
  for (int i = 0; i < 4; ++i) values.push_back(graph.input("in" + std::to_string(i), {37, 11}, DType::f32));
  const ir::OpId id = graph.add(OpKind::AdamUpdate, values, kAdam, "adam2");
  graph.mark_output(ir::Value{id, 0});
  auto ref = interp::run(graph,
                         {{"in0", r.want[0]}, {"in1", r.feeds["in1"]}, {"in2", r.want[1]}, {"in3", r.want[2]}},
                         interp::Precision::f64);
  ASSERT_TRUE(ref.is_ok()) << ref.error().message();
  auto out = be->run_op(graph.op(id), {r.outputs[0].get(), r.inputs[1].get(), r.outputs[1].get(), r.outputs[2].get()});
  ASSERT_TRUE(out.is_ok()) << out.error().message();
  auto got = be->download(*(*out)[0]);
  ASSERT_TRUE(got.is_ok());
  EXPECT_LE(relative_error(*got, ref->outputs[0]), 1e-5);
}

// The word copies (16 bytes, four a thread in flight): the three Slices of a qkv-like
// [B, S, 3, N, D] in bf16 (rows of 8 to 512 values) and their Concat back, word counts that give
// every thread its four words and one that is odd; against the interpreter within bf16 rounding
// (a word out of place would be off by the values' own size).
TEST(MemoryKernels, WordCopiesSliceAndConcat) {
  using Ints = std::vector<int64_t>;
  Backend& be = backend(DType::bf16);
  for (const ir::Shape& shape : {ir::Shape{4, 1024, 3, 8, 64}, ir::Shape{3, 37, 3, 1, 8}}) {
    const std::string what = ir::shape_string(shape);
    std::vector<Arg> parts;
    for (int64_t part = 0; part < 3; ++part) {
      const Ints starts{0, 0, part, 0, 0};
      const Ints limits{shape[0], shape[1], part + 1, shape[3], shape[4]};
      OpRun r = run_one(be, DType::bf16, OpKind::Slice, {{shape}}, {{"starts", starts}, {"limits", limits}},
                        static_cast<uint32_t>(7 + part));
      expect_matches(be, r, 5e-3, what + " slice " + std::to_string(part));
      parts.push_back({{shape[0], shape[1], 1, shape[3], shape[4]}});
    }
    OpRun r = run_one(be, DType::bf16, OpKind::Concat, parts, {{"axis", int64_t{2}}});
    expect_matches(be, r, 5e-3, what + " concat");
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
