# CLI tests of `strata compare` (included from tests/CMakeLists.txt via strata_module_tests).
set(STRATA_COMPARE_TINY --model ${CMAKE_SOURCE_DIR}/configs/models/gpt-tiny.yaml
                        --cluster ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-4.yaml)
add_test(NAME cli_compare_table
         COMMAND strata compare ${STRATA_COMPARE_TINY} --methods strata,data-parallel,zero-2,intra-only)
set_tests_properties(cli_compare_table PROPERTIES TIMEOUT 600
  PASS_REGULAR_EXPRESSION "compare gpt-tiny on cpu-4 \\(4 GPUs\\).*\nstrata +[0-9]+ .* 1.00x.*\ndata-parallel +1 .*\nzero-2 +1 .*\nintra-only +1 ")
add_test(NAME cli_compare_json_plot
  COMMAND sh -c "\"$1\" compare --model \"$2\" --cluster \"$3\" --methods strata,zero-3 --json --plot \"$4\" && grep -q '<svg' \"$4\" && grep -q 'data-name=\"zero-3\"' \"$4\""
          sh $<TARGET_FILE:strata> ${CMAKE_SOURCE_DIR}/configs/models/gpt-tiny.yaml
          ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-4.yaml ${CMAKE_CURRENT_BINARY_DIR}/cli_compare_tiny.svg)
set_tests_properties(cli_compare_json_plot PROPERTIES TIMEOUT 600
  PASS_REGULAR_EXPRESSION "\"method\": \"strata\".*\"method\": \"zero-3\",\n *\"feasible\": true")
add_test(NAME cli_compare_family_plot
  COMMAND sh -c "\"$1\" compare --family gpt --configs \"$2\" --max-gpus 1 --methods strata,data-parallel --micro-batches 1024 --plot \"$3\" && grep -q 'class=\"series\"' \"$3\""
          sh $<TARGET_FILE:strata> ${CMAKE_SOURCE_DIR}/configs ${CMAKE_CURRENT_BINARY_DIR}/cli_compare_gpt.svg)
set_tests_properties(cli_compare_family_plot PROPERTIES TIMEOUT 900
  PASS_REGULAR_EXPRESSION "compare gpt-350m on aws-p3-1node-1gpu \\(1 GPUs\\)")
# Bad input: exit code 2 and one line naming the file or flag, field and reason.
add_test(NAME cli_compare_png_refused
  COMMAND sh -c "out=$(\"$1\" compare --family gpt --plot /tmp/strata-compare-x.png 2>&1); rc=$?; echo \"$out\"; [ $rc -eq 2 ] && [ $(echo \"$out\" | wc -l) -eq 1 ] && echo \"$out\" | grep -q '/tmp/strata-compare-x.png: plot: only .svg plots can be written'"
          sh $<TARGET_FILE:strata>)
add_test(NAME cli_compare_bad_family
  COMMAND sh -c "out=$(\"$1\" compare --family bert 2>&1); rc=$?; echo \"$out\"; [ $rc -eq 2 ] && echo \"$out\" | grep -q \"family: unknown model family 'bert' (gpt, moe or wresnet)\""
          sh $<TARGET_FILE:strata>)
add_test(NAME cli_compare_needs_both
  COMMAND sh -c "out=$(\"$1\" compare --model \"$2\" 2>&1); rc=$?; echo \"$out\"; [ $rc -eq 2 ] && echo \"$out\" | grep -q -- '--cluster: required with the other'"
          sh $<TARGET_FILE:strata> ${CMAKE_SOURCE_DIR}/configs/models/gpt-tiny.yaml)
add_test(NAME cli_compare_bad_method
  COMMAND sh -c "out=$(\"$1\" compare --model \"$2\" --cluster \"$3\" --methods strata,zero-1 2>&1); rc=$?; echo \"$out\"; [ $rc -eq 2 ] && echo \"$out\" | grep -q \"methods: unknown method 'zero-1'\""
          sh $<TARGET_FILE:strata> ${CMAKE_SOURCE_DIR}/configs/models/gpt-tiny.yaml ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-4.yaml)
