// Times the fused causal attention kernels alone (CUDA events, median of 20 after 3 warm-ups) at
// GPT-1.3B's shapes: q, k, v [B, S, N, D] bf16 (layout bsnd), a causal [S, T] f32 bias, as
// fuse_for_cuda emits them; prints forward, backward and both, with TFLOP/s over the causal half.
// Not part of the CMake build: compile it with the kernel's source on a GPU machine, e.g.
//   nvcc -O3 -std=c++20 -arch=sm_90 -Isrc -Iinclude -Isrc/runtime/cuda bench/attention_bench.cu \
//     src/runtime/cuda/attention.cu BUILD/libstrata_core.a -o attbench
// Arguments: B N S D (default 8 32 1024 64).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "cuda_bench.h"
#include "kernels.h"

using namespace strata::runtime::cuda;

namespace {

// bf16 values in [-2, 2) from a fixed seed.
void* random_bf16(int64_t n) {
  std::vector<__nv_bfloat16> host(static_cast<size_t>(n));
  uint32_t x = 12345;
  for (auto& h : host) {
    x = x * 1664525u + 1013904223u;
    h = __float2bfloat16(static_cast<float>(x >> 8) / 16777216.0f * 4.0f - 2.0f);
  }
  void* p = nullptr;
  check(cudaMalloc(&p, n * 2), "cudaMalloc");
  check(cudaMemcpy(p, host.data(), n * 2, cudaMemcpyHostToDevice), "upload");
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t b = argc > 4 ? std::atoll(argv[1]) : 8, n = argc > 4 ? std::atoll(argv[2]) : 32;
  const int64_t s = argc > 4 ? std::atoll(argv[3]) : 1024, d = argc > 4 ? std::atoll(argv[4]) : 64;
  cudaStream_t stream;
  check(cudaStreamCreate(&stream), "stream");
  const int64_t count = b * s * n * d;
  void* q = random_bf16(count);
  void* k = random_bf16(count);
  void* v = random_bf16(count);
  void* dout = random_bf16(count);
  void *out, *dq, *dk, *dv, *bias, *fwd_ws, *bwd_ws;
  float* lse;
  for (void** p : {&out, &dq, &dk, &dv}) check(cudaMalloc(p, count * 2), "cudaMalloc");
  check(cudaMalloc(&lse, b * n * s * 4), "cudaMalloc");
  std::vector<float> mask(static_cast<size_t>(s * s));
  for (int64_t i = 0; i < s; ++i)
    for (int64_t j = 0; j < s; ++j) mask[i * s + j] = j <= i ? 0.0f : -1e9f;
  check(cudaMalloc(&bias, s * s * 4), "cudaMalloc");
  check(cudaMemcpy(bias, mask.data(), s * s * 4, cudaMemcpyHostToDevice), "upload");
  kernels::AttentionProblem a;
  a.batch = b * n;
  a.s = a.t = s;
  a.d = a.dv = d;
  a.heads = n;
  a.scale = 1.0f / std::sqrt(static_cast<float>(d));
  a.bias = bias;
  a.bias_elem = Elem::f32;
  a.bias_view.rank = 4;
  const int64_t shape[4] = {b, n, s, s}, stride[4] = {0, 0, s, 1};
  std::copy(shape, shape + 4, a.bias_view.shape);
  std::copy(stride, stride + 4, a.bias_view.stride);
  check(cudaMalloc(&fwd_ws, std::max<int64_t>(16, kernels::attention_workspace_bytes(a, false))), "cudaMalloc");
  check(cudaMalloc(&bwd_ws, std::max<int64_t>(16, kernels::attention_workspace_bytes(a, true))), "cudaMalloc");
  auto forward = [&] {
    check(kernels::attention_forward(a, q, k, v, Elem::bf16, out, lse, fwd_ws, stream), "forward");
  };
  auto backward = [&] {
    check(kernels::attention_backward(a, q, k, v, out, dout, lse, Elem::bf16, dq, dk, dv, bwd_ws, stream), "backward");
  };
  const double flop = 4.0 * b * n * s * s * d / 2;  // two GEMMs over the causal half
  const double f = median_ms(stream, forward), bw = median_ms(stream, backward);
  const double both = median_ms(stream, [&] { forward(); backward(); });
  check(cudaDeviceSynchronize(), "sync");
  std::printf("attention B=%lld N=%lld S=%lld D=%lld causal bsnd bf16\n", static_cast<long long>(b),
              static_cast<long long>(n), static_cast<long long>(s), static_cast<long long>(d));
  std::printf("  forward          %8.1f us %6.1f TFLOP/s\n", f * 1e3, flop / (f * 1e-3) / 1e12);
  std::printf("  backward         %8.1f us %6.1f TFLOP/s\n", bw * 1e3, 2.5 * flop / (bw * 1e-3) / 1e12);
  std::printf("  forward+backward %8.1f us %6.1f TFLOP/s\n", both * 1e3, 3.5 * flop / (both * 1e-3) / 1e12);
  return 0;
}
