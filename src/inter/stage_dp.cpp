// The stage × submesh DP: evaluate every usable candidate stage once (optionally on threads),
// then, for each candidate t_max in ascending order, a DP over (stages left, first layer,
// devices left) of the least Σ t with every t ≤ t_max; stop once B·t_max cannot win.
#include "strata/inter/stage_dp.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <thread>

#include "strata/core/units.h"

namespace strata::inter {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kNoFit = std::numeric_limits<int64_t>::max();

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// weights + activations × in flight, saturating instead of overflowing.
int64_t stage_memory(const StageCost& cost, int in_flight) {
  if (cost.activation_bytes > 0 &&
      in_flight > (kNoFit - cost.weights_bytes) / cost.activation_bytes) {
    return kNoFit;
  }
  return cost.weights_bytes + cost.activation_bytes * in_flight;
}

Status validate(const StageDpRequest& r) {
  if (r.num_layers < 1) return make_error("", "num_layers", "must be at least 1");
  if (r.num_nodes < 1) return make_error("", "cluster.num_nodes", "must be at least 1");
  if (r.gpus_per_node < 1 || (r.gpus_per_node & (r.gpus_per_node - 1)) != 0) {
    return make_error("", "cluster.gpus_per_node",
                      std::to_string(r.gpus_per_node) +
                          " is not a power of two: (1, 2^k) submeshes may not tile a node");
  }
  if (r.num_micro_batches.empty()) {
    return make_error("", "num_micro_batches", "needs at least one candidate");
  }
  for (size_t i = 0; i < r.num_micro_batches.size(); ++i) {
    if (r.num_micro_batches[i] < 1) {
      return make_error("", "num_micro_batches[" + std::to_string(i) + "]", "must be >= 1");
    }
    for (size_t j = 0; j < i; ++j) {
      if (r.num_micro_batches[j] == r.num_micro_batches[i]) {
        return make_error("", "num_micro_batches[" + std::to_string(i) + "]", "is repeated");
      }
    }
  }
  if (r.memory_budget_bytes <= 0) return make_error("", "memory_budget_bytes", "must be > 0");
  if (r.num_threads < 1) return make_error("", "num_threads", "must be at least 1");
  const int most_stages = std::min(r.num_layers, r.num_nodes * r.gpus_per_node);
  if (r.num_stages < 0 || r.num_stages > most_stages) {
    return make_error("", "num_stages", std::to_string(r.num_stages) + " is not between 0 (any) and " +
                                            std::to_string(most_stages) + " (min of layers and devices)");
  }
  STRATA_CHECK(static_cast<bool>(r.oracle), "StageDpRequest without an oracle");
  return Status::ok();
}

std::string describe(const StageQuery& q) {
  return "layers " + std::to_string(q.first_layer) + ".." + std::to_string(q.last_layer) +
         " on (" + std::to_string(q.submesh.rows) + ", " + std::to_string(q.submesh.cols) +
         ") as " + std::to_string(q.logical_mesh.n0) + "x" + std::to_string(q.logical_mesh.n1) +
         " with B=" + std::to_string(q.num_micro_batches);
}

Status check_cost(const StageQuery& q, const StageCost& c) {
  if (!c.feasible) return Status::ok();
  if (!std::isfinite(c.seconds) || c.seconds < 0 || c.weights_bytes < 0 ||
      c.activation_bytes < 0) {
    return make_error("", "oracle", "returned a negative or non-finite cost for " + describe(q));
  }
  return Status::ok();
}

// Fills in in-flight counts, memory, totals and placement; shared by the DP and the reference.
Expected<StageDpResult> finish_plan(std::vector<PlannedStage> stages, int num_micro_batches,
                                    const StageDpRequest& r) {
  StageDpResult result;
  result.num_micro_batches = num_micro_batches;
  const int count = static_cast<int>(stages.size());
  std::vector<cluster::Submesh> submeshes;
  for (int s = 0; s < count; ++s) {
    PlannedStage& stage = stages[s];
    stage.micro_batches_in_flight = std::min(count - s, num_micro_batches);
    stage.peak_memory_bytes =
        stage_memory({true, stage.seconds, stage.weights_bytes, stage.activation_bytes},
                     stage.micro_batches_in_flight);
    result.sum_seconds += stage.seconds;
    result.max_seconds = std::max(result.max_seconds, stage.seconds);
    submeshes.push_back(stage.submesh);
  }
  result.objective_seconds = result.sum_seconds + (num_micro_batches - 1) * result.max_seconds;
  STRATA_ASSIGN_OR_RETURN(auto placement, place_submeshes(submeshes, r.num_nodes, r.gpus_per_node));
  for (int s = 0; s < count; ++s) stages[s].placement = placement[s];
  result.stages = std::move(stages);
  return result;
}

// Every candidate stage of the request, its oracle answer, indexed by (b, k, i, shape, mesh).
struct CandidateTable {
  int layers = 0, shapes = 0, meshes_max = 0;
  std::vector<cluster::Submesh> submeshes;
  std::vector<std::vector<cluster::LogicalMesh>> meshes;  // per shape
  std::vector<StageQuery> queries;
  std::vector<StageCost> costs;
  std::vector<int> slot;  // flat (b, k, i, shape, mesh) -> index into queries, or -1

