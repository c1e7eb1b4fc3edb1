#!/usr/bin/env bash
# The lr schedule on a one-GPU machine: `strata train --backend cuda` of the plan Strata finds for a
# GPT (bf16, micro-batch 8, the bundled profiles/h200-1gpu.h5, as gpt_gpu_scaling.sh plans it) for
# STEPS steps at the plan's constant lr and under each warmup of WARMUPS (--lr-warmup-steps), in one
# call so the loss logs compare; the cuda backend's GPU tests first (TEST=0 skips them).
#   bench/gpt_gpu_lr_check.sh SRC_DIR [MODEL] [STEPS] [WARMUPS]
set -uo pipefail
src=${1:?source dir}
model=${2:-gpt-1.3b.yaml}
steps=${3:-8}
warmups=${4:-4 8}
out=${OUT:-$PWD/out}
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0
TARGETS="strata test_runtime_cuda" bash "$src/bench/gpt_gpu_run.sh" "$src" configs/models/gpt-tiny.yaml 8 build || exit 1
strata=/tmp/strata-build/strata
export LD_LIBRARY_PATH=/tmp/lp/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
mpi="mpirun --allow-run-as-root -np 1 -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH"
if [ "${TEST:-1}" = 1 ]; then
  $mpi /tmp/strata-build/tests/runtime_cuda/test_runtime_cuda --gtest_brief=1 > "$out/test.log" 2>&1
  echo "kernel tests rc=$?"; grep -E "tests ran|PASSED|FAILED|Failure" "$out/test.log" | head -20
fi
name=$(basename "$model" .yaml)
config=$out/$name-b8.yaml
sed -e "s/^\( *\)global_batch: .*/\1global_batch: 8/" -e "s/^\( *\)dtype: .*/\1dtype: bf16/" \
  "$src/configs/models/$model" > "$config"
cluster=$out/h200-1gpu.yaml
sed -e "s/^name: .*/name: h200-1gpu/" -e "s/^gpus_per_node: .*/gpus_per_node: 1/" \
  "$src/configs/clusters/h200-1node.yaml" > "$cluster"
plan=$out/plan-$name-1gpu.yaml
$strata plan --model "$config" --cluster "$cluster" --profile "$src/profiles/h200-1gpu.h5" --time-limit 10 --out "$plan" \
  > "$out/plan.log" 2>&1 || { echo "plan failed"; tail -5 "$out/plan.log"; exit 1; }
for warmup in 0 $warmups; do
  flags=(); [ "$warmup" -gt 0 ] && flags=(--lr-warmup-steps "$warmup")
  $mpi $strata train --plan "$plan" --backend cuda --steps "$steps" --data "$src/data/tiny_corpus.txt" "${flags[@]}" \
    > "$out/train-warmup$warmup.log" 2>&1 || { echo "train (warmup $warmup) failed"; tail -5 "$out/train-warmup$warmup.log"; }
  echo "warmup $warmup: step loss seconds lr:" $(grep -E '^ +[0-9]+ +[0-9.]+ ' "$out/train-warmup$warmup.log" | awk '{printf "%s %s %s %s; ", $1, $2, $3, $6}')
done
