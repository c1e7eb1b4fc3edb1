// STRATA_MPI_CALL(MPI_Send(...)): every MPI call of the profiler and the runtime goes through this;
// a failing call returns an Error naming the call and its code. The user includes <mpi.h>.
#pragma once

#include <string>

#include "strata/core/status.h"

#define STRATA_MPI_CALL(call)                                                                  \
  do {                                                                                         \
    const int strata_mpi_rc_ = (call);                                                         \
    if (strata_mpi_rc_ != MPI_SUCCESS) {                                                       \
      return ::strata::make_error("", "", std::string("MPI call ") + #call + " failed (code " + \
                                              std::to_string(strata_mpi_rc_) + ")");          \
    }                                                                                          \
  } while (0)
