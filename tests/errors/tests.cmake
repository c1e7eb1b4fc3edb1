# The error table (tests/errors/cases.txt, profile_errors_test.cpp) runs the real `strata` binary
# and the profile reader. strata_module_tests links test_errors to strata_errors: there is no such
# module, so an interface target stands for what the table needs.
add_library(strata_errors INTERFACE)
target_link_libraries(strata_errors INTERFACE strata_profile)
if(TARGET test_errors)
  add_dependencies(test_errors strata)
  target_compile_definitions(test_errors PRIVATE STRATA_BINARY="$<TARGET_FILE:strata>")
endif()
