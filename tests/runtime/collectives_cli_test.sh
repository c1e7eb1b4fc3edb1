#!/usr/bin/env bash
# `strata train --collectives` on the CPU: a bad name and nccl without the cuda backend are
# one-line errors naming the flag; `--backend cpu --collectives mpi` trains with the same losses as
# without the flag; STRATA_CUDA_COLLECTIVES is checked where the build has the cuda backend.
#   collectives_cli_test.sh SOURCE_DIR STRATA
set -u
src=$1 strata=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mpi=(mpirun --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 -np 1)
source "$src/tests/runtime/check_lib.sh"

"$strata" plan --model "$src/configs/models/gpt-tiny.yaml" --cluster "$src/configs/clusters/h200-1gpu.yaml" \
  --out "$work/plan.yaml" > "$work/plan.log" 2>&1
check "strata plan for gpt-tiny on one device" $?

"${mpi[@]}" "$strata" train --plan "$work/plan.yaml" --collectives gloo --steps 1 > "$work/bad.log" 2>&1
code=$?
cat "$work/bad.log"
[ $code -ne 0 ] && grep -qx "strata train: --collectives: must be nccl or mpi, got 'gloo'" "$work/bad.log"
check "--collectives gloo: one-line error naming the flag" $?

"${mpi[@]}" "$strata" train --plan "$work/plan.yaml" --backend cpu --collectives nccl --steps 1 > "$work/nccl.log" 2>&1
code=$?
cat "$work/nccl.log"
[ $code -ne 0 ] && grep -q "^strata train: --collectives: nccl needs --backend cuda" "$work/nccl.log"
check "--collectives nccl with the cpu backend: an error" $?

"${mpi[@]}" "$strata" train --plan "$work/plan.yaml" --backend cpu --steps 2 > "$work/plain.log" 2>&1
check "train 2 steps on cpu" $?
"${mpi[@]}" "$strata" train --plan "$work/plan.yaml" --backend cpu --collectives mpi --steps 2 > "$work/mpi.log" 2>&1
check "train 2 steps on cpu with --collectives mpi" $?
[ "$(losses "$work/plain.log" | wc -l)" -eq 2 ] && diff <(losses "$work/plain.log") <(losses "$work/mpi.log")
check "--collectives mpi on cpu: the same losses" $?

STRATA_CUDA_COLLECTIVES=gloo "${mpi[@]}" -x STRATA_CUDA_COLLECTIVES "$strata" train --plan "$work/plan.yaml" \
  --backend cuda --steps 1 > "$work/env.log" 2>&1
code=$?
cat "$work/env.log"
if grep -q "needs a build with CUDA" "$work/env.log"; then
  echo "skip: STRATA_CUDA_COLLECTIVES (no cuda backend in this build)"
else
  [ $code -ne 0 ] && grep -q "STRATA_CUDA_COLLECTIVES: must be nccl or mpi, got 'gloo'" "$work/env.log"
  check "STRATA_CUDA_COLLECTIVES=gloo: an error naming the variable" $?
fi

echo "collectives cli test: $passed passed, $failed failed"
[ $failed -eq 0 ]
