// ZeRO-2 as a transformation of the one-stage data-parallel plan (see baselines.h for why).
#include "strata/baselines/baselines.h"
#include "strata/sim/simulator.h"

namespace strata::baselines {

Expected<planner::PlanResult> zero2_from_data_parallel(const planner::PlanResult& data_parallel,
                                                       const cluster::CommModel& comm, DType dtype) {
  planner::PlanResult out = data_parallel;
  plan::Plan& plan = out.plan;
  if (plan.num_stages() != 1) {
    return make_error("", "plan.stages", "ZeRO-2 needs a one-stage data-parallel plan, got " +
                                             std::to_string(plan.num_stages()) + " stages");
  }
  plan::Stage& stage = plan.stages[0];
  const int devices = stage.logical_mesh.num_devices();
  const cluster::CommGroup group{stage.submesh, stage.logical_mesh, -1, false};
  const int64_t weights = stage.weights_bytes;  // replicated: the whole model on every device
  const double all_reduce = comm.seconds(cluster::Collective::all_reduce, group, weights, dtype);
  const double sharded = comm.seconds(cluster::Collective::reduce_scatter, group, weights, dtype) +
                         comm.seconds(cluster::Collective::all_gather, group, weights, dtype);
  if (all_reduce > 0) stage.grad_sync_seconds *= sharded / all_reduce;
  stage.optimizer_state_bytes = (stage.optimizer_state_bytes + devices - 1) / devices;
  stage.update_seconds /= devices;
  // The per-op strategies describe replicated updates: the ZeRO-2 plan is a cost-only plan.
  stage.strategies.clear();
  const sim::Result simulated = sim::simulate(plan);
  plan.predicted.step_seconds = simulated.step_seconds;
  plan.predicted.peak_memory_bytes = simulated.peak_memory_bytes;
  out.step_seconds = simulated.step_seconds;
  out.dp_objective_seconds = plan.num_micro_batches * (stage.forward_seconds + stage.backward_seconds) +
                             stage.update_seconds + stage.grad_sync_seconds;
  out.tflops_per_device =
      simulated.step_seconds > 0 ? out.training_flops / simulated.step_seconds / plan.cluster.num_devices() / 1e12 : 0;
  return out;
}

}  // namespace strata::baselines
