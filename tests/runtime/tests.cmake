# Runtime tests: the gtest binary links the modules the random plans need; spmd_check runs random
# valid plans under mpirun on 8 cpu ranks against the reference interpreter (3 plans per test, so
# each stays near half a minute on a 2-core machine; 12 plans in all).
if(TARGET test_runtime)
  target_link_libraries(test_runtime PRIVATE strata_cost strata_planner)
endif()
add_executable(spmd_check ${CMAKE_SOURCE_DIR}/tests/runtime/driver/spmd_check.cpp)
target_link_libraries(spmd_check PRIVATE strata_runtime strata_cost strata_planner)
target_include_directories(spmd_check PRIVATE ${CMAKE_SOURCE_DIR}/tests)
foreach(model gpt-tiny moe-tiny)
  foreach(seed 7 8)
    add_test(NAME runtime_spmd_${model}_seed${seed}
             COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 -np 8
                     $<TARGET_FILE:spmd_check> --model ${CMAKE_SOURCE_DIR}/configs/models/${model}.yaml
                     --cluster ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-8.yaml --plans 3 --seed ${seed} --steps 3)
    set_tests_properties(runtime_spmd_${model}_seed${seed} PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE
                         PASS_REGULAR_EXPRESSION "spmd check: 3 passed, 0 failed")
  endforeach()
endforeach()
# The plan the planner finds (as `strata plan` would) against the reference.
add_test(NAME runtime_spmd_gpt-tiny_planned
         COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 -np 8
                 $<TARGET_FILE:spmd_check> --model ${CMAKE_SOURCE_DIR}/configs/models/gpt-tiny.yaml
                 --cluster ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-8.yaml --plans 1 --seed 7 --steps 3 --planned 1)
set_tests_properties(runtime_spmd_gpt-tiny_planned PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE
                     PASS_REGULAR_EXPRESSION "spmd check: 1 passed, 0 failed")

# An lr schedule (warmup, then cosine decay) on random plans: every rank's updates use the step's lr.
add_test(NAME runtime_spmd_gpt-tiny_schedule
         COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 -np 8
                 $<TARGET_FILE:spmd_check> --model ${CMAKE_SOURCE_DIR}/configs/models/gpt-tiny.yaml
                 --cluster ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-8.yaml --plans 3 --seed 13 --steps 4 --schedule 1)
set_tests_properties(runtime_spmd_gpt-tiny_schedule PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE
                     PASS_REGULAR_EXPRESSION "spmd check: 3 passed, 0 failed")

# The graph after fuse_for_cuda (Attention, AttentionGrad, ...) partitioned by fuse_plan_for_cuda on
# random meshes and pipelines, run on the cpu backend against the unfused reference (built with CUDA
# only: the rewrite lives in the cuda backend's sources).
if(STRATA_CUDA)
  foreach(seed 7 9)
    add_test(NAME runtime_spmd_gpt-tiny_fused_seed${seed}
             COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 -np 8
                     $<TARGET_FILE:spmd_check> --model ${CMAKE_SOURCE_DIR}/configs/models/gpt-tiny.yaml
                     --cluster ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-8.yaml --plans 3 --seed ${seed} --steps 3 --fuse 1)
    set_tests_properties(runtime_spmd_gpt-tiny_fused_seed${seed} PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE
                         PASS_REGULAR_EXPRESSION "spmd check: 3 passed, 0 failed")
  endforeach()
endif()

# strata train end to end (real text, checkpoint + resume, wrong world size).
add_test(NAME runtime_train_cli
         COMMAND ${CMAKE_SOURCE_DIR}/tests/runtime/train_cli_test.sh ${CMAKE_SOURCE_DIR} $<TARGET_FILE:strata>
                 $<TARGET_FILE:spmd_check>)
set_tests_properties(runtime_train_cli PROPERTIES TIMEOUT 600 RUN_SERIAL TRUE
                     PASS_REGULAR_EXPRESSION "train cli test: [0-9]+ passed, 0 failed")

# strata train with an lr schedule (--lr-* flags): the logged lr, resume mid-warmup, bad flags.
add_test(NAME runtime_train_schedule
         COMMAND ${CMAKE_SOURCE_DIR}/tests/runtime/train_schedule_test.sh ${CMAKE_SOURCE_DIR} $<TARGET_FILE:strata>
                 $<TARGET_FILE:spmd_check>)
set_tests_properties(runtime_train_schedule PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE
                     PASS_REGULAR_EXPRESSION "train schedule test: [0-9]+ passed, 0 failed")

