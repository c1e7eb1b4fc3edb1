// The cuda backend's options. Storage: parameters, optimizer state, losses, reductions and
// embedding gradients stay fp32; activations and their gradients are bf16 (or fp32 with
// `activations = f32`); GEMMs take bf16 operands with fp32 accumulation. Point-to-point messages
// carry fp32 for float tensors so that a receiver may allocate with storage_dtype().
#pragma once

#include <memory>

#include "strata/runtime/backend.h"

namespace strata::runtime {

struct CudaOptions {
  DType activations = DType::bf16;  // bf16 or f32
};

#ifdef STRATA_HAVE_CUDA
// make_cuda_backend(local_rank) reads STRATA_CUDA_ACTIVATIONS ("bf16" or "f32") into the options.
Expected<std::unique_ptr<Backend>> make_cuda_backend(int local_rank, const CudaOptions& options);
#endif

}  // namespace strata::runtime
