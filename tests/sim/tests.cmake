# CLI tests of `strata simulate` (included from tests/CMakeLists.txt via strata_module_tests).
set(STRATA_EXAMPLE_PLAN ${CMAKE_SOURCE_DIR}/configs/plans/example-gpt-2stage.yaml)
add_test(NAME cli_simulate_text COMMAND strata simulate --plan ${STRATA_EXAMPLE_PLAN})
set_tests_properties(cli_simulate_text PROPERTIES
  PASS_REGULAR_EXPRESSION "simulated 1f1b step of gpt-1.3b: 2 stage\\(s\\), 8 micro-batches.*step 355.457 ms")
add_test(NAME cli_simulate_json_trace
  COMMAND sh -c "\"$1\" simulate --plan \"$2\" --json --trace \"$3\" && grep -q '\"name\":\"F7\"' \"$3\""
          sh $<TARGET_FILE:strata> ${STRATA_EXAMPLE_PLAN} ${CMAKE_CURRENT_BINARY_DIR}/cli_simulate_trace.json)
set_tests_properties(cli_simulate_json_trace PROPERTIES PASS_REGULAR_EXPRESSION "\"intra_node\": 536870912")
# Bad plan: exit code 2 and one line naming the file, field and reason.
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/cli_simulate_bad.yaml
     "model: m\ncluster: {name: c, num_nodes: 1, gpus_per_node: 2}\nglobal_batch: 8\nnum_micro_batches: 3\n"
     "schedule: 1f1b\ncross_stage_link: {bandwidth_bytes_per_second: 1e9, latency_seconds: 0}\nstages: []\n")
add_test(NAME cli_simulate_bad_plan
  COMMAND sh -c "out=$(\"$1\" simulate --plan \"$2\" 2>&1); rc=$?; echo \"$out\"; [ $rc -eq 2 ] && [ $(echo \"$out\" | wc -l) -eq 1 ] && echo \"$out\" | grep -q 'cli_simulate_bad.yaml: num_micro_batches: 3 does not divide global_batch 8'"
          sh $<TARGET_FILE:strata> ${CMAKE_CURRENT_BINARY_DIR}/cli_simulate_bad.yaml)
