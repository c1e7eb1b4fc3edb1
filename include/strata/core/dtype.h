// Element types shared by the IR, the profiler and the runtime.
#pragma once

#include <cstdint>
#include <string>

#include "strata/core/status.h"

namespace strata {

enum class DType : uint8_t { f32, f64, bf16, f16, i32 };

int64_t dtype_bytes(DType dtype);
const char* dtype_name(DType dtype);                   // "f32", "f64", "bf16", "f16", "i32"
Expected<DType> parse_dtype(const std::string& name);  // also "fp32", "float32", "float16", "int32"
bool is_float(DType dtype);

}  // namespace strata
