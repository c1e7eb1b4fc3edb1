// The learning-rate schedule of a plan's `training` block: its rules and the lr of each step,
// following Megatron-LM's OptimizerParamScheduler (warmup from 0, then constant, linear or cosine).
#include <cmath>
#include <numbers>

#include "strata/plan/plan.h"

namespace strata::plan {

Status validate_schedule(const Training& t) {
  if (t.warmup_steps < 0) return make_error("", "warmup_steps", "must not be negative, got " + std::to_string(t.warmup_steps));
  if (t.decay != "constant" && t.decay != "linear" && t.decay != "cosine") {
    return make_error("", "decay", "must be \"constant\", \"linear\" or \"cosine\", got \"" + t.decay + "\"");
  }
  if (t.decay == "constant") {
    // Set by mistake they would be ignored: a decay style was likely forgotten.
    if (t.decay_steps != 0) return make_error("", "decay_steps", "is read only by a linear or cosine decay");
    if (t.min_lr != 0) return make_error("", "min_lr", "is read only by a linear or cosine decay");
    return Status::ok();
  }
  if (t.decay_steps <= t.warmup_steps) {
    return make_error("", "decay_steps", std::to_string(t.decay_steps) + " must exceed warmup_steps " +
                                             std::to_string(t.warmup_steps) + " for a " + t.decay + " decay");
  }
  if (!(t.min_lr >= 0 && t.min_lr <= t.lr)) return make_error("", "min_lr", "must lie in [0, lr]");
  return Status::ok();
}

bool has_schedule(const Training& t) {
  return t.warmup_steps != 0 || t.decay != "constant" || t.decay_steps != 0 || t.min_lr != 0;
}

double learning_rate(const Training& t, int64_t step) {
  if (step <= t.warmup_steps) return t.lr * static_cast<double>(step) / static_cast<double>(t.warmup_steps);
  if (t.decay == "constant") return t.lr;
  if (step >= t.decay_steps) return t.min_lr;
  const double ratio =
      static_cast<double>(step - t.warmup_steps) / static_cast<double>(t.decay_steps - t.warmup_steps);
  const double coefficient = t.decay == "linear" ? 1.0 - ratio : 0.5 * (std::cos(std::numbers::pi * ratio) + 1.0);
  return t.min_lr + coefficient * (t.lr - t.min_lr);
}

}  // namespace strata::plan
