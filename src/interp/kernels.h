// Internal to src/interp: the kernel signature and the per-concern kernel lists that interp.cpp
// puts in its table keyed by OpKind. Outputs arrive shaped from the op's inferred types.
#pragma once

#include <vector>

#include "strata/interp/interp.h"

namespace strata::interp::kernels {

struct Args {
  const ir::Op& op;
  std::vector<const Tensor*> inputs;
  std::vector<Tensor>& outputs;
  const Tensor& in(size_t i) const { return *inputs[i]; }
  Tensor& out(size_t i = 0) const { return outputs[i]; }
};

using Kernel = Status (*)(const Args&);

struct Entry {
  ir::OpKind kind;
  Kernel kernel;
};

// One list per file; interp.cpp checks that together they cover every kind exactly once.
std::vector<Entry> elementwise_kernels();  // kernels_elementwise.cpp
std::vector<Entry> layout_kernels();       // kernels_layout.cpp (incl. reductions)
std::vector<Entry> dot_kernels();          // kernels_dot.cpp
std::vector<Entry> nn_kernels();           // kernels_nn.cpp (gather, softmax, norms, conv, pools)
std::vector<Entry> moe_loss_kernels();     // kernels_moe_loss.cpp
std::vector<Entry> optimizer_kernels();    // kernels_optimizer.cpp

// Shared helpers (interp.cpp).
// Multi-index of flat index `flat` in `shape`.
void unravel(int64_t flat, const ir::Shape& shape, std::vector<int64_t>& index);
// An attribute that the shape rule already validated: a failure here is our bug.
int64_t attr_int(const ir::Op& op, const char* key, int64_t fallback);
double attr_real(const ir::Op& op, const char* key, double fallback);
std::vector<int64_t> attr_ints(const ir::Op& op, const char* key);
int64_t norm_axis(int64_t axis, int64_t rank);

}  // namespace strata::interp::kernels
