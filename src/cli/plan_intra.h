// `strata plan --intra-only`: one stage over the whole cluster, sharded by the intra-op ILP alone
// (no pipelining). src/cli/plan.cpp dispatches --intra-only here.
#pragma once

namespace strata::cli {

// argv[0] is "plan"; flags: --model, --cluster, [--mesh N0xN1], [--micro-batch N], [--profile P.h5],
// [--time-limit S], --out plan.yaml, [--json], and --intra-only itself (accepted, implied).
int run_plan_intra_only(int argc, char** argv);

}  // namespace strata::cli