# One model of each family through `strata compare`: the table and the plot (one line per method).
# Small limits (2 layers, 1 micro-batch, 1 s per ILP) keep each well under a minute.
foreach(family moe wresnet)
  add_test(NAME cli_compare_${family}_table_plot
    COMMAND sh -c "\"$1\" compare --model \"$2\" --cluster \"$3\" --methods strata,data-parallel,zero-3 --layers 2 --micro-batches 1 --ilp-time-limit 1 --plot \"$4\" && grep -q 'data-name=\"strata\"' \"$4\" && grep -q 'data-name=\"data-parallel\"' \"$4\" && grep -q 'data-name=\"zero-3\"' \"$4\""
            sh $<TARGET_FILE:strata> ${CMAKE_SOURCE_DIR}/configs/models/${family}-tiny.yaml
            ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-4.yaml ${CMAKE_CURRENT_BINARY_DIR}/cli_compare_${family}_tiny.svg)
  set_tests_properties(cli_compare_${family}_table_plot PROPERTIES TIMEOUT 300
    PASS_REGULAR_EXPRESSION "compare ${family}-tiny on cpu-4 \\(4 GPUs\\).*\nstrata +[0-9]+ .* 1.00x.*\ndata-parallel +1 .*\nzero-3 +1 ")
endforeach()
# A forced micro-batch count that does not divide a family's batch: refused before any planning.
add_test(NAME cli_compare_family_micro_batches
  COMMAND sh -c "out=$(\"$1\" compare --family wresnet --configs \"$2\" --micro-batches 1024 2>&1); rc=$?; echo \"$out\"; [ $rc -eq 2 ] && [ $(echo \"$out\" | wc -l) -eq 1 ] && echo \"$out\" | grep -q 'micro_batches: 1024 does not divide the global batch 1536 of wresnet-250m'"
          sh $<TARGET_FILE:strata> ${CMAKE_SOURCE_DIR}/configs)
set_tests_properties(cli_compare_family_micro_batches PROPERTIES TIMEOUT 60)
# weak_scaling_bench --plot-from: the saved runs of 1 to 16 GPUs merge into one SVG per family;
# two copies of one run are refused with one line naming the file and exit code 2.
set(STRATA_SAVED_RUNS ${CMAKE_SOURCE_DIR}/bench/results/2026-11-23-weak-scaling-runs1-3)
add_test(NAME bench_weak_scaling_plot_from
  COMMAND sh -c "\"$1\" --plot-from \"$2-gpt.json,$2-wresnet.json\" --plot-prefix \"$3\" && grep -q 'data-name=\"megatron-grid\"' \"$3gpt.svg\" && [ $(grep -c '<circle' \"$3wresnet.svg\") -ge 24 ] && echo plots-checked"
          sh $<TARGET_FILE:weak_scaling_bench> ${STRATA_SAVED_RUNS} ${CMAKE_CURRENT_BINARY_DIR}/plot-from-)
set_tests_properties(bench_weak_scaling_plot_from PROPERTIES TIMEOUT 60
  PASS_REGULAR_EXPRESSION "plot-from-gpt.svg: 4 points, 32 method results\n[^\n]*plot-from-wresnet.svg: 4 points, 32 method results\nplots-checked")
add_test(NAME bench_weak_scaling_plot_from_duplicate
  COMMAND sh -c "out=$(\"$1\" --plot-from \"$2-gpt.json,$2-gpt.json\" --plot-prefix /tmp/strata-x- 2>&1); rc=$?; echo \"$out\"; [ $rc -eq 2 ] && [ $(echo \"$out\" | wc -l) -eq 1 ] && echo \"$out\" | grep -q \"runs1-3-gpt.json: points\\[0\\].methods\\[0\\]: 'strata' at 1 GPUs of gpt is already in \""
          sh $<TARGET_FILE:weak_scaling_bench> ${STRATA_SAVED_RUNS})
set_tests_properties(bench_weak_scaling_plot_from_duplicate PROPERTIES TIMEOUT 60)
