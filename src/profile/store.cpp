// profile::Store: the Profile <-> HDF5 mapping of docs/profile_schema.md. Writes go to a temporary
// name, complete=1 is the last thing written, and only then is the file renamed into place.
#include "strata/profile/store.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>

#include "hdf5_util.h"

namespace strata::profile {
namespace {

using h5::Handle;

const cluster::Collective kCollectives[] = {cluster::Collective::all_reduce, cluster::Collective::all_gather,
                                            cluster::Collective::reduce_scatter, cluster::Collective::all_to_all};

std::string shape_name(int a, int b) { return std::to_string(a) + "x" + std::to_string(b); }

std::string curve_path(const CollectiveCurve& curve) {
  return "/collectives/" + std::string(cluster::collective_name(curve.kind)) + "/" +
         shape_name(curve.submesh.rows, curve.submesh.cols) + "/" + shape_name(curve.mesh.n0, curve.mesh.n1) +
         "/axis" + std::to_string(curve.axis) + "/" + dtype_name(curve.dtype);
}

class Writer {
 public:
  Writer(hid_t file_id, std::string file) : file_id_(file_id), file_(std::move(file)) {}

  Expected<Handle> group(const std::string& path) {
    if (H5Lexists(file_id_, path.c_str(), H5P_DEFAULT) > 0) {
      STRATA_H5_OPEN(Handle g, H5Gopen2(file_id_, path.c_str(), H5P_DEFAULT), H5Gclose, file_, path);
      return g;
    }
    STRATA_H5_OPEN(Handle lcpl, H5Pcreate(H5P_LINK_CREATE), H5Pclose, file_, path);
    STRATA_H5_CALL(H5Pset_create_intermediate_group(lcpl.get(), 1), file_, path);
    STRATA_H5_OPEN(Handle g, H5Gcreate2(file_id_, path.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), H5Gclose,
                   file_, path);
    return g;
  }

