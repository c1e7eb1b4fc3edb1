#!/usr/bin/env bash
# Runs the libFuzzer targets of build-fuzz (see fuzz/CMakeLists.txt), at most two at a time, each
# for SECONDS seconds on one core, logging to LOGDIR/<target>.log. New inputs go to a scratch copy of
# the corpus; crashes go to LOGDIR/crashes/<target>/. Afterwards: fuzz/run_fuzzers.sh --merge
# minimises each scratch corpus back into fuzz/corpus/<target>/.
#
#   CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DSTRATA_FUZZ=ON -DSTRATA_CUDA=OFF -DSTRATA_TESTS=OFF
#   cmake --build build-fuzz -j1 --target fuzz_model_yaml fuzz_cluster_yaml fuzz_plan_yaml fuzz_profile_h5
#   fuzz/run_fuzzers.sh [--seconds N] [--build DIR] [--logs DIR] [--merge] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=600
build=build-fuzz
logs=build-fuzz/fuzz-logs
merge=0
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --logs) logs="$2"; shift 2 ;;
    --merge) merge=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=(model_yaml cluster_yaml plan_yaml profile_h5)

# Inputs larger than this are not kept: YAML configs are small, a seed profile is ~16 KiB.
max_len() { [[ "$1" == profile_h5 ]] && echo 32768 || echo 4096; }
# libhdf5 (not instrumented) sizes its buffers from the file's headers and handles a failed malloc;
# under ASan a huge request is a report, not a NULL, unless allocator_may_return_null is set. Our
# own code gets the same NULL (std::bad_alloc), which is still a crash. libhdf5 also leaks small
# blocks on some corrupt-file error paths (outside our code), so leak checks are off for it.
extra_flags() { [[ "$1" == profile_h5 ]] && echo "-malloc_limit_mb=65536 -detect_leaks=0" || true; }
asan_options() { [[ "$1" == profile_h5 ]] && echo "allocator_may_return_null=1:detect_leaks=0" || echo ""; }

if [[ $merge -eq 1 ]]; then
  for t in "${targets[@]}"; do
    work="$logs/corpus/$t"
    [[ -d "$work" ]] || { echo "no scratch corpus $work (run the fuzzers first)" >&2; exit 2; }
    merged="$logs/merged/$t"
    rm -rf "$merged" && mkdir -p "$merged"
    "$build/fuzz/fuzz_$t" -merge=1 -max_len="$(max_len "$t")" "$merged" "$work" "fuzz/corpus/$t" >"$logs/$t.merge.log" 2>&1
    rm -rf "fuzz/corpus/$t" && mkdir -p "fuzz/corpus/$t" && cp "$merged"/* "fuzz/corpus/$t/"
    echo "$t: $(ls "fuzz/corpus/$t" | wc -l) inputs, $(du -sk "fuzz/corpus/$t" | cut -f1) KiB"
  done
  exit 0
fi

mkdir -p "$logs"
run_one() {
  local t="$1"
  local work="$logs/corpus/$t" crashes="$logs/crashes/$t" log="$logs/$t.log"
  mkdir -p "$work" "$crashes"
  cp -n "fuzz/corpus/$t"/* "$work/" 2>/dev/null || true
  : >"$log"
  # One process (one core). A crash ends a run; its input lands in $crashes and the target is
  # restarted for the time left (at most 200 restarts), so one shallow bug does not end the hunt.
  local start=$SECONDS left restarts=0
  while left=$((seconds - (SECONDS - start))); [[ $left -gt 5 && $restarts -le 200 ]]; do
    ASAN_OPTIONS="$(asan_options "$t")" timeout $((left + 60)) "$build/fuzz/fuzz_$t" "$work" \
      -max_total_time="$left" -max_len="$(max_len "$t")" $(extra_flags "$t") -artifact_prefix="$crashes/" \
      -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 >>"$log" 2>&1 || true
    restarts=$((restarts + 1))
  done
  local runs execs
  runs=$(grep -c '^stat::number_of_executed_units' "$log" || true)
  execs=$(awk '/^stat::number_of_executed_units/ {n += $2} END {print n + 0}' "$log")
  echo "$t: ${seconds} s, $execs executions in $runs run(s), $(ls "$crashes" | wc -l) crash input(s), corpus $(ls "$work" | wc -l)"
}
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [[ $running -ge 2 ]]; then wait -n; running=$((running - 1)); fi
done
wait
