// GPipe and 1F1B instruction streams: each compute step is wrapped in the receives it needs and the
// sends it produces, and every stream ends with the gradient sync and the optimizer update.
#include "strata/sched/schedule.h"

#include <algorithm>

namespace strata::sched {
namespace {

void add_forward(std::vector<Instruction>& stream, int stage, int num_stages, int mb) {
  if (stage > 0) stream.push_back({Op::recv_activation, mb, stage - 1});
  stream.push_back({Op::forward, mb, -1});
  if (stage + 1 < num_stages) stream.push_back({Op::send_activation, mb, stage + 1});
}

void add_backward(std::vector<Instruction>& stream, int stage, int num_stages, int mb) {
  if (stage + 1 < num_stages) stream.push_back({Op::recv_gradient, mb, stage + 1});
  stream.push_back({Op::backward, mb, -1});
  if (stage > 0) stream.push_back({Op::send_gradient, mb, stage - 1});
  stream.push_back({Op::free, mb, -1});
}

void add_step_end(std::vector<Instruction>& stream) {
  stream.push_back({Op::grad_sync, -1, -1});
  stream.push_back({Op::optimizer_update, -1, -1});
}

void check_shape(int num_stages, int num_micro_batches) {
  STRATA_CHECK(num_stages >= 1 && num_micro_batches >= 1,
               "schedule needs at least one stage and one micro-batch");
}

}  // namespace

const char* op_name(Op op) {
  switch (op) {
    case Op::forward: return "forward";
    case Op::backward: return "backward";
    case Op::send_activation: return "send_activation";
    case Op::recv_activation: return "recv_activation";
    case Op::send_gradient: return "send_gradient";
    case Op::recv_gradient: return "recv_gradient";
    case Op::free: return "free";
    case Op::grad_sync: return "grad_sync";
    case Op::optimizer_update: return "optimizer_update";
  }
  STRATA_UNREACHABLE("unknown op");
}

Schedule gpipe(int num_stages, int num_micro_batches) {
  check_shape(num_stages, num_micro_batches);
  Schedule schedule{Kind::gpipe, num_stages, num_micro_batches, {}};
  schedule.streams.resize(num_stages);
  for (int s = 0; s < num_stages; ++s) {
    auto& stream = schedule.streams[s];
    for (int mb = 0; mb < num_micro_batches; ++mb) add_forward(stream, s, num_stages, mb);
    for (int mb = 0; mb < num_micro_batches; ++mb) add_backward(stream, s, num_stages, mb);
    add_step_end(stream);
  }
  return schedule;
}

Schedule one_f_one_b(int num_stages, int num_micro_batches) {
  check_shape(num_stages, num_micro_batches);
  Schedule schedule{Kind::one_f_one_b, num_stages, num_micro_batches, {}};
  schedule.streams.resize(num_stages);
  for (int s = 0; s < num_stages; ++s) {
    auto& stream = schedule.streams[s];
    const int warmup = std::min(num_stages - s - 1, num_micro_batches);
    int next_forward = 0;
    int next_backward = 0;
    for (; next_forward < warmup; ++next_forward) add_forward(stream, s, num_stages, next_forward);
    while (next_forward < num_micro_batches) {  // steady state: one forward, one backward
      add_forward(stream, s, num_stages, next_forward++);
      add_backward(stream, s, num_stages, next_backward++);
    }
    while (next_backward < num_micro_batches) add_backward(stream, s, num_stages, next_backward++);  // cool-down
    add_step_end(stream);
  }
  return schedule;
}

Schedule from_plan(const plan::Plan& plan) {
  if (plan.schedule == "gpipe") return gpipe(plan.num_stages(), plan.num_micro_batches);
  STRATA_CHECK(plan.schedule == "1f1b", "unvalidated plan schedule '" + plan.schedule + "'");
  return one_f_one_b(plan.num_stages(), plan.num_micro_batches);
}

std::string to_string(const Instruction& in) {
  const std::string mb = std::to_string(in.micro_batch);
  const std::string peer = std::to_string(in.peer);
  switch (in.op) {
    case Op::forward: return "F" + mb;
    case Op::backward: return "B" + mb;
    case Op::send_activation: return "send_act" + mb + "->" + peer;
    case Op::recv_activation: return "recv_act" + mb + "<-" + peer;
    case Op::send_gradient: return "send_grad" + mb + "->" + peer;
    case Op::recv_gradient: return "recv_grad" + mb + "<-" + peer;
    case Op::free: return "free" + mb;
    case Op::grad_sync: return "sync";
    case Op::optimizer_update: return "update";
  }
  STRATA_UNREACHABLE("unknown op");
}

std::string to_string(const Schedule& schedule) {
  std::string out;
  for (int s = 0; s < schedule.num_stages; ++s) {
    out += "stage " + std::to_string(s) + ":";
    for (const auto& in : schedule.streams[s]) out += " " + to_string(in);
    out += "\n";
  }
  return out;
}

}  // namespace strata::sched
