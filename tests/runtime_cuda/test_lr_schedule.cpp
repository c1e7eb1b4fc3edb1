// GPU test of the lr schedule on the cuda backend: the lr each step's AdamUpdate op carries (as
// Executor::step sets it from plan::learning_rate) is the lr its batched Adam kernel applies.
#include "gpu_test_util.h"
#include "strata/plan/plan.h"

namespace strata::runtime::cuda_test {
namespace {

// One parameter's state on the device and in the two fp64 references (the schedule's lr, and the
// constant lr a stale lr would give).
struct Updated {
  ir::Shape shape;
  interp::Tensor initial, scheduled[3], constant[3];  // param, m, v
  TensorPtr device[3];
};

// The reference AdamUpdate at `lr` and `step` on `state` (param, m, v) with gradient `grad`.
void reference_update(interp::Tensor (&state)[3], const interp::Tensor& grad, const ir::Attrs& attrs) {
  ir::Graph graph;
  std::vector<ir::Value> in;
  for (const char* name : {"p", "g", "m", "v"}) in.push_back(graph.input(name, state[0].shape, DType::f32));
  const ir::OpId id = graph.add(ir::OpKind::AdamUpdate, in, attrs, "update");
  for (int32_t i = 0; i < 3; ++i) graph.mark_output(ir::Value{id, i});
  auto out = interp::run(graph, {{"p", state[0]}, {"g", grad}, {"m", state[1]}, {"v", state[2]}}, interp::Precision::f64);
  ASSERT_TRUE(out.is_ok()) << out.error().message();
  for (size_t i = 0; i < 3; ++i) state[i] = out->outputs[i];
}

ir::Attrs adam_attrs(double lr, int64_t step) {
  return {{"lr", lr}, {"beta1", 0.9}, {"beta2", 0.95}, {"eps", 1e-8}, {"weight_decay", 0.01}, {"step", step}};
}

// Four warmup steps (lr/4, lr/2, 3lr/4, lr) over a matrix (batched Adam with its bf16 copy) and a
// vector: each parameter's change over the steps matches the reference with the schedule's lr,
// and is far from the constant-lr change.
TEST(CudaBackend, AdamAppliesTheStepsLr) {
  Backend& be = backend(DType::bf16);
  plan::Training training;
  training.lr = 1e-2;
  training.warmup_steps = 4;
  std::mt19937 rng(77);
  std::vector<Updated> params;
  for (const ir::Shape& shape : {ir::Shape{24, 40}, ir::Shape{1000}}) {
    Updated u;
    u.shape = shape;
    u.initial = random_tensor(shape, rng);
    const interp::Tensor state[3] = {u.initial, random_tensor(shape, rng, -0.01, 0.01), random_tensor(shape, rng, 0.0, 1e-4)};
    for (size_t i = 0; i < 3; ++i) {
      u.scheduled[i] = u.constant[i] = state[i];
      auto uploaded = be.upload(state[i], DType::f32);
      ASSERT_TRUE(uploaded.is_ok()) << uploaded.error().message();
      u.device[i] = *uploaded;
    }
    params.push_back(std::move(u));
  }
  for (int64_t step = 1; step <= 4; ++step) {
    const double lr = plan::learning_rate(training, step);
    for (Updated& u : params) {
      const interp::Tensor grad = random_tensor(u.shape, rng, -0.01, 0.01);
      reference_update(u.scheduled, grad, adam_attrs(lr, step));
      reference_update(u.constant, grad, adam_attrs(training.lr, step));
      ir::Graph graph;
      std::vector<ir::Value> in;
      for (const char* name : {"p", "g", "m", "v"}) in.push_back(graph.input(name, u.shape, DType::f32));
      const ir::OpId id = graph.add(ir::OpKind::AdamUpdate, in, adam_attrs(lr, step), "update");
      auto g = be.upload(grad, DType::bf16);
      ASSERT_TRUE(g.is_ok()) << g.error().message();
      auto out = be.run_op(graph.op(id), {u.device[0].get(), g->get(), u.device[1].get(), u.device[2].get()});
      ASSERT_TRUE(out.is_ok()) << out.error().message();
      for (size_t i = 0; i < 3; ++i) u.device[i] = (*out)[i];
    }
  }
  for (const Updated& u : params) {
    auto param = be.download(*u.device[0]);
    ASSERT_TRUE(param.is_ok()) << param.error().message();
    interp::Tensor got = *param, want = u.scheduled[0], stale = u.constant[0];
    for (int64_t i = 0; i < got.numel(); ++i) {
      got[i] -= u.initial[i];
      want[i] -= u.initial[i];
      stale[i] -= u.initial[i];
    }
    EXPECT_LE(relative_error(got, want), 1e-3) << ir::shape_string(u.shape);
    EXPECT_GE(relative_error(stale, want), 0.2) << ir::shape_string(u.shape);
  }
}

}  // namespace
}  // namespace strata::runtime::cuda_test
