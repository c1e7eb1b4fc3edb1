// Element-type names and sizes.
#include "strata/core/dtype.h"

namespace strata {

int64_t dtype_bytes(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::f16: return 2;
    case DType::i32: return 4;
  }
  STRATA_UNREACHABLE("unknown dtype");
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i32: return "i32";
  }
  STRATA_UNREACHABLE("unknown dtype");
}

Expected<DType> parse_dtype(const std::string& name) {
  if (name == "f32" || name == "fp32" || name == "float32" || name == "float") return DType::f32;
  if (name == "f64" || name == "fp64" || name == "float64" || name == "double") return DType::f64;
  if (name == "bf16" || name == "bfloat16") return DType::bf16;
  if (name == "f16" || name == "fp16" || name == "float16" || name == "half") return DType::f16;
  if (name == "i32" || name == "int32") return DType::i32;
  return make_error("", "", "unknown dtype '" + name + "' (expected f32, f64, bf16, f16 or i32)");
}

bool is_float(DType dtype) { return dtype != DType::i32; }

}  // namespace strata
