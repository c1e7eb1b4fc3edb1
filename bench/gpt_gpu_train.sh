#!/usr/bin/env bash
# `strata train --backend cuda` on a one-GPU machine, end to end: build strata with CUDA (through
# bench/gpt_gpu_run.sh's build stage), train the given plan on real text with checkpoints, then a
# second run that resumes from the checkpoint of step STEPS/2 and must log the same losses.
#   bench/gpt_gpu_train.sh SRC_DIR PLAN.yaml [STEPS]
# Logs go to $OUT (or ./out). The plan is one that `strata plan` wrote (its model file beside it).
set -uo pipefail
src=${1:?source dir}
plan=${2:?plan.yaml}
steps=${3:-60}
out=${OUT:-$PWD/out}
mkdir -p "$out"
source "$src/bench/gpu_strata_env.sh"
ckpt=/tmp/strata-ckpt
rm -rf $ckpt
$mpi $strata train --plan "$plan" --backend cuda --steps "$steps" --data "$src/data/tiny_corpus.txt" \
  --log-every 1 --checkpoint $ckpt --checkpoint-every $((steps / 2)) > "$out/train.log" 2>&1
echo "train rc=$?"; cat "$out/train.log" | tail -$((steps + 10))
# Resume from step STEPS/2: drop the final checkpoint, rerun to STEPS, compare the logged losses.
rm -rf "$ckpt/$(printf "step-%09d" "$steps")"
$mpi $strata train --plan "$plan" --backend cuda --steps "$steps" --data "$src/data/tiny_corpus.txt" \
  --log-every 1 --checkpoint $ckpt --resume > "$out/resume.log" 2>&1
echo "resume rc=$?"; grep -E "resumed|^ +[0-9]+ " "$out/resume.log" | head -5
losses() { grep -E '^ +[0-9]+ +[0-9.]+ ' "$1" | awk '{print $1, $2}'; }
first=$(losses "$out/resume.log" | head -1 | awk '{print $1}')
if diff <(losses "$out/resume.log") <(losses "$out/train.log" | awk -v f="$first" '$1 >= f') > "$out/resume.diff"; then
  echo "resumed losses equal the uninterrupted ones (steps $first..$steps)"
else
  echo "resumed losses differ:"; head -10 "$out/resume.diff"
fi
