// Tests of the op table, names, attribute accessors and printing of types and attributes.
#include <gtest/gtest.h>

#include <set>

#include "ir_test_util.h"
#include "strata/ir/op.h"

namespace strata::ir {
namespace {

TEST(OpTable, EveryKindHasAUniqueNameThatParsesBack) {
  std::set<std::string> names;
  for (int k = 0; k < static_cast<int>(OpKind::kCount); ++k) {
    const auto kind = static_cast<OpKind>(k);
    const std::string name = op_kind_name(kind);
    EXPECT_TRUE(names.insert(name).second) << name;
    auto parsed = parse_op_kind(name);
    ASSERT_TRUE(parsed.is_ok()) << name;
    EXPECT_EQ(*parsed, kind);
    EXPECT_EQ(std::string(op_info(kind).name), name);
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(OpKind::kCount));
  EXPECT_EQ(std::string(op_kind_name(OpKind::Dot)), "Dot");
  EXPECT_EQ(std::string(op_kind_name(OpKind::AdamUpdate)), "AdamUpdate");
  auto bad = parse_op_kind("MatMul");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.error().reason.find("MatMul"), std::string::npos);
}

TEST(OpTable, ArityAndFlags) {
  EXPECT_TRUE(op_info(OpKind::Parameter).is_source);
  EXPECT_TRUE(op_info(OpKind::Input).is_source);
  EXPECT_FALSE(op_info(OpKind::Add).is_source);
  EXPECT_TRUE(op_info(OpKind::Add).elementwise);
  EXPECT_FALSE(op_info(OpKind::Dot).elementwise);
  EXPECT_EQ(op_info(OpKind::Add).min_inputs, 2);
  EXPECT_EQ(op_info(OpKind::Concat).max_inputs, -1);
  EXPECT_EQ(op_info(OpKind::AdamUpdate).min_inputs, 4);
  EXPECT_EQ(op_info(OpKind::CrossEntropyGrad).max_inputs, 3);
}

TEST(OpTable, WrongInputCountIsAnError) {
  using testing::f32;
  testing::expect_error(OpKind::Add, {f32({2})}, {}, "inputs", "takes 2 input(s), got 1");
  testing::expect_error(OpKind::Exp, {f32({2}), f32({2})}, {}, "inputs", "got 2");
  testing::expect_error(OpKind::Concat, {}, {{"axis", int64_t{0}}}, "inputs", "at least 1");
  testing::expect_error(OpKind::Input, {f32({2})}, {{"shape", Shape{2}}}, "inputs", "takes 0");
}

TEST(OpTable, NegativeInputDimIsAnError) {
  testing::expect_error(OpKind::Neg, {testing::f32({2, -1})}, {}, "inputs[0]", "negative dimension");
}

TEST(Attrs, TypedReadsAndErrorsNameTheKey) {
  Attrs attrs{{"n", int64_t{3}}, {"x", 0.5}, {"list", std::vector<int64_t>{1, 2}}, {"s", std::string("hi")}};
  EXPECT_EQ(*attrs.get_int("n"), 3);
  EXPECT_DOUBLE_EQ(*attrs.get_real("x"), 0.5);
  EXPECT_DOUBLE_EQ(*attrs.get_real("n"), 3.0);  // integers are accepted as reals
  EXPECT_EQ(*attrs.get_ints("list"), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(*attrs.get_string("s"), "hi");

  auto missing = attrs.get_int("absent");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.error().field, "absent");
  EXPECT_EQ(missing.error().reason, "missing attribute");
  auto wrong = attrs.get_ints("n");
  ASSERT_FALSE(wrong.is_ok());
  EXPECT_EQ(wrong.error().field, "n");
  EXPECT_EQ(wrong.error().reason, "expected an integer list");
  EXPECT_EQ(attrs.get_int("x").error().reason, "expected an integer");
  EXPECT_EQ(attrs.get_string("n").error().reason, "expected a string");
  EXPECT_EQ(attrs.get_real("s").error().reason, "expected a number");

  EXPECT_EQ(attrs.int_or("n", 7), 3);
  EXPECT_EQ(attrs.int_or("absent", 7), 7);
  EXPECT_DOUBLE_EQ(attrs.real_or("absent", 1.5), 1.5);
  EXPECT_DOUBLE_EQ(attrs.real_or("x", 1.5), 0.5);
  attrs.set("n", int64_t{9});
  EXPECT_EQ(*attrs.get_int("n"), 9);
  EXPECT_TRUE(attrs.has("s"));
  EXPECT_FALSE(attrs.has("t"));
}

TEST(Attrs, WrongTypeWithDefaultIsABug) {
  Attrs attrs{{"n", std::string("three")}};
  EXPECT_DEATH((void)attrs.int_or("n", 1), "expected an integer");
}

TEST(Attrs, ValueStrings) {
  EXPECT_EQ(attr_value_string(AttrValue{int64_t{-4}}), "-4");
  EXPECT_EQ(attr_value_string(AttrValue{0.25}), "0.25");
  EXPECT_EQ(attr_value_string(AttrValue{2.0}), "2.0");
  EXPECT_EQ(attr_value_string(AttrValue{1e-5}), "1e-05");
  EXPECT_EQ(attr_value_string(AttrValue{std::vector<int64_t>{1, 0, 2}}), "[1, 0, 2]");
  EXPECT_EQ(attr_value_string(AttrValue{std::string("gelu")}), "\"gelu\"");
}

TEST(Types, NumelBytesAndStrings) {
  TensorType t{{2, 1024, 768}, DType::bf16};
  EXPECT_EQ(t.numel(), 2 * 1024 * 768);
  EXPECT_EQ(t.bytes(), 2 * 1024 * 768 * 2);
  EXPECT_EQ(t.rank(), 3);
  EXPECT_EQ(type_string(t), "bf16[2, 1024, 768]");
  EXPECT_EQ(shape_string({}), "[]");
  TensorType scalar{{}, DType::f32};
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(type_string(scalar), "f32[]");
  EXPECT_EQ((TensorType{{3, 0}, DType::f32}).numel(), 0);
}

TEST(Roles, Names) {
  EXPECT_STREQ(role_name(Role::forward), "forward");
  EXPECT_STREQ(role_name(Role::backward), "backward");
  EXPECT_STREQ(role_name(Role::update), "update");
}

}  // namespace
}  // namespace strata::ir
