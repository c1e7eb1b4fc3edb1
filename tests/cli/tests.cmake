# CLI tests that run the `strata` binary (included from tests/CMakeLists.txt via strata_module_tests).

# --- strata inspect ---
set(STRATA_INSPECT_TINY ${CMAKE_SOURCE_DIR}/configs/models/gpt-tiny.yaml)
# gpt-tiny: 2 x (12*32^2 + 13*32) + 64*32 (tied embedding) + 16*32 (positions) + 2*32 = 28032.
add_test(NAME cli_inspect_json COMMAND strata inspect --model ${STRATA_INSPECT_TINY} --json)
set_tests_properties(cli_inspect_json PROPERTIES
  PASS_REGULAR_EXPRESSION "\"parameters\": 28032,.*\"training_flops_method\": \"forward [+] backward of the autodiff gradient graph")
add_test(NAME cli_inspect_text COMMAND strata inspect --model ${CMAKE_SOURCE_DIR}/configs/models/moe-tiny.yaml
                                       --micro-batch 2)
set_tests_properties(cli_inspect_text PROPERTIES
  PASS_REGULAR_EXPRESSION "family moe.*graph built for 2.*MoEGate +1\n")
add_test(NAME cli_inspect_dot
  COMMAND sh -c "\"$1\" inspect --model \"$2\" --dot \"$3\" >/dev/null && grep -q 'loss' \"$3\" && grep -q '^digraph' \"$3\""
          sh $<TARGET_FILE:strata> ${STRATA_INSPECT_TINY} ${CMAKE_CURRENT_BINARY_DIR}/cli_inspect_gpt_tiny.dot)
# Bad input: exit code 2 and one line naming the file, field and reason.
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/cli_inspect_bad.yaml
     "model:\n  family: gpt\n  hidden: 30\n  layers: 2\n  heads: 4\n  global_batch: 8\n")
add_test(NAME cli_inspect_bad_config
  COMMAND sh -c "out=$(\"$1\" inspect --model \"$2\" 2>&1); rc=$?; echo \"$out\"; [ $rc -eq 2 ] && [ $(echo \"$out\" | wc -l) -eq 1 ] && echo \"$out\" | grep -q 'cli_inspect_bad.yaml: model.heads: heads (4) must divide hidden (30)'"
          sh $<TARGET_FILE:strata> ${CMAKE_CURRENT_BINARY_DIR}/cli_inspect_bad.yaml)
add_test(NAME cli_inspect_missing_model_flag
  COMMAND sh -c "\"$1\" inspect 2>/dev/null; [ $? -eq 2 ]" sh $<TARGET_FILE:strata>)
add_test(NAME cli_inspect_graph_json
  COMMAND sh -c "\"$1\" inspect --model \"$2\" --graph-json \"$3\" >/dev/null && grep -q '\"CrossEntropy\"' \"$3\""
          sh $<TARGET_FILE:strata> ${STRATA_INSPECT_TINY} ${CMAKE_CURRENT_BINARY_DIR}/cli_inspect_gpt_tiny.json)
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/cli_inspect_graph.yaml
     "model:\n  family: graph\n  ops:\n"
     "    - {name: x, op: Input, attrs: {shape: [4, 8]}}\n"
     "    - {name: labels, op: Input, attrs: {shape: [4], dtype: i32}}\n"
     "    - {name: w, op: Parameter, attrs: {shape: [8, 3]}}\n"
     "    - {name: y, op: Dot, inputs: [x, w], attrs: {lhs_contract: [1], rhs_contract: [0]}}\n"
     "    - {name: loss, op: CrossEntropy, inputs: [y, labels]}\n"
     "  outputs: [loss]\n")
add_test(NAME cli_inspect_generic_graph COMMAND strata inspect --model ${CMAKE_CURRENT_BINARY_DIR}/cli_inspect_graph.yaml)
set_tests_properties(cli_inspect_generic_graph PROPERTIES
  PASS_REGULAR_EXPRESSION "family graph.*ops          5\n.*parameters   24 [(]24[)]")
