// Helpers shared by the IR tests: short type constructors and Error matchers.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "strata/ir/op.h"

namespace strata::ir::testing {

inline TensorType f32(Shape shape) { return TensorType{std::move(shape), DType::f32}; }
inline TensorType bf16(Shape shape) { return TensorType{std::move(shape), DType::bf16}; }
inline TensorType i32(Shape shape) { return TensorType{std::move(shape), DType::i32}; }

// Infers and expects exactly the given output types.
inline void expect_types(OpKind kind, const std::vector<TensorType>& inputs, const Attrs& attrs,
                         const std::vector<TensorType>& expected) {
  auto result = infer_types(kind, inputs, attrs);
  ASSERT_TRUE(result.is_ok()) << op_kind_name(kind) << ": " << result.error().message();
  ASSERT_EQ(result->size(), expected.size()) << op_kind_name(kind);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(type_string((*result)[i]), type_string(expected[i])) << op_kind_name(kind) << " output " << i;
  }
}

// Infers and expects an Error with this field whose reason contains `reason_part`.
inline void expect_error(OpKind kind, const std::vector<TensorType>& inputs, const Attrs& attrs,
                         const std::string& field, const std::string& reason_part) {
  auto result = infer_types(kind, inputs, attrs);
  ASSERT_FALSE(result.is_ok()) << op_kind_name(kind) << " should fail; got " << type_string((*result)[0]);
  EXPECT_EQ(result.error().field, field) << result.error().message();
  EXPECT_NE(result.error().reason.find(reason_part), std::string::npos)
      << "reason \"" << result.error().reason << "\" lacks \"" << reason_part << "\"";
}

}  // namespace strata::ir::testing
