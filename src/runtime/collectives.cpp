// The choice of the cuda backend's collectives (`--collectives`), kept out of src/runtime/cuda/ so
// that builds without CUDA parse the flag and tests check its errors on any machine.
#include <string>
#include <vector>

#include "strata/runtime/cuda_backend.h"

namespace strata::runtime {

const char* collectives_name(Collectives collectives) { return collectives == Collectives::mpi ? "mpi" : "nccl"; }

Expected<Collectives> parse_collectives(const std::string& name, const std::string& field) {
  if (name == "nccl") return Collectives::nccl;
  if (name == "mpi") return Collectives::mpi;
  return make_error("", field, "must be nccl or mpi, got '" + name + "'");
}

Status check_distinct_devices(const std::vector<std::string>& device_ids) {
  const int ranks = static_cast<int>(device_ids.size());
  for (int b = 1; b < ranks; ++b) {
    for (int a = 0; a < b; ++a) {
      if (device_ids[a] != device_ids[b]) continue;
      return make_error("", "--collectives",
                        "ranks " + std::to_string(a) + " and " + std::to_string(b) +
                            " share one GPU, which NCCL refuses (\"Duplicate GPU detected\"): run one rank per GPU, "
                            "or pass --collectives mpi (host-staged MPI collectives)");
    }
  }
  return Status::ok();
}

}  // namespace strata::runtime
