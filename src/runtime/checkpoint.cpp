// Checkpoint files (checkpoint.h): HDF5 through the checked calls of profile/hdf5_util.h, atomic
// replacement by temp file + fsync + rename + directory fsync, and the step-directory scan.
#include "strata/runtime/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>

#include "profile/hdf5_util.h"

namespace strata::runtime {
namespace {

namespace fs = std::filesystem;
using profile::h5::AttrReader;
using profile::h5::AttrWriter;
using profile::h5::Handle;

constexpr const char* kFormat = "strata-checkpoint";
constexpr int64_t kVersion = 1;

std::string errno_text() { return std::strerror(errno); }

// fsync of a file or a directory by path (a read-only descriptor is enough on Linux).
Status fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return make_error(path, "", "cannot open to fsync: " + errno_text());
  if (::fsync(fd) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    return make_error(path, "", "fsync failed: " + why);
  }
  if (::close(fd) != 0) return make_error(path, "", "close after fsync failed: " + errno_text());
  return Status::ok();
}

hid_t file_type(DType dtype) {
  switch (dtype) {
    case DType::f64: return H5T_IEEE_F64LE;
    case DType::i32: return H5T_STD_I32LE;
    case DType::f32:
    case DType::bf16:
    case DType::f16: return H5T_IEEE_F32LE;
  }
  return H5T_IEEE_F32LE;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text;
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? "," : "") + std::to_string(shape[i]);
  return text;
}

Expected<std::vector<int64_t>> parse_shape_text(const std::string& text, const std::string& file,
                                                const std::string& field) {
  std::vector<int64_t> shape;
  if (text.empty()) return shape;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    if (part.empty() || part.find_first_not_of("0123456789") != std::string::npos || part.size() > 18) {
      return make_error(file, field, "'" + text + "' is not a shape like 8,32");
    }
    shape.push_back(std::stoll(part));
  }
  if (text.back() == ',') return make_error(file, field, "'" + text + "' is not a shape like 8,32");
  return shape;
}

std::string tensor_dataset(size_t index) {
  char name[32];
  std::snprintf(name, sizeof(name), "t%05zu", index);
  return name;
}

Status check_state(const std::string& file, const TrainingState& state) {
  if (state.plan_hash.empty()) return make_error(file, "plan_hash", "must not be empty");
  if (state.step < 0) return make_error(file, "step", "must be >= 0, got " + std::to_string(state.step));
  if (state.data_position < 0) return make_error(file, "data_position", "must be >= 0");
  if (state.world_size < 1 || state.rank < 0 || state.rank >= state.world_size) {
    return make_error(file, "rank", "rank " + std::to_string(state.rank) + " is not in a world of " +
                                        std::to_string(state.world_size));
  }
  std::set<std::string> names;
  for (size_t i = 0; i < state.tensors.size(); ++i) {
    const CheckpointTensor& tensor = state.tensors[i];
    const std::string field = "tensors[" + std::to_string(i) + "]";
    if (tensor.name.empty()) return make_error(file, field + ".name", "must not be empty");
    if (!names.insert(tensor.name).second) {
      return make_error(file, field + ".name", "'" + tensor.name + "' appears twice");
    }
    for (int64_t dim : tensor.value.shape) {
      if (dim < 0) return make_error(file, field + ".shape", "negative dimension in tensor '" + tensor.name + "'");
    }
    if (interp::shape_numel(tensor.value.shape) != tensor.value.numel()) {
      return make_error(file, field + ".value",
                        "tensor '" + tensor.name + "' holds " + std::to_string(tensor.value.numel()) +
                            " values but its shape has " + std::to_string(interp::shape_numel(tensor.value.shape)));
    }
  }
  return Status::ok();
}

