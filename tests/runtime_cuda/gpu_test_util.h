// Shared by the cuda backend's GPU tests: the backend under test, random tensors, one-op graphs
// run on the reference interpreter, and the relative-error measure of METHOD.md.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "strata/interp/interp.h"
#include "strata/runtime/backend.h"
#include "strata/runtime/cuda_backend.h"

namespace strata::runtime::cuda_test {

// One backend per activation type for the whole run (cuBLAS and NCCL set-up is slow).
inline Backend& backend(DType activations) {
  static std::map<DType, std::unique_ptr<Backend>> backends;
  auto& slot = backends[activations];
  if (!slot) {
    auto made = make_cuda_backend(0, CudaOptions{activations});
    if (!made.is_ok()) {
      ADD_FAILURE() << "no cuda backend: " << made.error().message();
      std::abort();
    }
    slot = std::move(made).value();
  }
  return *slot;
}

// Values of bf16 precision (so that both sides start from the same inputs), uniform in [lo, hi).
inline interp::Tensor random_tensor(const ir::Shape& shape, std::mt19937& rng, double lo = -1.0, double hi = 1.0) {
  interp::Tensor t(shape);
  std::uniform_real_distribution<float> dist(static_cast<float>(lo), static_cast<float>(hi));
  for (double& x : t.data) {
    const float f = dist(rng);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    bits &= 0xffff0000u;
    float r;
    std::memcpy(&r, &bits, 4);
    x = r;
  }
  return t;
}

inline interp::Tensor random_ids(const ir::Shape& shape, int64_t vocab, std::mt19937& rng) {
  interp::Tensor t(shape);
  std::uniform_int_distribution<int64_t> dist(0, vocab - 1);
  for (double& x : t.data) x = static_cast<double>(dist(rng));
  return t;
}

// ||a - b|| / ||b|| (or ||a - b|| when b is zero); infinite on NaN or a shape mismatch.
inline double relative_error(const interp::Tensor& a, const interp::Tensor& b) {
  if (a.shape != b.shape) return INFINITY;
  double diff = 0.0, ref = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (std::isnan(a[i])) return INFINITY;
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    ref += b[i] * b[i];
  }
  return ref > 0 ? std::sqrt(diff / ref) : std::sqrt(diff);
}

}  // namespace strata::runtime::cuda_test
