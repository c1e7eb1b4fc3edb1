// Times the cuda backend's memory-bound kernels alone (CUDA events, median of 20 after 3 warm-ups)
// at GPT-1.3B's sizes and prints each one's effective bandwidth (bytes read + written / time). Not
// part of the CMake build: compile it with the kernels' sources on a GPU machine, e.g.
//   nvcc -O3 -std=c++20 -arch=sm_90 -Isrc -Iinclude -Isrc/runtime/cuda bench/memory_kernels_bench.cu \
//     src/runtime/cuda/{elementwise,nn,layout}.cu BUILD/libstrata_core.a -o mkbench
// (-DSTRATA_OLD_ADAM for kernel sources whose kernels::adam has no bf16-copy argument).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "cuda_bench.h"
#include "kernels.h"

using namespace strata::runtime::cuda;

namespace {

void* device(int64_t bytes, float value, Elem elem, cudaStream_t stream) {
  void* p = nullptr;
  check(cudaMalloc(&p, static_cast<size_t>(bytes)), "cudaMalloc");
  check(kernels::fill(p, elem, bytes / elem_bytes(elem), value, stream), "fill");
  return p;
}

void time(const char* name, double bytes, cudaStream_t stream, const std::function<void()>& run) {
  const double median = median_ms(stream, run);
  std::printf("%-44s %9.1f us %8.0f GB/s\n", name, median * 1e3, bytes / (median * 1e-3) / 1e9);
}

#ifndef STRATA_OLD_ADAM
// GPT-1.3B's 292 parameters in the order of its AdamUpdates: per layer the attention's qkv and
// projection, the MLP's two matrices (bf16 gradients, bf16 copies) with their biases and the two
// LayerNorms' gamma and beta (fp32 gradients); then wte, wpe and the last LayerNorm.
std::vector<kernels::AdamTensor> gpt_adam_tensors(cudaStream_t stream) {
  const int64_t h = 2048;
  std::vector<std::pair<int64_t, bool>> sizes;  // (count, matrix)
  for (int layer = 0; layer < 24; ++layer) {
    for (auto [rows, cols] : {std::pair{h, 3 * h}, std::pair{h, h}, std::pair{h, 4 * h}, std::pair{4 * h, h}}) {
      sizes.push_back({rows * cols, true});
      sizes.push_back({cols, false});
    }
    for (int k = 0; k < 4; ++k) sizes.push_back({h, false});
  }
  sizes.push_back({51200 * h, true});
  sizes.push_back({1024 * h, true});
  sizes.push_back({h, false});
  sizes.push_back({h, false});
  std::vector<kernels::AdamTensor> tensors;
  for (auto [n, matrix] : sizes) {
    kernels::AdamTensor t;
    t.count = n;
    t.grad_elem = matrix ? Elem::bf16 : Elem::f32;
    t.param = device(n * 4, 0.5f, Elem::f32, stream);
    t.grad = device(n * elem_bytes(t.grad_elem), 0.01f, t.grad_elem, stream);
    t.m = device(n * 4, 0.0f, Elem::f32, stream);
    t.v = device(n * 4, 0.0f, Elem::f32, stream);
    t.param_out = device(n * 4, 0.0f, Elem::f32, stream);
    t.m_out = device(n * 4, 0.0f, Elem::f32, stream);
    t.v_out = device(n * 4, 0.0f, Elem::f32, stream);
    t.param_bf16 = matrix ? device(n * 2, 0.0f, Elem::bf16, stream) : nullptr;
    tensors.push_back(t);
  }
  return tensors;
}

void adam_one_by_one(const kernels::AdamParams& p, const std::vector<kernels::AdamTensor>& tensors, bool sync,
                     cudaStream_t stream) {
  for (const auto& t : tensors) {
    check(kernels::adam(p, t.param, Elem::f32, t.grad, t.grad_elem, t.m, Elem::f32, t.v, Elem::f32, t.param_out,
                        t.m_out, t.v_out, t.param_bf16, t.count, stream),
          "adam");
    if (sync) check(cudaStreamSynchronize(stream), "sync");
  }
}

// The whole step's update: one launch per tensor, adam_batch, and one launch per tensor with a
// synchronisation after each (host clock, as gpt_gpu_bench's per-op table measures).
void gpt_adam(const kernels::AdamParams& p, cudaStream_t stream) {
  std::vector<kernels::AdamTensor> all = gpt_adam_tensors(stream), vectors;
  double bytes = 0.0, vector_bytes = 0.0;
  for (const auto& t : all) {
    const double b = t.count * (24.0 + elem_bytes(t.grad_elem) + (t.param_bf16 != nullptr ? 2.0 : 0.0));
    bytes += b;
    if (t.param_bf16 == nullptr) vectors.push_back(t), vector_bytes += b;
  }
  std::printf("GPT-1.3B AdamW: %zu tensors (%zu vectors), %.2f GB moved\n", all.size(), vectors.size(), bytes / 1e9);
  time("adam, one launch per tensor (292)", bytes, stream, [&] { adam_one_by_one(p, all, false, stream); });
  time("adam_batch (292)", bytes, stream, [&] {
    check(kernels::adam_batch(p, all.data(), static_cast<int64_t>(all.size()), stream), "adam_batch");
  });
  time("adam, one launch per vector (194)", vector_bytes, stream, [&] { adam_one_by_one(p, vectors, false, stream); });
  time("adam_batch (194 vectors)", vector_bytes, stream, [&] {
    check(kernels::adam_batch(p, vectors.data(), static_cast<int64_t>(vectors.size()), stream), "adam_batch");
  });
  std::vector<double> ms;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    adam_one_by_one(p, all, true, stream);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("%-44s %9.1f us (host clock, median of 5)\n", "adam, synchronised after each tensor (292)",
              ms[ms.size() / 2] * 1e3);
  for (const auto& t : all) {
    for (const void* q : {t.param, t.grad, t.m, t.v, static_cast<const void*>(t.param_out),
                          static_cast<const void*>(t.m_out), static_cast<const void*>(t.v_out),
                          static_cast<const void*>(t.param_bf16)}) {
      cudaFree(const_cast<void*>(q));
    }
  }
}

#endif

}  // namespace

