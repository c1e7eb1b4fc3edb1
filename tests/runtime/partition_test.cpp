// The partitioner without MPI: tiles, reshard steps checked by simulating every device of a mesh
// on random tensors, cross-mesh tile intersection, rank layout, and partition() on random plans.
#include "strata/runtime/partition.h"

#include <gtest/gtest.h>

#include <random>

#include "runtime/random_plan.h"
#include "strata/interp/interp.h"

namespace strata::runtime {
namespace {

using intra::ShardingSpec;

ShardingSpec spec(const std::string& text) { return intra::parse_sharding(text).value(); }

interp::Tensor random_tensor(const ir::Shape& shape, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1, 1);
  interp::Tensor t(shape);
  for (double& x : t.data) x = u(rng);
  return t;
}

interp::Tensor block(const interp::Tensor& t, const Box& box) {
  interp::Tensor out(box.sizes);
  std::vector<int64_t> index;
  const auto strides = interp::row_major_strides(t.shape);
  for (int64_t f = 0; f < out.numel(); ++f) {
    int64_t rest = f, offset = 0;
    index.assign(box.sizes.size(), 0);
    for (int64_t d = static_cast<int64_t>(box.sizes.size()) - 1; d >= 0; --d) {
      index[d] = rest % box.sizes[d];
      rest /= box.sizes[d];
    }
    for (size_t d = 0; d < index.size(); ++d) offset += (box.starts[d] + index[d]) * strides[d];
    out[f] = t[offset];
  }
  return out;
}

// Concatenation of equal-shaped parts along `dim`.
interp::Tensor concat(const std::vector<interp::Tensor>& parts, int dim) {
  ir::Shape shape = parts[0].shape;
  shape[dim] *= static_cast<int64_t>(parts.size());
  interp::Tensor out(shape);
  const auto strides = interp::row_major_strides(shape);
  std::vector<int64_t> index;
  for (size_t p = 0; p < parts.size(); ++p) {
    for (int64_t f = 0; f < parts[p].numel(); ++f) {
      int64_t rest = f, offset = 0;
      index.assign(shape.size(), 0);
      for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
        index[d] = rest % parts[p].shape[d];
        rest /= parts[p].shape[d];
      }
      index[dim] += static_cast<int64_t>(p) * parts[p].shape[dim];
      for (size_t d = 0; d < index.size(); ++d) offset += index[d] * strides[d];
      out[offset] = parts[p][f];
    }
  }
  return out;
}

interp::Tensor sum(const std::vector<interp::Tensor>& parts) {
  interp::Tensor out = parts[0];
  for (size_t p = 1; p < parts.size(); ++p) {
    for (int64_t i = 0; i < out.numel(); ++i) out[i] += parts[p][i];
  }
  return out;
}

std::vector<interp::Tensor> split(const interp::Tensor& t, int dim, int parts) {
  std::vector<interp::Tensor> out;
  Box box{std::vector<int64_t>(t.shape.size(), 0), t.shape};
  box.sizes[dim] /= parts;
  for (int p = 0; p < parts; ++p) {
    box.starts[dim] = p * box.sizes[dim];
    out.push_back(block(t, box));
  }
  return out;
}

