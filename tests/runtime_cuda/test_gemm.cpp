// cuBLASLt algorithm tuning (GemmTuner): the tuned GEMM gives the untuned one's values for each
// epilogue kind on odd shapes and reuses its choice; and, run by hand, the GPT-1.3B step's GEMM
// shapes timed with the tuner off and on (DISABLED_: a bench, not a check).
#include <cuda_bf16.h>

#include <chrono>
#include <cstdio>
#include <tuple>

#include "gpu_test_util.h"
#include "runtime/cuda/dot.h"

namespace strata::runtime::cuda_test {
namespace {

using cuda::Elem;
using ir::OpKind;
using Ints = std::vector<int64_t>;

enum class Kind { plain, bias, gelu_aux_bias, bgrada };

std::vector<float> bf16_block(int64_t count, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& x : v) x = dist(rng);
  return v;
}

// Device buffers, handles and a stream of one test, freed at its end.
class Gpu {
 public:
  explicit Gpu(size_t workspace_bytes) {
    EXPECT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
    EXPECT_EQ(cublasCreate(&blas_), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtCreate(&lt_), CUBLAS_STATUS_SUCCESS);
    workspace_ = zeros(static_cast<int64_t>(workspace_bytes));
    EXPECT_EQ(cublasSetWorkspace(blas_, workspace_, workspace_bytes), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasSetStream(blas_, stream_), CUBLAS_STATUS_SUCCESS);
    ctx_ = cuda::GemmContext{blas_, lt_, workspace_, workspace_bytes, stream_, nullptr};
  }
  ~Gpu() {
    cudaStreamSynchronize(stream_);
    for (void* p : buffers_) cudaFree(p);
    cublasLtDestroy(lt_);
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }
  void* zeros(int64_t bytes) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, static_cast<size_t>(bytes)), cudaSuccess);
    EXPECT_EQ(cudaMemset(p, 0, static_cast<size_t>(bytes)), cudaSuccess);
    buffers_.push_back(p);
    return p;
  }
  void* bf16(const std::vector<float>& host) {
    std::vector<__nv_bfloat16> b(host.size());
    for (size_t i = 0; i < host.size(); ++i) b[i] = __float2bfloat16(host[i]);
    void* p = zeros(static_cast<int64_t>(b.size() * 2));
    EXPECT_EQ(cudaMemcpy(p, b.data(), b.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    return p;
  }
  // bf16 values uniform in [-1, 1) (the GEMMs' speed depends on the data: zeros run faster), a
  // 32 MiB random block repeated.
  void* random_bf16(int64_t count, std::mt19937& rng) {
    const int64_t block = std::min<int64_t>(count, int64_t{1} << 24);
    void* p = zeros(count * 2);
    const void* src = bf16(bf16_block(block, rng));
    for (int64_t at = 0; at < count; at += block) {
      const size_t bytes = static_cast<size_t>(std::min(block, count - at) * 2);
      EXPECT_EQ(cudaMemcpy(static_cast<char*>(p) + at * 2, src, bytes, cudaMemcpyDeviceToDevice), cudaSuccess);
    }
    return p;
  }
  std::vector<float> read_bf16(const void* p, int64_t count) {
    std::vector<__nv_bfloat16> b(static_cast<size_t>(count));
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(b.data(), p, b.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    std::vector<float> f(b.size());
    for (size_t i = 0; i < b.size(); ++i) f[i] = __bfloat162float(b[i]);
    return f;
  }
  std::vector<float> read_f32(const void* p, int64_t count) {
    std::vector<float> f(static_cast<size_t>(count));
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(f.data(), p, f.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    return f;
  }
  cuda::GemmContext context(cuda::GemmTuner* tuner) const {
    cuda::GemmContext ctx = ctx_;
    ctx.tuner = tuner;
    return ctx;
  }

 private:
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;
  cuda::GemmContext ctx_;
  std::vector<void*> buffers_;
};

std::vector<float> bf16_values(int64_t count, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& x : v) x = __bfloat162float(__float2bfloat16(dist(rng)));
  return v;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return a.size() == b.size() ? worst : INFINITY;
}

double gelu(double x) { return 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }

// Per kind, on shapes no tile divides: the untuned and the tuned GEMM each against an fp64 host
// product of the same bf16 inputs (out; gelu's aux, the pre-activation; bgrada's fp32 column sums
// of dy), and the tuner times each key once: the second call reuses the choice.
TEST(CudaGemm, TunedMatchesUntunedOnOddShapes) {
  Gpu gpu(size_t{32} << 20);
  cuda::GemmTuner tuner;
  std::mt19937 rng(7);
  const int64_t batch = 3, seq = 37, depth = 53;
  const int64_t rows = batch * seq;
  for (const auto& [kind, cols] : std::vector<std::tuple<Kind, int64_t>>{
           {Kind::plain, 19}, {Kind::bias, 19}, {Kind::gelu_aux_bias, 24}, {Kind::bgrada, 19}}) {
    const bool bgrad = kind == Kind::bgrada;
    const std::string label = "kind " + std::to_string(static_cast<int>(kind)) + " cols " + std::to_string(cols);
    // Forward: x[3, 37, 53] . w[53, cols]. bgrada: x[3, 37, 53] . dy[3, 37, cols] over (3, 37).
    ir::Graph g;
    const ir::Shape lhs_shape{batch, seq, depth};
    const ir::Shape rhs_shape = bgrad ? ir::Shape{batch, seq, cols} : ir::Shape{depth, cols};
    const ir::Value l = g.input("l", lhs_shape, DType::bf16), r = g.input("r", rhs_shape, DType::bf16);
    const ir::Attrs attrs = bgrad ? ir::Attrs{{"lhs_batch", Ints{}}, {"rhs_batch", Ints{}}, {"lhs_contract", Ints{0, 1}},
                                              {"rhs_contract", Ints{0, 1}}}
                                  : ir::Attrs{{"lhs_batch", Ints{}}, {"rhs_batch", Ints{}}, {"lhs_contract", Ints{2}},
                                              {"rhs_contract", Ints{0}}};
    const ir::Op& op = g.op(g.add(OpKind::Dot, {l, r}, attrs, "dot"));
    const ir::Shape& out_shape = op.outputs[0].shape;
    const int64_t out_rows = bgrad ? depth : rows, out_numel = out_rows * cols;
    const auto x = bf16_values(rows * depth, rng, -1, 1);
    const auto y = bf16_values(bgrad ? rows * cols : depth * cols, rng, -1, 1);
    const auto b = bf16_values(cols, rng, -1, 1);
    // fp64 reference: out[i, j] = sum_p lhs(i, p) rhs(p, j) (+ bias[j]); bgrada's lhs is x^T.
    std::vector<double> pre(static_cast<size_t>(out_numel)), act(pre.size()), sums(static_cast<size_t>(cols));
    for (int64_t i = 0; i < out_rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        double s = kind == Kind::bias || kind == Kind::gelu_aux_bias ? b[j] : 0.0;
        const int64_t inner = bgrad ? rows : depth;
        for (int64_t p = 0; p < inner; ++p) {
          s += bgrad ? double{x[p * depth + i]} * y[p * cols + j] : double{x[i * depth + p]} * y[p * cols + j];
        }
        pre[i * cols + j] = s;
        act[i * cols + j] = kind == Kind::gelu_aux_bias ? gelu(s) : s;
      }
    }
    for (int64_t p = 0; bgrad && p < rows; ++p) {
      for (int64_t j = 0; j < cols; ++j) sums[j] += y[p * cols + j];
    }
    const cuda::DotOperand lhs{gpu.bf16(x), Elem::bf16, lhs_shape};
    const cuda::DotOperand rhs{gpu.bf16(y), Elem::bf16, rhs_shape};
    cuda::GemmEpilogue epilogue;
    if (kind == Kind::bias || kind == Kind::gelu_aux_bias) epilogue.bias = gpu.bf16(b);
    epilogue.bias_elem = Elem::bf16;
    if (kind == Kind::gelu_aux_bias) epilogue.gelu_aux = gpu.zeros(out_numel * 2);
    if (bgrad) epilogue.bias_grad = gpu.zeros(cols * 4);
    void* out = gpu.zeros(out_numel * 2);
    int64_t keys = 0;  // the keys the first tuned pass chose (a bias type cuBLASLt refuses is one too)
    for (int pass = 0; pass < 3; ++pass) {  // untuned, tuned (times its keys), tuned again (reuses them)
      const int64_t tuned = tuner.tuned, reused = tuner.reused;
      ASSERT_EQ(cudaMemset(out, 0, static_cast<size_t>(out_numel * 2)), cudaSuccess);
      auto ran = cuda::run_dot_epilogue(gpu.context(pass == 0 ? nullptr : &tuner), op, lhs, rhs, out, Elem::bf16,
                                        out_shape, Elem::bf16, epilogue);
      const std::string at = label + " pass " + std::to_string(pass);
      ASSERT_TRUE(ran.is_ok()) << at << ": " << ran.error().message();
      ASSERT_TRUE(*ran) << at << ": cuBLASLt refused it";
      EXPECT_LE(max_abs_diff(gpu.read_bf16(out, out_numel), act), 0.06) << at;
      if (kind == Kind::gelu_aux_bias) {
        EXPECT_LE(max_abs_diff(gpu.read_bf16(epilogue.gelu_aux, out_numel), pre), 0.06) << at;
      }
      if (bgrad) {
        // Sums of 111 values in [-1, 1): the gradient may come through a bf16 vector (half an ulp: 0.03 at 8).
        EXPECT_LE(max_abs_diff(gpu.read_f32(epilogue.bias_grad, cols), sums), 0.05) << at;
      }
      if (pass == 1) keys = tuner.tuned - tuned;
      EXPECT_EQ(tuner.tuned - tuned, pass == 1 ? keys : 0) << at;
      EXPECT_EQ(tuner.reused - reused, pass == 2 ? keys : 0) << at;
    }
    EXPECT_GE(keys, 1) << label;
  }
  EXPECT_EQ(tuner.best.size(), static_cast<size_t>(tuner.tuned));
}

// GPT-1.3B's GEMMs as one step runs them (8 x 1024 tokens, hidden 2048, ffn 8192, vocab 51200;
// weights [in, out], the tied lm_head wte[vocab, hidden]), bf16 on random values: TFLOP/s of cublasGemmEx (plain
// ones) or the untuned cuBLASLt epilogue, of the tuned cuBLASLt call, tuned with a 128 MiB
// workspace, and tuned with a host clock and a sync around each call (as the per-op table).
// Run by hand: --gtest_also_run_disabled_tests --gtest_filter=CudaGemm.DISABLED_*
TEST(CudaGemm, DISABLED_GptShapes) {
  const int64_t T = 8, S = 1024, H = 2048, F = 8192, V = 51200;
  struct Shape {
    std::string name;
    ir::Shape lhs, rhs;
    Ints lc, rc;
    Kind kind;
  };
  const Ints fwd_l{2}, fwd_r{0}, dx_r{1}, dw{0, 1};
  std::vector<Shape> shapes{
      {"qkv fwd +bias", {T, S, H}, {H, 3 * H}, fwd_l, fwd_r, Kind::bias},
      {"proj fwd +bias", {T, S, H}, {H, H}, fwd_l, fwd_r, Kind::bias},
      {"fc1 fwd +gelu_aux_bias", {T, S, H}, {H, F}, fwd_l, fwd_r, Kind::gelu_aux_bias},
      {"fc2 fwd +bias", {T, S, F}, {F, H}, fwd_l, fwd_r, Kind::bias},
      {"qkv dx", {T, S, 3 * H}, {H, 3 * H}, fwd_l, dx_r, Kind::plain},
      {"proj dx", {T, S, H}, {H, H}, fwd_l, dx_r, Kind::plain},
      {"fc1 dx", {T, S, F}, {H, F}, fwd_l, dx_r, Kind::plain},
      {"fc2 dx", {T, S, H}, {F, H}, fwd_l, dx_r, Kind::plain},
      {"qkv dW +bgrada", {T, S, H}, {T, S, 3 * H}, dw, dw, Kind::bgrada},
      {"proj dW +bgrada", {T, S, H}, {T, S, H}, dw, dw, Kind::bgrada},
      {"fc1 dW +bgrada", {T, S, H}, {T, S, F}, dw, dw, Kind::bgrada},
      {"fc2 dW +bgrada", {T, S, F}, {T, S, H}, dw, dw, Kind::bgrada},
      {"lm_head fwd", {T, S, H}, {V, H}, fwd_l, dx_r, Kind::plain},
      {"lm_head dx", {T, S, V}, {V, H}, fwd_l, fwd_r, Kind::plain},
      {"lm_head dW [H,V]", {T, S, H}, {T, S, V}, dw, dw, Kind::plain},
      {"lm_head dW [V,H]", {T, S, V}, {T, S, H}, dw, dw, Kind::plain},
  };
  const size_t small = size_t{32} << 20, large = size_t{128} << 20;
  Gpu gpu(large);
  cuda::GemmTuner tuner_small, tuner_large;
  std::mt19937 rng(11);
  cudaEvent_t start, stop;
  ASSERT_EQ(cudaEventCreate(&start), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&stop), cudaSuccess);
  std::printf(
      "| GEMM | M x N x K | untuned TFLOP/s | tuned | tuned, 128 MiB workspace | tuned, synchronised per call |\n"
      "|---|---|---|---|---|---|\n");
  for (const Shape& c : shapes) {
    ir::Graph g;
    const ir::Value l = g.input("l", c.lhs, DType::bf16), r = g.input("r", c.rhs, DType::bf16);
    const ir::Op& op = g.op(g.add(OpKind::Dot, {l, r},
                                  ir::Attrs{{"lhs_batch", Ints{}}, {"rhs_batch", Ints{}}, {"lhs_contract", c.lc},
                                            {"rhs_contract", c.rc}},
                                  "dot"));
    const ir::Shape& out_shape = op.outputs[0].shape;
    const int64_t out_numel = op.outputs[0].numel(), cols = out_shape.back();
    const int64_t depth = g.type(l).numel() / (out_numel / cols);
    const double flops = 2.0 * static_cast<double>(out_numel) * static_cast<double>(depth);
    const cuda::DotOperand lhs{gpu.random_bf16(g.type(l).numel(), rng), Elem::bf16, c.lhs};
    const cuda::DotOperand rhs{gpu.random_bf16(g.type(r).numel(), rng), Elem::bf16, c.rhs};
    void* out = gpu.zeros(out_numel * 2);
    cuda::GemmEpilogue epilogue;
    if (c.kind == Kind::bias || c.kind == Kind::gelu_aux_bias) epilogue.bias = gpu.zeros(cols * 4);
    if (c.kind == Kind::gelu_aux_bias) epilogue.gelu_aux = gpu.zeros(out_numel * 2);
    if (c.kind == Kind::bgrada) epilogue.bias_grad = gpu.zeros(cols * 4);
    double tflops[3] = {0, 0, 0};
    for (int variant = 0; variant < 3; ++variant) {
      cuda::GemmContext ctx = gpu.context(variant == 0 ? nullptr : variant == 1 ? &tuner_small : &tuner_large);
      ctx.workspace_bytes = variant == 2 ? large : small;
      float ms = 0;
      for (int rep = 0; rep < 12; ++rep) {
        if (rep == 2) {
          ASSERT_EQ(cudaEventRecord(start, ctx.stream), cudaSuccess);
        }
        if (variant == 0 && c.kind == Kind::plain) {
          ASSERT_TRUE(cuda::run_dot(ctx.blas, ctx.stream, op, lhs, rhs, out, Elem::bf16, out_shape, Elem::bf16, false)
                          .is_ok());
        } else {
          auto ran = cuda::run_dot_epilogue(ctx, op, lhs, rhs, out, Elem::bf16, out_shape, Elem::bf16, epilogue);
          ASSERT_TRUE(ran.is_ok() && *ran) << c.name;
        }
      }
      ASSERT_EQ(cudaEventRecord(stop, ctx.stream), cudaSuccess);
      ASSERT_EQ(cudaEventSynchronize(stop), cudaSuccess);
      ASSERT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaSuccess);
      tflops[variant] = flops / (ms / 10 * 1e-3) / 1e12;
    }
    // As gpt_gpu_bench's per-op table times an op: host clock around the call and a stream sync.
    double synced_seconds = 0;
    for (int rep = 0; rep < 10; ++rep) {
      const auto begin = std::chrono::steady_clock::now();
      cuda::GemmContext ctx = gpu.context(&tuner_small);  // the key variant 1 timed
      ctx.workspace_bytes = small;
      auto ran = cuda::run_dot_epilogue(ctx, op, lhs, rhs, out, Elem::bf16, out_shape, Elem::bf16, epilogue);
      ASSERT_TRUE(ran.is_ok() && *ran) << c.name;
      ASSERT_EQ(cudaStreamSynchronize(gpu.context(nullptr).stream), cudaSuccess);
      synced_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    }
    std::printf("| %s | %lld x %lld x %lld | %.0f | %.0f | %.0f | %.0f |\n", c.name.c_str(),
                static_cast<long long>(out_numel / cols), static_cast<long long>(cols), static_cast<long long>(depth),
                tflops[0], tflops[1], tflops[2], flops / (synced_seconds / 10) / 1e12);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

}  // namespace
}  // namespace strata::runtime::cuda_test