Status write_tensor(hid_t group, const std::string& file, size_t index, const CheckpointTensor& tensor) {
  const std::string name = tensor_dataset(index);
  const std::string field = "tensors/" + name;
  Handle space;
  if (tensor.value.shape.empty()) {
    STRATA_H5_OPEN(space, H5Screate(H5S_SCALAR), H5Sclose, file, field);
  } else {
    std::vector<hsize_t> dims(tensor.value.shape.begin(), tensor.value.shape.end());
    STRATA_H5_OPEN(space, H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose, file,
                   field);
  }
  STRATA_H5_OPEN(Handle set,
                 H5Dcreate2(group, name.c_str(), file_type(tensor.dtype), space.get(), H5P_DEFAULT, H5P_DEFAULT,
                            H5P_DEFAULT),
                 H5Dclose, file, field);
  if (tensor.value.numel() > 0) {
    // HDF5 converts the double values to the file type (float32, float64 or int32).
    STRATA_H5_CALL(H5Dwrite(set.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, tensor.value.data.data()),
                   file, field);
  }
  AttrWriter attrs(set.get(), file, field + ".");
  STRATA_RETURN_IF_ERROR(attrs.string("name", tensor.name));
  STRATA_RETURN_IF_ERROR(attrs.string("sharding", tensor.sharding));
  STRATA_RETURN_IF_ERROR(attrs.string("dtype", dtype_name(tensor.dtype)));
  STRATA_RETURN_IF_ERROR(attrs.string("global_shape", shape_text(tensor.global_shape)));
  return Status::ok();
}

