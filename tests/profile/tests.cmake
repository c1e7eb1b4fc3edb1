# The profiler end to end: 4 MPI ranks profile the cpu-4 cluster, then check_profile reads the file
# back; and a world size that does not match the cluster is a clear error.
add_executable(check_profile ${CMAKE_SOURCE_DIR}/tests/profile/check/check_profile.cpp)
target_link_libraries(check_profile PRIVATE strata_profile)
set(STRATA_PROFILE_TEST_OUT ${CMAKE_BINARY_DIR}/profile_cpu4_test.h5)
add_test(NAME profile_mpirun_cpu4
         COMMAND mpirun --allow-run-as-root --oversubscribe -np 4 $<TARGET_FILE:strata> profile --backend cpu
                 --cluster ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-4.yaml --out ${STRATA_PROFILE_TEST_OUT}
                 --max-bytes 65536)
set_tests_properties(profile_mpirun_cpu4 PROPERTIES FIXTURES_SETUP profile_cpu4 TIMEOUT 120
                     PASS_REGULAR_EXPRESSION "wrote .*24 collective curves, 2 p2p curves, 3 GEMM points")
add_test(NAME profile_check_cpu4
         COMMAND check_profile ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-4.yaml ${STRATA_PROFILE_TEST_OUT})
set_tests_properties(profile_check_cpu4 PROPERTIES FIXTURES_REQUIRED profile_cpu4)
add_test(NAME profile_mpirun_wrong_world_size
         COMMAND mpirun --allow-run-as-root --oversubscribe -np 2 $<TARGET_FILE:strata> profile --backend cpu
                 --cluster ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-4.yaml --out ${CMAKE_BINARY_DIR}/never.h5)
set_tests_properties(profile_mpirun_wrong_world_size PROPERTIES TIMEOUT 60
                     PASS_REGULAR_EXPRESSION "cpu-4.yaml: num_nodes: the cluster has 4 devices .* but 2 MPI ranks")
add_test(NAME profile_cli_bad_dtype
         COMMAND $<TARGET_FILE:strata> profile --cluster ${CMAKE_SOURCE_DIR}/configs/clusters/cpu-4.yaml
                 --out ${CMAKE_BINARY_DIR}/never.h5 --dtypes f32,f7)
set_tests_properties(profile_cli_bad_dtype PROPERTIES PASS_REGULAR_EXPRESSION "--dtypes: unknown dtype 'f7'")
