// Tensor types: element counts and the printed forms used in errors, DOT and JSON.
#include "strata/ir/types.h"

namespace strata::ir {

int64_t TensorType::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_string(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

std::string type_string(const TensorType& type) { return std::string(dtype_name(type.dtype)) + shape_string(type.shape); }

}  // namespace strata::ir
