# The intra tests run every strategy of the tiny model builders' training graphs on the reference
# interpreter, device by device, and solve real stages of those graphs.
if(TARGET test_intra)
  target_link_libraries(test_intra PRIVATE strata_interp strata_models strata_autodiff)
endif()

# `strata plan --intra-only` through a driver of run_plan_intra_only (src/cli/plan_intra.h), built
# from its own source and the modules it uses, so that it does not wait on the rest of the CLI.
add_executable(plan_intra_driver ${CMAKE_SOURCE_DIR}/tests/intra/cli/plan_intra_main.cpp
               ${CMAKE_SOURCE_DIR}/src/cli/plan_intra.cpp)
target_include_directories(plan_intra_driver PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(plan_intra_driver PRIVATE strata_intra strata_models strata_autodiff strata_plan strata_planner strata_profile)
# The same for bench/intra_stage_bench.cpp (bench/ targets link the whole CLI).
add_executable(intra_stage_bench_core ${CMAKE_SOURCE_DIR}/bench/intra_stage_bench.cpp)
target_link_libraries(intra_stage_bench_core PRIVATE strata_intra strata_models strata_autodiff)
set(PLAN_INTRA_DIR ${CMAKE_CURRENT_BINARY_DIR}/plan_intra)
file(MAKE_DIRECTORY ${PLAN_INTRA_DIR})
add_test(NAME intra_cli_plan_gpt_tiny
         COMMAND plan_intra_driver plan --intra-only --model ${CMAKE_SOURCE_DIR}/configs/models/gpt-tiny.yaml
                 --cluster ${CMAKE_SOURCE_DIR}/configs/clusters/aws-p3-1node.yaml --mesh 2x4
                 --out ${PLAN_INTRA_DIR}/gpt-tiny.yaml)
set_tests_properties(intra_cli_plan_gpt_tiny PROPERTIES
                     PASS_REGULAR_EXPRESSION "mesh 2x4.*ILP: [1-9][0-9]* variables.*predicted step [0-9.]+ [mu]?s.*wrote")
add_test(NAME intra_cli_plan_json
         COMMAND plan_intra_driver plan --model ${CMAKE_SOURCE_DIR}/configs/models/moe-tiny.yaml
                 --cluster ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-4.yaml --mesh 2x2 --json
                 --out ${PLAN_INTRA_DIR}/moe-tiny.yaml)
set_tests_properties(intra_cli_plan_json PROPERTIES
                     PASS_REGULAR_EXPRESSION "\"ilp_variables\": [1-9].*\"step_seconds\": [0-9]")
add_test(NAME intra_cli_plan_bad_mesh
         COMMAND plan_intra_driver plan --model ${CMAKE_SOURCE_DIR}/configs/models/gpt-tiny.yaml
                 --cluster ${CMAKE_SOURCE_DIR}/configs/clusters/aws-p3-1node.yaml --mesh 3x3
                 --out ${PLAN_INTRA_DIR}/bad.yaml)
set_tests_properties(intra_cli_plan_bad_mesh PROPERTIES
                     PASS_REGULAR_EXPRESSION "strata plan: --mesh: '3x3': has 9 devices, the cluster 8")
add_test(NAME intra_cli_plan_missing_model
         COMMAND plan_intra_driver plan --model ${PLAN_INTRA_DIR}/no-such.yaml
                 --cluster ${CMAKE_SOURCE_DIR}/configs/clusters/aws-p3-1node.yaml --out ${PLAN_INTRA_DIR}/bad.yaml)
set_tests_properties(intra_cli_plan_missing_model PROPERTIES
                     PASS_REGULAR_EXPRESSION "no-such.yaml: --model: no such file")
# bench/intra_budget_bench.cpp likewise: one stage without and under a memory budget.
add_executable(intra_budget_bench_core ${CMAKE_SOURCE_DIR}/bench/intra_budget_bench.cpp)
target_link_libraries(intra_budget_bench_core PRIVATE strata_intra strata_models strata_autodiff)