  size_t key(int b, int k, int i, int shape, int mesh) const {
    return (((static_cast<size_t>(b) * layers + k) * layers + i) * shapes + shape) * meshes_max +
           mesh;
  }
  const StageCost* cost(int b, int k, int i, int shape, int mesh) const {
    int index = slot[key(b, k, i, shape, mesh)];
    return index < 0 ? nullptr : &costs[index];
  }
};

Expected<CandidateTable> evaluate_candidates(const StageDpRequest& r, StageDpStats& stats) {
  CandidateTable table;
  const int devices = r.num_nodes * r.gpus_per_node;
  const int micro_batch_count = static_cast<int>(r.num_micro_batches.size());
  table.layers = r.num_layers;
  table.submeshes = stage_submesh_shapes(r.num_nodes, r.gpus_per_node);
  table.shapes = static_cast<int>(table.submeshes.size());
  for (const auto& s : table.submeshes) {
    table.meshes.push_back(stage_logical_meshes(s));
    table.meshes_max = std::max(table.meshes_max, static_cast<int>(table.meshes.back().size()));
  }
  table.slot.assign(table.key(micro_batch_count, 0, 0, 0, 0), -1);
  for (int b = 0; b < micro_batch_count; ++b) {
    for (int k = 0; k < r.num_layers; ++k) {
      for (int i = k; i < r.num_layers; ++i) {
        const bool whole = k == 0 && i == r.num_layers - 1;
        for (int sh = 0; sh < table.shapes; ++sh) {
          const int n = table.submeshes[sh].num_devices();
          // The whole model must take every device; a part must leave some for the rest.
          const bool usable = whole ? n == devices : n < devices;
          for (int m = 0; m < static_cast<int>(table.meshes[sh].size()); ++m) {
            if (!usable) {
              ++stats.candidates_skipped;
              continue;
            }
            table.slot[table.key(b, k, i, sh, m)] = static_cast<int>(table.queries.size());
            table.queries.push_back(
                {k, i, table.submeshes[sh], table.meshes[sh][m], r.num_micro_batches[b]});
          }
        }
      }
    }
  }

  auto start = std::chrono::steady_clock::now();
  table.costs.resize(table.queries.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t q = next.fetch_add(1); q < table.queries.size(); q = next.fetch_add(1)) {
      table.costs[q] = r.oracle(table.queries[q]);
    }
  };
  const int threads = std::min<int>(r.num_threads, std::max<size_t>(1, table.queries.size()));
  if (threads == 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(work);
    for (auto& t : pool) t.join();
  }
  stats.oracle_seconds = seconds_since(start);
  stats.oracle_calls = static_cast<int64_t>(table.queries.size());
  for (size_t q = 0; q < table.queries.size(); ++q) {
    STRATA_RETURN_IF_ERROR(check_cost(table.queries[q], table.costs[q]));
    if (!table.costs[q].feasible) ++stats.infeasible_candidates;
  }
  return table;
}

