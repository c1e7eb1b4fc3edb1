# Sourced by the runtime's shell tests: counts checks and reads a strata train log's losses.
passed=0 failed=0
check() {  # check NAME CONDITION-EXIT-CODE
  if [ "$2" -eq 0 ]; then passed=$((passed + 1)); echo "ok: $1"; else failed=$((failed + 1)); echo "FAILED: $1"; fi
}
# "STEP LOSS" per logged step of a strata train log.
losses() { grep -E '^ +[0-9]+ +[0-9.]+ ' "$1" | awk '{print $1, $2}'; }
