// Content keys of stage problems and the stage-solution cache (in memory, and on disk as one small
// text file per key). A key hashes the stage's structure — op kinds, attributes, types, roles,
// which op reads which (by position inside the stage), what comes from or goes to other stages —
// plus the mesh, the cluster's costs and the solver settings, but never op names: identical
// transformer layers give identical keys. Shardings are stored by op position and mapped back to
// the names of whichever stage asks.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "strata/cluster/cluster.h"
#include "strata/core/status.h"
#include "strata/intra/stage_solver.h"
#include "strata/ir/graph.h"

namespace strata::planner {

// 128 bits of two independent 64-bit lanes; enough that two different stage problems never meet.
class Hasher {
 public:
  Hasher& bytes(const void* data, size_t size);
  Hasher& text(const std::string& value);  // length-prefixed
  Hasher& i64(int64_t value);
  Hasher& f64(double value);
  std::string hex() const;  // 32 hex digits
  uint64_t lane_a() const { return a_; }
  uint64_t lane_b() const { return b_; }

 private:
  uint64_t a_ = 0xcbf29ce484222325ull;
  uint64_t b_ = 0x9e3779b97f4a7c15ull;
};

// Per-op hashes of one graph (kind, attributes, output types, role) and its users, computed once.
class GraphSignature {
 public:
  explicit GraphSignature(const ir::Graph& graph);
  // The structure of the stage made of `ops` (ascending ids).
  std::string stage_hash(const std::vector<ir::OpId>& ops) const;

 private:
  const ir::Graph& graph_;
  std::vector<uint64_t> op_a_, op_b_;
  std::vector<std::vector<ir::OpId>> users_;
  std::vector<bool> is_output_;
};

// Solutions with shardings in stage order (one entry per op of the stage; "" when the solver gave
// none), as cached.
struct CachedSolution {
  intra::StageSolution solution;        // shardings left empty
  std::vector<std::string> shardings;  // OpSharding text per op position
};

CachedSolution to_cached(const intra::StageSolution& solution, const ir::Graph& graph,
                         const std::vector<ir::OpId>& ops);
// Back to names of `ops` in `graph`; an Error when a stored sharding does not parse.
Expected<intra::StageSolution> from_cached(const CachedSolution& cached, const ir::Graph& graph,
                                           const std::vector<ir::OpId>& ops);

std::string serialize(const CachedSolution& cached, const std::string& key);
// Errors (naming `file`) when the text is not a cache entry for `key`.
Expected<CachedSolution> deserialize(const std::string& text, const std::string& key, const std::string& file);

// Keys → solutions, shared by threads: the first asker of a key computes it, later askers wait for
// that answer instead of solving the same problem again.
class StageCache {
 public:
  explicit StageCache(std::string dir) : dir_(std::move(dir)) {}

  enum class Source { solved, memory, disk };
  // `compute` runs at most once per key per cache (unless it fails).
  Expected<CachedSolution> get(const std::string& key, const std::function<Expected<CachedSolution>()>& compute,
                               Source* source);
  const std::string& dir() const { return dir_; }

 private:
  struct Entry {
    bool ready = false;
    bool failed = false;
    CachedSolution value;
  };
  std::string dir_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::map<std::string, Entry> entries_;
};

}  // namespace strata::planner