// The DP for one B. best[s][k][i][shape]: the fastest mesh fitting memory with min(s, B)
// micro-batches in flight (s = stages from this one to the end, itself included).
class MicroBatchDp {
 public:
  MicroBatchDp(const CandidateTable& table, const StageDpRequest& r, int b)
      : table_(table), b_(b), micro_batches_(r.num_micro_batches[b]),
        layers_(r.num_layers), devices_(r.num_nodes * r.gpus_per_node),
        max_stages_(std::min(layers_, devices_)), forced_stages_(r.num_stages) {
    const size_t size = static_cast<size_t>(max_stages_ + 1) * layers_ * layers_ * table.shapes;
    best_seconds_.assign(size, kInf);
    best_mesh_.assign(size, -1);
    least_memory_.assign(size, kNoFit);
    for (int s = 1; s <= max_stages_; ++s) {
      const int in_flight = std::min(s, micro_batches_);
      for (int k = 0; k < layers_; ++k) {
        for (int i = k; i < layers_; ++i) {
          for (int sh = 0; sh < table.shapes; ++sh) {
            const size_t at = option(s, k, i, sh);
            for (int m = 0; m < static_cast<int>(table.meshes[sh].size()); ++m) {
              const StageCost* c = table.cost(b, k, i, sh, m);
              if (c == nullptr || !c->feasible) continue;
              const int64_t memory = stage_memory(*c, in_flight);
              least_memory_[at] = std::min(least_memory_[at], memory);
              if (memory > r.memory_budget_bytes) continue;
              if (c->seconds < best_seconds_[at]) {
                best_seconds_[at] = c->seconds;
                best_mesh_[at] = m;
              }
            }
            if (best_seconds_[at] < kInf) stage_times_.push_back(best_seconds_[at]);
          }
        }
      }
    }
    std::sort(stage_times_.begin(), stage_times_.end());
    stage_times_.erase(std::unique(stage_times_.begin(), stage_times_.end()), stage_times_.end());
  }

  const std::vector<double>& stage_times() const { return stage_times_; }

  // Least Σ t over plans with every t ≤ t_max; the plan's stages, or empty when none.
  std::vector<PlannedStage> solve(double t_max) {
    const size_t size = static_cast<size_t>(max_stages_ + 1) * (layers_ + 1) * (devices_ + 1);
    total_.assign(size, kInf);
    choice_.assign(size, -1);
    total_[state(0, layers_, 0)] = 0;
    for (int s = 1; s <= max_stages_; ++s) {
      for (int k = layers_ - s; k >= 0; --k) {
        for (int d = s; d <= devices_; ++d) {
          double best = kInf;
          int best_choice = -1;
          for (int i = k; i <= layers_ - s; ++i) {
            for (int sh = 0; sh < table_.shapes; ++sh) {
              const int n = table_.submeshes[sh].num_devices();
              if (n > d) break;  // shapes ascend in devices
              const double t = best_seconds_[option(s, k, i, sh)];
              if (t > t_max) continue;
              const double rest = total_[state(s - 1, i + 1, d - n)];
              if (rest == kInf) continue;
              if (t + rest < best) {
                best = t + rest;
                best_choice = i * table_.shapes + sh;
              }
            }
          }
          total_[state(s, k, d)] = best;
          choice_[state(s, k, d)] = best_choice;
        }
      }
    }
    int best_stages = -1;
    for (int s = 1; s <= max_stages_; ++s) {
      if (forced_stages_ > 0 && s != forced_stages_) continue;
      const double value = total_[state(s, 0, devices_)];
      if (value < kInf && (best_stages < 0 || value < total_[state(best_stages, 0, devices_)])) {
        best_stages = s;
      }
    }
    std::vector<PlannedStage> stages;
    if (best_stages < 0) return stages;
    for (int s = best_stages, k = 0, d = devices_; s > 0; --s) {
      const int pick = choice_[state(s, k, d)];
      STRATA_CHECK(pick >= 0, "DP state without a choice");
      const int i = pick / table_.shapes, sh = pick % table_.shapes;
      const int m = best_mesh_[option(s, k, i, sh)];
      const StageCost* c = table_.cost(b_, k, i, sh, m);
      PlannedStage stage;
      stage.first_layer = k;
      stage.last_layer = i;
      stage.submesh = table_.submeshes[sh];
      stage.logical_mesh = table_.meshes[sh][m];
      stage.seconds = c->seconds;
      stage.weights_bytes = c->weights_bytes;
      stage.activation_bytes = c->activation_bytes;
      stages.push_back(stage);
      k = i + 1;
      d -= stage.submesh.num_devices();
    }
    return stages;
  }

