// Shared fixtures of the intra tests: a cluster built in code, the tiny model builders' training
// graphs, and feeds that keep integer inputs (token ids, labels) in range.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "strata/autodiff/autodiff.h"
#include "strata/cluster/cluster.h"
#include "strata/interp/interp.h"
#include "strata/models/models.h"

namespace strata::intra::testing {

// Eight V100-like GPUs on one node (the aws-p3-1node numbers).
inline cluster::ClusterSpec test_cluster(int num_nodes = 1, int gpus_per_node = 8) {
  cluster::ClusterSpec spec;
  spec.name = "test";
  spec.num_nodes = num_nodes;
  spec.gpus_per_node = gpus_per_node;
  spec.gpu_memory_bytes = int64_t{16} << 30;
  spec.peak_flops_f32 = 15.7e12;
  spec.peak_flops_f16 = 125e12;
  spec.memory_bandwidth_bytes_per_second = 900e9;
  spec.intra_node = {150e9, 5e-6};
  spec.inter_node = {25e9 / 8, 25e-6};
  return spec;
}

inline models::ModelSpec load_spec(const std::string& config) {
  auto spec = models::load_model_config(std::string(STRATA_SOURCE_DIR) + "/configs/models/" + config);
  STRATA_CHECK(spec.is_ok(), spec.is_ok() ? "" : spec.error().message());
  return *spec;
}

// The training graph of a model at `micro_batch`.
inline ir::Graph training_graph(const models::ModelSpec& spec, int64_t micro_batch,
                                autodiff::Optimizer optimizer = autodiff::Optimizer::adam) {
  auto forward = models::build_forward_graph(spec, micro_batch);
  STRATA_CHECK(forward.is_ok(), forward.is_ok() ? "" : forward.error().message());
  autodiff::TrainingOptions options;
  options.optimizer = optimizer;
  auto training = autodiff::build_training_graph(*forward, options);
  STRATA_CHECK(training.is_ok(), training.is_ok() ? "" : training.error().message());
  return *training;
}
inline ir::Graph training_graph(const std::string& config, int64_t micro_batch) {
  return training_graph(load_spec(config), micro_batch);
}

// Deterministic feeds for every Input op: integer inputs cycle through [0, classes), the causal
// mask is a real one, floats are varied values in [-1, 1].
inline std::map<std::string, interp::Tensor> feeds_for(const ir::Graph& graph, int64_t classes) {
  std::map<std::string, interp::Tensor> feeds;
  for (ir::OpId id : graph.inputs()) {
    const ir::Op& op = graph.op(id);
    const ir::Shape& shape = op.outputs[0].shape;
    interp::Tensor t(shape);
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (op.name == "causal_mask") {
        t[i] = (i % shape[1]) <= (i / shape[1]) % shape[0] ? 0.0 : -1e9;
      } else if (!is_float(op.outputs[0].dtype)) {
        t[i] = static_cast<double>((i * 7 + 3) % classes);
      } else {
        t[i] = static_cast<double>((i * 37 + 11) % 101) / 50.0 - 1.0;
      }
    }
    feeds[op.name] = t;
  }
  return feeds;
}

}  // namespace strata::intra::testing