// Runs each device's steps in lockstep, with collectives simulated over the mesh's axis groups.
std::vector<interp::Tensor> simulate(std::vector<interp::Tensor> tiles, const std::vector<std::vector<LocalStep>>& steps,
                                     const cluster::LogicalMesh& mesh) {
  const int devices = mesh.num_devices();
  for (size_t s = 0; s < steps[0].size(); ++s) {
    const LocalStep& step = steps[0][s];
    std::vector<interp::Tensor> next(static_cast<size_t>(devices));
    for (int d = 0; d < devices; ++d) {
      const LocalStep& mine = steps[d][s];
      EXPECT_EQ(mine.kind, step.kind);
      const Coord c = coord_of(d, mesh);
      std::vector<int> group;  // devices along the axis, in coordinate order
      for (int k = 0; k < (step.axis == 0 ? mesh.n0 : mesh.n1); ++k) group.push_back(step.axis == 0 ? k * mesh.n1 + c.j : c.i * mesh.n1 + k);
      const int me = step.axis == 0 ? c.i : c.j;
      std::vector<interp::Tensor> members;
      for (int g : group) members.push_back(tiles[g]);
      switch (mine.kind) {
        case StepKind::all_reduce: next[d] = sum(members); break;
        case StepKind::reduce_scatter: next[d] = split(sum(members), mine.dim, static_cast<int>(group.size()))[me]; break;
        case StepKind::all_gather: next[d] = concat(members, mine.dim); break;
        case StepKind::all_to_all: {
          std::vector<interp::Tensor> got;
          for (const auto& m : members) got.push_back(split(m, mine.dim, static_cast<int>(group.size()))[me]);
          next[d] = concat(got, mine.dim2);
          break;
        }
        case StepKind::slice: next[d] = block(tiles[d], mine.box); break;
        case StepKind::zero: next[d] = interp::Tensor(tiles[d].shape); break;
      }
    }
    tiles = next;
  }
  return tiles;
}

// Tiles of `global` under `from`; a pending sum is spread as random parts that add up.
std::vector<interp::Tensor> make_tiles(const interp::Tensor& global, const ShardingSpec& from, const cluster::LogicalMesh& mesh,
                                       std::mt19937& rng) {
  std::vector<interp::Tensor> tiles;
  for (int d = 0; d < mesh.num_devices(); ++d) tiles.push_back(block(global, tile_box(from, global.shape, mesh, coord_of(d, mesh))));
  for (int axis = 0; axis < 2; ++axis) {
    if (!from.partial[axis]) continue;
    for (int d = 0; d < mesh.num_devices(); ++d) {  // the value on the axis' first device only
      const Coord c = coord_of(d, mesh);
      if ((axis == 0 ? c.i : c.j) != 0) tiles[d] = interp::Tensor(tiles[d].shape);
    }
    for (int d = 0; d < mesh.num_devices(); ++d) {
      const Coord c = coord_of(d, mesh);
      if ((axis == 0 ? c.i : c.j) != 0) continue;
      const int n = axis == 0 ? mesh.n0 : mesh.n1;
      for (int k = 1; k < n; ++k) {  // move a random share from the first device to device k
        const int other = axis == 0 ? k * mesh.n1 + c.j : c.i * mesh.n1 + k;
        interp::Tensor share = random_tensor(tiles[d].shape, rng);
        for (int64_t i = 0; i < share.numel(); ++i) {
          tiles[d][i] -= share[i];
          tiles[other][i] += share[i];
        }
      }
    }
  }
  return tiles;
}

void expect_near(const interp::Tensor& a, const interp::Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape, b.shape) << what;
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_NEAR(a[i], b[i], 1e-12) << what << " at " << i;
}

TEST(Partition, TileBoxes) {
  const cluster::LogicalMesh mesh{2, 3};
  EXPECT_EQ(tile_box(spec("S0R"), {4, 6}, mesh, Coord{1, 2}), (Box{{2, 0}, {2, 6}}));
  EXPECT_EQ(tile_box(spec("RS1"), {4, 6}, mesh, Coord{1, 2}), (Box{{0, 4}, {4, 2}}));
  EXPECT_EQ(tile_box(spec("S01R"), {12, 2}, mesh, Coord{1, 1}), (Box{{8, 0}, {2, 2}}));  // block 1·3+1 = 4
  EXPECT_EQ(tile_box(spec("S1S0"), {3, 4}, mesh, Coord{1, 0}), (Box{{0, 2}, {1, 2}}));
  EXPECT_EQ(coord_of(5, mesh), (Coord{1, 2}));
}

