// Schedules: exact instruction streams for small pipelines, and the structural invariants
// (every micro-batch forward and backward once per stage, sends matched by receives) for many.
#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "strata/sched/schedule.h"

namespace strata::sched {
namespace {

// Only the compute instructions of one stream, e.g. "F0 F1 B0 F2 B1 B2".
std::string compute_order(const std::vector<Instruction>& stream) {
  std::string out;
  for (const auto& in : stream) {
    if (in.op == Op::forward || in.op == Op::backward) out += (out.empty() ? "" : " ") + to_string(in);
  }
  return out;
}

TEST(Schedule, OneFOneBTwoStagesExactStreams) {
  Schedule s = one_f_one_b(2, 3);
  EXPECT_EQ(to_string(s),
            "stage 0: F0 send_act0->1 F1 send_act1->1 recv_grad0<-1 B0 free0 F2 send_act2->1 recv_grad1<-1 B1 free1 "
            "recv_grad2<-1 B2 free2 sync update\n"
            "stage 1: recv_act0<-0 F0 B0 send_grad0->0 free0 recv_act1<-0 F1 B1 send_grad1->0 free1 recv_act2<-0 F2 B2 "
            "send_grad2->0 free2 sync update\n");
}

TEST(Schedule, OneFOneBFourStagesWarmupSteadyCooldown) {
  Schedule s = one_f_one_b(4, 6);
  EXPECT_EQ(compute_order(s.streams[0]), "F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5");
  EXPECT_EQ(compute_order(s.streams[1]), "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5");
  EXPECT_EQ(compute_order(s.streams[3]), "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5");
}

TEST(Schedule, OneFOneBFewerMicroBatchesThanStages) {
  Schedule s = one_f_one_b(4, 2);
  EXPECT_EQ(compute_order(s.streams[0]), "F0 F1 B0 B1");
  EXPECT_EQ(compute_order(s.streams[3]), "F0 B0 F1 B1");
}

TEST(Schedule, GPipeAllForwardsThenAllBackwards) {
  Schedule s = gpipe(3, 4);
  for (int stage = 0; stage < 3; ++stage) {
    EXPECT_EQ(compute_order(s.streams[stage]), "F0 F1 F2 F3 B0 B1 B2 B3") << stage;
  }
  EXPECT_EQ(to_string(s.streams[2].back()), "update");
  EXPECT_EQ(to_string(s.streams[2][s.streams[2].size() - 2]), "sync");
}

TEST(Schedule, EveryStreamIsCompleteAndMessagesMatch) {
  for (int stages = 1; stages <= 5; ++stages) {
    for (int mbs = 1; mbs <= 7; ++mbs) {
      for (const Schedule& s : {gpipe(stages, mbs), one_f_one_b(stages, mbs)}) {
        std::map<std::tuple<int, int, bool, int>, int> balance;  // (from, to, gradient, mb) -> sends - recvs
        for (int st = 0; st < stages; ++st) {
          std::map<Op, int> counts;
          for (const auto& in : s.streams[st]) {
            ++counts[in.op];
            if (in.op == Op::send_activation || in.op == Op::send_gradient)
              ++balance[{st, in.peer, in.op == Op::send_gradient, in.micro_batch}];
            if (in.op == Op::recv_activation || in.op == Op::recv_gradient)
              --balance[{in.peer, st, in.op == Op::recv_gradient, in.micro_batch}];
          }
          EXPECT_EQ(counts[Op::forward], mbs);
          EXPECT_EQ(counts[Op::backward], mbs);
          EXPECT_EQ(counts[Op::free], mbs);
          EXPECT_EQ(counts[Op::send_activation], st + 1 < stages ? mbs : 0);
          EXPECT_EQ(counts[Op::send_gradient], st > 0 ? mbs : 0);
          EXPECT_EQ(counts[Op::grad_sync], 1);
          EXPECT_EQ(counts[Op::optimizer_update], 1);
        }
        for (const auto& [key, count] : balance) EXPECT_EQ(count, 0);
      }
    }
  }
}

TEST(Schedule, FromPlanPicksTheNamedSchedule) {
  plan::Plan p;
  p.stages.resize(3);
  p.num_micro_batches = 5;
  p.schedule = "gpipe";
  EXPECT_EQ(from_plan(p).kind, Kind::gpipe);
  p.schedule = "1f1b";
  Schedule s = from_plan(p);
  EXPECT_EQ(s.kind, Kind::one_f_one_b);
  EXPECT_EQ(s.num_stages, 3);
  EXPECT_EQ(compute_order(s.streams[0]), "F0 F1 F2 B0 F3 B1 F4 B2 B3 B4");
}

}  // namespace
}  // namespace strata::sched