  template <typename T>
  Status dataset(hid_t group, const std::string& path, const char* name, const std::vector<T>& values) {
    const std::string field = path + "/" + name;
    const hid_t type = std::is_same_v<T, double> ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64;
    const hsize_t count = values.size();
    STRATA_H5_OPEN(Handle space, H5Screate_simple(1, &count, nullptr), H5Sclose, file_, field);
    STRATA_H5_OPEN(Handle set, H5Dcreate2(group, name, type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   H5Dclose, file_, field);
    STRATA_H5_CALL(H5Dwrite(set.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), file_, field);
    return Status::ok();
  }

  Status attr_int(const char* name, int64_t value) { return h5::AttrWriter(file_id_, file_).int64(name, value); }
  Status attr_string(const char* name, const std::string& value) {
    return h5::AttrWriter(file_id_, file_).string(name, value);
  }

 private:
  hid_t file_id_;
  std::string file_;
};

Status write_all(hid_t file_id, const std::string& file, const Profile& profile) {
  Writer writer(file_id, file);
  STRATA_RETURN_IF_ERROR(writer.attr_int("schema_version", profile.schema_version));
  STRATA_RETURN_IF_ERROR(writer.attr_string("units", "sizes_bytes: bytes per device; seconds: seconds"));
  STRATA_RETURN_IF_ERROR(writer.attr_string("cluster", profile.cluster_name));
  STRATA_RETURN_IF_ERROR(writer.attr_string("gpu_model", profile.gpu_model));
  STRATA_RETURN_IF_ERROR(writer.attr_string("backend", profile.backend));
  STRATA_RETURN_IF_ERROR(writer.attr_string("library_versions", profile.library_versions));
  STRATA_RETURN_IF_ERROR(writer.attr_string("date", profile.date));
  for (const CollectiveCurve& curve : profile.collectives) {
    STRATA_CHECK(curve.sizes_bytes.size() == curve.seconds.size(), "curve with mismatched lengths");
    const std::string path = curve_path(curve);
    STRATA_ASSIGN_OR_RETURN(Handle g, writer.group(path));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), path, "sizes_bytes", curve.sizes_bytes));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), path, "seconds", curve.seconds));
  }
  STRATA_ASSIGN_OR_RETURN(Handle p2p_root, writer.group("/p2p"));
  for (const P2PCurve& curve : profile.p2p) {
    const std::string path = curve.cross_node ? "/p2p/inter_node" : "/p2p/intra_node";
    STRATA_ASSIGN_OR_RETURN(Handle g, writer.group(path));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), path, "sizes_bytes", curve.sizes_bytes));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), path, "seconds", curve.seconds));
  }
  std::map<DType, std::vector<const GemmPoint*>> gemm_by_dtype;
  for (const GemmPoint& point : profile.gemm) gemm_by_dtype[point.dtype].push_back(&point);
  STRATA_ASSIGN_OR_RETURN(Handle gemm_root, writer.group("/gemm"));
  for (const auto& [dtype, points] : gemm_by_dtype) {
    const std::string path = std::string("/gemm/") + dtype_name(dtype);
    std::vector<int64_t> m, n, k;
    std::vector<double> seconds;
    for (const GemmPoint* point : points) {
      m.push_back(point->m);
      n.push_back(point->n);
      k.push_back(point->k);
      seconds.push_back(point->seconds);
    }
    STRATA_ASSIGN_OR_RETURN(Handle g, writer.group(path));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), path, "m", m));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), path, "n", n));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), path, "k", k));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), path, "seconds", seconds));
  }
  if (profile.op_overhead_seconds) {
    STRATA_ASSIGN_OR_RETURN(Handle g, writer.group("/op_overhead"));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), "/op_overhead", "seconds_per_op",
                                          std::vector<double>{*profile.op_overhead_seconds}));
  }
  for (const MemoryOpCurve& curve : profile.memory_ops) {
    STRATA_CHECK(curve.bytes.size() == curve.seconds.size(), "memory op curve with mismatched lengths");
    const std::string path = "/memory_ops/" + curve.op;
    STRATA_ASSIGN_OR_RETURN(Handle g, writer.group(path));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), path, "bytes", curve.bytes));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), path, "seconds", curve.seconds));
  }
  if (!profile.attention.empty()) {
    std::vector<int64_t> head_dim, batch_heads, seq;
    std::vector<double> forward, backward;
    for (const AttentionPoint& point : profile.attention) {
      head_dim.push_back(point.head_dim);
      batch_heads.push_back(point.batch_heads);
      seq.push_back(point.seq);
      forward.push_back(point.forward_seconds);
      backward.push_back(point.backward_seconds);
    }
    STRATA_ASSIGN_OR_RETURN(Handle g, writer.group("/attention"));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), "/attention", "head_dim", head_dim));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), "/attention", "batch_heads", batch_heads));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), "/attention", "seq", seq));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), "/attention", "forward_seconds", forward));
    STRATA_RETURN_IF_ERROR(writer.dataset(g.get(), "/attention", "backward_seconds", backward));
  }
  STRATA_H5_CALL(H5Fflush(file_id, H5F_SCOPE_GLOBAL), file, "");
  return writer.attr_int("complete", 1);  // last: a reader rejects a file without it
}

class Reader {
 public:
  static constexpr hssize_t kMaxPoints = hssize_t{1} << 24;
  Reader(hid_t file_id, std::string file) : file_id_(file_id), file_(std::move(file)) {}