int main() {
  cudaStream_t s;
  check(cudaStreamCreate(&s), "stream");
  // As the backend: freed blocks stay in the pool (else every cudaFreeAsync + synchronisation hands
  // them back and the launchers' scratch allocations are timed as fresh mappings).
  cudaMemPool_t pool;
  check(cudaDeviceGetDefaultMemPool(&pool, 0), "pool");
  uint64_t threshold = UINT64_MAX;
  check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), "pool threshold");
  kernels::AdamParams ap{1e-4f, 0.9f, 0.95f, 1e-8f, 0.01f, 0.5f, 0.3f};
#ifndef STRATA_OLD_ADAM
  gpt_adam(ap, s);
#endif
  for (int64_t n : {int64_t{16777216}, int64_t{104857600}}) {
    void* w = device(n * 4, 0.5f, Elem::f32, s);
    void* g = device(n * 2, 0.01f, Elem::bf16, s);
    void* m = device(n * 4, 0.0f, Elem::f32, s);
    void* v = device(n * 4, 0.0f, Elem::f32, s);
    void* wo = device(n * 4, 0.0f, Elem::f32, s);
    void* mo = device(n * 4, 0.0f, Elem::f32, s);
    void* vo = device(n * 4, 0.0f, Elem::f32, s);
    void* copy = device(n * 2, 0.0f, Elem::bf16, s);
    char name[64];
#ifdef STRATA_OLD_ADAM
    std::snprintf(name, sizeof name, "adam %lld (old kernel)", static_cast<long long>(n));
    time(name, 26.0 * n, s, [&] {
      check(kernels::adam(ap, w, Elem::f32, g, Elem::bf16, m, Elem::f32, v, Elem::f32, wo, mo, vo, n, s), "adam");
    });
#else
    std::snprintf(name, sizeof name, "adam %lld", static_cast<long long>(n));
    time(name, 26.0 * n, s, [&] {
      check(kernels::adam(ap, w, Elem::f32, g, Elem::bf16, m, Elem::f32, v, Elem::f32, wo, mo, vo, nullptr, n, s),
            "adam");
    });
    std::snprintf(name, sizeof name, "adam %lld + bf16 copy", static_cast<long long>(n));
    time(name, 28.0 * n, s, [&] {
      check(kernels::adam(ap, w, Elem::f32, g, Elem::bf16, m, Elem::f32, v, Elem::f32, wo, mo, vo, copy, n, s), "adam");
    });
#endif
    const View flat = kernels::contiguous(&n, 1);
    std::snprintf(name, sizeof name, "cast f32->bf16 %lld", static_cast<long long>(n));
    time(name, 6.0 * n, s, [&] { check(kernels::copy_view(copy, Elem::bf16, flat, wo, Elem::f32, flat, s), "cast"); });
    for (void* p : {w, g, m, v, wo, mo, vo, copy}) cudaFree(p);
  }
  {
    const int64_t rows = 8192, h = 2048;
    void* x = device(rows * h * 2, 0.3f, Elem::bf16, s);
    void* dy = device(rows * h * 2, 0.1f, Elem::bf16, s);
    void* y = device(rows * h * 2, 0.0f, Elem::bf16, s);
    void* gamma = device(h * 4, 1.0f, Elem::f32, s);
    void* beta = device(h * 4, 0.0f, Elem::f32, s);
    void* dg = device(h * 4, 0.0f, Elem::f32, s);
    void* db = device(h * 4, 0.0f, Elem::f32, s);
    check(kernels::fill(x, Elem::bf16, 1, 2.0f, s), "fill");  // rows with a spread
    time("layer_norm [8192, 2048] bf16", 4.0 * rows * h, s, [&] {
      check(kernels::layer_norm(x, Elem::bf16, gamma, Elem::f32, beta, Elem::f32, rows, h, 1e-5f, y, Elem::bf16, s),
            "ln");
    });
    time("layer_norm_grad [8192, 2048] bf16", 6.0 * rows * h, s, [&] {
      check(kernels::layer_norm_grad(x, Elem::bf16, gamma, Elem::f32, dy, Elem::bf16, rows, h, 1e-5f, y, Elem::bf16, dg,
                                     Elem::f32, db, Elem::f32, s),
            "lng");
    });
    const View v = kernels::contiguous(std::vector<int64_t>{rows, h}.data(), 2);
    time("add [8192, 2048] bf16", 6.0 * rows * h, s, [&] {
      check(kernels::binary(kernels::Binary::add, x, Elem::bf16, v, dy, Elem::bf16, v, y, Elem::bf16, s), "add");
    });
    View bias = v;
    bias.stride[0] = 0;
    time("add [8192, 2048] bf16 + [2048] f32 bias", 4.0 * rows * h, s, [&] {
      check(kernels::binary(kernels::Binary::add, x, Elem::bf16, v, gamma, Elem::f32, bias, y, Elem::bf16, s), "bias");
    });
    // The Slices of qkv [B * S, 3H] into q, k, v and the Concat of dq, dk, dv back (word copies).
    void* qkv = device(rows * 3 * h * 2, 0.2f, Elem::bf16, s);
    View part = v;
    part.stride[0] = 3 * h;
    part.offset = h;
    time("slice [8192, 6144] -> [8192, 2048] bf16", 4.0 * rows * h, s, [&] {
      check(kernels::copy_view(y, Elem::bf16, v, qkv, Elem::bf16, part, s), "slice");
    });
    time("concat part [8192, 2048] -> [8192, 6144] bf16", 4.0 * rows * h, s, [&] {
      check(kernels::copy_view(qkv, Elem::bf16, part, y, Elem::bf16, v, s), "concat");
    });
    for (void* p : {x, dy, y, gamma, beta, dg, db, qkv}) cudaFree(p);
  }
  {
    const int64_t rows = 8192, vocab = 51200;
    void* logits = device(rows * vocab * 2, 0.01f, Elem::bf16, s);
    void* dlogits = device(rows * vocab * 2, 0.0f, Elem::bf16, s);
    void* loss = device(4, 0.0f, Elem::f32, s);
    void* dloss = device(4, 1.0f, Elem::f32, s);
    int32_t* labels = static_cast<int32_t*>(device(rows * 4, 3.0f, Elem::i32, s));
    int32_t* flag = static_cast<int32_t*>(device(4, 0.0f, Elem::i32, s));
    time("cross_entropy [8192, 51200] bf16", 2.0 * rows * vocab, s, [&] {
      check(kernels::cross_entropy(logits, Elem::bf16, labels, rows, vocab, loss, Elem::f32, flag, 1, s), "ce");
    });
    time("cross_entropy_grad [8192, 51200] bf16", 4.0 * rows * vocab, s, [&] {
      check(kernels::cross_entropy_grad(logits, Elem::bf16, labels, dloss, Elem::f32, rows, vocab, dlogits, Elem::bf16,
                                        flag, 1, s),
            "ceg");
    });
  }
  check(cudaStreamSynchronize(s), "sync");
  return 0;
}
