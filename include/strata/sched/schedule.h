// Pipeline schedules as plain data: one instruction stream per stage (mesh), consumed in order by
// both the simulator (sim::) and the executor (runtime::). GPipe and 1F1B (PipeDream-flush).
#pragma once

#include <string>
#include <vector>

#include "strata/plan/plan.h"

namespace strata::sched {

enum class Op {
  forward,          // run the stage's forward on a micro-batch; allocates its activations
  backward,         // run the stage's backward on a micro-batch
  send_activation,  // to stage + 1
  recv_activation,  // from stage - 1
  send_gradient,    // to stage - 1
  recv_gradient,    // from stage + 1
  free,             // release a micro-batch's activations
  grad_sync,        // gradient all-reduce inside the mesh
  optimizer_update,
};

const char* op_name(Op op);

struct Instruction {
  Op op = Op::forward;
  int micro_batch = -1;  // -1 for grad_sync / optimizer_update
  int peer = -1;         // the other stage of a send/recv, else -1
  bool operator==(const Instruction&) const = default;
};

enum class Kind { gpipe, one_f_one_b };

struct Schedule {
  Kind kind = Kind::one_f_one_b;
  int num_stages = 0;
  int num_micro_batches = 0;
  std::vector<std::vector<Instruction>> streams;  // streams[stage]
};

// GPipe: all forwards, then all backwards (micro-batches in order).
Schedule gpipe(int num_stages, int num_micro_batches);
// 1F1B / PipeDream-flush: stage s runs min(S-s-1, B) warm-up forwards, then alternates one
// forward and one backward, then the remaining backwards.
Schedule one_f_one_b(int num_stages, int num_micro_batches);
// The schedule a (valid) plan names.
Schedule from_plan(const plan::Plan& plan);

// "F3", "B3", "send_act3->1", "recv_grad3<-2", "free3", "sync", "update".
std::string to_string(const Instruction& instruction);
// One line per stage: "stage 0: F0 send_act0->1 F1 ...".
std::string to_string(const Schedule& schedule);

}  // namespace strata::sched