Status write_file(const std::string& temp, const TrainingState& state) {
  STRATA_H5_OPEN(Handle file_id, H5Fcreate(temp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, temp,
                 "");
  AttrWriter root(file_id.get(), temp, "");
  STRATA_RETURN_IF_ERROR(root.string("format", kFormat));
  STRATA_RETURN_IF_ERROR(root.int64("version", kVersion));
  STRATA_RETURN_IF_ERROR(root.string("plan_hash", state.plan_hash));
  STRATA_RETURN_IF_ERROR(root.int64("step", state.step));
  STRATA_RETURN_IF_ERROR(root.int64("data_position", state.data_position));
  STRATA_RETURN_IF_ERROR(root.int64("rank", state.rank));
  STRATA_RETURN_IF_ERROR(root.int64("world_size", state.world_size));
  STRATA_RETURN_IF_ERROR(root.int64("num_tensors", static_cast<int64_t>(state.tensors.size())));
  {
    STRATA_H5_OPEN(Handle group, H5Gcreate2(file_id.get(), "tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   H5Gclose, temp, "tensors");
    for (size_t i = 0; i < state.tensors.size(); ++i) {
      STRATA_RETURN_IF_ERROR(write_tensor(group.get(), temp, i, state.tensors[i]));
    }
  }
  STRATA_RETURN_IF_ERROR(root.int64("complete", 1));  // last: a reader refuses a file without it
  STRATA_H5_CALL(H5Fflush(file_id.get(), H5F_SCOPE_GLOBAL), temp, "");
  STRATA_H5_CALL(H5Fclose(file_id.release()), temp, "");  // a failed close may lose data: checked
  return Status::ok();
}

// The root attributes of a rank file, read without touching the tensors.
struct Header {
  std::string plan_hash;
  int64_t step = 0;
  int64_t data_position = 0;
  int64_t rank = 0;
  int64_t world_size = 0;
  int64_t num_tensors = 0;
};

Expected<Handle> open_rank_file(const std::string& path) {
  profile::h5::silence_errors();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return make_error(path, "", "missing (no such checkpoint file)");
  if (H5Fis_hdf5(path.c_str()) <= 0) return make_error(path, "", "not a readable HDF5 file (truncated or corrupt)");
  const hid_t raw = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (raw < 0) return make_error(path, "", "HDF5 call H5Fopen failed: file truncated or corrupt");
  return Handle(raw, H5Fclose);
}

Expected<Header> read_header(hid_t file_id, const std::string& path) {
  AttrReader root(file_id, path, "");
  STRATA_ASSIGN_OR_RETURN(std::string format, root.string("format"));
  if (format != kFormat) return make_error(path, "format", "is '" + format + "', not a Strata checkpoint");
  STRATA_ASSIGN_OR_RETURN(int64_t complete, root.int64("complete"));
  if (complete != 1) return make_error(path, "complete", "is not 1: a partial checkpoint");
  STRATA_ASSIGN_OR_RETURN(int64_t version, root.int64("version"));
  if (version != kVersion) {
    return make_error(path, "version",
                      "is " + std::to_string(version) + ", this build reads " + std::to_string(kVersion));
  }
  Header header;
  STRATA_ASSIGN_OR_RETURN(header.plan_hash, root.string("plan_hash"));
  STRATA_ASSIGN_OR_RETURN(header.step, root.int64("step"));
  STRATA_ASSIGN_OR_RETURN(header.data_position, root.int64("data_position"));
  STRATA_ASSIGN_OR_RETURN(header.rank, root.int64("rank"));
  STRATA_ASSIGN_OR_RETURN(header.world_size, root.int64("world_size"));
  STRATA_ASSIGN_OR_RETURN(header.num_tensors, root.int64("num_tensors"));
  if (header.world_size < 1 || header.rank < 0 || header.rank >= header.world_size) {
    return make_error(path, "rank", "rank " + std::to_string(header.rank) + " is not in a world of " +
                                        std::to_string(header.world_size));
  }
  if (header.step < 0 || header.data_position < 0 || header.num_tensors < 0) {
    return make_error(path, "step", "step, data_position and num_tensors must be >= 0");
  }
  return header;
}

Expected<Header> read_header_of(const std::string& path) {
  STRATA_ASSIGN_OR_RETURN(Handle file_id, open_rank_file(path));
  return read_header(file_id.get(), path);
}

Expected<CheckpointTensor> read_tensor(hid_t group, const std::string& path, const std::string& name) {
  const std::string field = "tensors/" + name;
  CheckpointTensor tensor;
  STRATA_H5_OPEN(Handle set, H5Dopen2(group, name.c_str(), H5P_DEFAULT), H5Dclose, path, field);
  AttrReader attrs(set.get(), path, field + ".");
  STRATA_ASSIGN_OR_RETURN(tensor.name, attrs.string("name"));
  STRATA_ASSIGN_OR_RETURN(tensor.sharding, attrs.string("sharding"));
  STRATA_ASSIGN_OR_RETURN(std::string dtype_text, attrs.string("dtype"));
  Expected<DType> dtype = parse_dtype(dtype_text);
  if (!dtype) return make_error(path, field + ".dtype", "unknown dtype '" + dtype_text + "'");
  tensor.dtype = *dtype;
  STRATA_ASSIGN_OR_RETURN(std::string global_text, attrs.string("global_shape"));
  STRATA_ASSIGN_OR_RETURN(tensor.global_shape, parse_shape_text(global_text, path, field + ".global_shape"));
  STRATA_H5_OPEN(Handle space, H5Dget_space(set.get()), H5Sclose, path, field);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) return profile::h5::call_failed(path, field, "H5Sget_simple_extent_ndims");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0 && H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0) {
    return profile::h5::call_failed(path, field, "H5Sget_simple_extent_dims");
  }
  STRATA_H5_OPEN(Handle type, H5Dget_type(set.get()), H5Tclose, path, field);
  const H5T_class_t type_class = H5Tget_class(type.get());
  if (type_class != H5T_FLOAT && type_class != H5T_INTEGER) {
    return make_error(path, field, "tensor '" + tensor.name + "' is not numeric");
  }
  tensor.value.shape.assign(dims.begin(), dims.end());
  tensor.value.data.assign(static_cast<size_t>(interp::shape_numel(tensor.value.shape)), 0.0);
  if (!tensor.value.data.empty()) {
    STRATA_H5_CALL(H5Dread(set.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, tensor.value.data.data()),
                   path, field);
  }
  return tensor;
}

// step-<digits> -> the step; nullopt for anything else.
std::optional<int64_t> parse_step_dir(const std::string& name) {
  const std::string prefix = "step-";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  const std::string digits = name.substr(prefix.size());
  if (digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoll(digits);
}

// The step numbers of the step directories under `dir`, ascending (none when dir is missing).
Expected<std::vector<int64_t>> list_steps(const std::string& dir) {
  std::vector<int64_t> steps;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return steps;
  if (!fs::is_directory(dir, ec)) return make_error(dir, "", "is not a directory (checkpoint dir expected)");
  fs::directory_iterator it(dir, ec);
  if (ec) return make_error(dir, "", "cannot list the checkpoint directory: " + ec.message());
  for (const fs::directory_entry& entry : it) {
    std::error_code entry_ec;
    if (!entry.is_directory(entry_ec)) continue;
    if (auto step = parse_step_dir(entry.path().filename().string())) steps.push_back(*step);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

// Whether `step` under `dir` is complete; when not, why (for CheckpointInfo::skipped).
struct StepCheck {
  bool complete = false;
  std::string why;
  Header header;
};

StepCheck check_step(const std::string& dir, int64_t step) {
  StepCheck check;
  const std::string prefix = "step " + std::to_string(step) + ": ";
  Expected<Header> first = read_header_of(checkpoint_rank_file(dir, step, 0));
  if (!first) {
    check.why = prefix + first.error().message();
    return check;
  }
  check.header = *first;
  if (first->step != step || first->rank != 0) {
    check.why = prefix + "rank 0's file says step " + std::to_string(first->step) + ", rank " +
                std::to_string(first->rank);
    return check;
  }
  for (int64_t rank = 1; rank < first->world_size; ++rank) {
    const std::string path = checkpoint_rank_file(dir, step, static_cast<int>(rank));
    Expected<Header> other = read_header_of(path);
    if (!other) {
      check.why = prefix + "rank " + std::to_string(rank) + ": " + other.error().message();
      return check;
    }
    if (other->step != step || other->rank != rank || other->world_size != first->world_size ||
        other->plan_hash != first->plan_hash) {
      check.why = prefix + path + " disagrees with rank 0's file on step, rank, world size or plan";
      return check;
    }
  }
  check.complete = true;
  return check;
}

// This rank's files in one step directory: its rank file and its temporary files.
bool is_rank_entry(const std::string& name, int rank) {
  const std::string base = fs::path(checkpoint_rank_file("", 0, rank)).filename().string();
  return name == base || name.rfind(base + ".tmp.", 0) == 0;
}

Status remove_rank_files(const std::string& dir, int64_t step, int rank) {
  const std::string step_dir = checkpoint_step_dir(dir, step);
  std::error_code ec;
  fs::directory_iterator it(step_dir, ec);
  if (ec) return Status::ok();  // already gone
  std::vector<fs::path> doomed;
  for (const fs::directory_entry& entry : it) {
    if (is_rank_entry(entry.path().filename().string(), rank)) doomed.push_back(entry.path());
  }
  for (const fs::path& path : doomed) {
    if (!fs::remove(path, ec) && ec) return make_error(path.string(), "", "cannot remove: " + ec.message());
  }
  if (rank == 0) fs::remove(step_dir, ec);  // only succeeds once the other ranks' files are gone
  return Status::ok();
}

}  // namespace

std::string text_hash(const std::string& text) {
  uint64_t hash = 14695981039346656037ull;  // FNV-1a 64-bit offset basis and prime
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  char out[32];
  std::snprintf(out, sizeof(out), "fnv1a64:%016llx", static_cast<unsigned long long>(hash));
  return out;
}

std::string plan_hash(const plan::Plan& plan) { return text_hash(plan::plan_to_yaml(plan)); }

std::string checkpoint_step_dir(const std::string& dir, int64_t step) {
  char name[40];
  std::snprintf(name, sizeof(name), "step-%09lld", static_cast<long long>(step));
  return (fs::path(dir) / name).string();
}

std::string checkpoint_rank_file(const std::string& dir, int64_t step, int rank) {
  char name[32];
  std::snprintf(name, sizeof(name), "rank-%05d.h5", rank);
  return (fs::path(checkpoint_step_dir(dir, step)) / name).string();
}

Status save_checkpoint(const std::string& dir, const TrainingState& state, const SaveHooks& hooks) {
  const std::string path = checkpoint_rank_file(dir, state.step, state.rank);
  STRATA_RETURN_IF_ERROR(check_state(path, state));
  const std::string step_dir = checkpoint_step_dir(dir, state.step);
  std::error_code ec;
  const bool made = fs::create_directories(step_dir, ec);
  if (ec) return make_error(step_dir, "", "cannot create the checkpoint directory: " + ec.message());
  if (made) STRATA_RETURN_IF_ERROR(fsync_path(dir, true));  // the new step directory's entry
  profile::h5::silence_errors();
  const std::string temp = path + ".tmp." + std::to_string(::getpid());
  Status written = write_file(temp, state);
  if (written) written = fsync_path(temp, false);
  if (!written) {
    std::remove(temp.c_str());
    return written.error();
  }
  if (hooks.before_rename) hooks.before_rename(temp);
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    std::remove(temp.c_str());
    return make_error(path, "", "cannot rename " + temp + " into place: " + why);
  }
  return fsync_path(step_dir, true);
}

Expected<std::optional<CheckpointInfo>> latest_checkpoint(const std::string& dir) {
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> steps, list_steps(dir));
  std::vector<std::string> skipped;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    StepCheck check = check_step(dir, *it);
    if (!check.complete) {
      skipped.push_back(check.why);
      continue;
    }
    CheckpointInfo info;
    info.step = *it;
    info.world_size = static_cast<int>(check.header.world_size);
    info.plan_hash = check.header.plan_hash;
    info.step_dir = checkpoint_step_dir(dir, *it);
    info.skipped = std::move(skipped);
    return std::optional<CheckpointInfo>(std::move(info));
  }
  return std::optional<CheckpointInfo>();
}