  Expected<std::vector<std::string>> children(const std::string& path) {
    std::vector<std::string> names;
    if (H5Lexists(file_id_, path.c_str(), H5P_DEFAULT) <= 0) return names;
    STRATA_H5_OPEN(Handle g, H5Gopen2(file_id_, path.c_str(), H5P_DEFAULT), H5Gclose, file_, path);
    H5G_info_t info;
    STRATA_H5_CALL(H5Gget_info(g.get(), &info), file_, path);
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      char name[256] = {};
      const ssize_t length = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                                                H5P_DEFAULT);
      if (length < 0 || length >= static_cast<ssize_t>(sizeof name)) {
        return h5::call_failed(file_, path, "H5Lget_name_by_idx");
      }
      names.emplace_back(name);
    }
    return names;
  }

  template <typename T>
  Expected<std::vector<T>> dataset(const std::string& path) {
    const hid_t type = std::is_same_v<T, double> ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64;
    if (H5Lexists(file_id_, path.c_str(), H5P_DEFAULT) <= 0) return make_error(file_, path, "missing dataset");
    STRATA_H5_OPEN(Handle set, H5Dopen2(file_id_, path.c_str(), H5P_DEFAULT), H5Dclose, file_, path);
    STRATA_H5_OPEN(Handle space, H5Dget_space(set.get()), H5Sclose, file_, path);
    const hssize_t count = H5Sget_simple_extent_npoints(space.get());
    if (count < 0) return h5::call_failed(file_, path, "H5Sget_simple_extent_npoints");
    // A corrupt header can claim any size; no real curve comes near this many points.
    if (count > kMaxPoints) {
      return make_error(file_, path, "has " + std::to_string(count) + " values, more than " +
                                         std::to_string(kMaxPoints) + " (corrupt file?)");
    }
    std::vector<T> values(static_cast<size_t>(count));
    STRATA_H5_CALL(H5Dread(set.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), file_, path);
    return values;
  }

  bool has_attr(const char* name) const { return h5::AttrReader(file_id_, file_).has(name); }
  Expected<int64_t> attr_int(const char* name) { return h5::AttrReader(file_id_, file_).int64(name); }
  Expected<std::string> attr_string(const char* name) { return h5::AttrReader(file_id_, file_).string(name); }

  const std::string& file() const { return file_; }
  hid_t file_id() const { return file_id_; }

 private:
  hid_t file_id_;
  std::string file_;
};

Expected<std::pair<int, int>> parse_shape(const std::string& text, const std::string& file,
                                          const std::string& field) {
  int a = 0, b = 0;
  char x = 0, extra = 0;
  std::istringstream in(text);
  if (!(in >> a >> x >> b) || x != 'x' || (in >> extra) || a <= 0 || b <= 0) {
    return make_error(file, field, "group name '" + text + "' is not a shape like 2x4");
  }
  return std::make_pair(a, b);
}

// /attention's five datasets: equal lengths, every value positive and finite.
Expected<std::vector<AttentionPoint>> read_attention(Reader& reader, const std::string& file) {
  STRATA_ASSIGN_OR_RETURN(auto head_dim, reader.dataset<int64_t>("/attention/head_dim"));
  STRATA_ASSIGN_OR_RETURN(auto batch_heads, reader.dataset<int64_t>("/attention/batch_heads"));
  STRATA_ASSIGN_OR_RETURN(auto seq, reader.dataset<int64_t>("/attention/seq"));
  STRATA_ASSIGN_OR_RETURN(auto forward, reader.dataset<double>("/attention/forward_seconds"));
  STRATA_ASSIGN_OR_RETURN(auto backward, reader.dataset<double>("/attention/backward_seconds"));
  const size_t n = head_dim.size();
  if (n == 0 || batch_heads.size() != n || seq.size() != n || forward.size() != n || backward.size() != n) {
    return make_error(file, "/attention", "head_dim, batch_heads, seq, forward_seconds, backward_seconds must be non-empty and of equal length");
  }
  std::vector<AttentionPoint> points;
  for (size_t i = 0; i < n; ++i) {
    const AttentionPoint point{head_dim[i], batch_heads[i], seq[i], forward[i], backward[i]};
    if (point.head_dim <= 0 || point.batch_heads <= 0 || point.seq <= 0 || !(point.forward_seconds > 0) ||
        !(point.backward_seconds > 0) || !std::isfinite(point.forward_seconds) || !std::isfinite(point.backward_seconds)) {
      return make_error(file, "/attention", "point " + std::to_string(i) + ": sizes and seconds must be positive and finite");
    }
    points.push_back(point);
  }
  return points;
}

