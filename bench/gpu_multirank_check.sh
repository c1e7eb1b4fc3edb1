#!/usr/bin/env bash
# Multi-rank plans of the cuda backend on ONE GPU: N MPI ranks share the GPU (device = local rank %
# GPUs) and combine tensors through the host-staged MPI collectives (--collectives mpi), since NCCL
# refuses two ranks on one GPU. Each plan of gpt-tiny trains 3 steps on cuda and then on the cpu
# backend (same plan, same data, same initial weights) and gpt_gpu_plan_check compares the losses.
# Then `strata train --backend cuda --collectives mpi` on a written plan against `--backend cpu`,
# and the one-line error of --collectives nccl with two ranks on the GPU; first, each collective
# against host values (collectives_check). Logs: $OUT/logs.tgz.
#   bench/gpu_multirank_check.sh SRC_DIR [PLANS]   (PLANS: comma-separated names below; default all)
# COLLECTIVES=nccl (on a machine of several GPUs): NCCL across GPUs, one rank per GPU, instead; plans
# of more ranks than GPUs are skipped, and so is the one-GPU NCCL error check.
set -uo pipefail
src=${1:?source dir}
only=${2:-all}
out=${OUT:-$PWD/out}
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0
build=/tmp/strata-build
OUT=$out TARGETS="${TARGETS:-gpt_gpu_plan_check strata collectives_check}" bash "$src/bench/gpt_gpu_run.sh" "$src" configs/models/gpt-tiny.yaml 8 build ||
  exit 1
export LD_LIBRARY_PATH=/tmp/lp/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
mpi="mpirun --allow-run-as-root --oversubscribe -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH"
collectives=${COLLECTIVES:-mpi}
gpus=$(nvidia-smi -L | wc -l)
model=$src/configs/models/gpt-tiny.yaml
clusters=$src/configs/clusters
want() { [ "$only" = all ] || [[ ",$only," == *",$1,"* ]]; }
# plan NAME RANKS CLUSTER [gpt_gpu_plan_check flags...]
plan() {
  local name=$1 np=$2 cluster=$3
  shift 3
  want "$name" || return 0
  if [ "$collectives" = nccl ] && [ "$np" -gt "$gpus" ]; then echo "== $name: $np ranks > $gpus GPUs, skipped"; return 0; fi
  local start=$SECONDS
  timeout 150 $mpi -np "$np" $build/gpt_gpu_plan_check --model "$model" --cluster "$clusters/$cluster" \
    --backends cuda,cpu --steps 3 --collectives "$collectives" --plan-out "$out/plan-$name.yaml" "$@" > "$out/$name.log" 2>&1
  echo "== $name: $np ranks, $cluster, $* : rc=$? ($((SECONDS - start)) s)"
  grep -E "^plan|^stage|executor graph|step [0-9]+:|plan check|gpt_gpu_plan_check:|rror" "$out/$name.log" | head -30
}
# Each collective against host values (tests/runtime/driver/collectives_check.cpp): MPI collectives
# on 3, 4 and 8 ranks sharing the GPU; NCCL on the one rank it allows here.
if want collectives; then
  runs=("4 mpi" "3 mpi" "8 mpi" "1 nccl")
  [ "$collectives" = nccl ] && runs=("$gpus nccl" "$gpus mpi")
  for run in "${runs[@]}"; do
    set -- $run
    timeout 120 $mpi -np $1 $build/tests/collectives_check --backend cuda --collectives $2 > "$out/collectives-$1-$2.log" 2>&1
    echo "== collectives_check --backend cuda --collectives $2 on $1 rank(s): rc=$?"
    grep -E "collectives check|FAILED|rror" "$out/collectives-$1-$2.log" | head -8
  done
fi
plan dp2 2 aws-p3-1node-2gpu.yaml --grid 2x1x1
plan dp2b2 2 aws-p3-1node-2gpu.yaml --grid 2x1x1 --micro-batches 2
plan tp2 2 aws-p3-1node-2gpu.yaml --grid 1x2x1
plan planned2 2 aws-p3-1node-2gpu.yaml
plan tp4 4 aws-p3-1node-4gpu.yaml --grid 1x4x1
plan pp2 2 aws-p3-1node-2gpu.yaml --grid 1x1x2 --micro-batches 4
plan dp2tp2 4 aws-p3-1node-4gpu.yaml --grid 2x2x1 --micro-batches 2
plan dp2tp4 8 h200-1node.yaml --grid 2x4x1
plan dp2tp2pp2 8 h200-1node.yaml --grid 2x2x2 --micro-batches 2
plan planned8 8 h200-1node.yaml
plan planned-cpu8 8 cpu-8.yaml

# strata train on the 2x2 plan written above (or the 1x2 one on fewer GPUs): cuda against the cpu backend.
train_plan=$out/plan-dp2tp2.yaml
[ -f "$train_plan" ] || train_plan=$out/plan-tp2.yaml
if want train && [ -f "$train_plan" ]; then
  np=$(python3 -c "import yaml,sys; c=yaml.safe_load(open(sys.argv[1]))['cluster']; print(c['num_nodes']*c['gpus_per_node'])" "$train_plan")
  for backend in cuda cpu; do
    flags=""; [ $backend = cuda ] && flags="--collectives $collectives"
    timeout 120 $mpi -np "$np" $build/strata train --plan "$train_plan" --backend $backend $flags --steps 3 \
      > "$out/train-$backend.log" 2>&1
    echo "== strata train --backend $backend $flags ($np ranks, $(basename "$train_plan")): rc=$?"
    grep -E "^#|^ +[0-9]+ " "$out/train-$backend.log"
  done
fi
# NCCL with two ranks on one GPU: the one-line error naming --collectives mpi.
if want ncclerror && [ "$collectives" = mpi ] && [ -f "$out/plan-dp2.yaml" ]; then
  timeout 60 $mpi -np 2 $build/strata train --plan "$out/plan-dp2.yaml" --backend cuda --collectives nccl --steps 1 \
    > "$out/nccl-error.log" 2>&1
  echo "== strata train --collectives nccl (2 ranks, 1 GPU): rc=$? (expected non-zero)"
  grep -E "strata|error|share" "$out/nccl-error.log" | head -5
fi
# The device tool returns at most 8 files: every log and plan in one archive.
(cd "$out" && tar -czf /tmp/multirank-logs.tgz --exclude=gpu.txt . &&
  find . -maxdepth 1 -type f ! -name gpu.txt -delete && mv /tmp/multirank-logs.tgz logs.tgz)
