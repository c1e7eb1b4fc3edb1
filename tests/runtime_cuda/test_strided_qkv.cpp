// Attention reading q, k, v in place from the qkv GEMM's [B, S, 3, N, D] output and AttentionGrad
// writing dq, dk, dv into the buffer that their Concat then is (CudaTensor::RowView): the Slices and
// the Concat copy nothing, and every value is bit for bit what the copying path
// (STRATA_CUDA_STRIDED_QKV=0) gives, and within bf16 rounding of the interpreter's.
#include <cstdlib>

#include "gpu_test_util.h"
#include "runtime/cuda/cuda_tensor.h"

namespace strata::runtime::cuda_test {
namespace {

using ir::OpKind;
using Ints = std::vector<int64_t>;

std::unique_ptr<Backend> strided_backend(const char* strided) {
  setenv("STRATA_CUDA_STRIDED_QKV", strided, 1);
  auto made = make_cuda_backend(0, CudaOptions{DType::bf16});
  unsetenv("STRATA_CUDA_STRIDED_QKV");
  EXPECT_TRUE(made.is_ok()) << made.error().message();
  return made.is_ok() ? std::move(made).value() : nullptr;
}

const cuda::CudaTensor::RowView* row_view(const TensorPtr& t) {
  const auto* cuda = dynamic_cast<const cuda::CudaTensor*>(t.get());
  return cuda == nullptr ? nullptr : cuda->row_view();
}

struct QkvCase {
  int64_t b, s, n, d;
};

// GPT's attention block as fuse_for_cuda leaves it: qkv [B, S, 3, N, D] -> three Slices ->
// Reshapes to [B, S, N, D] -> Attention (bsnd, causal) -> AttentionGrad -> dq, dk, dv reshaped to
// [B, S, 1, N, D] -> Concat on axis 2. Outputs: out, lse, the Concat.
struct QkvGraph {
  ir::Graph g;
  std::vector<ir::OpId> order;
  ir::OpId att = 0, grad = 0, concat = 0;
};

QkvGraph qkv_graph(const QkvCase& c) {
  QkvGraph q;
  ir::Graph& g = q.g;
  const ir::Value qkv = g.input("qkv", {c.b, c.s, 3, c.n, c.d});
  const ir::Value mask = g.input("mask", {c.s, c.s});
  const ir::Value dout = g.input("dout", {c.b, c.s, c.n, c.d});
  std::vector<ir::Value> parts;
  for (int64_t i = 0; i < 3; ++i) {
    const ir::OpId slice = g.add(OpKind::Slice, {qkv}, {{"starts", Ints{0, 0, i, 0, 0}}, {"limits", Ints{c.b, c.s, i + 1, c.n, c.d}}},
                                 "slice" + std::to_string(i));
    const ir::OpId part = g.add(OpKind::Reshape, {ir::Value{slice, 0}}, {{"shape", Ints{c.b, c.s, c.n, c.d}}},
                                "part" + std::to_string(i));
    q.order.push_back(slice);
    q.order.push_back(part);
    parts.push_back(ir::Value{part, 0});
  }
  const ir::Attrs attrs{{"scale", 1.0 / std::sqrt(static_cast<double>(c.d))}, {"layout", std::string("bsnd")}};
  q.att = g.add(OpKind::Attention, {parts[0], parts[1], parts[2], mask}, attrs, "att");
  q.grad = g.add(OpKind::AttentionGrad, {parts[0], parts[1], parts[2], mask, ir::Value{q.att, 0}, ir::Value{q.att, 1}, dout},
                 attrs, "att_grad");
  q.order.push_back(q.att);
  q.order.push_back(q.grad);
  std::vector<ir::Value> grads;
  for (int32_t i = 0; i < 3; ++i) {
    const ir::OpId r = g.add(OpKind::Reshape, {ir::Value{q.grad, i}}, {{"shape", Ints{c.b, c.s, 1, c.n, c.d}}},
                             "grad" + std::to_string(i));
    q.order.push_back(r);
    grads.push_back(ir::Value{r, 0});
  }
  q.concat = g.add(OpKind::Concat, grads, {{"axis", int64_t{2}}}, "concat");
  q.order.push_back(q.concat);
  return q;
}

// Runs the graph's ops in order on `be`; every value by op id.
std::map<ir::OpId, std::vector<TensorPtr>> run_all(Backend& be, const QkvGraph& q,
                                                   const std::map<std::string, interp::Tensor>& feeds) {
  std::map<ir::OpId, std::vector<TensorPtr>> values;
  for (ir::OpId id : q.g.ops_of_kind(OpKind::Input)) {
    auto t = be.upload(feeds.at(q.g.op(id).name), q.g.op(id).name == "mask" ? DType::f32 : DType::bf16);
    EXPECT_TRUE(t.is_ok()) << t.error().message();
    values[id] = {*t};
  }
  for (ir::OpId id : q.order) {
    std::vector<const DeviceTensor*> in;
    for (ir::Value v : q.g.op(id).inputs) in.push_back(values.at(v.op)[static_cast<size_t>(v.index)].get());
    auto out = be.run_op(q.g.op(id), in);
    EXPECT_TRUE(out.is_ok()) << out.error().message();
    if (!out.is_ok()) break;
    values[id] = std::move(out).value();
  }
  return values;
}

class StridedQkvTest : public ::testing::TestWithParam<QkvCase> {};

TEST_P(StridedQkvTest, MatchesTheCopiesBitForBit) {
  const QkvCase c = GetParam();
  const QkvGraph q = qkv_graph(c);
  std::mt19937 rng(5);
  std::map<std::string, interp::Tensor> feeds;
  feeds["qkv"] = random_tensor({c.b, c.s, 3, c.n, c.d}, rng, -2, 2);  // q, k, v and each head distinct
  feeds["dout"] = random_tensor({c.b, c.s, c.n, c.d}, rng, -1, 1);
  interp::Tensor mask({c.s, c.s});
  for (int64_t i = 0; i < c.s; ++i)
    for (int64_t j = 0; j < c.s; ++j) mask[i * c.s + j] = j <= i ? 0.0 : -1e9;
  feeds["mask"] = mask;
  auto want = interp::run(q.g, feeds, interp::Precision::f64);
  ASSERT_TRUE(want.is_ok()) << want.error().message();

  auto copies = strided_backend("0");
  auto strided = strided_backend("1");
  ASSERT_TRUE(copies && strided);
  auto base = run_all(*copies, q, feeds);
  auto got = run_all(*strided, q, feeds);
  ASSERT_TRUE(got.count(q.concat) && base.count(q.concat));
  // The strided path was taken: q, k, v and dq, dk, dv row views, the Concat a plain tensor over
  // dq's buffer; the copying path made none.
  const int64_t width = c.n * c.d;
  for (int32_t i = 0; i < 3; ++i) {
    const auto* part = row_view(got.at(q.g.op(q.att).inputs[static_cast<size_t>(i)].op)[0]);
    const auto* grad = row_view(got.at(q.grad)[static_cast<size_t>(i)]);
    ASSERT_TRUE(part != nullptr && grad != nullptr) << i;
    EXPECT_EQ(part->offset, i * width);
    EXPECT_EQ(grad->offset, i * width);
    EXPECT_EQ(grad->pitch, 3 * width);
    EXPECT_EQ(row_view(base.at(q.grad)[static_cast<size_t>(i)]), nullptr);
  }
  const auto* concat = dynamic_cast<const cuda::CudaTensor*>(got.at(q.concat)[0].get());
  const auto* dq = dynamic_cast<const cuda::CudaTensor*>(got.at(q.grad)[0].get());
  ASSERT_TRUE(concat != nullptr && dq != nullptr);
  EXPECT_EQ(concat->row_view(), nullptr);
  EXPECT_EQ(concat->storage(), dq->storage());

  auto compare = [&](const TensorPtr& a, const TensorPtr& b, const interp::Tensor& ref, double tol, const char* what) {
    auto x = strided->download(*a);
    auto y = copies->download(*b);
    ASSERT_TRUE(x.is_ok() && y.is_ok());
    EXPECT_EQ(x->data, y->data) << what;
    EXPECT_LE(relative_error(*x, ref), tol) << what;
  };
  compare(got.at(q.att)[0], base.at(q.att)[0], want->values[q.att][0], 2e-2, "out");
  compare(got.at(q.att)[1], base.at(q.att)[1], want->values[q.att][1], 1e-2, "lse");
  compare(got.at(q.concat)[0], base.at(q.concat)[0], want->values[q.concat][0], 3e-2, "dq, dk, dv");
  for (int32_t i = 0; i < 3; ++i) {  // a reader of dq alone copies it out of the shared buffer
    compare(got.at(q.grad)[static_cast<size_t>(i)], base.at(q.grad)[static_cast<size_t>(i)],
            want->values[q.grad][static_cast<size_t>(i)], 3e-2, "a gradient alone");
  }
}

// Head dims 64 and 80 (GPT-1.3B and 2.6B), odd sequence lengths (partial tiles), one head and five.
INSTANTIATE_TEST_SUITE_P(Shapes, StridedQkvTest,
                         ::testing::Values(QkvCase{2, 130, 3, 64}, QkvCase{1, 77, 5, 80}, QkvCase{3, 64, 1, 64},
                                           QkvCase{2, 200, 2, 80}),
                         [](const ::testing::TestParamInfo<QkvCase>& info) {
                           const QkvCase& c = info.param;
                           return "B" + std::to_string(c.b) + "S" + std::to_string(c.s) + "N" + std::to_string(c.n) +
                                  "D" + std::to_string(c.d);
                         });

// A Slice that cuts two dims, or would hold more than 4 times its bytes, is copied as before.
TEST(StridedQkv, OtherSlicesAreCopies) {
  auto be = strided_backend("1");
  ASSERT_TRUE(be);
  std::mt19937 rng(3);
  const interp::Tensor x = random_tensor({4, 6, 8}, rng);
  auto dev = be->upload(x, DType::bf16);
  ASSERT_TRUE(dev.is_ok());
  struct Cut {
    Ints starts, limits;
    bool view;
  };
  for (const Cut& cut : {Cut{{0, 2, 0}, {4, 4, 8}, true}, Cut{{1, 2, 0}, {3, 4, 8}, false},
                         Cut{{0, 5, 0}, {4, 6, 8}, false}, Cut{{0, 0, 3}, {4, 6, 5}, true}}) {
    ir::Graph g;
    const ir::Value in = g.input("x", {4, 6, 8});
    const ir::OpId id = g.add(OpKind::Slice, {in}, {{"starts", cut.starts}, {"limits", cut.limits}}, "slice");
    auto out = be->run_op(g.op(id), {dev->get()});
    ASSERT_TRUE(out.is_ok()) << out.error().message();
    EXPECT_EQ(row_view((*out)[0]) != nullptr, cut.view) << ir::shape_string(g.op(id).outputs[0].shape);
    auto want = interp::run(g, {{"x", x}}, interp::Precision::f64);
    auto got = be->download(*(*out)[0]);
    ASSERT_TRUE(want.is_ok() && got.is_ok());
    EXPECT_EQ(got->data, want->values[id][0].data);
  }
}

}  // namespace
}  // namespace strata::runtime::cuda_test
