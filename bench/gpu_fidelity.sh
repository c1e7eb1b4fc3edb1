#!/usr/bin/env bash
# One-GPU fidelity run: train each plan of bench/gpu_fidelity/ with `strata train --backend cuda`
# and print the measured step (median of steps 3..STEPS) beside the step `strata simulate` predicts
# for it (the plans were made with `--profile profiles/h200-1gpu.h5`; bench/gpu_fidelity/README.md). Builds strata with CUDA first (bench/gpt_gpu_run.sh).
#   bench/gpu_fidelity.sh SRC_DIR [STEPS] [PLAN.yaml ...]   (default: every bench/gpu_fidelity/plan-*.yaml)
# Logs go to $OUT (or ./out).
set -uo pipefail
src=${1:?source dir}
steps=${2:-8}
shift 2 2>/dev/null || shift $#
plans=("$@")
[ ${#plans[@]} -gt 0 ] || plans=("$src"/bench/gpu_fidelity/plan-*.yaml)
out=${OUT:-$PWD/out}
mkdir -p "$out"
source "$src/bench/gpu_strata_env.sh"
# STRATA_CUDA_FUSE=0 in the environment: the executor runs the graph as built (no fuse_for_cuda).
[ -n "${STRATA_CUDA_FUSE:-}" ] && mpi="$mpi -x STRATA_CUDA_FUSE"
tag=${STRATA_CUDA_FUSE:+.fuse$STRATA_CUDA_FUSE}
printf "%-28s %14s %14s %9s\n" plan predicted_ms measured_ms error
for plan in "${plans[@]}"; do
  name=$(basename "$plan" .yaml)
  predicted=$($strata simulate --plan "$plan" --json 2>"$out/$name.sim.err" |
    python3 -c 'import json,sys; print(1e3 * json.load(sys.stdin)["step_seconds"])' 2>>"$out/$name.sim.err")
  $mpi $strata train --plan "$plan" --backend cuda --steps "$steps" --data "$src/data/tiny_corpus.txt" \
    > "$out/$name$tag.log" 2>&1 || { echo "$name: train failed"; tail -5 "$out/$name$tag.log"; continue; }
  measured=$(grep -E '^ +[0-9]+ +[0-9.]+ +[0-9.]+ ' "$out/$name$tag.log" | awk '$1 >= 3 {print 1e3 * $3}' | sort -n |
    awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
  printf "%-28s %14s %14s %8.1f%%\n" "$name" "${predicted:-?}" "$measured" \
    "$(python3 -c "print(100 * (${predicted:-0} - $measured) / $measured)")"
done