# A rank that dies (SIGKILL), fails (STRATA_FAULT_RANK test hook) or hangs (SIGSTOP, --comm-timeout)
# during `strata train` ends the job non-zero within a bounded time, naming the rank (issue 10).
add_test(NAME runtime_rank_death
         COMMAND ${CMAKE_SOURCE_DIR}/tests/runtime/rank_death_test.sh ${CMAKE_SOURCE_DIR} $<TARGET_FILE:strata>
                 $<TARGET_FILE:spmd_check>)
set_tests_properties(runtime_rank_death PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE
                     PASS_REGULAR_EXPRESSION "rank death test: [0-9]+ passed, 0 failed")

# Executor memory: values freed after their last read. Step 1 keeps every value (the old way), the
# others free; both match the reference, and every rank's freeing peak of live bytes must stay
# under a bound computed from the partitioned graph and the schedule (spmd_check.cpp, memory_bound).
add_test(NAME runtime_memory_gpt-tiny
         COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 -np 8
                 $<TARGET_FILE:spmd_check> --model ${CMAKE_SOURCE_DIR}/configs/models/gpt-tiny.yaml
                 --cluster ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-8.yaml --plans 3 --seed 7 --steps 3 --memory 1)
set_tests_properties(runtime_memory_gpt-tiny PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE
                     PASS_REGULAR_EXPRESSION "spmd check: 3 passed, 0 failed")

# `strata train --collectives` (nccl | mpi, the cuda backend's host-staged MPI collectives): bad
# values are one-line errors; on the cpu backend mpi changes nothing.
add_test(NAME runtime_collectives_cli
         COMMAND ${CMAKE_SOURCE_DIR}/tests/runtime/collectives_cli_test.sh ${CMAKE_SOURCE_DIR} $<TARGET_FILE:strata>)
set_tests_properties(runtime_collectives_cli PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE
                     PASS_REGULAR_EXPRESSION "collectives cli test: [0-9]+ passed, 0 failed")

# Every Communicator operation (all-reduce, all-gather, reduce-scatter, all-to-all along each dim,
# tagged send/recv) in f32, bf16 and i32 over the world and two halves of it, against host values.
# Here on the cpu backend; on a GPU, bench/gpu_multirank_check.sh runs it with --backend cuda
# --collectives mpi (ranks sharing one GPU).
add_executable(collectives_check ${CMAKE_SOURCE_DIR}/tests/runtime/driver/collectives_check.cpp)
target_link_libraries(collectives_check PRIVATE strata_runtime)
add_test(NAME runtime_collectives_cpu
         COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 -np 4
                 $<TARGET_FILE:collectives_check> --backend cpu)
set_tests_properties(runtime_collectives_cpu PROPERTIES TIMEOUT 120 RUN_SERIAL TRUE
                     PASS_REGULAR_EXPRESSION "collectives check: cpu on 4 rank\\(s\\): [0-9]+ passed, 0 failed")

# The executor's gradient path makes no needless full copies (a counting wrapper of the cpu
# backend; its own main for MPI, so not part of test_runtime).
add_executable(executor_copy_test ${CMAKE_SOURCE_DIR}/tests/runtime/driver/executor_copy_test.cpp)
target_link_libraries(executor_copy_test PRIVATE strata_runtime GTest::gtest)
target_compile_definitions(executor_copy_test PRIVATE STRATA_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
add_test(NAME runtime_executor_copies
         COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root -np 1 $<TARGET_FILE:executor_copy_test>)
set_tests_properties(runtime_executor_copies PROPERTIES TIMEOUT 300 PASS_REGULAR_EXPRESSION "PASSED.*2 tests")

# Gradient all-reduces overlapped with the backward (issue 8): on the data-parallel plan of
# gpt-tiny over 2 ranks they start inside the last backward (a recording wrapper of the cpu
# backend), and the losses equal the non-overlapped run's. Every rank prints its gtest summary.
add_executable(executor_overlap_test ${CMAKE_SOURCE_DIR}/tests/runtime/driver/executor_overlap_test.cpp)
target_link_libraries(executor_overlap_test PRIVATE strata_runtime strata_baselines GTest::gtest)
target_compile_definitions(executor_overlap_test PRIVATE STRATA_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
add_test(NAME runtime_executor_overlap
         COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 -np 2
                 $<TARGET_FILE:executor_overlap_test>)
set_tests_properties(runtime_executor_overlap PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE
                     PASS_REGULAR_EXPRESSION "PASSED.*2 tests" FAIL_REGULAR_EXPRESSION "FAILED")
