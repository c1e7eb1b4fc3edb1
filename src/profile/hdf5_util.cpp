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

Status AttrWriter::int64(const char* name, int64_t value) {
  const std::string field = prefix_ + name;
  STRATA_H5_OPEN(Handle space, H5Screate(H5S_SCALAR), H5Sclose, file_, field);
  STRATA_H5_OPEN(Handle attr, H5Acreate2(object_, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                 H5Aclose, file_, field);
  STRATA_H5_CALL(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), file_, field);
  return Status::ok();
}

Status AttrWriter::string(const char* name, const std::string& value) {
  const std::string field = prefix_ + name;
  STRATA_H5_OPEN(Handle type, H5Tcopy(H5T_C_S1), H5Tclose, file_, field);
  STRATA_H5_CALL(H5Tset_size(type.get(), value.empty() ? 1 : value.size()), file_, field);
  STRATA_H5_OPEN(Handle space, H5Screate(H5S_SCALAR), H5Sclose, file_, field);
  STRATA_H5_OPEN(Handle attr, H5Acreate2(object_, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                 H5Aclose, file_, field);
  const std::string padded = value.empty() ? std::string(1, '\0') : value;
  STRATA_H5_CALL(H5Awrite(attr.get(), type.get(), padded.data()), file_, field);
  return Status::ok();
}

Expected<Handle> AttrReader::open_single(const char* name, const std::string& field) {
  if (!has(name)) return make_error(file_, field, "missing attribute");
  STRATA_H5_OPEN(Handle attr, H5Aopen(object_, name, H5P_DEFAULT), H5Aclose, file_, field);
  // H5Aread fills the whole dataspace: an array attribute would overrun a single value.
  STRATA_H5_OPEN(Handle space, H5Aget_space(attr.get()), H5Sclose, file_, field);
  if (H5Sget_simple_extent_npoints(space.get()) != 1) return make_error(file_, field, "must be a single value");
  return attr;
}

Expected<int64_t> AttrReader::int64(const char* name) {
  const std::string field = prefix_ + name;
  STRATA_ASSIGN_OR_RETURN(Handle attr, open_single(name, field));
  STRATA_H5_OPEN(Handle type, H5Aget_type(attr.get()), H5Tclose, file_, field);
  if (H5Tget_class(type.get()) != H5T_INTEGER) return make_error(file_, field, "must be an integer attribute");
  int64_t value = 0;
  STRATA_H5_CALL(H5Aread(attr.get(), H5T_NATIVE_INT64, &value), file_, field);
  return value;
}

Expected<std::string> AttrReader::string(const char* name) {
  const std::string field = prefix_ + name;
  STRATA_ASSIGN_OR_RETURN(Handle attr, open_single(name, field));
  STRATA_H5_OPEN(Handle type, H5Aget_type(attr.get()), H5Tclose, file_, field);
  if (H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) > 0) {
    return make_error(file_, field, "must be a fixed-length string attribute");
  }
  const size_t size = H5Tget_size(type.get());
  if (size == 0 || size > kMaxStringBytes) return make_error(file_, field, "string attribute of a bad size");
  std::string value(size, '\0');
  STRATA_H5_CALL(H5Aread(attr.get(), type.get(), value.data()), file_, field);
  value.resize(value.find('\0') == std::string::npos ? size : value.find('\0'));
  return value;
}

}  // namespace strata::profile::h5
