# The autodiff tests run the gradient graphs on the reference interpreter, also on the real model
# builders' tiny configs.
if(TARGET test_autodiff)
  target_link_libraries(test_autodiff PRIVATE strata_interp strata_models)
endif()
