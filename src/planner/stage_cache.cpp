// Stage problem keys (structure hashes without op names) and the memory + disk stage cache.
#include "planner/stage_cache.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "strata/core/units.h"

namespace strata::planner {
namespace {

constexpr const char* kMagic = "strata stage cache 1";

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

std::string number_text(double value) {
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

void hash_type(Hasher& h, const ir::TensorType& type) {
  h.i64(static_cast<int64_t>(type.dtype)).i64(type.rank());
  for (int64_t d : type.shape) h.i64(d);
}

}  // namespace

Hasher& Hasher::bytes(const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    a_ = (a_ ^ p[i]) * 0x100000001b3ull;
    b_ = rotl(b_ ^ p[i], 23) * 0x9e3779b97f4a7c15ull;
  }
  return *this;
}

Hasher& Hasher::text(const std::string& value) {
  i64(static_cast<int64_t>(value.size()));
  return bytes(value.data(), value.size());
}

Hasher& Hasher::i64(int64_t value) { return bytes(&value, sizeof(value)); }

Hasher& Hasher::f64(double value) { return bytes(&value, sizeof(value)); }

std::string Hasher::hex() const {
  char buffer[33];
  std::snprintf(buffer, sizeof(buffer), "%016llx%016llx", static_cast<unsigned long long>(a_),
                static_cast<unsigned long long>(b_ ^ (a_ >> 7)));
  return buffer;
}

GraphSignature::GraphSignature(const ir::Graph& graph) : graph_(graph) {
  const ir::OpId count = graph.num_ops();
  op_a_.resize(count);
  op_b_.resize(count);
  users_.resize(count);
  is_output_.assign(count, false);
  for (const ir::Value& out : graph.outputs()) is_output_[out.op] = true;
  for (ir::OpId id = 0; id < count; ++id) {
    const ir::Op& op = graph.op(id);
    Hasher h;
    h.i64(static_cast<int64_t>(op.kind)).i64(static_cast<int64_t>(op.role)).i64(static_cast<int64_t>(op.inputs.size()));
    for (const auto& [key, value] : op.attrs.values()) {
      h.text(key).i64(static_cast<int64_t>(value.index()));
      if (const auto* i = std::get_if<int64_t>(&value)) h.i64(*i);
      if (const auto* d = std::get_if<double>(&value)) h.f64(*d);
      if (const auto* s = std::get_if<std::string>(&value)) h.text(*s);
      if (const auto* v = std::get_if<std::vector<int64_t>>(&value)) {
        h.i64(static_cast<int64_t>(v->size()));
        for (int64_t x : *v) h.i64(x);
      }
    }
    h.i64(static_cast<int64_t>(op.outputs.size()));
    for (const ir::TensorType& type : op.outputs) hash_type(h, type);
    op_a_[id] = h.lane_a();
    op_b_[id] = h.lane_b();
    users_[id] = graph.users(id);
  }
}

std::string GraphSignature::stage_hash(const std::vector<ir::OpId>& ops) const {
  auto position = [&](ir::OpId id) -> int64_t {
    auto it = std::lower_bound(ops.begin(), ops.end(), id);
    return it != ops.end() && *it == id ? it - ops.begin() : -1;
  };
  Hasher h;
  h.i64(static_cast<int64_t>(ops.size()));
  for (size_t p = 0; p < ops.size(); ++p) {
    const ir::Op& op = graph_.op(ops[p]);
    h.i64(static_cast<int64_t>(op_a_[op.id])).i64(static_cast<int64_t>(op_b_[op.id]));
    for (const ir::Value& in : op.inputs) {
      const int64_t q = position(in.op);
      if (q >= 0) {
        h.i64(static_cast<int64_t>(p) - q).i64(in.index);
      } else {  // received from another stage
        h.i64(-1);
        hash_type(h, graph_.type(in));
      }
    }
    h.i64(op.forward_op == ir::kNoOp ? -2 : position(op.forward_op) < 0 ? -1 : static_cast<int64_t>(p) - position(op.forward_op));
    bool outside = false;
    for (ir::OpId user : users_[op.id]) outside = outside || position(user) < 0;
    h.i64(outside ? 1 : 0).i64(is_output_[op.id] ? 1 : 0);
  }
  return h.hex();
}

CachedSolution to_cached(const intra::StageSolution& solution, const ir::Graph& graph,
                         const std::vector<ir::OpId>& ops) {
  CachedSolution cached;
  cached.solution = solution;
  cached.solution.shardings.clear();
  cached.shardings.reserve(ops.size());
  for (ir::OpId id : ops) {
    auto it = solution.shardings.find(graph.op(id).name);
    cached.shardings.push_back(it == solution.shardings.end() ? std::string() : it->second.to_string());
  }
  return cached;
}

Expected<intra::StageSolution> from_cached(const CachedSolution& cached, const ir::Graph& graph,
                                           const std::vector<ir::OpId>& ops) {
  intra::StageSolution solution = cached.solution;
  if (!solution.feasible) return solution;
  if (cached.shardings.size() != ops.size()) {
    return make_error("", "stage cache", "entry has " + std::to_string(cached.shardings.size()) +
                                             " shardings for a stage of " + std::to_string(ops.size()) + " ops");
  }
  for (size_t p = 0; p < ops.size(); ++p) {
    if (cached.shardings[p].empty()) continue;
    auto parsed = intra::parse_op_sharding(cached.shardings[p]);
    if (!parsed.is_ok()) return parsed.error().under("stage cache");
    solution.shardings.emplace(graph.op(ops[p]).name, std::move(parsed).value());
  }
  return solution;
}

std::string serialize(const CachedSolution& cached, const std::string& key) {
  const intra::StageSolution& s = cached.solution;
  std::string reason = s.reason;
  std::replace(reason.begin(), reason.end(), '\n', ' ');
  std::ostringstream out;
  out << kMagic << "\nkey " << key << "\nfeasible " << (s.feasible ? 1 : 0) << "\nreason " << reason
      << "\nforward_seconds " << number_text(s.forward_seconds) << "\nbackward_seconds "
      << number_text(s.backward_seconds) << "\nupdate_seconds " << number_text(s.update_seconds)
      << "\ngrad_sync_seconds " << number_text(s.grad_sync_seconds) << "\nweights_bytes " << s.weights_bytes
      << "\noptimizer_state_bytes " << s.optimizer_state_bytes << "\nactivation_bytes " << s.activation_bytes
      << "\nnum_variables " << s.num_variables << "\nnum_constraints " << s.num_constraints << "\nsolve_seconds "
      << number_text(s.solve_seconds) << "\nops " << cached.shardings.size() << "\n";
  for (const std::string& sharding : cached.shardings) out << (sharding.empty() ? "-" : sharding) << "\n";
  return out.str();
}

Expected<CachedSolution> deserialize(const std::string& text, const std::string& key, const std::string& file) {
  std::istringstream in(text);
  std::string line;
  auto bad = [&](const std::string& field, const std::string& why) { return make_error(file, field, why); };
  if (!std::getline(in, line) || line != kMagic) return bad("", "not a stage cache entry");
  // "name value" lines in a fixed order.
  auto field = [&](const char* name) -> Expected<std::string> {
    if (!std::getline(in, line)) return bad(name, "missing");
    const size_t n = std::strlen(name);
    if (line.compare(0, n, name) != 0 || (line.size() > n && line[n] != ' ')) return bad(name, "missing");
    return line.size() > n ? line.substr(n + 1) : std::string();
  };
  auto number = [&](const char* name, auto& value) -> Status {
    STRATA_ASSIGN_OR_RETURN(std::string v, field(name));
    auto result = std::from_chars(v.data(), v.data() + v.size(), value);
    if (result.ec != std::errc() || result.ptr != v.data() + v.size()) return bad(name, "not a number: " + v);
    return Status::ok();
  };
  STRATA_ASSIGN_OR_RETURN(std::string stored_key, field("key"));
  if (stored_key != key) return bad("key", "is " + stored_key + ", expected " + key);
  CachedSolution cached;
  intra::StageSolution& s = cached.solution;
  int feasible = 0;
  STRATA_RETURN_IF_ERROR(number("feasible", feasible));
  s.feasible = feasible != 0;
  STRATA_ASSIGN_OR_RETURN(s.reason, field("reason"));
  STRATA_RETURN_IF_ERROR(number("forward_seconds", s.forward_seconds));
  STRATA_RETURN_IF_ERROR(number("backward_seconds", s.backward_seconds));
  STRATA_RETURN_IF_ERROR(number("update_seconds", s.update_seconds));
  STRATA_RETURN_IF_ERROR(number("grad_sync_seconds", s.grad_sync_seconds));
  STRATA_RETURN_IF_ERROR(number("weights_bytes", s.weights_bytes));
  STRATA_RETURN_IF_ERROR(number("optimizer_state_bytes", s.optimizer_state_bytes));
  STRATA_RETURN_IF_ERROR(number("activation_bytes", s.activation_bytes));
  STRATA_RETURN_IF_ERROR(number("num_variables", s.num_variables));
  STRATA_RETURN_IF_ERROR(number("num_constraints", s.num_constraints));
  STRATA_RETURN_IF_ERROR(number("solve_seconds", s.solve_seconds));
  int64_t count = 0;
  STRATA_RETURN_IF_ERROR(number("ops", count));
  if (count < 0) return bad("ops", "negative");
  for (int64_t p = 0; p < count; ++p) {
    if (!std::getline(in, line)) return bad("ops", "has " + std::to_string(p) + " of " + std::to_string(count) + " lines");
    cached.shardings.push_back(line == "-" ? std::string() : line);
  }
  return cached;
}

Expected<CachedSolution> StageCache::get(const std::string& key,
                                         const std::function<Expected<CachedSolution>()>& compute, Source* source) {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    auto [it, inserted] = entries_.try_emplace(key);
    if (!inserted) {
      ready_.wait(lock, [&] { return it->second.ready || it->second.failed; });
      if (it->second.ready) {
        *source = Source::memory;
        return it->second.value;
      }
      // The first asker failed: try again here (its error may have been transient).
      it->second.failed = false;
    }
  }
  Expected<CachedSolution> value = make_error("", "", "");
  const std::string path = dir_.empty() ? std::string() : dir_ + "/" + key + ".stage";
  bool from_disk = false;
  if (!path.empty() && std::filesystem::exists(path)) {
    auto text = read_text_file(path);
    if (text.is_ok()) {
      value = deserialize(*text, key, path);
      from_disk = value.is_ok();  // a damaged entry is solved again and overwritten
    }
  }
  if (!from_disk) {
    value = compute();
    if (value.is_ok() && !path.empty()) {
      if (Status written = write_file_atomically(path, serialize(*value, key)); !written.is_ok()) value = written.error();
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  Entry& entry = entries_[key];
  if (value.is_ok()) {
    entry.ready = true;
    entry.value = *value;
    *source = from_disk ? Source::disk : Source::solved;
  } else {
    entry.failed = true;
  }
  ready_.notify_all();
  return value;
}

}  // namespace strata::planner
