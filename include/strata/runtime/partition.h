// The SPMD partitioner: pure functions from a training graph, a plan's stages and its per-op
// strategies to what each device runs — ranks of each mesh, local tiles, the collective and
// slicing steps that reshard a value between specs, each op with local attributes, and the
// point-to-point messages that move a value from one stage's mesh to another's. No MPI here.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "strata/cluster/cluster.h"
#include "strata/core/status.h"
#include "strata/intra/sharding.h"
#include "strata/intra/strategy.h"
#include "strata/ir/graph.h"
#include "strata/plan/plan.h"

namespace strata::runtime {

// Device (i, j) of an n0 × n1 logical mesh; its index in the mesh is i·n1 + j.
struct Coord {
  int i = 0;
  int j = 0;
  bool operator==(const Coord&) const = default;
};
Coord coord_of(int device, const cluster::LogicalMesh& mesh);

// A block of a tensor: per dim [starts[d], starts[d] + sizes[d]).
struct Box {
  std::vector<int64_t> starts;
  std::vector<int64_t> sizes;
  int64_t numel() const;
  bool operator==(const Box&) const = default;
};

// The block of the global tensor device `coord` holds under `spec` (partial sums ignored).
Box tile_box(const intra::ShardingSpec& spec, const ir::Shape& global_shape, const cluster::LogicalMesh& mesh,
             Coord coord);

// One step of resharding a local tile on one device.
enum class StepKind {
  all_reduce,      // sum over mesh axis `axis`
  reduce_scatter,  // sum over `axis`, keep block (coordinate on axis) of dim `dim`
  all_gather,      // concatenate along `dim` over `axis`
  all_to_all,      // split `dim` into blocks over `axis`, concatenate received blocks along `dim2`
  slice,           // keep `box` of the local tile (free)
  zero,            // this device's copy becomes 0 (a complete value turned into a pending sum)
};
const char* step_kind_name(StepKind kind);

struct LocalStep {
  StepKind kind = StepKind::slice;
  int axis = -1;
  int dim = -1;
  int dim2 = -1;
  Box box;  // slice only, in the local tile's coordinates
  std::string describe() const;  // "all_gather(axis 1, dim 0)", "slice([0, 4]+[2, 4])"
};

// The steps that turn device `coord`'s tile of a value in spec `from` into its tile in spec `to`:
// the collective sequence of intra::resharding_cost (one planner of collectives for costs and
// execution), then local slicing, then zeroing for newly pending sums.
Expected<std::vector<LocalStep>> reshard_steps(const intra::ShardingSpec& from, const intra::ShardingSpec& to,
                                               const ir::Shape& global_shape, const cluster::LogicalMesh& mesh,
                                               Coord coord);

// One point-to-point message of a cross-mesh transfer: the part of the sender's tile (box in the
// sender's local coordinates) that lands in the receiver's tile (box in the receiver's).
struct Message {
  int from_device = 0;  // index in the sending mesh
  int to_device = 0;    // index in the receiving mesh
  Box from_box;
  Box to_box;
  bool operator==(const Message&) const = default;
};

// Tile intersection between `from` (complete values, no pending sums) on mesh `a` and `to` on
// mesh `b`. Every receiver's tile is covered exactly once; where several senders hold the same
// block (replicas), receivers are spread over them round-robin.
Expected<std::vector<Message>> cross_mesh_messages(const intra::ShardingSpec& from, const cluster::LogicalMesh& a,
                                                   const intra::ShardingSpec& to, const cluster::LogicalMesh& b,
                                                   const ir::Shape& global_shape);
int64_t message_elements(const std::vector<Message>& messages);

// Ranks of every stage's devices, in mesh order: the submesh's devices in node order (rank =
// node·gpus_per_node + gpu), viewed row-major as the logical mesh.
std::vector<std::vector<int>> stage_ranks(const plan::Plan& plan);
// The stage and device index of a world rank, or {-1, -1} when no stage uses it.
std::pair<int, int> locate_rank(const plan::Plan& plan, int rank);

// A value moved from one stage to another: resharded on the sender to `sent` (pending sums done),
// sent as `messages`, landing on the receiver in `landing` (from which each consumer reshards).
// `per_step` transfers (gradients an update op of another stage reads) run once, at grad_sync.
struct Transfer {
  int id = 0;  // position in StageGraph::transfers; message tags derive from it
  ir::Value value;
  int from_stage = 0;
  int to_stage = 0;
  bool per_step = false;
  intra::ShardingSpec sent;
  intra::ShardingSpec landing;
  std::vector<Message> messages;
};

// The partitioned training graph: each op's stage, sharding and local form, and the transfers.
struct StageGraph {
  std::vector<int> stage_of;                       // per op
  std::vector<intra::OpSharding> sharding;         // per op, as the plan gives it
  std::vector<ir::Op> local_ops;                   // per op: local attrs and local output types
  std::vector<std::vector<ir::OpId>> stage_ops;    // per stage, ascending ids
  std::vector<Transfer> transfers;
  std::map<ir::OpId, ir::Value> update_grad;       // update op -> the gradient value it reads
  // The spec a value has on stage `stage` before a consumer reshards it: its producer's output
  // spec on the producer's stage, else the landing spec of its transfer to `stage`.
  Expected<intra::ShardingSpec> spec_on(ir::Value value, int stage) const;
  const Transfer* transfer_to(ir::Value value, int stage) const;
};

// Checks the plan's strategies against the graph (every op in exactly one stage, specs that parse
// and fit, op kinds that run locally, update ops producing their Parameters' specs) and builds
// the StageGraph. Errors name the plan file and "stages[s].strategies.<op>".
Expected<StageGraph> partition(const ir::Graph& graph, const plan::Plan& plan);

}  // namespace strata::runtime
