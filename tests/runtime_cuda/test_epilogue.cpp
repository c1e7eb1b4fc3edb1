// The Dot + bias Add (+ Gelu) chains that fuse_for_cuda marks (kGemmEpilogueAttr) and the cuda
// backend runs as one cuBLASLt GEMM with a bias or Gelu-and-bias epilogue: which chains are marked
// (no GPU needed), and the deferred Dot, the fused Add and Gelu, the unfused fallbacks (a Gelu aux
// leading dim cuBLASLt refuses, a second reader of the Dot) against the fp64 interpreter.
#include "gpu_test_util.h"
#include "runtime/cuda/cuda_tensor.h"
#include "runtime/cuda/dot.h"
#include "strata/autodiff/autodiff.h"
#include "strata/models/models.h"

namespace strata::runtime::cuda_test {
namespace {

using cuda::Elem;
using ir::OpKind;
using Ints = std::vector<int64_t>;

ir::Attrs dot_attrs(Ints lb, Ints rb, Ints lc, Ints rc) {
  return ir::Attrs{{"lhs_batch", std::move(lb)}, {"rhs_batch", std::move(rb)}, {"lhs_contract", std::move(lc)},
                   {"rhs_contract", std::move(rc)}};
}

int64_t mark(const ir::Op& op) { return op.attrs.int_or(cuda::kGemmEpilogueAttr, 0); }

// gpt-tiny's training graph: each layer's qkv, attn.out, fc1 and fc2 Dots and their bias Adds are
// marked, fc1's Add with 2 and its Gelu with 1; in the backward the four bias-gradient ReduceSums
// and the four weight-gradient Dots (3), each ReduceSum right after the Dot that computes it (no
// DGELU_BGRAD: GeluGrad stays unmarked). The lm_head Dot (no bias) is not marked.
TEST(CudaFusion, MarksDenseBiasGeluChains) {
  auto spec = models::load_model_config(std::string(STRATA_SOURCE_DIR) + "/configs/models/gpt-tiny.yaml");
  ASSERT_TRUE(spec.is_ok()) << spec.error().message();
  auto forward = models::build_forward_graph(*spec, 2);
  ASSERT_TRUE(forward.is_ok());
  autodiff::TrainingOptions options;
  options.optimizer = autodiff::Optimizer::adam;
  auto graph = autodiff::build_training_graph(*forward, options);
  ASSERT_TRUE(graph.is_ok()) << graph.error().message();
  auto fused = fuse_for_cuda(*graph);
  ASSERT_TRUE(fused.is_ok()) << fused.error().message();
  std::map<std::tuple<OpKind, int64_t, ir::Role>, int> marks;
  for (ir::OpId id = 0; id < fused->num_ops(); ++id) {
    const ir::Op& op = fused->op(id);
    if (mark(op) == 0) continue;
    ++marks[{op.kind, mark(op), op.role}];
    if (op.kind == OpKind::Dot && mark(op) == 3) {  // its ReduceSum comes next and reads dy (its rhs)
      ASSERT_LT(id + 1, fused->num_ops());
      const ir::Op& next = fused->op(id + 1);
      EXPECT_EQ(next.kind, OpKind::ReduceSum) << op.name;
      EXPECT_EQ(mark(next), 3) << op.name;
      EXPECT_EQ(next.inputs[0], op.inputs[1]) << op.name;
    }
  }
  const int layers = static_cast<int>(spec->layers);
  const auto fwd = ir::Role::forward, bwd = ir::Role::backward;
  EXPECT_EQ((marks[{OpKind::Dot, 1, fwd}]), 4 * layers);
  EXPECT_EQ((marks[{OpKind::Add, 1, fwd}]), 3 * layers);
  EXPECT_EQ((marks[{OpKind::Add, 2, fwd}]), layers);
  EXPECT_EQ((marks[{OpKind::Gelu, 1, fwd}]), layers);
  EXPECT_EQ((marks[{OpKind::ReduceSum, 3, bwd}]), 4 * layers);
  EXPECT_EQ((marks[{OpKind::Dot, 3, bwd}]), 4 * layers);
  EXPECT_EQ(marks.size(), 6u);
  EXPECT_EQ(mark(fused->op(*fused->find("layer0.mlp.fc1.add_bias"))), 2);
  EXPECT_EQ(mark(fused->op(*fused->find("layer0.mlp.gelu"))), 1);
  EXPECT_EQ(mark(fused->op(*fused->find("layer0.attn.qkv"))), 1);
  EXPECT_EQ(mark(fused->op(*fused->find("lm_head"))), 0);
}

// Chains that stay unmarked: the Dot read twice, a bias not along the last dim, the bias first, a
// batched Dot, a Dot that is a graph output.
TEST(CudaFusion, LeavesOtherDotAddsAlone) {
  ir::Graph g;
  const ir::Value x = g.input("x", {4, 8, 16}), w = g.input("w", {16, 12}), b = g.input("b", {12});
  const ir::Value col = g.input("col", {8, 1});
  const ir::Value d0 = g.add_value(OpKind::Dot, {x, w}, dot_attrs({}, {}, {2}, {0}), "d0");
  g.mark_output(g.add_value(OpKind::Add, {d0, b}, {}, "twice"));
  g.mark_output(g.add_value(OpKind::Exp, {d0}, {}, "exp"));
  const ir::Value d1 = g.add_value(OpKind::Dot, {x, w}, dot_attrs({}, {}, {2}, {0}), "d1");
  g.mark_output(g.add_value(OpKind::Add, {d1, col}, {}, "column"));
  const ir::Value d2 = g.add_value(OpKind::Dot, {x, w}, dot_attrs({}, {}, {2}, {0}), "d2");
  g.mark_output(g.add_value(OpKind::Add, {b, d2}, {}, "bias_first"));
  const ir::Value xb = g.input("xb", {4, 8, 16}), wb = g.input("wb", {4, 16, 12});
  const ir::Value d3 = g.add_value(OpKind::Dot, {xb, wb}, dot_attrs({0}, {0}, {2}, {1}), "d3");
  g.mark_output(g.add_value(OpKind::Add, {d3, b}, {}, "batched"));
  const ir::Value d4 = g.add_value(OpKind::Dot, {x, w}, dot_attrs({}, {}, {2}, {0}), "d4");
  g.mark_output(d4);
  g.mark_output(g.add_value(OpKind::Add, {d4, b}, {}, "output"));
  auto fused = fuse_for_cuda(g);
  ASSERT_TRUE(fused.is_ok()) << fused.error().message();
  for (ir::OpId id = 0; id < fused->num_ops(); ++id) EXPECT_EQ(mark(fused->op(id)), 0) << fused->op(id).name;
}

struct ChainCase {
  std::string name;
  ir::Shape x, w;
  Ints rhs_contract;
  bool gelu = false;         // Add marked 2 and a Gelu (and a GeluGrad reading the sum)
  bool read_dot = false;     // the Dot's value downloaded before the Add runs (resolves it)
};

class EpilogueTest : public ::testing::TestWithParam<std::tuple<ChainCase, DType>> {};

// Op by op as the executor runs them: the marked Dot comes back deferred, the Add (deferred too,
// for a Gelu or a residual Add) and the Gelu run the GEMM; the sum, the Gelu, a GeluGrad of the sum and (when
// read) the Dot match the fp64 interpreter.
TEST_P(EpilogueTest, MatchesInterpreter) {
  const auto& [c, activations] = GetParam();
  Backend& be = backend(activations);
  std::mt19937 rng(7);
  ir::Graph g;
  const int64_t cols = c.rhs_contract[0] == 0 ? c.w[1] : c.w[0];
  const ir::Value x = g.input("x", c.x), w = g.input("w", c.w), b = g.input("b", {cols});
  ir::Attrs attrs = dot_attrs({}, {}, {2}, c.rhs_contract);
  attrs.set(cuda::kGemmEpilogueAttr, int64_t{1});
  const ir::OpId dot = g.add(OpKind::Dot, {x, w}, attrs, "dot");
  const ir::OpId add =
      g.add(OpKind::Add, {ir::Value{dot, 0}, b}, {{cuda::kGemmEpilogueAttr, int64_t{c.gelu ? 2 : 1}}}, "add");
  std::vector<ir::OpId> outputs{dot, add};
  ir::OpId gelu = ir::kNoOp, grad = ir::kNoOp;
  ir::Shape out_shape{c.x[0], c.x[1], cols};
  const ir::Value dy = g.input("dy", out_shape);
  if (c.gelu) {
    gelu = g.add(OpKind::Gelu, {ir::Value{add, 0}}, {{cuda::kGemmEpilogueAttr, int64_t{1}}}, "gelu");
    grad = g.add(OpKind::GeluGrad, {ir::Value{add, 0}, dy}, {}, "gelu_grad");
    outputs.push_back(gelu);
    outputs.push_back(grad);
  }
  for (ir::OpId id : outputs) g.mark_output(ir::Value{id, 0});
  std::map<std::string, interp::Tensor> feeds{{"x", random_tensor(c.x, rng, -2, 2)},
                                              {"w", random_tensor(c.w, rng, -0.5, 0.5)},
                                              {"b", random_tensor({cols}, rng, -2, 2)},
                                              {"dy", random_tensor(out_shape, rng)}};
  auto want = interp::run(g, feeds, interp::Precision::f64);
  ASSERT_TRUE(want.is_ok()) << want.error().message();
  auto xd = be.upload(feeds["x"], activations), wd = be.upload(feeds["w"], DType::f32);
  auto bd = be.upload(feeds["b"], DType::f32), dyd = be.upload(feeds["dy"], activations);
  ASSERT_TRUE(xd.is_ok() && wd.is_ok() && bd.is_ok() && dyd.is_ok());
  const double tol = activations == DType::f32 ? 1e-4 : 2e-2;

  auto d = be.run_op(g.op(dot), {xd->get(), wd->get()});
  ASSERT_TRUE(d.is_ok()) << d.error().message();
  auto dt = cuda::as_cuda(*(*d)[0], "dot", true);
  ASSERT_TRUE(dt.is_ok());
  EXPECT_NE((*dt)->deferred_dot(), nullptr) << "the marked Dot ran instead of being deferred";
  std::vector<std::pair<TensorPtr, size_t>> results;  // device value, index in want->outputs
  if (c.read_dot) {
    auto host = be.download(*(*d)[0]);
    ASSERT_TRUE(host.is_ok());
    EXPECT_EQ((*dt)->deferred_dot(), nullptr) << "download read the Dot without running it";
    EXPECT_LE(relative_error(*host, want->outputs[0]), tol) << c.name << " dot";
  }
  auto s = be.run_op(g.op(add), {(*d)[0].get(), bd->get()});
  ASSERT_TRUE(s.is_ok()) << s.error().message();
  auto st = cuda::as_cuda(*(*s)[0], "add", true);
  ASSERT_TRUE(st.is_ok());
  // Deferred for a Gelu or a residual Add that may follow, unless the Dot ran already.
  EXPECT_EQ((*st)->deferred_dot() != nullptr, !c.read_dot) << "the Add is deferred when its Dot is";
  results.push_back({(*s)[0], 1});
  if (c.gelu) {
    auto y = be.run_op(g.op(gelu), {(*s)[0].get()});
    ASSERT_TRUE(y.is_ok()) << y.error().message();
    EXPECT_EQ((*st)->deferred_dot(), nullptr) << "the Gelu left the sum unwritten";
    auto dx = be.run_op(g.op(grad), {(*s)[0].get(), dyd->get()});
    ASSERT_TRUE(dx.is_ok()) << dx.error().message();
    results.push_back({(*y)[0], 2});
    results.push_back({(*dx)[0], 3});
  }
  for (const auto& [tensor, index] : results) {
    auto host = be.download(*tensor);
    ASSERT_TRUE(host.is_ok()) << host.error().message();
    EXPECT_LE(relative_error(*host, want->outputs[index]), tol) << c.name << " output " << index;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Chains, EpilogueTest,
    ::testing::Combine(::testing::Values(ChainCase{"BiasGelu", {4, 16, 64}, {64, 96}, {0}, true, false},
                                         ChainCase{"Bias", {3, 10, 48}, {48, 40}, {0}, false, false},
                                         ChainCase{"BiasTransposedWeight", {2, 9, 32}, {24, 32}, {1}, false, false},
                                         ChainCase{"GeluAuxLdRefused", {2, 7, 16}, {16, 20}, {0}, true, false},
                                         ChainCase{"DotReadFirst", {2, 8, 32}, {32, 64}, {0}, true, true},
                                         ChainCase{"OddShapes", {3, 5, 17}, {17, 13}, {0}, false, false}),
                       ::testing::Values(DType::bf16, DType::f32)),
    [](const auto& info) { return std::get<0>(info.param).name + "_" + dtype_name(std::get<1>(info.param)); });

// The backward marks, op by op in the fused graph's order: the weight-gradient Dot (3) and then its
// bias-gradient ReduceSum (3), which takes the sum the GEMM's BGRADA epilogue made; the deferred dx
// Dot (1), the GeluGrad (1) that runs it with DGELU_BGRAD and the ReduceSum (3) of the GeluGrad (a
// cols of 20 is refused for the aux and runs unfused). Against the fp64 interpreter; in the
// ReduceSum-first order nothing is fused and the values are the same.
TEST(CudaEpilogue, BiasGradientsMatchInterpreter) {
  const ir::Attrs mark1{{cuda::kGemmEpilogueAttr, int64_t{1}}};
  for (DType activations : {DType::bf16, DType::f32}) {
    Backend& be = backend(activations);
    const double tol = activations == DType::f32 ? 1e-4 : 2e-2;
    for (const auto& [rows, k, cols] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{8, 32, 48}, {5, 12, 20}}) {
      const std::string label = std::string(dtype_name(activations)) + " cols " + std::to_string(cols);
      std::mt19937 rng(static_cast<unsigned>(cols));
      ir::Graph g;
      const ir::Value x = g.input("x", {2, rows, k}), dy = g.input("dy", {2, rows, cols});
      const ir::Value pre = g.input("pre", {2, rows, cols}), dy2 = g.input("dy2", {2, rows, k});
      const ir::Value w2 = g.input("w2", {cols, k});
      ir::Attrs dw_attrs = dot_attrs({}, {}, {0, 1}, {0, 1});
      dw_attrs.set(cuda::kGemmEpilogueAttr, int64_t{3});
      const ir::Attrs sum_attrs{{"axes", Ints{0, 1}}, {"keepdims", int64_t{0}}, {cuda::kGemmEpilogueAttr, int64_t{3}}};
      const ir::OpId dw = g.add(OpKind::Dot, {x, dy}, dw_attrs, "dw");
      const ir::OpId db = g.add(OpKind::ReduceSum, {dy}, sum_attrs, "db");
      ir::Attrs dx_attrs = dot_attrs({}, {}, {2}, {1});
      dx_attrs.set(cuda::kGemmEpilogueAttr, int64_t{1});
      const ir::OpId dx = g.add(OpKind::Dot, {dy2, w2}, dx_attrs, "dx");
      const ir::OpId gg = g.add(OpKind::GeluGrad, {pre, ir::Value{dx, 0}}, mark1, "gelu_grad");
      const ir::OpId db1 = g.add(OpKind::ReduceSum, {ir::Value{gg, 0}}, sum_attrs, "db1");
      for (ir::OpId id : {dw, db, gg, db1}) g.mark_output(ir::Value{id, 0});
      std::map<std::string, interp::Tensor> feeds{{"x", random_tensor({2, rows, k}, rng)},
                                                  {"dy", random_tensor({2, rows, cols}, rng)},
                                                  {"pre", random_tensor({2, rows, cols}, rng, -3, 3)},
                                                  {"dy2", random_tensor({2, rows, k}, rng)},
                                                  {"w2", random_tensor({cols, k}, rng)}};
      auto want = interp::run(g, feeds, interp::Precision::f64);
      ASSERT_TRUE(want.is_ok()) << want.error().message();
      std::map<std::string, TensorPtr> dev;
      for (const auto& [name, host] : feeds) {
        auto t = be.upload(host, name == "w2" ? DType::f32 : activations);
        ASSERT_TRUE(t.is_ok());
        dev[name] = *t;
      }
      for (bool reduce_first : {false, true}) {
        auto run = [&](ir::OpId id, std::vector<const DeviceTensor*> in) {
          auto r = be.run_op(g.op(id), in);
          EXPECT_TRUE(r.is_ok()) << r.error().message();
          return r.is_ok() ? (*r)[0] : TensorPtr();
        };
        TensorPtr dw_t, db_t;
        if (reduce_first) db_t = run(db, {dev["dy"].get()});
        dw_t = run(dw, {dev["x"].get(), dev["dy"].get()});
        if (!reduce_first) db_t = run(db, {dev["dy"].get()});
        TensorPtr dx_t = run(dx, {dev["dy2"].get(), dev["w2"].get()});
        ASSERT_TRUE(dx_t && dw_t && db_t);
        TensorPtr gg_t = run(gg, {dev["pre"].get(), dx_t.get()});
        ASSERT_TRUE(gg_t);
        TensorPtr db1_t = run(db1, {gg_t.get()});
        ASSERT_TRUE(db1_t);
        const std::vector<TensorPtr> got{dw_t, db_t, gg_t, db1_t};
        for (size_t i = 0; i < got.size(); ++i) {
          auto host = be.download(*got[i]);
          ASSERT_TRUE(host.is_ok()) << host.error().message();
          EXPECT_LE(relative_error(*host, want->outputs[i]), tol) << label << " output " << i << (reduce_first ? " (reduce first)" : "");
        }
      }
    }
  }
}

// GPT-1.3B's GEMMs (8 x 1024 tokens, hidden 2048, ffn 8192) in bf16: cuBLASLt takes every
// epilogue (so that the fused path, not the fallback, runs in the bench), timed against the plain
// GEMM (printed: the extra time an epilogue costs inside the GEMM).
TEST(CudaEpilogue, CublasLtTakesTheGptShapes) {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  const size_t workspace_bytes = size_t{32} << 20;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  ASSERT_EQ(cublasCreate(&blas), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cudaMalloc(&workspace, workspace_bytes), cudaSuccess);
  ASSERT_EQ(cublasSetWorkspace(blas, workspace, workspace_bytes), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasSetStream(blas, stream), CUBLAS_STATUS_SUCCESS);
  const cuda::GemmContext ctx{blas, lt, workspace, workspace_bytes, stream};
  std::vector<void*> buffers;
  auto buffer = [&](int64_t bytes) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, static_cast<size_t>(bytes)), cudaSuccess);
    EXPECT_EQ(cudaMemset(p, 0, static_cast<size_t>(bytes)), cudaSuccess);
    buffers.push_back(p);
    return p;
  };
  const int64_t H = 2048, F = 8192;
  struct Shape {
    std::string name;
    ir::Shape lhs, rhs;
    Ints lc, rc;
    int kind;  // 0 bias, 1 gelu aux bias, 2 bgrada, 3 dgelu bgrad
  };
  for (const Shape& c : std::vector<Shape>{{"qkv bias", {8, 1024, H}, {H, 3 * H}, {2}, {0}, 0},
                                           {"fc1 gelu_aux_bias", {8, 1024, H}, {H, F}, {2}, {0}, 1},
                                           {"fc2 dW bgrada", {8, 1024, F}, {8, 1024, H}, {0, 1}, {0, 1}, 2},
                                           {"qkv dW bgrada", {8, 1024, H}, {8, 1024, 3 * H}, {0, 1}, {0, 1}, 2},
                                           {"fc2 dx dgelu_bgrad", {8, 1024, H}, {F, H}, {2}, {1}, 3}}) {
    ir::Graph g;
    const ir::Value l = g.input("l", c.lhs, DType::bf16), r = g.input("r", c.rhs, DType::bf16);
    const ir::OpId id = g.add(OpKind::Dot, {l, r}, dot_attrs({}, {}, c.lc, c.rc), "dot");
    const ir::Op& op = g.op(id);
    const ir::Shape& out_shape = op.outputs[0].shape;
    const int64_t cols = out_shape.back(), out_numel = op.outputs[0].numel();
    const cuda::DotOperand lhs{buffer(g.type(l).numel() * 2), Elem::bf16, c.lhs};
    const cuda::DotOperand rhs{buffer(g.type(r).numel() * 2), Elem::bf16, c.rhs};
    void* out = buffer(out_numel * 2);
    cuda::GemmEpilogue epilogue;
    if (c.kind <= 1) epilogue.bias = buffer(cols * 4);
    if (c.kind == 1) epilogue.gelu_aux = buffer(out_numel * 2);
    if (c.kind >= 2) epilogue.bias_grad = buffer(cols * 4);
    if (c.kind == 3) epilogue.dgelu_input = buffer(out_numel * 2);
    cudaEvent_t start, stop;
    ASSERT_EQ(cudaEventCreate(&start), cudaSuccess);
    ASSERT_EQ(cudaEventCreate(&stop), cudaSuccess);
    float ms[2] = {0, 0};
    bool fused = false;
    for (int fuse = 0; fuse < 2; ++fuse) {
      for (int rep = 0; rep < 12; ++rep) {
        if (rep == 2) {
          ASSERT_EQ(cudaEventRecord(start, stream), cudaSuccess);
        }
        if (fuse == 0) {
          ASSERT_TRUE(cuda::run_dot(blas, stream, op, lhs, rhs, out, Elem::bf16, out_shape, Elem::bf16, false).is_ok());
        } else {
          auto ran = cuda::run_dot_epilogue(ctx, op, lhs, rhs, out, Elem::bf16, out_shape, Elem::bf16, epilogue);
          ASSERT_TRUE(ran.is_ok()) << ran.error().message();
          fused = *ran;
        }
      }
      ASSERT_EQ(cudaEventRecord(stop, stream), cudaSuccess);
      ASSERT_EQ(cudaEventSynchronize(stop), cudaSuccess);
      ASSERT_EQ(cudaEventElapsedTime(&ms[fuse], start, stop), cudaSuccess);
    }
    std::printf("epilogue %s: cuBLASLt took it %d, plain GEMM %.3f ms, with the epilogue %.3f ms\n", c.name.c_str(),
                fused ? 1 : 0, ms[0] / 10, ms[1] / 10);
    EXPECT_TRUE(fused) << c.name;
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  for (void* p : buffers) cudaFree(p);
  cudaFree(workspace);
  cublasLtDestroy(lt);
  cublasDestroy(blas);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace strata::runtime::cuda_test
