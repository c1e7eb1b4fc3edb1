#!/usr/bin/env bash
# `strata train` with an lr schedule on 8 cpu ranks (a random 2+-stage plan of a byte-level tiny
# GPT): the logged lr follows the warmup, the losses differ from the constant-lr run's, a run
# resumed from a checkpoint mid-warmup logs the uninterrupted run's losses, a resume under another
# schedule is refused, and bad --lr-* flags are one-line errors naming the flag.
#   train_schedule_test.sh SOURCE_DIR STRATA SPMD_CHECK
set -u
src=$1 strata=$2 spmd_check=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mpi=(mpirun --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1)
source "$src/tests/runtime/check_lib.sh"
train() { "${mpi[@]}" -np 8 "$strata" train --plan "$work/plan.yaml" --data "$src/data/tiny_corpus.txt" "$@"; }
schedule=(--lr-warmup-steps 4 --lr-decay cosine --lr-decay-steps 10 --min-lr 1e-4)

"${mpi[@]}" -np 1 "$spmd_check" --model "$src/tests/runtime/data/gpt-bytes.yaml" --cluster "$src/configs/clusters/cpu-8.yaml" \
  --seed 3 --write-plan "$work/plan.yaml" > "$work/write.log" 2>&1
check "write a random plan" $?
grep -q "lr: 0.003" "$work/plan.yaml"
check "the plan's lr is 0.003" $?

train --steps 6 > "$work/constant.log" 2>&1
check "6 steps at a constant lr" $?
train --steps 6 "${schedule[@]}" > "$work/schedule.log" 2>&1
check "6 steps with warmup 4 and a cosine decay" $?
cat "$work/schedule.log"
# Warmup 4 to 0.003: 0.00075, 0.0015, 0.00225, 0.003; then cosine to 1e-4 at step 10: step 6 is a
# third of the way, 1e-4 + 0.0029 * (1 + cos(pi/3)) / 2.
diff <(grep -E '^ +[0-9]+ +[0-9.]+ ' "$work/schedule.log" | awk '{print $1, $6}') \
  <(printf "1 0.00075\n2 0.0015\n3 0.00225\n4 0.003\n5 0.00280574\n6 0.002275\n")
check "the logged lr follows the schedule" $?
grep -q "# lr: warmup over 4 step(s) to 0.003, then cosine decay to 0.0001 at step 10" "$work/schedule.log"
check "the schedule is announced" $?
# Step 1's loss comes before any update; from step 2 on the smaller lr shows.
[ "$(losses "$work/schedule.log" | head -1)" = "$(losses "$work/constant.log" | head -1)" ] &&
  [ "$(losses "$work/schedule.log" | sed -n 2p)" != "$(losses "$work/constant.log" | sed -n 2p)" ]
check "losses equal at step 1 and differ from step 2 on" $?

# Mid-warmup: stop after step 2 with a checkpoint, resume to step 6.
train --steps 2 "${schedule[@]}" --checkpoint "$work/ckpt" > "$work/part1.log" 2>&1
check "2 steps with a checkpoint" $?
cp -r "$work/ckpt" "$work/other-schedule"
train --steps 6 --lr-warmup-steps 3 --checkpoint "$work/other-schedule" --resume > "$work/refused.log" 2>&1
[ $? -ne 0 ] && grep -q "plan_hash: checkpoint was written under plan" "$work/refused.log"
check "a resume under another schedule is refused" $?
train --steps 6 "${schedule[@]}" --checkpoint "$work/ckpt" --resume > "$work/part2.log" 2>&1
check "resume to step 6" $?
cat "$work/refused.log" "$work/part2.log"
diff <(losses "$work/part2.log") <(losses "$work/schedule.log" | awk '$1 >= 3')
check "resumed losses (steps 3..6) equal the uninterrupted ones" $?

bad() {  # bad EXPECTED-MESSAGE FLAGS...
  local want=$1
  shift
  train --steps 1 "$@" > "$work/bad.log" 2>&1
  [ $? -ne 0 ] && grep -qF -- "$want" "$work/bad.log"
  check "error: $want" $?
}
bad "--lr-decay: must be \"constant\", \"linear\" or \"cosine\", got \"exp\"" --lr-decay exp
bad "--lr-warmup-steps: must not be negative, got -2" --lr-warmup-steps=-2
bad "--min-lr: must lie in [0, lr]" --lr-decay linear --lr-decay-steps 10 --min-lr 0.5
bad "--lr-decay-steps: 4 must exceed warmup_steps 4 for a linear decay" --lr-warmup-steps 4 --lr-decay linear --lr-decay-steps 4
bad "training.decay_steps: 0 must exceed warmup_steps 0 for a cosine decay" --lr-decay cosine

echo "train schedule test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
