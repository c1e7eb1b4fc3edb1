// Reference interpreter: runs an ir::Graph on the host with dense fp64 tensors, one kernel per
// OpKind (src/interp/kernels_*.cpp). Slow and obvious on purpose: the truth fast paths are checked against.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "strata/core/status.h"
#include "strata/ir/graph.h"

namespace strata::interp {

// f64 computes every kernel in double; f32 rounds every kernel output to float (values are still
// stored as double), which mimics an fp32 device up to the order of summation.
enum class Precision { f64, f32 };

// A dense row-major host tensor. Integer tensors (token ids, labels) hold whole numbers.
struct Tensor {
  ir::Shape shape;
  std::vector<double> data;

  Tensor() = default;
  explicit Tensor(ir::Shape s, double fill = 0.0);
  Tensor(ir::Shape s, std::vector<double> values);  // values.size() must equal the numel

  int64_t numel() const { return static_cast<int64_t>(data.size()); }
  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  double& operator[](int64_t i) { return data[static_cast<size_t>(i)]; }
  double operator[](int64_t i) const { return data[static_cast<size_t>(i)]; }
};

int64_t shape_numel(const ir::Shape& shape);
std::vector<int64_t> row_major_strides(const ir::Shape& shape);

// Every value the run computed, by op and output index, and the graph's outputs in order.
struct Outputs {
  std::vector<Tensor> outputs;              // one per Graph::outputs()
  std::vector<std::vector<Tensor>> values;  // values[op][index]
  const Tensor& value(ir::Value v) const;
};

// Runs `graph`. `feeds` gives Input values (all required) and Parameter values (optional) by op
// name; a Parameter that is not fed is initialised from its {init, init_std} with a stream drawn
// from `seed` and the parameter's name, so the same seed gives the same weights in any graph.
Expected<Outputs> run(const ir::Graph& graph, const std::map<std::string, Tensor>& feeds, Precision precision,
                      uint64_t seed = 0);

// The value `run` gives an unfed Parameter op (exposed so that tests and the runtime agree).
Tensor init_parameter(const ir::Op& op, uint64_t seed);

}  // namespace strata::interp