Expected<Profile> read_all(Reader& reader) {
  const std::string& file = reader.file();
  Profile profile;
  STRATA_ASSIGN_OR_RETURN(profile.cluster_name, reader.attr_string("cluster"));
  STRATA_ASSIGN_OR_RETURN(profile.gpu_model, reader.attr_string("gpu_model"));
  STRATA_ASSIGN_OR_RETURN(profile.backend, reader.attr_string("backend"));
  STRATA_ASSIGN_OR_RETURN(profile.library_versions, reader.attr_string("library_versions"));
  STRATA_ASSIGN_OR_RETURN(profile.date, reader.attr_string("date"));
  for (cluster::Collective kind : kCollectives) {
    const std::string kind_path = std::string("/collectives/") + cluster::collective_name(kind);
    STRATA_ASSIGN_OR_RETURN(auto submeshes, reader.children(kind_path));
    for (const std::string& submesh_name : submeshes) {
      const std::string submesh_path = kind_path + "/" + submesh_name;
      STRATA_ASSIGN_OR_RETURN(auto submesh, parse_shape(submesh_name, file, submesh_path));
      STRATA_ASSIGN_OR_RETURN(auto meshes, reader.children(submesh_path));
      for (const std::string& mesh_name : meshes) {
        const std::string mesh_path = submesh_path + "/" + mesh_name;
        STRATA_ASSIGN_OR_RETURN(auto mesh, parse_shape(mesh_name, file, mesh_path));
        STRATA_ASSIGN_OR_RETURN(auto axes, reader.children(mesh_path));
        for (const std::string& axis_name : axes) {
          const std::string axis_path = mesh_path + "/" + axis_name;
          if (axis_name != "axis0" && axis_name != "axis1") {
            return make_error(file, axis_path, "group name must be axis0 or axis1");
          }
          STRATA_ASSIGN_OR_RETURN(auto dtypes, reader.children(axis_path));
          for (const std::string& dtype_text : dtypes) {
            const std::string path = axis_path + "/" + dtype_text;
            auto dtype = parse_dtype(dtype_text);
            if (!dtype) return make_error(file, path, "unknown dtype '" + dtype_text + "'");
            CollectiveCurve curve;
            curve.kind = kind;
            curve.submesh = {submesh.first, submesh.second};
            curve.mesh = {mesh.first, mesh.second};
            curve.axis = axis_name == "axis0" ? 0 : 1;
            curve.dtype = *dtype;
            STRATA_ASSIGN_OR_RETURN(curve.sizes_bytes, reader.dataset<int64_t>(path + "/sizes_bytes"));
            STRATA_ASSIGN_OR_RETURN(curve.seconds, reader.dataset<double>(path + "/seconds"));
            if (curve.mesh.num_devices() != curve.submesh.num_devices()) {
              return make_error(file, path, "logical mesh does not cover the submesh");
            }
            profile.collectives.push_back(std::move(curve));
          }
        }
      }
    }
  }
  for (bool cross_node : {false, true}) {
    const std::string path = cross_node ? "/p2p/inter_node" : "/p2p/intra_node";
    STRATA_ASSIGN_OR_RETURN(auto p2p_children, reader.children("/p2p"));
    bool present = false;
    for (const auto& name : p2p_children) present = present || "/p2p/" + name == path;
    if (!present) continue;
    P2PCurve curve;
    curve.cross_node = cross_node;
    STRATA_ASSIGN_OR_RETURN(curve.sizes_bytes, reader.dataset<int64_t>(path + "/sizes_bytes"));
    STRATA_ASSIGN_OR_RETURN(curve.seconds, reader.dataset<double>(path + "/seconds"));
    profile.p2p.push_back(std::move(curve));
  }
  STRATA_ASSIGN_OR_RETURN(auto gemm_dtypes, reader.children("/gemm"));
  for (const std::string& dtype_text : gemm_dtypes) {
    const std::string path = "/gemm/" + dtype_text;
    auto dtype = parse_dtype(dtype_text);
    if (!dtype) return make_error(file, path, "unknown dtype '" + dtype_text + "'");
    STRATA_ASSIGN_OR_RETURN(auto m, reader.dataset<int64_t>(path + "/m"));
    STRATA_ASSIGN_OR_RETURN(auto n, reader.dataset<int64_t>(path + "/n"));
    STRATA_ASSIGN_OR_RETURN(auto k, reader.dataset<int64_t>(path + "/k"));
    STRATA_ASSIGN_OR_RETURN(auto seconds, reader.dataset<double>(path + "/seconds"));
    if (n.size() != m.size() || k.size() != m.size() || seconds.size() != m.size()) {
      return make_error(file, path, "datasets m, n, k, seconds differ in length");
    }
    for (size_t i = 0; i < m.size(); ++i) {
      if (m[i] <= 0 || n[i] <= 0 || k[i] <= 0 || !(seconds[i] > 0) || !std::isfinite(seconds[i])) {
        return make_error(file, path, "point " + std::to_string(i) + ": m, n, k and seconds must be positive");
      }
      profile.gemm.push_back({m[i], n[i], k[i], *dtype, seconds[i]});
    }
  }
  // Optional (absent in profiles written before 2026-11-24): the runtime's per-op cost and its
  // memory-bound ops.
  if (H5Lexists(reader.file_id(), "/op_overhead", H5P_DEFAULT) > 0) {
    STRATA_ASSIGN_OR_RETURN(auto values, reader.dataset<double>("/op_overhead/seconds_per_op"));
    if (values.size() != 1 || !(values[0] >= 0) || !std::isfinite(values[0])) {
      return make_error(file, "/op_overhead/seconds_per_op", "must hold one finite value >= 0");
    }
    profile.op_overhead_seconds = values[0];
  }
  STRATA_ASSIGN_OR_RETURN(auto memory_ops, reader.children("/memory_ops"));
  for (const std::string& op : memory_ops) {
    const std::string path = "/memory_ops/" + op;
    MemoryOpCurve curve;
    curve.op = op;
    STRATA_ASSIGN_OR_RETURN(curve.bytes, reader.dataset<int64_t>(path + "/bytes"));
    STRATA_ASSIGN_OR_RETURN(curve.seconds, reader.dataset<double>(path + "/seconds"));
    profile.memory_ops.push_back(std::move(curve));
  }
  // Optional (nccl profiles since session 19): the fused attention's kernels.
  if (H5Lexists(reader.file_id(), "/attention", H5P_DEFAULT) > 0) {
    STRATA_ASSIGN_OR_RETURN(profile.attention, read_attention(reader, file));
  }
  // Curves must be usable for interpolation: same lengths, sizes increasing, times positive.
  auto check_curve = [&](const std::string& path, const std::vector<int64_t>& sizes,
                         const std::vector<double>& seconds) -> Status {
    if (sizes.size() != seconds.size() || sizes.empty()) {
      return make_error(file, path, "sizes_bytes and seconds must be non-empty and of equal length");
    }
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] <= 0 || (i > 0 && sizes[i] <= sizes[i - 1])) {
        return make_error(file, path, "sizes_bytes must increase and seconds be positive");
      }
      if (!(seconds[i] > 0) || !std::isfinite(seconds[i])) {
        return make_error(file, path, "seconds must be positive and finite (value " + std::to_string(i) + " is " +
                                          std::to_string(seconds[i]) + ")");
      }
    }
    return Status::ok();
  };
  for (const auto& curve : profile.collectives) {
    STRATA_RETURN_IF_ERROR(check_curve(curve_path(curve), curve.sizes_bytes, curve.seconds));
  }
  for (const auto& curve : profile.p2p) {
    STRATA_RETURN_IF_ERROR(check_curve(curve.cross_node ? "/p2p/inter_node" : "/p2p/intra_node",
                                       curve.sizes_bytes, curve.seconds));
  }
  for (const auto& curve : profile.memory_ops) {
    STRATA_RETURN_IF_ERROR(check_curve("/memory_ops/" + curve.op, curve.bytes, curve.seconds));
  }
  return profile;
}

