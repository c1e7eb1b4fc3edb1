# CLI tests of `strata plan` (included from tests/CMakeLists.txt via strata_module_tests): plans of
# the tiny models on the 8-device CPU cluster, simulated afterwards; forcing, the cache, errors.
set(STRATA_PLAN_GPT ${CMAKE_SOURCE_DIR}/configs/models/gpt-tiny.yaml)
set(STRATA_PLAN_MOE ${CMAKE_SOURCE_DIR}/configs/models/moe-tiny.yaml)
set(STRATA_PLAN_CPU8 ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-8.yaml)
set(STRATA_PLAN_DIR ${CMAKE_CURRENT_BINARY_DIR}/cli_plan)
file(MAKE_DIRECTORY ${STRATA_PLAN_DIR})

# Plan, then simulate the written plan against the cluster (validation: it tiles the cluster).
add_test(NAME cli_plan_gpt_tiny_then_simulate
  COMMAND sh -c "\"$1\" plan --model \"$2\" --cluster \"$3\" --out \"$4\" --layers 2 --micro-batches 2 && \"$1\" simulate --plan \"$4\" --cluster \"$3\""
          sh $<TARGET_FILE:strata> ${STRATA_PLAN_GPT} ${STRATA_PLAN_CPU8} ${STRATA_PLAN_DIR}/gpt-tiny.yaml)
set_tests_properties(cli_plan_gpt_tiny_then_simulate PROPERTIES
  PASS_REGULAR_EXPRESSION "plan: model gpt-tiny on cpu-8 \\(2 node\\(s\\) x 4 GPUs\\).*throughput: .* TFLOP/s per device.*wrote .*simulated 1f1b step of gpt-tiny")

add_test(NAME cli_plan_moe_tiny_forced
  COMMAND sh -c "\"$1\" plan --model \"$2\" --cluster \"$3\" --out \"$4\" --layers 2 --stages 2 --micro-batches 4 --json && \"$1\" simulate --plan \"$4\" --cluster \"$3\" >/dev/null"
          sh $<TARGET_FILE:strata> ${STRATA_PLAN_MOE} ${STRATA_PLAN_CPU8} ${STRATA_PLAN_DIR}/moe-tiny.yaml)
set_tests_properties(cli_plan_moe_tiny_forced PROPERTIES
  PASS_REGULAR_EXPRESSION "\"model\": \"moe-tiny\",.*\"num_micro_batches\": 4,.*\"micro_batch_size\": 2,.*\"num_stages\": 2,")

# A re-plan from the cache solves nothing and writes the same plan.
add_test(NAME cli_plan_cache_replans
  COMMAND sh -c "rm -rf \"$4\" && \"$1\" plan --model \"$2\" --cluster \"$3\" --out \"$5.1\" --layers 2 --micro-batches 2 --cache \"$4\" --json >/dev/null && \"$1\" plan --model \"$2\" --cluster \"$3\" --out \"$5.2\" --layers 2 --micro-batches 2 --cache \"$4\" --json && cmp \"$5.1\" \"$5.2\""
          sh $<TARGET_FILE:strata> ${STRATA_PLAN_GPT} ${STRATA_PLAN_CPU8} ${STRATA_PLAN_DIR}/cache ${STRATA_PLAN_DIR}/cached.yaml)
set_tests_properties(cli_plan_cache_replans PROPERTIES PASS_REGULAR_EXPRESSION "\"problems_solved\": 0,")

# Bad input: exit code 2 and one line naming the field (or file and field) and the reason.
add_test(NAME cli_plan_bad_stages
  COMMAND sh -c "out=$(\"$1\" plan --model \"$2\" --cluster \"$3\" --out \"$4\" --stages 0 2>&1); rc=$?; echo \"$out\"; [ $rc -eq 2 ] && [ $(echo \"$out\" | wc -l) -eq 1 ] && echo \"$out\" | grep -q 'strata plan: --stages: must be an integer from 1, got 0'"
          sh $<TARGET_FILE:strata> ${STRATA_PLAN_GPT} ${STRATA_PLAN_CPU8} ${STRATA_PLAN_DIR}/bad.yaml)
file(WRITE ${STRATA_PLAN_DIR}/tiny-memory.yaml
     "name: tiny-memory\ngpu_model: cpu\nnum_nodes: 1\ngpus_per_node: 2\ngpu_memory_gbytes: 0.00001\n"
     "peak_tflops_f32: 0.01\nmemory_bandwidth_gbytes_per_s: 10\nintra_node_bandwidth_gbytes_per_s_per_gpu: 5\n"
     "intra_node_latency_us: 10\ninter_node_bandwidth_gbits_per_s_per_node: 10\ninter_node_latency_us: 50\n")
add_test(NAME cli_plan_nothing_fits
  COMMAND sh -c "out=$(\"$1\" plan --model \"$2\" --cluster \"$3\" --out \"$4\" 2>&1); rc=$?; echo \"$out\"; [ $rc -eq 2 ] && [ $(echo \"$out\" | wc -l) -eq 1 ] && echo \"$out\" | grep -q 'tiny-memory.yaml: gpu_memory_gbytes: no plan of gpt-tiny fits in memory (no stage plan fits in memory: the least per-device memory any plan needs is [0-9]* bytes .*the budget is [0-9]* bytes'"
          sh $<TARGET_FILE:strata> ${STRATA_PLAN_GPT} ${STRATA_PLAN_DIR}/tiny-memory.yaml ${STRATA_PLAN_DIR}/none.yaml)
add_test(NAME cli_plan_intra_only_dispatch
  COMMAND sh -c "\"$1\" plan --intra-only --model \"$2\" --cluster \"$3\" --out \"$4\" --micro-batch 4 --mesh 2x4 && \"$1\" simulate --plan \"$4\" >/dev/null"
          sh $<TARGET_FILE:strata> ${STRATA_PLAN_GPT} ${STRATA_PLAN_CPU8} ${STRATA_PLAN_DIR}/intra-only.yaml)
set_tests_properties(cli_plan_gpt_tiny_then_simulate cli_plan_moe_tiny_forced cli_plan_cache_replans PROPERTIES TIMEOUT 900)
