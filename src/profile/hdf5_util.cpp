// Error helpers for the checked HDF5 calls of hdf5_util.h.
#include "hdf5_util.h"

namespace strata::profile::h5 {

Error call_failed(const std::string& file, const std::string& field, const char* call) {
  std::string name = call;
  const size_t paren = name.find('(');
  if (paren != std::string::npos) name = name.substr(0, paren);
  return make_error(file, field, "HDF5 call " + name + " failed (file truncated, corrupt or unwritable?)");
}

void silence_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

}  // namespace strata::profile::h5