// libhdf5 parses unchecksummed metadata (superblock 0 and 1) without defending against
// corruption: a damaged file can crash it (use after free in H5Aexists, found by fuzz/). Store
// writes superblock 2 or later, whose metadata is checksummed; older files are refused before the
// library parses them. The version byte follows the 8-byte signature at offset 0 (no user block).
Status check_superblock(const std::string& path) {
  unsigned char head[9] = {};
  std::FILE* in = std::fopen(path.c_str(), "rb");
  if (in == nullptr) return make_error(path, "", "cannot open the profile file");
  const size_t got = std::fread(head, 1, sizeof head, in);
  std::fclose(in);
  static const unsigned char kSignature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  if (got != sizeof head || std::memcmp(head, kSignature, sizeof kSignature) != 0) {
    return make_error(path, "", "not a profile written by strata (no HDF5 signature at the start)");
  }
  if (head[8] < 2) {
    return make_error(path, "superblock", "HDF5 format version " + std::to_string(head[8]) +
                                              " has no metadata checksums; strata writes 2 or later (re-run strata profile)");
  }
  return Status::ok();
}

}  // namespace

std::optional<double> Profile::memory_bandwidth() const {
  double bytes = 0, seconds = 0;
  for (const MemoryOpCurve& curve : memory_ops) {
    if (curve.bytes.empty() || curve.seconds.size() != curve.bytes.size()) continue;
    bytes += static_cast<double>(curve.bytes.back());
    seconds += curve.seconds.back();
  }
  if (!(seconds > 0) || !(bytes > 0)) return std::nullopt;
  return bytes / seconds;
}

