// Tests of the core utilities: errors as values, JSON, flags, units and atomic file writes.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "strata/core/args.h"
#include "strata/core/dtype.h"
#include "strata/core/json.h"
#include "strata/core/status.h"
#include "strata/core/units.h"

namespace strata {
namespace {

Expected<int> half_of(int x) {
  if (x % 2) return make_error("in.yaml", "x", "is odd");
  return x / 2;
}

Expected<int> quarter_of(int x) {
  STRATA_ASSIGN_OR_RETURN(int half, half_of(x));
  STRATA_ASSIGN_OR_RETURN(int quarter, half_of(half));
  return quarter;
}

TEST(Status, ErrorMessageNamesFileFieldReason) {
  Error e = make_error("m.yaml", "model.hidden", "must be positive");
  EXPECT_EQ(e.message(), "m.yaml: model.hidden: must be positive");
  EXPECT_EQ(make_error("", "", "boom").message(), "boom");
  EXPECT_EQ(make_error("", "hidden", "bad").under("model").in_file("a.yaml").message(), "a.yaml: model.hidden: bad");
  EXPECT_EQ(make_error("", "[2]", "bad").under("layers").field, "layers[2]");
}

TEST(Status, ExpectedPropagates) {
  EXPECT_EQ(quarter_of(12).value(), 3);
  auto bad = quarter_of(6);  // 6/2 = 3 is odd
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.error().message(), "in.yaml: x: is odd");
  Status s = bad.status();
  EXPECT_FALSE(s.is_ok());
  EXPECT_TRUE(Status::ok().is_ok());
}

TEST(Json, DumpAndParseRoundTrip) {
  Json j = Json::object();
  j.set("name", "gpt \"1.3b\"\n");
  j.set("layers", 24);
  j.set("ratio", 0.125);
  Json arr = Json::array();
  arr.push(1);
  arr.push(Json());
  arr.push(true);
  j.set("list", arr);
  std::string text = j.dump();
  EXPECT_EQ(text, R"({"name":"gpt \"1.3b\"\n","layers":24,"ratio":0.125,"list":[1,null,true]})");
  auto back = Json::parse(text);
  ASSERT_TRUE(back.is_ok()) << back.error().message();
  EXPECT_EQ(back->dump(), text);
  EXPECT_EQ((*back)["layers"].as_int(), 24);
  EXPECT_EQ((*back)["list"].size(), 3u);
  EXPECT_TRUE((*back)["missing"].is_null());
}

TEST(Json, ParseErrorsHaveOffsets) {
  auto bad = Json::parse("{\"a\": [1, 2}", "t.json");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.error().file, "t.json");
  EXPECT_NE(bad.error().field.find("offset"), std::string::npos);
  EXPECT_FALSE(Json::parse("[1] x").is_ok());
  EXPECT_FALSE(Json::parse("\"abc").is_ok());
}

TEST(Args, ParsesFlagsAndReportsErrors) {
  ArgParser p("plan", "Plan a model.");
  p.option("model", "model YAML", "M.yaml").required("model").option("steps", "steps", "N").flag("json", "JSON out");
  const char* argv[] = {"plan", "--model", "m.yaml", "--steps=7", "--json"};
  ASSERT_TRUE(p.parse(5, const_cast<char**>(argv)).is_ok());
  EXPECT_EQ(p.get("model"), "m.yaml");
  EXPECT_EQ(p.get_int("steps", 1).value(), 7);
  EXPECT_TRUE(p.has("json"));

  ArgParser q("plan", "Plan a model.");
  q.option("model", "model YAML").required("model");
  const char* missing[] = {"plan"};
  Status s = q.parse(1, const_cast<char**>(missing));
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.error().field, "--model");

  ArgParser r("plan", "Plan a model.");
  r.option("steps", "steps");
  const char* unknown[] = {"plan", "--stepz", "3"};
  EXPECT_EQ(r.parse(3, const_cast<char**>(unknown)).error().field, "--stepz");
  const char* notint[] = {"plan", "--steps", "3x"};
  ASSERT_TRUE(r.parse(3, const_cast<char**>(notint)).is_ok());
  EXPECT_FALSE(r.get_int("steps", 0).is_ok());
}

TEST(Units, Formats) {
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_seconds(0.0123), "12.300 ms");
  EXPECT_EQ(format_flops(3.2e12), "3.20 TFLOP");
  EXPECT_EQ(format_count(1.3e9), "1.30 B");
}

TEST(DType, NamesAndSizes) {
  EXPECT_EQ(dtype_bytes(DType::bf16), 2);
  EXPECT_EQ(dtype_bytes(DType::f64), 8);
  EXPECT_EQ(parse_dtype("fp32").value(), DType::f32);
  EXPECT_STREQ(dtype_name(parse_dtype("bfloat16").value()), "bf16");
  EXPECT_FALSE(parse_dtype("f8").is_ok());
}

TEST(Files, AtomicWriteReplacesWholeFile) {
  auto dir = std::filesystem::temp_directory_path() / "strata_core_test";
  std::filesystem::create_directories(dir);
  std::string path = (dir / "x.txt").string();
  ASSERT_TRUE(write_file_atomically(path, "first").is_ok());
  ASSERT_TRUE(write_file_atomically(path, "second version").is_ok());
  EXPECT_EQ(read_text_file(path).value(), "second version");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  auto missing = read_text_file((dir / "nope.txt").string());
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.error().reason.find("cannot open"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace strata