TEST(Partition, StepSequences) {
  const cluster::LogicalMesh mesh{2, 2};
  auto text = [&](const std::string& from, const std::string& to, Coord c) {
    std::string out;
    const std::vector<LocalStep> steps = reshard_steps(spec(from), spec(to), {4, 6}, mesh, c).value();
    for (const LocalStep& s : steps) out += s.describe() + ";";
    return out;
  };
  EXPECT_EQ(text("RRP0", "RR", {1, 1}), "all_reduce(axis 0);");
  EXPECT_EQ(text("RRP1", "RS1", {0, 1}), "reduce_scatter(axis 1, dim 1);");
  EXPECT_EQ(text("S0R", "RS1", {1, 1}), "all_gather(axis 0, dim 0);slice([0, 3]+[4, 3]);");
  EXPECT_EQ(text("S0R", "RS0", {0, 0}), "all_to_all(axis 0, dim 1 -> 0);");
  EXPECT_EQ(text("RR", "RRP1", {0, 1}), "zero(axis 1);");
  EXPECT_EQ(text("RR", "RRP1", {0, 0}), "");
  EXPECT_EQ(text("S01R", "S0R", {1, 0}), "all_gather(axis 1, dim 0);");
}

TEST(Partition, ReshardStepsMoveTheRightValues) {
  std::mt19937 rng(3);
  const std::vector<std::string> dims = {"R", "S0", "S1", "S01"};
  const std::vector<std::string> partials = {"", "P0", "P1", "P01"};
  for (const cluster::LogicalMesh mesh : {cluster::LogicalMesh{2, 2}, cluster::LogicalMesh{2, 4}, cluster::LogicalMesh{1, 4}}) {
    const ir::Shape shape = {8, 16};
    const interp::Tensor global = random_tensor(shape, rng);
    int checked = 0;
    for (const auto& a0 : dims) for (const auto& a1 : dims) for (const auto& ap : partials) {
      for (const auto& b0 : dims) for (const auto& b1 : dims) for (const auto& bp : partials) {
        const auto from = intra::parse_sharding(a0 + a1 + ap), to = intra::parse_sharding(b0 + b1 + bp);
        if (!from || !to || !intra::validate_sharding(*from, shape, mesh) || !intra::validate_sharding(*to, shape, mesh)) continue;
        if (bp != "" && bp != ap) continue;  // a new pending sum only keeps the value on one device: checked apart
        std::vector<std::vector<LocalStep>> steps;
        for (int d = 0; d < mesh.num_devices(); ++d) steps.push_back(reshard_steps(*from, *to, shape, mesh, coord_of(d, mesh)).value());
        const auto got = simulate(make_tiles(global, *from, mesh, rng), steps, mesh);
        const auto want = make_tiles(global, ShardingSpec{to->dims, {false, false}}, mesh, rng);
        for (int d = 0; d < mesh.num_devices(); ++d) {
          if (to->partial[0] || to->partial[1]) continue;  // kept pending: only shapes must agree
          expect_near(got[d], want[d], from->to_string() + " -> " + to->to_string() + " device " + std::to_string(d));
        }
        ++checked;
      }
    }
    EXPECT_GT(checked, 100);
  }
}

TEST(Partition, CrossMeshMessagesCoverEveryTileOnce) {
  std::mt19937 rng(5);
  const ir::Shape shape = {8, 4};
  const interp::Tensor global = random_tensor(shape, rng);
  const cluster::LogicalMesh a{2, 2}, b{1, 2};
  for (const std::string from : {"S0R", "RS1", "S01R", "RR", "S1S0"}) {
    for (const std::string to : {"S1R", "RS1", "RR", "S01R"}) {
      const auto messages = cross_mesh_messages(spec(from), a, spec(to), b, shape).value();
      for (int r = 0; r < b.num_devices(); ++r) {
        const Box mine = tile_box(spec(to), shape, b, coord_of(r, b));
        interp::Tensor tile(mine.sizes, -99.0);
        int64_t covered = 0;
        for (const Message& m : messages) {
          if (m.to_device != r) continue;
          const Box sender = tile_box(spec(from), shape, a, coord_of(m.from_device, a));
          const interp::Tensor part = block(block(global, sender), m.from_box);
          // write the part at to_box
          for (int64_t f = 0; f < part.numel(); ++f) {
            const int64_t row = f / m.to_box.sizes[1], col = f % m.to_box.sizes[1];
            tile[(m.to_box.starts[0] + row) * mine.sizes[1] + m.to_box.starts[1] + col] = part[f];
          }
          covered += m.to_box.numel();
        }
        EXPECT_EQ(covered, mine.numel()) << from << " -> " << to;
        expect_near(tile, block(global, mine), from + " -> " + to);
      }
    }
  }
  // Replicated senders share the work: two receivers of a replicated tensor read two replicas.
  const auto spread = cross_mesh_messages(spec("RR"), a, spec("S0R"), cluster::LogicalMesh{4, 1}, shape).value();
  ASSERT_EQ(spread.size(), 4u);
  EXPECT_NE(spread[0].from_device, spread[1].from_device);
  EXPECT_FALSE(cross_mesh_messages(spec("RRP0"), a, spec("RR"), b, shape).is_ok());
}

