// Times the cuda backend's memory-bound kernels alone (CUDA events, median of 20 after 3 warm-ups)
// at GPT-1.3B's sizes and prints each one's effective bandwidth (bytes read + written / time). Not
// part of the CMake build: compile it with the kernels' sources on a GPU machine, e.g.
//   nvcc -O3 -std=c++20 -arch=sm_90 -Isrc -Iinclude -Isrc/runtime/cuda bench/memory_kernels_bench.cu \
//     src/runtime/cuda/{elementwise,nn,layout}.cu BUILD/libstrata_core.a -o mkbench
// (-DSTRATA_OLD_ADAM for kernel sources whose kernels::adam has no bf16-copy argument).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "kernels.h"

using namespace strata::runtime::cuda;

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

void check(const strata::Status& s, const char* what) {
  if (!s.is_ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.message().c_str());
    std::exit(1);
  }
}

void* device(int64_t bytes, float value, Elem elem, cudaStream_t stream) {
  void* p = nullptr;
  check(cudaMalloc(&p, static_cast<size_t>(bytes)), "cudaMalloc");
  check(kernels::fill(p, elem, bytes / elem_bytes(elem), value, stream), "fill");
  return p;
}

void time(const char* name, double bytes, cudaStream_t stream, const std::function<void()>& run) {
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  for (int i = 0; i < 3; ++i) run();
  std::vector<float> ms;
  for (int i = 0; i < 20; ++i) {
    check(cudaEventRecord(start, stream), "record");
    run();
    check(cudaEventRecord(stop, stream), "record");
    check(cudaEventSynchronize(stop), "sync");
    float t = 0;
    check(cudaEventElapsedTime(&t, start, stop), "elapsed");
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  std::printf("%-44s %9.1f us %8.0f GB/s\n", name, median * 1e3, bytes / (median * 1e-3) / 1e9);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

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
    for (void* p : {x, dy, y, gamma, beta, dg, db}) cudaFree(p);
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