  // The least, over every plan, of its largest per-device stage memory (budget ignored).
  int64_t least_plan_memory() const {
    const size_t size = static_cast<size_t>(max_stages_ + 1) * (layers_ + 1) * (devices_ + 1);
    std::vector<int64_t> need(size, kNoFit);
    need[state(0, layers_, 0)] = 0;
    int64_t least = kNoFit;
    for (int s = 1; s <= max_stages_; ++s) {
      for (int k = layers_ - s; k >= 0; --k) {
        for (int d = s; d <= devices_; ++d) {
          int64_t best = kNoFit;
          for (int i = k; i <= layers_ - s; ++i) {
            for (int sh = 0; sh < table_.shapes; ++sh) {
              const int n = table_.submeshes[sh].num_devices();
              if (n > d) break;
              const int64_t rest = need[state(s - 1, i + 1, d - n)];
              const int64_t own = least_memory_[option(s, k, i, sh)];
              if (rest == kNoFit || own == kNoFit) continue;
              best = std::min(best, std::max(rest, own));
            }
          }
          need[state(s, k, d)] = best;
        }
      }
      if (forced_stages_ == 0 || s == forced_stages_) least = std::min(least, need[state(s, 0, devices_)]);
    }
    return least;
  }

 private:
  size_t option(int s, int k, int i, int sh) const {
    return ((static_cast<size_t>(s) * layers_ + k) * layers_ + i) * table_.shapes + sh;
  }
  size_t state(int s, int k, int d) const {
    return (static_cast<size_t>(s) * (layers_ + 1) + k) * (devices_ + 1) + d;
  }

  const CandidateTable& table_;
  int b_, micro_batches_, layers_, devices_, max_stages_, forced_stages_;
  std::vector<double> best_seconds_;
  std::vector<int> best_mesh_;
  std::vector<int64_t> least_memory_;
  std::vector<double> stage_times_;
  std::vector<double> total_;
  std::vector<int> choice_;
};

}  // namespace

