// A residual Add of a marked Dot + bias (attn.out and fc2 in GPT) run as one cuBLASLt GEMM that
// reads the residual as its C (GemmEpilogue::residual): the same sums as the unfused Add
// (STRATA_CUDA_RESIDUAL_GEMM=0) within bf16 rounding, and as the fp64 interpreter's.
#include <cstdlib>

#include "gpu_test_util.h"
#include "runtime/cuda/cuda_tensor.h"
#include "runtime/cuda/dot.h"

namespace strata::runtime::cuda_test {
namespace {

using ir::OpKind;
using Ints = std::vector<int64_t>;

std::unique_ptr<Backend> residual_backend(DType activations, const char* fused) {
  setenv("STRATA_CUDA_RESIDUAL_GEMM", fused, 1);
  auto made = make_cuda_backend(0, CudaOptions{activations});
  unsetenv("STRATA_CUDA_RESIDUAL_GEMM");
  EXPECT_TRUE(made.is_ok()) << made.error().message();
  return made.is_ok() ? std::move(made).value() : nullptr;
}

struct ResidualCase {
  int64_t b, s, k, h;
  bool residual_first;  // Add(x, y) as GPT builds it, else Add(y, x)
  DType activations;
};

// x[B, S, H] + (h[B, S, K] . w[K, H] + bias[H]), the Dot and bias Add marked as fuse_for_cuda does.
TEST(ResidualGemm, MatchesTheUnfusedAdd) {
  for (const ResidualCase& c : {ResidualCase{2, 64, 128, 256, true, DType::bf16},
                                ResidualCase{3, 37, 40, 24, false, DType::bf16},
                                ResidualCase{1, 19, 64, 72, true, DType::f32}}) {
    const std::string what = std::to_string(c.b) + "x" + std::to_string(c.s) + "x" + std::to_string(c.k) + "x" +
                             std::to_string(c.h) + (c.activations == DType::f32 ? " f32" : " bf16");
    ir::Graph g;
    const ir::Value x = g.input("x", {c.b, c.s, c.h}), h = g.input("h", {c.b, c.s, c.k});
    const ir::Value w = g.input("w", {c.k, c.h}), bias = g.input("bias", {c.h});
    const ir::OpId dot = g.add(OpKind::Dot, {h, w},
                               {{"lhs_batch", Ints{}}, {"rhs_batch", Ints{}}, {"lhs_contract", Ints{2}},
                                {"rhs_contract", Ints{0}}, {cuda::kGemmEpilogueAttr, int64_t{1}}},
                               "dot");
    const ir::OpId add = g.add(OpKind::Add, {ir::Value{dot, 0}, bias}, {{cuda::kGemmEpilogueAttr, int64_t{1}}}, "add");
    const ir::Value y{add, 0};
    const ir::OpId sum = g.add(OpKind::Add, c.residual_first ? std::vector<ir::Value>{x, y} : std::vector<ir::Value>{y, x},
                               {}, "residual");
    std::mt19937 rng(9);
    std::map<std::string, interp::Tensor> feeds{{"x", random_tensor({c.b, c.s, c.h}, rng, -4, 4)},
                                                {"h", random_tensor({c.b, c.s, c.k}, rng, -1, 1)},
                                                {"w", random_tensor({c.k, c.h}, rng, -0.5, 0.5)},
                                                {"bias", random_tensor({c.h}, rng, -2, 2)}};
    auto want = interp::run(g, feeds, interp::Precision::f64);
    ASSERT_TRUE(want.is_ok()) << want.error().message();
    std::vector<interp::Tensor> sums;
    for (const char* fused : {"0", "1"}) {
      auto be = residual_backend(c.activations, fused);
      ASSERT_TRUE(be);
      std::map<std::string, TensorPtr> dev;
      for (const auto& [name, host] : feeds) {
        auto t = be->upload(host, name == "w" || name == "bias" ? DType::f32 : c.activations);
        ASSERT_TRUE(t.is_ok()) << t.error().message();
        dev[name] = *t;
      }
      auto d = be->run_op(g.op(dot), {dev["h"].get(), dev["w"].get()});
      ASSERT_TRUE(d.is_ok()) << d.error().message();
      auto a = be->run_op(g.op(add), {(*d)[0].get(), dev["bias"].get()});
      ASSERT_TRUE(a.is_ok()) << a.error().message();
      const DeviceTensor* inputs[2] = {dev["x"].get(), (*a)[0].get()};
      if (!c.residual_first) std::swap(inputs[0], inputs[1]);
      auto r = be->run_op(g.op(sum), {inputs[0], inputs[1]});
      ASSERT_TRUE(r.is_ok()) << r.error().message();
      // Fused, the bias Add's own value was never computed (the residual GEMM wrote only the sum).
      const auto* biased = dynamic_cast<const cuda::CudaTensor*>((*a)[0].get());
      ASSERT_NE(biased, nullptr);
      EXPECT_EQ(biased->deferred_dot() != nullptr, fused[0] == '1') << what;
      auto host = be->download(*(*r)[0]);
      ASSERT_TRUE(host.is_ok()) << host.error().message();
      const double tol = c.activations == DType::f32 ? 1e-5 : 1e-2;
      EXPECT_LE(relative_error(*host, want->values[sum][0]), tol) << what << " fused " << fused;
      // A later reader of the bias Add still gets its value.
      auto biased_host = be->download(*(*a)[0]);
      ASSERT_TRUE(biased_host.is_ok());
      EXPECT_LE(relative_error(*biased_host, want->values[add][0]), tol) << what << " bias Add, fused " << fused;
      sums.push_back(*host);
    }
    EXPECT_LE(relative_error(sums[1], sums[0]), c.activations == DType::f32 ? 1e-6 : 8e-3) << what;
  }
}

}  // namespace
}  // namespace strata::runtime::cuda_test