Status Store::write(const std::string& path, const Profile& profile) {
  h5::silence_errors();
  const std::string temp = path + ".tmp";
  {
    // The HDF5 1.8+ format (superblock 2 and later) checksums its metadata, so a corrupt file is
    // refused by the library instead of being parsed; read() accepts only such files.
    STRATA_H5_OPEN(Handle fapl, H5Pcreate(H5P_FILE_ACCESS), H5Pclose, temp, "");
    STRATA_H5_CALL(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST), temp, "");
    STRATA_H5_OPEN(Handle file_id, H5Fcreate(temp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose,
                   temp, "");
    STRATA_RETURN_IF_ERROR(write_all(file_id.get(), temp, profile));
    STRATA_H5_CALL(H5Fclose(file_id.release()), temp, "");  // a failed close may lose data: checked
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    return make_error(path, "", "cannot rename " + temp + " into place");
  }
  return Status::ok();
}

Expected<Profile> Store::read(const std::string& path, const std::string& expected_cluster) {
  h5::silence_errors();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return make_error(path, "", "is a directory, not a profile file");
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    std::FILE* probe = std::fopen(path.c_str(), "rb");
    if (probe == nullptr) return make_error(path, "", "cannot open the profile file");
    std::fclose(probe);
    return make_error(path, "", "not a readable HDF5 file (truncated or corrupt)");
  }
  STRATA_RETURN_IF_ERROR(check_superblock(path));
  hid_t raw = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (raw < 0) return make_error(path, "", "HDF5 call H5Fopen failed: file truncated or corrupt");
  Handle file_id(raw, H5Fclose);
  Reader reader(file_id.get(), path);
  if (!reader.has_attr("complete")) {
    return make_error(path, "complete", "missing: a partial profile (the profiler did not finish)");
  }
  STRATA_ASSIGN_OR_RETURN(int64_t complete, reader.attr_int("complete"));
  if (complete != 1) return make_error(path, "complete", "is " + std::to_string(complete) + ", not 1: a partial profile");
  STRATA_ASSIGN_OR_RETURN(int64_t version, reader.attr_int("schema_version"));
  if (version != kSchemaVersion) {
    return make_error(path, "schema_version",
                      "is " + std::to_string(version) + ", this build reads " + std::to_string(kSchemaVersion) +
                          " (re-run strata profile)");
  }
  STRATA_ASSIGN_OR_RETURN(std::string cluster, reader.attr_string("cluster"));
  if (!expected_cluster.empty() && cluster != expected_cluster) {
    return make_error(path, "cluster",
                      "profile is of cluster '" + cluster + "', not of the requested '" + expected_cluster + "'");
  }
  STRATA_ASSIGN_OR_RETURN(Profile profile, read_all(reader));
  profile.schema_version = version;
  return profile;
}

}  // namespace strata::profile