Expected<StageDpResult> solve_stage_dp(const StageDpRequest& request) {
  STRATA_RETURN_IF_ERROR(validate(request));
  StageDpStats stats;
  STRATA_ASSIGN_OR_RETURN(CandidateTable table, evaluate_candidates(request, stats));

  auto start = std::chrono::steady_clock::now();
  bool found = false;
  StageDpResult best;
  int64_t least_memory = kNoFit;
  for (int b = 0; b < static_cast<int>(request.num_micro_batches.size()); ++b) {
    const int micro_batches = request.num_micro_batches[b];
    MicroBatchDp dp(table, request, b);
    const std::vector<double>& times = dp.stage_times();
    stats.tmax_candidates += static_cast<int64_t>(times.size());
    // Feasibility only grows with t_max: find the smallest feasible one by bisection.
    size_t low = 0, high = times.size();
    while (low < high) {
      const size_t mid = (low + high) / 2;
      ++stats.tmax_evaluated;
      if (dp.solve(times[mid]).empty()) {
        low = mid + 1;
      } else {
        high = mid;
      }
    }
    if (low == times.size()) {
      least_memory = std::min(least_memory, dp.least_plan_memory());
      continue;
    }
    for (size_t t = low; t < times.size(); ++t) {
      // Σ t_i ≥ max t_i, so a plan whose max is t_max costs at least B·t_max.
      if (found && micro_batches * times[t] >= best.objective_seconds) break;
      ++stats.tmax_evaluated;
      std::vector<PlannedStage> stages = dp.solve(times[t]);
      STRATA_CHECK(!stages.empty(), "a larger t_max cannot be infeasible");
      STRATA_ASSIGN_OR_RETURN(StageDpResult plan,
                              finish_plan(std::move(stages), micro_batches, request));
      if (!found || plan.objective_seconds < best.objective_seconds) {
        best = std::move(plan);
        found = true;
      }
    }
  }
  stats.search_seconds = seconds_since(start);
  if (!found) {
    if (least_memory == kNoFit) {
      return make_error("", "oracle",
                        "no plan exists: the oracle found no feasible sharding for enough "
                        "stage candidates to cover all " +
                            std::to_string(request.num_layers) + " layers on the cluster");
    }
    return make_error("", "memory_budget_bytes",
                      "no stage plan fits in memory: the least per-device memory any plan needs "
                      "is " + std::to_string(least_memory) + " bytes (" +
                          format_bytes(least_memory) + "), the budget is " +
                          std::to_string(request.memory_budget_bytes) + " bytes (" +
                          format_bytes(request.memory_budget_bytes) + ")");
  }
  best.stats = stats;
  return best;
}

Expected<StageDpResult> solve_stage_dp_brute_force(const StageDpRequest& request) {
  STRATA_RETURN_IF_ERROR(validate(request));
  const int devices = request.num_nodes * request.gpus_per_node;
  const auto submeshes = stage_submesh_shapes(request.num_nodes, request.gpus_per_node);
  bool found = false;
  StageDpResult best;
  for (int micro_batches : request.num_micro_batches) {
    // Every composition of the layers (bit j set: a cut after layer j).
    for (uint32_t cuts = 0; cuts < (1u << (request.num_layers - 1)); ++cuts) {
      std::vector<std::pair<int, int>> ranges;
      for (int k = 0, j = 0; j < request.num_layers; ++j) {
        if (j == request.num_layers - 1 || (cuts >> j & 1u)) {
          ranges.push_back({k, j});
          k = j + 1;
        }
      }
      const int count = static_cast<int>(ranges.size());
      if (request.num_stages > 0 && count != request.num_stages) continue;
      std::vector<PlannedStage> stages(count);
      // Every submesh and mesh per stage, by recursion over the stages.
      std::function<Status(int, int)> choose = [&](int s, int used) -> Status {
        if (s == count) {
          if (used != devices) return Status::ok();
          STRATA_ASSIGN_OR_RETURN(StageDpResult plan, finish_plan(stages, micro_batches, request));
          if (!found || plan.objective_seconds < best.objective_seconds) {
            best = std::move(plan);
            found = true;
          }
          return Status::ok();
        }
        for (const auto& submesh : submeshes) {
          if (used + submesh.num_devices() > devices) continue;
          for (const auto& mesh : stage_logical_meshes(submesh)) {
            StageQuery q{ranges[s].first, ranges[s].second, submesh, mesh, micro_batches};
            StageCost c = request.oracle(q);
            STRATA_RETURN_IF_ERROR(check_cost(q, c));
            if (!c.feasible) continue;
            if (stage_memory(c, std::min(count - s, micro_batches)) >
                request.memory_budget_bytes) {
              continue;
            }
            stages[s] = {q.first_layer, q.last_layer, submesh, mesh, {}, c.seconds,
                         c.weights_bytes, c.activation_bytes, 0, 0};
            STRATA_RETURN_IF_ERROR(choose(s + 1, used + submesh.num_devices()));
          }
        }
        return Status::ok();
      };
      STRATA_RETURN_IF_ERROR(choose(0, 0));
    }
  }
  if (!found) return make_error("", "memory_budget_bytes", "no plan fits (brute force)");
  return best;
}

}  // namespace strata::inter
