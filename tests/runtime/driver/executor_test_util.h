// Shared by the executor tests run under mpirun (their own main for MPI): a backend that forwards
// every call to the cpu backend (tests derive from it to count or record what the executor asks),
// and a batch of random GPT inputs with the causal mask.
#pragma once

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "strata/models/models.h"
#include "strata/runtime/executor.h"

namespace strata::runtime::testing {

class ForwardingBackend : public Backend {
 public:
  std::string name() const override { return inner_->name(); }
  DType storage_dtype(DType d) const override { return inner_->storage_dtype(d); }
  Expected<TensorPtr> alloc(const ir::TensorType& t) override { return inner_->alloc(t); }
  Expected<TensorPtr> upload(const interp::Tensor& h, DType d) override { return inner_->upload(h, d); }
  Expected<interp::Tensor> download(const DeviceTensor& t) override { return inner_->download(t); }
  Expected<std::vector<TensorPtr>> run_op(const ir::Op& op, const std::vector<const DeviceTensor*>& in) override {
    return inner_->run_op(op, in);
  }
  Status add_into(DeviceTensor& dst, const DeviceTensor& src) override { return inner_->add_into(dst, src); }
  Status scale(DeviceTensor& t, double factor) override { return inner_->scale(t, factor); }
  Expected<TensorPtr> slice(const DeviceTensor& t, const std::vector<int64_t>& starts,
                            const std::vector<int64_t>& sizes) override {
    return inner_->slice(t, starts, sizes);
  }
  Status insert(DeviceTensor& dst, const DeviceTensor& block, const std::vector<int64_t>& starts) override {
    return inner_->insert(dst, block, starts);
  }
  Expected<std::unique_ptr<Communicator>> communicator(MPI_Comm comm) override { return inner_->communicator(comm); }
  Status synchronize() override { return inner_->synchronize(); }

 private:
  std::unique_ptr<Backend> inner_ = make_cpu_backend();
};

// Global inputs of a GPT `spec` for `batch` sequences: random token ids and labels, the causal mask.
inline std::map<std::string, interp::Tensor> random_gpt_inputs(const models::ModelSpec& spec, int64_t batch,
                                                               uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, spec.vocab - 1);
  std::map<std::string, interp::Tensor> feeds;
  feeds["tokens"] = interp::Tensor({batch, spec.seq_len});
  feeds["labels"] = interp::Tensor({batch * spec.seq_len});
  for (double& x : feeds["tokens"].data) x = static_cast<double>(pick(rng));
  for (double& x : feeds["labels"].data) x = static_cast<double>(pick(rng));
  feeds["causal_mask"] = causal_mask(spec.seq_len);
  return feeds;
}

}  // namespace strata::runtime::testing