Expected<TrainingState> load_checkpoint(const std::string& dir, int64_t step, const CheckpointExpectation& expect) {
  const std::string path = checkpoint_rank_file(dir, step, expect.rank);
  STRATA_ASSIGN_OR_RETURN(Handle file_id, open_rank_file(path));
  STRATA_ASSIGN_OR_RETURN(Header header, read_header(file_id.get(), path));
  if (header.plan_hash != expect.plan_hash) {
    return make_error(path, "plan_hash",
                      "checkpoint was written under plan " + header.plan_hash + ", but this run's plan is " +
                          expect.plan_hash + " (a checkpoint of another plan; use a new checkpoint directory)");
  }
  if (header.world_size != expect.world_size) {
    return make_error(path, "world_size",
                      "checkpoint was written by " + std::to_string(header.world_size) + " ranks, this run has " +
                          std::to_string(expect.world_size));
  }
  if (header.rank != expect.rank || header.step != step) {
    return make_error(path, "rank", "file holds rank " + std::to_string(header.rank) + " of step " +
                                        std::to_string(header.step) + ", not rank " + std::to_string(expect.rank) +
                                        " of step " + std::to_string(step));
  }
  TrainingState state;
  state.plan_hash = header.plan_hash;
  state.step = header.step;
  state.data_position = header.data_position;
  state.rank = static_cast<int>(header.rank);
  state.world_size = static_cast<int>(header.world_size);
  STRATA_H5_OPEN(Handle group, H5Gopen2(file_id.get(), "tensors", H5P_DEFAULT), H5Gclose, path, "tensors");
  std::set<std::string> names;
  for (int64_t i = 0; i < header.num_tensors; ++i) {
    const std::string name = tensor_dataset(static_cast<size_t>(i));
    if (H5Lexists(group.get(), name.c_str(), H5P_DEFAULT) <= 0) {
      return make_error(path, "tensors/" + name,
                        "missing: num_tensors says " + std::to_string(header.num_tensors) + " tensors");
    }
    STRATA_ASSIGN_OR_RETURN(CheckpointTensor tensor, read_tensor(group.get(), path, name));
    if (!names.insert(tensor.name).second) {
      return make_error(path, "tensors/" + name + ".name", "'" + tensor.name + "' appears twice");
    }
    state.tensors.push_back(std::move(tensor));
  }
  return state;
}

Status discard_checkpoints_after(const std::string& dir, int64_t step, int rank) {
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> steps, list_steps(dir));
  for (int64_t s : steps) {
    if (s > step) STRATA_RETURN_IF_ERROR(remove_rank_files(dir, s, rank));
  }
  return Status::ok();
}

Status prune_checkpoints(const std::string& dir, int rank, int keep) {
  if (keep < 1) return make_error(dir, "keep", "must be >= 1, got " + std::to_string(keep));
  STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> steps, list_steps(dir));
  std::vector<int64_t> complete;
  for (auto it = steps.rbegin(); it != steps.rend() && static_cast<int>(complete.size()) < keep; ++it) {
    if (check_step(dir, *it).complete) complete.push_back(*it);
  }
  if (static_cast<int>(complete.size()) < keep) return Status::ok();  // nothing old enough to drop
  const int64_t oldest_kept = complete.back();
  for (int64_t s : steps) {
    if (s < oldest_kept) STRATA_RETURN_IF_ERROR(remove_rank_files(dir, s, rank));
  }
  return Status::ok();
}

}  // namespace strata::runtime