plan::Plan two_stage_plan() {
  plan::Plan p;
  p.cluster = plan::ClusterShape{"c", 2, 4};
  p.global_batch = 8;
  p.num_micro_batches = 2;
  p.cross_stage_link.bandwidth_bytes_per_second = 1e9;
  plan::Stage s0, s1;
  s0.submesh = {1, 4};
  s0.logical_mesh = {2, 2};
  s1 = s0;
  s1.first_node = 1;
  s1.first_layer = s1.last_layer = 1;
  p.stages = {s0, s1};
  return p;
}

TEST(Partition, RanksInNodeOrder) {
  plan::Plan p = two_stage_plan();
  EXPECT_EQ(stage_ranks(p), (std::vector<std::vector<int>>{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  EXPECT_EQ(locate_rank(p, 6), (std::pair<int, int>{1, 2}));
  p.stages = {p.stages[0]};
  p.stages[0].submesh = {1, 2};
  p.stages[0].first_gpu = 2;
  p.stages.push_back(p.stages[0]);
  p.stages[1].first_node = 1;
  EXPECT_EQ(stage_ranks(p), (std::vector<std::vector<int>>{{2, 3}, {6, 7}}));
  EXPECT_EQ(locate_rank(p, 0), (std::pair<int, int>{-1, -1}));
}

// A two-layer MLP: x[8,4] · w1[4,6] -> relu -> · w2[6,2] -> reduce_mean -> loss.
ir::Graph mlp() {
  ir::Graph g;
  auto x = g.input("x", {8, 4});
  auto w1 = g.parameter("w1", {4, 6});
  auto w2 = g.parameter("w2", {6, 2});
  auto h = g.add_value(ir::OpKind::Dot, {x, w1}, {{"lhs_batch", std::vector<int64_t>{}}, {"rhs_batch", std::vector<int64_t>{}},
                                                {"lhs_contract", std::vector<int64_t>{1}}, {"rhs_contract", std::vector<int64_t>{0}}}, "h");
  auto r = g.add_value(ir::OpKind::Relu, {h}, {}, "r");
  auto y = g.add_value(ir::OpKind::Dot, {r, w2}, {{"lhs_batch", std::vector<int64_t>{}}, {"rhs_batch", std::vector<int64_t>{}},
                                                {"lhs_contract", std::vector<int64_t>{1}}, {"rhs_contract", std::vector<int64_t>{0}}}, "y");
  auto loss = g.add_value(ir::OpKind::ReduceMean, {y}, {{"axes", std::vector<int64_t>{0, 1}}, {"keepdims", int64_t{0}}}, "loss");
  g.mark_output(loss);
  autodiff::TrainingOptions o;
  return autodiff::build_training_graph(g, o).value();
}

// Every op replicated, the first forward ops (and their backward) on stage 0.
plan::Plan replicated_plan(const ir::Graph& g) {
  plan::Plan p = two_stage_plan();
  const std::vector<int> stage = testing::assign_stages(g, 2);
  for (ir::OpId id = 0; id < g.num_ops(); ++id) {
    const ir::Op& op = g.op(id);
    intra::OpSharding sh;
    for (ir::Value v : op.inputs) sh.inputs.push_back(ShardingSpec{std::vector<intra::DimSharding>(g.type(v).shape.size()), {}});
    for (const auto& t : op.outputs) sh.outputs.push_back(ShardingSpec{std::vector<intra::DimSharding>(t.shape.size()), {}});
    p.stages[stage[id]].strategies[op.name] = sh.to_string();
  }
  return p;
}

TEST(Partition, ReplicatedTwoStagePlan) {
  const ir::Graph g = mlp();
  const plan::Plan p = replicated_plan(g);
  const StageGraph sg = partition(g, p).value();
  EXPECT_EQ(sg.stage_ops[0].size() + sg.stage_ops[1].size(), static_cast<size_t>(g.num_ops()));
  EXPECT_EQ(sg.update_grad.size(), 2u);
  ASSERT_FALSE(sg.transfers.empty());
  int split_sends = 0;
  for (const Transfer& t : sg.transfers) {
    EXPECT_NE(t.from_stage, t.to_stage);
    // A replicated value for 4 replicas is sent once, split, then gathered inside the mesh.
    const ir::Shape& shape = g.type(t.value).shape;
    if (!shape.empty() && shape[0] % 4 == 0) {
      EXPECT_EQ(message_elements(t.messages), g.type(t.value).numel()) << g.op(t.value.op).name;
      EXPECT_FALSE(t.landing == t.sent) << g.op(t.value.op).name;
      ++split_sends;
    }
  }
  EXPECT_GT(split_sends, 0);
}

TEST(Partition, BadPlansNameTheOp) {
  const ir::Graph g = mlp();
  plan::Plan p = replicated_plan(g);
  p.source_file = "plan.yaml";
  p.stages[1].strategies.erase("loss");
  auto missing = partition(g, p);
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.error().message().find("'loss'"), std::string::npos) << missing.error().message();

  p = replicated_plan(g);
  p.source_file = "plan.yaml";
  for (auto& s : p.stages) {
    for (auto& [name, text] : s.strategies) {
      if (name == "w1") text = "[]->[S0R]";
    }
  }
  auto mismatch = partition(g, p);
  ASSERT_FALSE(mismatch.is_ok());
  EXPECT_EQ(mismatch.error().file, "plan.yaml");
  EXPECT_NE(mismatch.error().reason.find("w1"), std::string::npos) << mismatch.error().message();
}

TEST(Partition, RandomPlansOfTinyModelsPartition) {
  const auto cluster = cluster::load_cluster(std::string(STRATA_SOURCE_DIR) + "/configs/clusters/cpu-8.yaml").value();
  const cost::ComputeModel compute(cluster);
  std::mt19937 rng(11);
  for (const std::string model : {"gpt-tiny", "moe-tiny"}) {
    const auto spec = models::load_model_config(std::string(STRATA_SOURCE_DIR) + "/configs/models/" + model + ".yaml").value();
    const ir::Graph forward = models::build_forward_graph(spec, 4).value();
    const ir::Graph train = autodiff::build_training_graph(forward, autodiff::TrainingOptions{}).value();
    for (int i = 0; i < 3; ++i) {
      const plan::Plan p = testing::random_plan(train, model, 8, 2, plan::Training{}, compute, rng).value();
      ASSERT_TRUE(plan::validate(p).is_ok());
      auto sg = partition(train, p);
      ASSERT_TRUE(sg.is_ok()) << sg.error().message();
      // Every receiver's landing tile is filled exactly by its messages.
      for (const Transfer& t : sg->transfers) {
        const cluster::LogicalMesh& mesh = p.stages[t.to_stage].logical_mesh;
        const ir::Shape& shape = train.type(t.value).shape;
        for (int d = 0; d < mesh.num_devices(); ++d) {
          int64_t got = 0;
          for (const Message& m : t.messages) got += m.to_device == d ? m.to_box.numel() : 0;
          EXPECT_EQ(got, tile_box(t.landing, shape, mesh, coord_of(d, mesh)).numel()) << train.op(t.value.op).name;
        }
      }
    }
  }
}

}  // namespace
}  // namespace strata::runtime
