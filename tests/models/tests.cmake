# The models tests also run the tiny models on the reference interpreter (tests/models/run_test.cpp).
if(TARGET test_models)
  target_link_libraries(test_models PRIVATE strata_interp)
endif()
