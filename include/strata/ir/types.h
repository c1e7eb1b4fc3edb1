// Tensor types: element type and shape. Shapes are int64 dims; a scalar has rank 0.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "strata/core/dtype.h"
#include "strata/core/status.h"

namespace strata::ir {

using strata::DType;

using Shape = std::vector<int64_t>;

struct TensorType {
  Shape shape;
  DType dtype = DType::f32;

  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  int64_t numel() const;
  int64_t bytes() const { return numel() * dtype_bytes(dtype); }
  bool operator==(const TensorType&) const = default;
};

std::string shape_string(const Shape& shape);  // "[2, 1024, 768]"
std::string type_string(const TensorType& type);  // "f32[2, 1024, 768]"

}  // namespace strata::ir
