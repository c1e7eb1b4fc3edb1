// The cuda backend's options. Storage: parameters, optimizer state, losses, reductions and
// embedding gradients stay fp32; activations and their gradients are bf16 (or fp32 with
// `activations = f32`); GEMMs take bf16 operands with fp32 accumulation. Point-to-point messages
// carry fp32 for float tensors so that a receiver may allocate with storage_dtype().
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "strata/fusion/cuda_fusion.h"
#include "strata/plan/plan.h"
#include "strata/profile/store.h"
#include "strata/runtime/backend.h"

namespace strata::runtime {

// How the cuda backend's ranks combine tensors (`--collectives`). nccl: NCCL on the device stream,
// one rank per GPU. mpi: each collective copies its operand to host memory, runs the MPI
// collective and copies the result back, in stream order; any number of ranks may share a GPU
// (ranks use GPU local_rank % GPUs), and it needs no NCCL. Point-to-point is MPI either way.
enum class Collectives { nccl, mpi };
const char* collectives_name(Collectives collectives);
// "nccl" or "mpi"; otherwise an Error naming `field` and the choices.
Expected<Collectives> parse_collectives(const std::string& name, const std::string& field = "--collectives");
// `device_ids[r]`: an id of rank r's GPU (its UUID), every rank of one NCCL communicator. An Error
// naming the first two ranks that share a GPU and the way out (--collectives mpi), else ok.
Status check_distinct_devices(const std::vector<std::string>& device_ids);

struct CudaOptions {
  DType activations = DType::bf16;  // bf16 or f32
  // Dot batch dims that merge into two strided levels (batch x heads of a [B, S, N, D] tensor):
  // one pointer-array GEMM (true) or a strided-batch GEMM per outer index (false).
  bool pointer_batches = false;
  Collectives collectives = Collectives::nccl;
};

// What `strata profile` measures of the runtime on a backend (profile::Profile's fields of the same
// names): the executor's cost per op issued and large memory-bound ops.
struct RuntimeCosts {
  std::optional<double> op_overhead_seconds;
  std::vector<profile::MemoryOpCurve> memory_ops;
  std::vector<profile::AttentionPoint> attention;
  std::vector<profile::GemmPoint> gemm;  // the backend's Dot at GPT layer shapes (bf16)
};
// Times a training step of a short and a long chain of tiny ops through an Executor on `backend`
// (one device, MPI_COMM_SELF; MPI must be initialised): the slope is seconds per op. Then Add,
// Gelu, Softmax and LayerNorm on bf16 tensors of 16M and 64M elements through backend.run_op,
// Attention / AttentionGrad at GPT shapes (S 1024, head dim 64 and 80, causal mask) and the Dot
// at GPT layer shapes.
// Appends a readable table to `table` when given. (Defined in src/runtime/cuda/: CUDA builds.)
#ifdef STRATA_HAVE_CUDA
Expected<RuntimeCosts> measure_op_costs(Backend& backend, std::string* table = nullptr);

// make_cuda_backend(local_rank) reads STRATA_CUDA_ACTIVATIONS ("bf16" or "f32"),
// STRATA_CUDA_POINTER_BATCHES ("0" or "1") and STRATA_CUDA_COLLECTIVES ("nccl" or "mpi"; what
// `strata train --collectives` sets) into the options.
Expected<std::unique_ptr<Backend>> make_cuda_backend(int local_rank, const CudaOptions& options);

// The rewrites themselves are pure IR (strata/fusion/cuda_fusion.h), so the cost model can match them.
using fusion::FusionStats;
using fusion::FusionOptions;
using fusion::kMaxAttentionHeadDim;
using fusion::kSoftmaxBiasAttr;
using fusion::fuse_for_cuda;

// What the executor runs on the cuda backend: the training graph after fuse_for_cuda and the plan
// with strategies for the rewritten graph's ops (op names are kept; a Concat takes its Add tree's
// name, a Scale moved after a Dot "<dot>.scale", placed on that Dot's stage; an Attention takes its
// context Dot's name, its head Transposes "<context dot>.fused_q" (k, v), an AttentionGrad the
// name of its dP or dv Dot and its Transposes those of the gradient Transposes they replace).
struct FusedPlan {
  ir::Graph graph;
  plan::Plan plan;
};
// An op still there as it was keeps its strategy; a rewritten op takes its anchor's stage and, on
// a mesh of several devices, the strategy of its kind that agrees with the most neighbour specs
// (fused_plan.cpp). An Error when fuse_for_cuda fails or an op has no stage.
Expected<FusedPlan> fuse_plan_for_cuda(const ir::Graph& graph, const plan::Plan& plan, FusionStats* stats = nullptr);
#endif

}  // namespace strata::runtime
