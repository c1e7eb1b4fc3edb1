#!/usr/bin/env bash
# `strata train` end to end on 8 cpu ranks: the planner's plan of a byte-level tiny GPT on real
# text (the loss must fall), a random 2+-stage plan for the rest: a run killed after step 3 and resumed from its last checkpoint against
# an uninterrupted run (identical losses), and a launch with the wrong number of ranks (a clear error).
#   train_cli_test.sh SOURCE_DIR STRATA SPMD_CHECK
set -u
src=$1 strata=$2 spmd_check=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mpi=(mpirun --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1)
passed=0 failed=0
check() {  # check NAME CONDITION-EXIT-CODE
  if [ "$2" -eq 0 ]; then passed=$((passed + 1)); echo "ok: $1"; else failed=$((failed + 1)); echo "FAILED: $1"; fi
}
losses() { grep -E '^ +[0-9]+ +[0-9.]+ ' "$1" | awk '{print $1, $2}'; }

"${mpi[@]}" -np 1 "$spmd_check" --model "$src/tests/runtime/data/gpt-bytes.yaml" --cluster "$src/configs/clusters/cpu-8.yaml" \
  --seed 3 --write-plan "$work/plan.yaml" > "$work/write.log" 2>&1
check "write a random plan" $?
"${mpi[@]}" -np 1 "$spmd_check" --model "$src/tests/runtime/data/gpt-bytes.yaml" --cluster "$src/configs/clusters/cpu-8.yaml" \
  --seed 3 --planned 1 --write-plan "$work/planned.yaml" > "$work/write.log" 2>&1
check "write the planner's plan" $?

# Real text, the planner's plan: the loss falls over 60 steps.
"${mpi[@]}" -np 8 "$strata" train --plan "$work/planned.yaml" --data "$src/data/tiny_corpus.txt" --steps 60 --log-every 10 \
  > "$work/long.log" 2>&1
code=$?
cat "$work/long.log"
first=$(grep '^# loss' "$work/long.log" | awk '{print $3}')
last=$(grep '^# loss' "$work/long.log" | awk '{print $5}')
check "train 60 steps on text" $code
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 1.0) }'
check "loss falls by more than 1.0 ($first -> $last)" $?

# Killed mid-run (checkpoint every step), then resumed: the resumed run's losses equal those of
# an uninterrupted run at the same steps, wherever the kill landed.
"${mpi[@]}" -np 8 "$strata" train --plan "$work/plan.yaml" --data "$src/data/tiny_corpus.txt" --steps 8 > "$work/full.log" 2>&1
check "uninterrupted 8 steps" $?
"${mpi[@]}" -np 8 "$strata" train --plan "$work/plan.yaml" --data "$src/data/tiny_corpus.txt" --steps 8 \
  --checkpoint "$work/ckpt" --checkpoint-every 1 > "$work/part1.log" 2>&1 &
launcher=$!
for _ in $(seq 600); do  # until step 3 is logged (at most a minute)
  grep -qE '^ +3 ' "$work/part1.log" 2>/dev/null && break
  sleep 0.1
done
kill -TERM "$launcher" 2>/dev/null
wait "$launcher"
grep -qE '^ +8 ' "$work/part1.log"
[ $? -ne 0 ]
check "the first run was killed before step 8" $?
"${mpi[@]}" -np 8 "$strata" train --plan "$work/plan.yaml" --data "$src/data/tiny_corpus.txt" --steps 8 \
  --checkpoint "$work/ckpt" --resume > "$work/part2.log" 2>&1
check "resume to step 8" $?
cat "$work/part2.log"
grep -q "resumed from" "$work/part2.log"
check "the resume found a checkpoint" $?
resumed=$(losses "$work/part2.log")
[ -n "$resumed" ] && diff <(echo "$resumed") <(losses "$work/full.log" | awk -v first="$(echo "$resumed" | head -1 | awk '{print $1}')" '$1 >= first')
check "resumed losses equal the uninterrupted ones" $?

# Four ranks for an eight-device plan: exit code 2 and a message naming the plan.
"${mpi[@]}" -np 4 "$strata" train --plan "$work/plan.yaml" --steps 1 > "$work/wrong.log" 2>&1
code=$?
cat "$work/wrong.log" | grep "strata train"
[ $code -ne 0 ] && grep -q "plan.yaml: cluster: the plan needs 8 ranks" "$work/wrong.log"
check "wrong world size is a clear error" $?

echo "train cli test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
