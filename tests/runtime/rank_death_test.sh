#!/usr/bin/env bash
# A rank that dies or hangs during `strata train` ends the whole job, non-zero, within a bounded
# time, with a message naming the rank (issue 10). On 8 cpu ranks, a random multi-stage plan:
#   1. rank 3 killed with SIGKILL mid-training: mpirun must exit non-zero within 60 s and name rank 3;
#   2. an error on rank 3 at step 2 (the STRATA_FAULT_RANK / STRATA_FAULT_STEP test hook):
#      "strata train: rank 3: ..." and a non-zero exit within 60 s;
#   3. rank 3 stopped with SIGSTOP (alive, silent): the other ranks' --comm-timeout 5 watchdog must
#      end the job within 60 s, naming the ranks that gave up.
#   rank_death_test.sh SOURCE_DIR STRATA SPMD_CHECK
set -u
src=$1 strata=$2 spmd_check=$3
work=$(mktemp -d)
launcher=
cleanup() {
  if [ -n "$launcher" ] && kill -0 "$launcher" 2>/dev/null; then
    for pid in $(pgrep -P "$launcher"); do kill -KILL "$pid" 2>/dev/null; done
    kill -KILL "$launcher" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
mpi=(mpirun --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1)
source "$src/tests/runtime/check_lib.sh"

# The pid of the rank-R child of mpirun $launcher (Open MPI puts the rank in each child's environment).
rank_pid() {
  local pid
  for pid in $(pgrep -P "$launcher"); do
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}
# Waits up to $1 seconds for the log $2 to show step $3 on rank 0.
wait_for_step() {
  local i
  for i in $(seq $(($1 * 10))); do
    grep -qE "^ +$3 " "$2" 2>/dev/null && return 0
    kill -0 "$launcher" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# Waits up to $1 seconds for mpirun to end; sets `code` (its exit status) and `waited` (seconds).
wait_for_exit() {
  local start=$SECONDS i
  for i in $(seq $(($1 * 10))); do
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.1
  done
  waited=$((SECONDS - start))
  if kill -0 "$launcher" 2>/dev/null; then
    code=hung
    cleanup_launcher
  else
    wait "$launcher"
    code=$?
  fi
}
cleanup_launcher() {
  for pid in $(pgrep -P "$launcher"); do kill -KILL "$pid" 2>/dev/null; done
  kill -KILL "$launcher" 2>/dev/null
  wait "$launcher" 2>/dev/null
}

"${mpi[@]}" -np 1 "$spmd_check" --model "$src/tests/runtime/data/gpt-bytes.yaml" --cluster "$src/configs/clusters/cpu-8.yaml" \
  --seed 3 --write-plan "$work/plan.yaml" > "$work/write.log" 2>&1
check "write a random plan" $?

# 1. SIGKILL to rank 3 after step 2.
"${mpi[@]}" -np 8 "$strata" train --plan "$work/plan.yaml" --steps 100000 > "$work/kill.log" 2>&1 &
launcher=$!
wait_for_step 60 "$work/kill.log" 2
check "training reached step 2" $?
victim=$(rank_pid 3)
check "found rank 3's process" $?
kill -KILL "$victim" 2>/dev/null
wait_for_exit 60
echo "--- SIGKILL to rank 3 (pid $victim): mpirun exit $code after ${waited} s"
grep -v '^ ' "$work/kill.log" | head -20
[ "$code" != hung ] && [ "$code" -ne 0 ]
check "SIGKILL of rank 3: mpirun exits non-zero within 60 s" $?
grep -qE "rank 3[^0-9]" "$work/kill.log"
check "SIGKILL of rank 3: the output names rank 3" $?

# 2. An error on rank 3 at step 2 (test hook).
STRATA_FAULT_RANK=3 STRATA_FAULT_STEP=2 "${mpi[@]}" -x STRATA_FAULT_RANK -x STRATA_FAULT_STEP -np 8 "$strata" train \
  --plan "$work/plan.yaml" --steps 100000 > "$work/fault.log" 2>&1 &
launcher=$!
wait_for_exit 60
echo "--- error on rank 3 at step 2: mpirun exit $code after ${waited} s"
grep -v '^ ' "$work/fault.log" | head -20
[ "$code" != hung ] && [ "$code" -ne 0 ]
check "error on rank 3: mpirun exits non-zero within 60 s" $?
grep -q "strata train: rank 3: STRATA_FAULT_STEP: injected fault at step 2" "$work/fault.log"
check "error on rank 3: one line names rank 3 and the reason" $?
! grep -qE '^ +2 ' "$work/fault.log"
check "error on rank 3: step 2 never completes" $?

# 3. Rank 3 stopped (SIGSTOP): the others give up after --comm-timeout 5.
"${mpi[@]}" -np 8 "$strata" train --plan "$work/plan.yaml" --steps 100000 --comm-timeout 5 > "$work/stop.log" 2>&1 &
launcher=$!
wait_for_step 60 "$work/stop.log" 2
check "training reached step 2 (--comm-timeout 5)" $?
victim=$(rank_pid 3)
kill -STOP "$victim" 2>/dev/null
wait_for_exit 60
echo "--- SIGSTOP to rank 3 (pid $victim), --comm-timeout 5: mpirun exit $code after ${waited} s"
grep -v '^ ' "$work/stop.log" | head -20
[ "$code" != hung ] && [ "$code" -ne 0 ]
check "SIGSTOP of rank 3: the job ends non-zero within 60 s" $?
grep -qE "strata train: rank [0-9]+: --comm-timeout: step [0-9]+ made no progress in 5 s" "$work/stop.log"
check "SIGSTOP of rank 3: a watchdog line names the rank that gave up" $?

echo "rank death test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
