#!/usr/bin/env bash
# Under a real one-node Slurm: sbatch scripts/slurm/train_gpt.sh with a tiny GPT on the cpu backend
# and 4 ranks (planned by the script with strata plan), on the bundled text corpus; then a plan for
# 8 devices in a 4-task job must fail with the clear error before any rank starts; then a job
# cancelled mid-run and resubmitted must resume from its checkpoint.
set -euo pipefail
source_dir=${1:?usage: slurm_train_test.sh SOURCE_DIR STRATA_BINARY}
strata=$(realpath "${2:?}")
work=$(mktemp -d /tmp/strata-slurm-train.XXXXXX)
slurm_dir="$work/slurm"
cleanup() {
  # The daemons write their state as they exit: wait for them before removing the directory.
  local pids; pids=$(cat "$slurm_dir"/*.pid 2>/dev/null || true)
  "$source_dir/scripts/slurm/local_slurm.sh" stop "$slurm_dir"
  for _ in $(seq 1 50); do
    local alive=0 pid
    for pid in $pids; do  # a zombie (exited, not yet reaped) counts as gone
      grep -qs '^State:[[:space:]]*[^Z[:space:]]' "/proc/$pid/status" && alive=1
    done
    ((alive)) || break
    sleep 0.2
  done
  rm -rf "$work"
}
trap cleanup EXIT
passed=0
fail() {
  echo "FAIL: $*"
  for f in "$work"/*.out; do [[ -f "$f" ]] && { echo "== $f"; tail -n 40 "$f"; }; done
  exit 1
}

# Ports of our own, so that two test runs on one machine do not collide.
export STRATA_SLURMCTLD_PORT=$((20000 + (RANDOM % 10000) * 2))
export STRATA_SLURMD_PORT=$((STRATA_SLURMCTLD_PORT + 1))
eval "$("$source_dir/scripts/slurm/local_slurm.sh" start "$slurm_dir")"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$source_dir"

# gpt-tiny with a vocab that holds every byte, so the text corpus's byte tokens fit.
mkdir -p "$work/models"
sed -e 's/^\( *vocab:\).*/\1 256/' -e 's/^\( *name:\).*/\1 gpt-tiny-bytes/' configs/models/gpt-tiny.yaml \
  > "$work/models/gpt-tiny-bytes.yaml"
grep -q 'vocab: 256' "$work/models/gpt-tiny-bytes.yaml" || fail "could not make the byte-vocab model config"
export STRATA="$strata" MODEL="$work/models/gpt-tiny-bytes.yaml" CLUSTER=configs/clusters/cpu-4.yaml \
  BACKEND=cpu DATA=data/tiny_corpus.txt LAUNCHER=mpirun
submit=(sbatch --gpus-per-node=0 --ntasks-per-node=4 --cpus-per-task=1)
job_of() { local name; name=$(basename "$1" .out); echo "${name##*-}"; }
job_state() { scontrol show job "$1" | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
# A step directory holding the files of all 4 ranks: the newest complete checkpoint's step.
newest_complete_step() {
  local dir best=0 step
  for dir in "$1"/step-*; do
    [[ -d "$dir" ]] || continue
    [[ -f "$dir/rank-00000.h5" && -f "$dir/rank-00001.h5" && -f "$dir/rank-00002.h5" && -f "$dir/rank-00003.h5" ]] ||
      continue
    step=$((10#${dir##*step-}))
    ((step > best)) && best=$step
  done
  echo "$best"
}

# 1. A whole run: plan, train 12 steps, log the loss, leave a checkpoint of every rank.
RUN_DIR="$work/run-good" STEPS=12 "${submit[@]}" --wait --output="$work/good-%j.out" \
  scripts/slurm/train_gpt.sh --checkpoint-every 4 || fail "the training job did not succeed"
job=$(job_of "$work"/good-*.out)
[[ "$(job_state "$job")" == COMPLETED ]] || fail "job $job state $(job_state "$job"), not COMPLETED"
log=$(cat "$work"/good-*.out)
grep -q "planning $MODEL on $CLUSTER" <<<"$log" || fail "the job did not plan"
[[ -s "$work/run-good/plan.yaml" ]] || fail "no plan.yaml in the run dir"
loss_lines=$(grep -cE '^ *[0-9]+ +[0-9]+\.[0-9]+ ' <<<"$log" || true)
((loss_lines >= 12)) || fail "expected a loss line for each of 12 steps, found $loss_lines"
grep -qE '^ *12 +[0-9]+\.[0-9]+ ' <<<"$log" || fail "no loss line for step 12"
[[ -s "$(ls "$work"/run-good/logs/train-"$job"-0.log)" ]] || fail "no training log under the run dir"
step=$(newest_complete_step "$work/run-good/checkpoints")
((step == 12)) || fail "newest complete checkpoint is step $step, not 12"
h5dump -a step "$work/run-good/checkpoints/step-000000012/rank-00003.h5" | grep -q '(0): 12' ||
  fail "rank 3's checkpoint file does not say step 12"
echo "ok 1: job $job COMPLETED, $loss_lines loss lines ($(grep -E '^# loss' <<<"$log")), checkpoint step $step"
passed=$((passed + 1))

# 2. A plan for 8 devices in a 4-task job: the script refuses it before starting any rank.
if PLAN=configs/plans/example-gpt-2stage.yaml RUN_DIR="$work/run-bad" STEPS=2 \
   "${submit[@]}" --wait --output="$work/bad-%j.out" scripts/slurm/train_gpt.sh; then
  fail "a 4-task job with an 8-device plan succeeded"
fi
bad=$(cat "$work"/bad-*.out)
grep -q "needs 8 devices (1 node(s) x 8 GPUs) but this job has 4 tasks" <<<"$bad" || fail "no clear mismatch error"
! grep -q "starting .* rank" <<<"$bad" || fail "ranks were started despite the mismatch"
[[ -z "$(ls -A "$work/run-bad/checkpoints")" ]] || fail "the refused job left checkpoints"
echo "ok 2: refused before any rank: $(grep -o 'needs 8 devices.*SLURM_NTASKS)' <<<"$bad")"
passed=$((passed + 1))

# 3. Cancel a long run once it has a complete checkpoint, resubmit: it resumes from there.
# (The plan of step 1, given as PLAN: planning again would only cost time.)
export PLAN="$work/run-good/plan.yaml"
RUN_DIR="$work/run-resume" STEPS=100000 "${submit[@]}" --output="$work/long-%j.out" \
  scripts/slurm/train_gpt.sh --checkpoint-every 3 > "$work/long.id"
long=$(grep -o '[0-9]*$' "$work/long.id")
for _ in $(seq 1 600); do
  (( $(newest_complete_step "$work/run-resume/checkpoints") > 0 )) && break
  [[ "$(job_state "$long")" =~ ^(PENDING|RUNNING|CONFIGURING)$ ]] || fail "the long job ended early ($(job_state "$long"))"
  sleep 0.5
done
saved=$(newest_complete_step "$work/run-resume/checkpoints")
((saved > 0)) || fail "the long job wrote no complete checkpoint in 300 s"
scancel "$long"
for _ in $(seq 1 120); do
  [[ "$(job_state "$long")" == CANCELLED ]] && ! squeue -h -j "$long" 2>/dev/null | grep -q . && break
  sleep 0.5
done
[[ "$(job_state "$long")" == CANCELLED ]] || fail "job $long state $(job_state "$long") after scancel"
sleep 1  # let the killed ranks' files settle
saved=$(newest_complete_step "$work/run-resume/checkpoints")
RUN_DIR="$work/run-resume" STEPS=$((saved + 4)) "${submit[@]}" --wait --output="$work/resumed-%j.out" \
  scripts/slurm/train_gpt.sh --checkpoint-every 3 || fail "the resubmitted job did not succeed"
resumed=$(cat "$work"/resumed-*.out)
grep -q "checkpoints found in $work/run-resume/checkpoints: resuming" <<<"$resumed" || fail "the script did not pass --resume"
# strata train says "# resumed from DIR/step-<N> (step N)".
at=$(grep -oE '# resumed from [^ ]+ \(step [0-9]+\)' <<<"$resumed" | grep -oE '[0-9]+\)$' | tr -d ')' | head -n 1 || true)
[[ -n "$at" ]] || fail "the resumed log does not say at which step it resumed"
((at == saved)) || fail "resumed at step $at, but the newest complete checkpoint was step $saved"
grep -qE "^ *$((saved + 4)) +[0-9]+\.[0-9]+ " <<<"$resumed" || fail "no loss line for the last step $((saved + 4))"
! grep -qE '^ *1 +[0-9]+\.[0-9]+ ' <<<"$resumed" || fail "the resumed job started again from step 1"
[[ "$(job_state "$(job_of "$work"/resumed-*.out)")" == COMPLETED ]] || fail "the resumed job did not complete"
echo "ok 3: job $long cancelled with step $saved saved; the resubmitted job resumed at step $at and ran to $((saved + 4))"
passed=$((passed + 1))
echo "slurm train test: $passed passed, 0 failed"
