// The intra-op ILP through lp_solve 5.5: one-hot binaries s per decision node, linearised edge
// variables e with Σ_b e_ab = s_a and Σ_a e_ab = t_b (Alpa's formulation), an optional memory row.
#include <lp_lib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "intra/folded_problem.h"
#include "strata/intra/solver.h"

// Every lp_solve call that reports failure is checked; the error names the call.
#define STRATA_LPSOLVE_CHECK(call)                                                   \
  do {                                                                               \
    if (!(call)) return ::strata::make_error("", "lp_solve", std::string(#call) + " failed"); \
  } while (0)

namespace strata::intra::ilp {
namespace {

using LpHandle = std::unique_ptr<lprec, decltype(&delete_lp)>;

struct Columns {
  std::vector<int> node_base;  // first column (1-based) of each decision node's one-hot block
  std::vector<int> edge_base;  // first column of each folded edge's rows × cols block
  int count = 0;
};

Columns lay_out_columns(const detail::FoldedProblem& problem) {
  Columns columns;
  int next = 1;
  for (const auto& costs : problem.cost) {
    columns.node_base.push_back(next);
    next += static_cast<int>(costs.size());
  }
  for (const auto& edge : problem.edges) {
    columns.edge_base.push_back(next);
    next += edge.rows * edge.cols;
  }
  columns.count = next - 1;
  return columns;
}

// Costs are divided by the largest finite one so that lp_solve's tolerances see numbers near 1
// whatever the unit; the reported objective is recomputed exactly from the request.
double cost_scale(const detail::FoldedProblem& problem) {
  double largest = 0;
  auto visit = [&](double cost) {
    if (std::isfinite(cost)) largest = std::max(largest, cost);
  };
  for (const auto& costs : problem.cost) std::for_each(costs.begin(), costs.end(), visit);
  for (const auto& edge : problem.edges) std::for_each(edge.cost.begin(), edge.cost.end(), visit);
  return largest > 0 ? largest : 1.0;
}

Status build_model(lprec* lp, const detail::FoldedProblem& problem, const Columns& columns, int64_t budget_bytes) {
  const double scale = cost_scale(problem);
  std::vector<double> objective(columns.count + 1, 0.0);  // lp_solve's dense rows start at index 1
  std::vector<int> forbidden;
  for (size_t p = 0; p < problem.cost.size(); ++p) {
    for (size_t s = 0; s < problem.cost[p].size(); ++s) {
      const int column = columns.node_base[p] + static_cast<int>(s);
      if (std::isfinite(problem.cost[p][s])) objective[column] = problem.cost[p][s] / scale;
      else forbidden.push_back(column);
    }
  }
  for (size_t e = 0; e < problem.edges.size(); ++e) {
    const auto& edge = problem.edges[e];
    for (size_t k = 0; k < edge.cost.size(); ++k) {
      const int column = columns.edge_base[e] + static_cast<int>(k);
      if (std::isfinite(edge.cost[k])) objective[column] = edge.cost[k] / scale;
      else forbidden.push_back(column);
    }
  }

  STRATA_LPSOLVE_CHECK(set_add_rowmode(lp, TRUE));
  STRATA_LPSOLVE_CHECK(set_obj_fn(lp, objective.data()));
  std::vector<double> values;
  std::vector<int> indices;
  auto add_row = [&](int type, double rhs) -> Status {
    STRATA_LPSOLVE_CHECK(add_constraintex(lp, static_cast<int>(values.size()), values.data(), indices.data(), type, rhs));
    values.clear();
    indices.clear();
    return Status::ok();
  };
  for (size_t p = 0; p < problem.cost.size(); ++p) {  // one strategy per decision node
    for (size_t s = 0; s < problem.cost[p].size(); ++s) {
      values.push_back(1.0);
      indices.push_back(columns.node_base[p] + static_cast<int>(s));
    }
    STRATA_RETURN_IF_ERROR(add_row(EQ, 1.0));
  }
  for (size_t e = 0; e < problem.edges.size(); ++e) {
    const auto& edge = problem.edges[e];
    for (int r = 0; r < edge.rows; ++r) {  // Σ_c e_rc = s_a,r
      for (int c = 0; c < edge.cols; ++c) {
        values.push_back(1.0);
        indices.push_back(columns.edge_base[e] + r * edge.cols + c);
      }
      values.push_back(-1.0);
      indices.push_back(columns.node_base[edge.a] + r);
      STRATA_RETURN_IF_ERROR(add_row(EQ, 0.0));
    }
    for (int c = 0; c < edge.cols; ++c) {  // Σ_r e_rc = s_b,c
      for (int r = 0; r < edge.rows; ++r) {
        values.push_back(1.0);
        indices.push_back(columns.edge_base[e] + r * edge.cols + c);
      }
      values.push_back(-1.0);
      indices.push_back(columns.node_base[edge.b] + c);
      STRATA_RETURN_IF_ERROR(add_row(EQ, 0.0));
    }
  }
  if (budget_bytes > 0) {  // memory in units of the budget, so the row's numbers are near 1
    for (size_t p = 0; p < problem.memory_bytes.size(); ++p) {
      for (size_t s = 0; s < problem.memory_bytes[p].size(); ++s) {
        if (problem.memory_bytes[p][s] == 0) continue;
        values.push_back(static_cast<double>(problem.memory_bytes[p][s]) / static_cast<double>(budget_bytes));
        indices.push_back(columns.node_base[p] + static_cast<int>(s));
      }
    }
    STRATA_RETURN_IF_ERROR(add_row(LE, 1.0));
  }
  STRATA_LPSOLVE_CHECK(set_add_rowmode(lp, FALSE));

  for (size_t p = 0; p < problem.cost.size(); ++p) {
    for (size_t s = 0; s < problem.cost[p].size(); ++s) {
      STRATA_LPSOLVE_CHECK(set_binary(lp, columns.node_base[p] + static_cast<int>(s), TRUE));
    }
  }
  // Edge variables stay continuous: with one-hot s their marginals force e_ab = s_a·t_b.
  for (int column = columns.edge_base.empty() ? columns.count + 1 : columns.edge_base[0]; column <= columns.count; ++column) {
    STRATA_LPSOLVE_CHECK(set_upbo(lp, column, 1.0));
  }
  for (int column : forbidden) STRATA_LPSOLVE_CHECK(set_upbo(lp, column, 0.0));
  set_minim(lp);
  return Status::ok();
}

// Solves `problem` (decision nodes only) with lp_solve: one strategy per decision node in
// `choice`, or an empty choice with response->status infeasible and a message.
Status solve_ilp(const detail::FoldedProblem& problem, int64_t budget_bytes, double time_limit_seconds,
                 SolverResponse* response, std::vector<int>* choice) {
  const Columns columns = lay_out_columns(problem);
  LpHandle lp(make_lp(0, columns.count), &delete_lp);
  if (!lp) return make_error("", "lp_solve", "make_lp(0, " + std::to_string(columns.count) + ") failed");
  set_verbose(lp.get(), CRITICAL);
  if (time_limit_seconds > 0) set_timeout(lp.get(), static_cast<long>(std::ceil(time_limit_seconds)));
  STRATA_RETURN_IF_ERROR(build_model(lp.get(), problem, columns, budget_bytes));
  response->num_variables = get_Ncolumns(lp.get());
  response->num_constraints = get_Nrows(lp.get());

  const int result = ::solve(lp.get());
  if (result == INFEASIBLE) {
    response->status = SolverStatus::infeasible;
    response->message = budget_bytes > 0
                            ? "no assignment avoids the forbidden (+inf) strategies and reshardings within the memory budget"
                            : "no assignment avoids the forbidden (+inf) strategies and reshardings";
    return Status::ok();
  }
  if (result == TIMEOUT) {
    return make_error("", "time_limit_seconds", "lp_solve found no feasible assignment within " +
                                                    std::to_string(time_limit_seconds) + " s");
  }
  if (result != OPTIMAL && result != PRESOLVED && result != SUBOPTIMAL) {
    return make_error("", "lp_solve", "solve() returned " + std::to_string(result));
  }
  response->status = result == SUBOPTIMAL ? SolverStatus::time_limit_feasible : SolverStatus::optimal;

  REAL* values = nullptr;
  STRATA_LPSOLVE_CHECK(get_ptr_variables(lp.get(), &values));
  choice->assign(problem.cost.size(), 0);
  for (size_t p = 0; p < problem.cost.size(); ++p) {
    const REAL* block = values + (columns.node_base[p] - 1);
    (*choice)[p] = static_cast<int>(std::max_element(block, block + problem.cost[p].size()) - block);
  }
  return Status::ok();
}

}  // namespace

Expected<SolverResponse> LpSolveSolver::solve(const SolverRequest& request) {
  STRATA_RETURN_IF_ERROR(validate_request(request));
  const auto start = std::chrono::steady_clock::now();
  const detail::FoldedProblem problem = detail::fold_followers(request);
  SolverResponse response;
  auto finish = [&]() {
    response.solve_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };

  const int64_t least_memory = detail::minimum_memory_bytes(problem);
  if (request.memory_budget_bytes > 0 && least_memory > request.memory_budget_bytes &&
      least_memory != std::numeric_limits<int64_t>::max()) {
    response.status = SolverStatus::infeasible;
    response.message = detail::memory_infeasible_message(request.memory_budget_bytes, least_memory);
    finish();
    return response;
  }

  std::vector<int> decision_choice;
  if (eliminate_ && request.memory_budget_bytes <= 0) {
    const detail::Elimination elimination = detail::eliminate_low_degree(problem);
    std::vector<int> core_choice;
    response.status = SolverStatus::optimal;
    if (!elimination.core_nodes.empty()) {
      STRATA_RETURN_IF_ERROR(solve_ilp(elimination.core, 0, request.time_limit_seconds, &response, &core_choice));
    }
    if (response.status != SolverStatus::infeasible) {
      decision_choice = detail::reconstruct(elimination, static_cast<int>(problem.cost.size()), core_choice);
    }
  } else {
    STRATA_RETURN_IF_ERROR(
        solve_ilp(problem, request.memory_budget_bytes, request.time_limit_seconds, &response, &decision_choice));
  }
  if (response.status != SolverStatus::infeasible) {
    response.choice = detail::expand_choice(problem, decision_choice);
    response.objective = evaluate_cost(request, response.choice);
    if (!std::isfinite(response.objective)) {  // every assignment left uses a forbidden strategy or resharding
      response.status = SolverStatus::infeasible;
      response.message = "no assignment avoids the forbidden (+inf) strategies and reshardings";
      response.choice.clear();
      response.objective = 0;
    }
  }
  finish();
  return response;
}

}  // namespace strata::intra::ilp
