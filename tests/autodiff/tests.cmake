# The autodiff tests run the gradient graphs on the reference interpreter.
if(TARGET test_autodiff)
  target_link_libraries(test_autodiff PRIVATE strata_interp)
endif()
