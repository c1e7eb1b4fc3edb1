// Test driver for `strata plan --intra-only` until src/cli/plan.cpp dispatches to it: runs
// run_plan_intra_only with this program's arguments.
#include "cli/plan_intra.h"

int main(int argc, char** argv) { return strata::cli::run_plan_intra_only(argc, argv); }
