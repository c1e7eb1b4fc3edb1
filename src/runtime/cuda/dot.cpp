// Dot (dot_general) through cuBLAS: the operand layout analysis, the permuting fallback and the
// three GEMM entry points (single, strided batch, pointer-array batch); a single GEMM with a bias
// (and Gelu) epilogue through cuBLASLt, and the deferred Dot that runs it. Row-major C[M, N] is
// computed as the column-major product C^T = R^T L^T, so rhs is cuBLAS's A and lhs its B.
#include "dot.h"

#include <cublasLt.h>
#include <cublas_api.h>

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "kernels.h"

namespace strata::runtime::cuda {
namespace {

// Stream-ordered scratch memory, freed on the same stream when it goes out of scope.
class Scratch {
 public:
  explicit Scratch(cudaStream_t stream) : stream_(stream) {}
  ~Scratch() {
    if (ptr_ != nullptr) cudaFreeAsync(ptr_, stream_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Status allocate(int64_t bytes) {
    STRATA_CUDA_CALL(cudaMallocAsync(&ptr_, static_cast<size_t>(std::max<int64_t>(bytes, 1)), stream_));
    return Status::ok();
  }
  void* get() const { return ptr_; }

 private:
  cudaStream_t stream_;
  void* ptr_ = nullptr;
};

std::vector<int64_t> attr_list(const ir::Op& op, const char* key) {
  if (!op.attrs.has(key)) return {};
  auto values = op.attrs.get_ints(key);
  STRATA_CHECK(values.is_ok(), "op " + op.name + ": " + values.error().message());
  return *values;
}

std::vector<int64_t> row_major(const ir::Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

// dims (in order) merged into one (size, stride); false when they are not one strided run.
struct Merged {
  int64_t size = 1;
  int64_t stride = 0;
};
bool merge_dims(const std::vector<int64_t>& dims, const ir::Shape& shape, const std::vector<int64_t>& strides,
                Merged& merged) {
  merged = Merged{};
  bool any = false;
  for (int64_t d : dims) {
    if (shape[d] == 1) continue;
    if (any && merged.stride != strides[d] * shape[d]) return false;
    merged.size *= shape[d];
    merged.stride = strides[d];
    any = true;
  }
  return true;
}

// One operand as a batch of matrices: rows (free) x cols (contract), each with a stride.
struct Matrix {
  const void* data = nullptr;
  std::vector<int64_t> batch_strides;  // per batch dim
  Merged free, contract;
};

// How cuBLAS reads a matrix X (free x contract): its `trans` flag and leading dimension. As B
// (lhs) cuBLAS needs op(B) = X^T (contract x free); as A (rhs) it needs op(A) = X (free x contract).
bool gemm_layout(const Matrix& m, bool as_a, cublasOperation_t& trans, int64_t& ld) {
  const int64_t f = m.free.size, k = m.contract.size;
  if (k == 1 || m.contract.stride == 1) {  // row-major free x contract: stored column-major k x f
    trans = as_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    ld = f == 1 ? std::max<int64_t>(k, 1) : m.free.stride;
    return ld >= std::max<int64_t>(k, 1);
  }
  if (f == 1 || m.free.stride == 1) {  // column-major free x contract: stored f x k
    trans = as_a ? CUBLAS_OP_N : CUBLAS_OP_T;
    ld = k == 1 ? std::max<int64_t>(f, 1) : m.contract.stride;
    return ld >= std::max<int64_t>(f, 1);
  }
  return false;
}

// Brings one operand into GEMM form: a cast (same layout) when only the element type is wrong; a
// permuted copy into [batch, free, contract] when the layout is not a strided matrix batch.
Status prepare(const DotOperand& in, bool as_a, const std::vector<int64_t>& batch, const std::vector<int64_t>& free,
               const std::vector<int64_t>& contract, Elem gemm_elem, cudaStream_t stream, Scratch& scratch,
               Matrix& m) {
  const std::vector<int64_t> strides = row_major(in.shape);
  Matrix direct;
  direct.data = in.data;
  for (int64_t d : batch) direct.batch_strides.push_back(strides[d]);
  cublasOperation_t trans;
  int64_t ld = 0;
  const bool layout_ok = merge_dims(free, in.shape, strides, direct.free) &&
                         merge_dims(contract, in.shape, strides, direct.contract) && gemm_layout(direct, as_a, trans, ld);
  const int32_t rank = static_cast<int32_t>(in.shape.size());
  STRATA_CHECK(rank <= kMaxRank, "dot operand rank above kMaxRank");
  int64_t numel = 1;
  for (int64_t s : in.shape) numel *= s;
  if (layout_ok && in.elem == gemm_elem) {
    m = direct;
    return Status::ok();
  }
  if (layout_ok && in.tensor != nullptr && in.elem == Elem::f32 && gemm_elem == Elem::bf16) {
    STRATA_ASSIGN_OR_RETURN(const void* copy, in.tensor->bf16_copy(stream));
    m = direct;
    m.data = copy;
    return Status::ok();
  }
  STRATA_RETURN_IF_ERROR(scratch.allocate(numel * elem_bytes(gemm_elem)));
  if (layout_ok) {
    const View v = kernels::contiguous(in.shape.data(), rank);
    STRATA_RETURN_IF_ERROR(kernels::copy_view(scratch.get(), gemm_elem, v, in.data, in.elem, v, stream));
    m = direct;
    m.data = scratch.get();
    return Status::ok();
  }
  // Permute: order = batch, free, contract; the source view reads in.shape in that order.
  std::vector<int64_t> order = batch;
  order.insert(order.end(), free.begin(), free.end());
  order.insert(order.end(), contract.begin(), contract.end());
  ir::Shape permuted;
  View src;
  src.rank = rank;
  for (size_t i = 0; i < order.size(); ++i) {
    permuted.push_back(in.shape[order[i]]);
    src.shape[i] = in.shape[order[i]];
    src.stride[i] = strides[order[i]];
  }
  const View dst = kernels::contiguous(permuted.data(), rank);
  STRATA_RETURN_IF_ERROR(kernels::copy_view(scratch.get(), gemm_elem, dst, in.data, in.elem, src, stream));
  const std::vector<int64_t> ps = row_major(permuted);
  m = Matrix{};
  m.data = scratch.get();
  const size_t nb = batch.size(), nf = free.size();
  for (size_t i = 0; i < nb; ++i) m.batch_strides.push_back(ps[i]);
  std::vector<int64_t> fdims, cdims;
  for (size_t i = 0; i < nf; ++i) fdims.push_back(static_cast<int64_t>(nb + i));
  for (size_t i = 0; i < contract.size(); ++i) cdims.push_back(static_cast<int64_t>(nb + nf + i));
  const bool ok = merge_dims(fdims, permuted, ps, m.free) && merge_dims(cdims, permuted, ps, m.contract) &&
                  gemm_layout(m, as_a, trans, ld);
  STRATA_CHECK(ok, "dot: a permuted operand is not a matrix batch");
  return Status::ok();
}

cudaDataType_t cuda_type(Elem e) { return e == Elem::bf16 ? CUDA_R_16BF : CUDA_R_32F; }

// The cuBLASLt descriptors of one call, destroyed on every path out.
struct LtObjects {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  LtObjects() = default;
  LtObjects(const LtObjects&) = delete;
  LtObjects& operator=(const LtObjects&) = delete;
  ~LtObjects() {
    if (pref != nullptr) cublasLtMatmulPreferenceDestroy(pref);
    for (cublasLtMatrixLayout_t l : {a, b, c}) {
      if (l != nullptr) cublasLtMatrixLayoutDestroy(l);
    }
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

template <typename T>
cublasStatus_t set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& value) {
  return cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(value));
}

// One cublasLtMatmul as described in `lt`: D[m, n] = op(A) op(B), the epilogue's aux (m x n, when it
// writes one) and bias gradient (m long) at the pointers last set in the descriptor.
struct LtCall {
  const LtObjects& lt;
  const void* a;
  const void* b;
  int64_t m, n;
  int64_t d_bytes;      // per element of D and of a written aux
  int64_t bias_bytes;   // per element of a written bias gradient, else 0
  bool writes_aux;
  const void* c;  // added to the product (beta 1; GemmEpilogue::residual), or null
  std::array<int64_t, 14> key;
};

cublasStatus_t matmul(const GemmContext& ctx, const LtCall& call, void* d, const cublasLtMatmulAlgo_t& algo) {
  const float alpha = 1.0f, beta = call.c != nullptr ? 1.0f : 0.0f;
  return cublasLtMatmul(ctx.lt, call.lt.desc, &alpha, call.a, call.lt.a, call.b, call.lt.b, &beta,
                        call.c != nullptr ? call.c : d, call.lt.c, d, call.lt.c, &algo, ctx.workspace,
                        ctx.workspace_bytes, ctx.stream);
}

// A warm-up round, then kRounds rounds that run each candidate once, its own events around it:
// interleaved, so that the clocks falling under a long run of GEMMs weigh on every candidate
// alike (timed back to back, the first ones ran cooler and won). ms per run, or a negative value
// when it fails to run. Outputs go to scratch; the descriptor's aux and bias-gradient pointers are
// left pointing there (the caller sets its own after).
Expected<std::vector<float>> time_candidates(const GemmContext& ctx, const LtCall& call,
                                             const std::vector<cublasLtMatmulHeuristicResult_t>& candidates) {
  constexpr int kRounds = 3;
  Scratch d(ctx.stream), aux(ctx.stream), grad(ctx.stream);
  STRATA_RETURN_IF_ERROR(d.allocate(call.m * call.n * call.d_bytes));
  if (call.writes_aux) {
    STRATA_RETURN_IF_ERROR(aux.allocate(call.m * call.n * call.d_bytes));
    STRATA_CUBLAS_CALL(set_desc(call.lt.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux.get()));
  }
  if (call.bias_bytes > 0) {
    STRATA_RETURN_IF_ERROR(grad.allocate(call.m * call.bias_bytes));
    STRATA_CUBLAS_CALL(set_desc(call.lt.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, grad.get()));
  }
  std::vector<float> ms(candidates.size(), -1.0f);
  for (size_t i = 0; i < candidates.size(); ++i) {  // warm-up; a candidate that fails stays out
    if (matmul(ctx, call, d.get(), candidates[i].algo) == CUBLAS_STATUS_SUCCESS) ms[i] = 0.0f;
  }
  std::vector<cudaEvent_t> events(2 * candidates.size(), nullptr);
  Status status = Status::ok();
  for (cudaEvent_t& e : events) {
    if (status.is_ok() && cudaEventCreate(&e) != cudaSuccess) status = make_error("", "", "cudaEventCreate failed");
  }
  for (int round = 0; round < kRounds && status.is_ok(); ++round) {
    for (size_t i = 0; i < candidates.size() && status.is_ok(); ++i) {
      if (ms[i] < 0.0f) continue;
      if (cudaEventRecord(events[2 * i], ctx.stream) != cudaSuccess ||
          matmul(ctx, call, d.get(), candidates[i].algo) != CUBLAS_STATUS_SUCCESS ||
          cudaEventRecord(events[2 * i + 1], ctx.stream) != cudaSuccess) {
        status = make_error("", "", "timing a cuBLASLt candidate failed");
      }
    }
    if (status.is_ok() && cudaStreamSynchronize(ctx.stream) != cudaSuccess) {
      status = make_error("", "", std::string("timing cuBLASLt candidates failed: ") +
                                      cudaGetErrorString(cudaGetLastError()));
    }
    for (size_t i = 0; i < candidates.size() && status.is_ok(); ++i) {
      float elapsed = 0.0f;
      if (ms[i] < 0.0f) continue;
      if (cudaEventElapsedTime(&elapsed, events[2 * i], events[2 * i + 1]) != cudaSuccess) {
        status = make_error("", "", "cudaEventElapsedTime failed");
      }
      ms[i] += elapsed / kRounds;
    }
  }
  for (cudaEvent_t e : events) {
    if (e != nullptr) cudaEventDestroy(e);
  }
  STRATA_RETURN_IF_ERROR(status);
  return ms;
}

// The algorithm for `call`: the tuner's choice for its key (timed on the key's first use), else
// cuBLASLt's first heuristic answer; nullopt when cuBLASLt offers none (kept too: a bias type it
// refuses is not asked about again).
Expected<std::optional<cublasLtMatmulAlgo_t>> choose_algo(const GemmContext& ctx, const LtCall& call) {
  GemmTuner* tuner = ctx.tuner;
  if (tuner != nullptr) {
    const auto found = tuner->best.find(call.key);
    if (found != tuner->best.end()) {
      ++tuner->reused;
      return found->second;
    }
  }
  std::vector<cublasLtMatmulHeuristicResult_t> candidates(tuner != nullptr ? kGemmTuneCandidates : 1);
  int count = 0;
  const cublasStatus_t asked =
      cublasLtMatmulAlgoGetHeuristic(ctx.lt, call.lt.desc, call.lt.a, call.lt.b, call.lt.c, call.lt.c, call.lt.pref,
                                     static_cast<int>(candidates.size()), candidates.data(), &count);
  if (asked != CUBLAS_STATUS_SUCCESS || count == 0) {
    if (tuner != nullptr) {
      ++tuner->tuned;
      tuner->best.emplace(call.key, std::nullopt);
    }
    return std::optional<cublasLtMatmulAlgo_t>();
  }
  candidates.resize(static_cast<size_t>(count));
  if (tuner == nullptr) return std::optional<cublasLtMatmulAlgo_t>(candidates[0].algo);
  size_t best = 0;
  if (count > 1) {
    STRATA_ASSIGN_OR_RETURN(const std::vector<float> ms, time_candidates(ctx, call, candidates));
    for (size_t i = 1; i < ms.size(); ++i) {
      if (ms[i] >= 0.0f && (ms[best] < 0.0f || ms[i] < ms[best])) best = i;
    }
  }
  ++tuner->tuned;
  tuner->best.emplace(call.key, candidates[best].algo);
  return std::optional<cublasLtMatmulAlgo_t>(candidates[best].algo);
}

}  // namespace

Expected<bool> run_dot_epilogue(const GemmContext& ctx, const ir::Op& op, const DotOperand& lhs, const DotOperand& rhs,
                                void* out, Elem out_elem, const ir::Shape& out_shape, Elem gemm_elem,
                                const GemmEpilogue& epilogue) {
  const auto lb = attr_list(op, "lhs_batch"), rb = attr_list(op, "rhs_batch");
  const auto lc = attr_list(op, "lhs_contract"), rc = attr_list(op, "rhs_contract");
  const auto lf = ir::dot_free_dims(static_cast<int64_t>(lhs.shape.size()), lb, lc);
  const auto rf = ir::dot_free_dims(static_cast<int64_t>(rhs.shape.size()), rb, rc);
  if (!lb.empty() || rf.size() != 1 || out_shape.empty() || (epilogue.bias != nullptr && epilogue.bias_grad != nullptr) ||
      (epilogue.residual != nullptr && (epilogue.bias_grad != nullptr || epilogue.gelu_aux != nullptr))) {
    return false;
  }
  int64_t rows = 1, depth = 1;
  for (int64_t d : lf) rows *= lhs.shape[d];
  for (int64_t d : lc) depth *= lhs.shape[d];
  const int64_t cols = rhs.shape[rf[0]];
  const int64_t limit = (int64_t{1} << 31) - 1;
  if (cols != out_shape.back() || rows == 0 || cols == 0 || depth == 0 || rows > limit || cols > limit ||
      depth > limit) {
    return false;
  }
  const void* aux = epilogue.gelu_aux != nullptr ? epilogue.gelu_aux : epilogue.dgelu_input;
  if (aux != nullptr && cols % 8 != 0) return false;  // the aux leading dim must be a multiple of 8

  Scratch lhs_scratch(ctx.stream), rhs_scratch(ctx.stream);
  Matrix l, r;
  STRATA_RETURN_IF_ERROR(prepare(lhs, false, lb, lf, lc, gemm_elem, ctx.stream, lhs_scratch, l));
  STRATA_RETURN_IF_ERROR(prepare(rhs, true, rb, rf, rc, gemm_elem, ctx.stream, rhs_scratch, r));
  cublasOperation_t ta, tb;
  int64_t lda = 0, ldb = 0;
  STRATA_CHECK(gemm_layout(r, true, ta, lda) && gemm_layout(l, false, tb, ldb), "dot: prepared operands are not matrices");
  // Column-major D[cols, rows] = op(A)[cols, depth] op(B)[depth, rows], as in run_dot: the bias runs
  // along D's rows (the output's last dim) and is broadcast over its columns.
  const uint64_t m = static_cast<uint64_t>(cols), n = static_cast<uint64_t>(rows), k = static_cast<uint64_t>(depth);
  const cudaDataType_t ab_type = cuda_type(gemm_elem), c_type = cuda_type(out_elem);
  LtObjects lt;
  STRATA_CUBLAS_CALL(cublasLtMatmulDescCreate(&lt.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  STRATA_CUBLAS_CALL(set_desc(lt.desc, CUBLASLT_MATMUL_DESC_TRANSA, static_cast<int32_t>(ta)));
  STRATA_CUBLAS_CALL(set_desc(lt.desc, CUBLASLT_MATMUL_DESC_TRANSB, static_cast<int32_t>(tb)));
  const bool backward = epilogue.bias_grad != nullptr;
  const cublasLtEpilogue_t kind =
      epilogue.bias != nullptr
          ? (epilogue.gelu_aux != nullptr ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_BIAS)
          : !backward ? CUBLASLT_EPILOGUE_DEFAULT
                      : (epilogue.dgelu_input != nullptr ? CUBLASLT_EPILOGUE_DGELU_BGRAD : CUBLASLT_EPILOGUE_BGRADA);
  STRATA_CUBLAS_CALL(set_desc(lt.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<int32_t>(kind)));
  if (aux != nullptr) STRATA_CUBLAS_CALL(set_desc(lt.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, static_cast<int64_t>(cols)));
  const bool a_n = ta == CUBLAS_OP_N, b_n = tb == CUBLAS_OP_N;
  STRATA_CUBLAS_CALL(cublasLtMatrixLayoutCreate(&lt.a, ab_type, a_n ? m : k, a_n ? k : m, lda));
  STRATA_CUBLAS_CALL(cublasLtMatrixLayoutCreate(&lt.b, ab_type, b_n ? k : n, b_n ? n : k, ldb));
  STRATA_CUBLAS_CALL(cublasLtMatrixLayoutCreate(&lt.c, c_type, m, n, static_cast<int64_t>(m)));
  STRATA_CUBLAS_CALL(cublasLtMatmulPreferenceCreate(&lt.pref));
  const uint64_t workspace = ctx.workspace_bytes;
  STRATA_CUBLAS_CALL(cublasLtMatmulPreferenceSetAttribute(lt.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                          &workspace, sizeof(workspace)));
  int device = 0;
  STRATA_CUDA_CALL(cudaGetDevice(&device));
  LtCall call{lt, r.data, l.data, cols, rows, elem_bytes(out_elem), 0, epilogue.gelu_aux != nullptr, epilogue.residual,
              {static_cast<int64_t>(m), static_cast<int64_t>(n), static_cast<int64_t>(k), ta, tb, lda, ldb, ab_type,
               c_type, kind, -1, static_cast<int64_t>(ctx.workspace_bytes), device, epilogue.residual != nullptr}};
  if (kind == CUBLASLT_EPILOGUE_DEFAULT) {
    STRATA_ASSIGN_OR_RETURN(const auto algo, choose_algo(ctx, call));
    if (!algo) return false;
    STRATA_CUBLAS_CALL(matmul(ctx, call, out, *algo));
    return true;
  }
  // The bias (gradient) vector in its own type (the bias as stored, an fp32 gradient), else in the
  // output's type through a cols-long scratch (the bias cast first, the gradient cast after).
  const Elem given = backward ? Elem::f32 : epilogue.bias_elem;
  Scratch vector_scratch(ctx.stream);
  const View vector = kernels::contiguous(&cols, 1);
  std::vector<Elem> bias_elems{given};
  if (out_elem != given) bias_elems.push_back(out_elem);
  for (const Elem bias_elem : bias_elems) {
    const void* bias = backward ? epilogue.bias_grad : epilogue.bias;
    if (bias_elem != given) {
      STRATA_RETURN_IF_ERROR(vector_scratch.allocate(cols * elem_bytes(bias_elem)));
      bias = vector_scratch.get();
    }
    STRATA_CUBLAS_CALL(
        set_desc(lt.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, static_cast<int32_t>(cuda_type(bias_elem))));
    call.key[10] = cuda_type(bias_elem);
    call.bias_bytes = backward ? elem_bytes(bias_elem) : 0;
    // Set before choosing (the candidates read them) and again after (timing points the written
    // aux and gradient at scratch).
    const auto point = [&]() -> Status {
      STRATA_CUBLAS_CALL(set_desc(lt.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias));
      if (aux != nullptr) STRATA_CUBLAS_CALL(set_desc(lt.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux));
      return Status::ok();
    };
    STRATA_RETURN_IF_ERROR(point());
    STRATA_ASSIGN_OR_RETURN(const auto algo, choose_algo(ctx, call));
    if (!algo) continue;
    STRATA_RETURN_IF_ERROR(point());
    if (bias_elem != given && !backward) {
      STRATA_RETURN_IF_ERROR(kernels::copy_view(vector_scratch.get(), bias_elem, vector, epilogue.bias,
                                                epilogue.bias_elem, vector, ctx.stream));
    }
    STRATA_CUBLAS_CALL(matmul(ctx, call, out, *algo));
    if (bias_elem != given && backward) {
      STRATA_RETURN_IF_ERROR(kernels::copy_view(epilogue.bias_grad, given, vector, vector_scratch.get(), bias_elem,
                                                vector, ctx.stream));
    }
    return true;
  }
  return false;  // no kernel for this epilogue: the caller runs it unfused
}

Expected<bool> run_deferred_dot(const DeferredDot& dot, void* out, Elem out_elem, void* gelu_out) {
  const ir::Shape& shape = dot.op.outputs[0].shape;
  const int32_t rank = static_cast<int32_t>(shape.size());
  const View own = kernels::contiguous(shape.data(), rank);
  if (dot.epilogue.bias != nullptr || dot.epilogue.residual != nullptr) {
    GemmEpilogue epilogue = dot.epilogue;
    epilogue.gelu_aux = gelu_out != nullptr ? out : nullptr;
    STRATA_ASSIGN_OR_RETURN(const bool fused, run_dot_epilogue(dot.ctx, dot.op, dot.lhs, dot.rhs,
                                                               gelu_out != nullptr ? gelu_out : out, out_elem, shape,
                                                               dot.gemm_elem, epilogue));
    if (fused) return gelu_out != nullptr;
  }
  STRATA_RETURN_IF_ERROR(run_dot(dot.ctx.blas, dot.ctx.stream, dot.op, dot.lhs, dot.rhs, out, out_elem, shape,
                                 dot.gemm_elem, dot.pointer_batches));
  // Unfused: out += bias along the last dim, then out += residual, in place (each element read and
  // written by one thread).
  if (dot.epilogue.bias != nullptr) {
    View bias = own;
    for (int32_t d = 0; d < rank; ++d) bias.stride[d] = d == rank - 1 ? 1 : 0;
    STRATA_RETURN_IF_ERROR(kernels::binary(kernels::Binary::add, out, out_elem, own, dot.epilogue.bias,
                                           dot.epilogue.bias_elem, bias, out, out_elem, dot.ctx.stream));
  }
  if (dot.epilogue.residual != nullptr) {
    STRATA_RETURN_IF_ERROR(kernels::binary(kernels::Binary::add, dot.epilogue.residual, out_elem, own, out, out_elem,
                                           own, out, out_elem, dot.ctx.stream));
  }
  return false;
}

Status run_dot(cublasHandle_t handle, cudaStream_t stream, const ir::Op& op, const DotOperand& lhs,
               const DotOperand& rhs, void* out, Elem out_elem, const ir::Shape& out_shape, Elem gemm_elem,
               bool pointer_batches) {
  const auto lb = attr_list(op, "lhs_batch"), rb = attr_list(op, "rhs_batch");
  const auto lc = attr_list(op, "lhs_contract"), rc = attr_list(op, "rhs_contract");
  const auto lf = ir::dot_free_dims(static_cast<int64_t>(lhs.shape.size()), lb, lc);
  const auto rf = ir::dot_free_dims(static_cast<int64_t>(rhs.shape.size()), rb, rc);
  int64_t batch = 1, rows = 1, cols = 1, depth = 1;
  for (int64_t d : lb) batch *= lhs.shape[d];
  for (int64_t d : lf) rows *= lhs.shape[d];
  for (int64_t d : rf) cols *= rhs.shape[d];
  for (int64_t d : lc) depth *= lhs.shape[d];
  int64_t out_numel = 1;
  for (int64_t s : out_shape) out_numel *= s;
  if (out_numel == 0) return Status::ok();
  if (depth == 0) return kernels::fill(out, out_elem, out_numel, 0.0f, stream);
  const int64_t limit = (int64_t{1} << 31) - 1;
  if (rows > limit || cols > limit || depth > limit || batch > limit) {
    return make_error("", "ops." + op.name, "GEMM dimensions above 2^31 - 1 are not supported by cuBLAS");
  }

  Scratch lhs_scratch(stream), rhs_scratch(stream), pointers(stream);
  Matrix l, r;
  STRATA_RETURN_IF_ERROR(prepare(lhs, false, lb, lf, lc, gemm_elem, stream, lhs_scratch, l));
  STRATA_RETURN_IF_ERROR(prepare(rhs, true, rb, rf, rc, gemm_elem, stream, rhs_scratch, r));
  cublasOperation_t ta, tb;
  int64_t lda = 0, ldb = 0;
  STRATA_CHECK(gemm_layout(r, true, ta, lda) && gemm_layout(l, false, tb, ldb), "dot: prepared operands are not matrices");
  const int m = static_cast<int>(cols), n = static_cast<int>(rows), k = static_cast<int>(depth);
  const int ldc = static_cast<int>(std::max<int64_t>(cols, 1));
  const cudaDataType_t ab_type = cuda_type(gemm_elem), c_type = cuda_type(out_elem);
  const float alpha = 1.0f, beta = 0.0f;
  STRATA_CUBLAS_CALL(cublasSetStream(handle, stream));

  if (batch == 1) {
    STRATA_CUBLAS_CALL(cublasGemmEx(handle, ta, tb, m, n, k, &alpha, r.data, ab_type, static_cast<int>(lda), l.data,
                                    ab_type, static_cast<int>(ldb), &beta, out, c_type, ldc, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
    return Status::ok();
  }
  // Output batch strides: the output is [batch dims..., rows, cols] row-major.
  const size_t nb = lb.size();
  std::vector<int64_t> out_strides(nb);
  int64_t stride = rows * cols;
  for (size_t i = nb; i-- > 0;) {
    out_strides[i] = stride;
    stride *= out_shape[i];
  }
  // One stride per operand when the batch dims merge in all three at once.
  kernels::BatchLayout layout;
  for (size_t i = 0; i < nb; ++i) {
    const int64_t size = out_shape[i];
    if (size == 1) continue;
    if (layout.rank > 0 && layout.a_stride[layout.rank - 1] == r.batch_strides[i] * size &&
        layout.b_stride[layout.rank - 1] == l.batch_strides[i] * size &&
        layout.c_stride[layout.rank - 1] == out_strides[i] * size) {
      layout.shape[layout.rank - 1] *= size;
      layout.a_stride[layout.rank - 1] = r.batch_strides[i];
      layout.b_stride[layout.rank - 1] = l.batch_strides[i];
      layout.c_stride[layout.rank - 1] = out_strides[i];
      continue;
    }
    layout.shape[layout.rank] = size;
    layout.a_stride[layout.rank] = r.batch_strides[i];
    layout.b_stride[layout.rank] = l.batch_strides[i];
    layout.c_stride[layout.rank] = out_strides[i];
    ++layout.rank;
  }
  if (layout.rank == 1) {
    STRATA_CUBLAS_CALL(cublasGemmStridedBatchedEx(
        handle, ta, tb, m, n, k, &alpha, r.data, ab_type, static_cast<int>(lda), layout.a_stride[0], l.data, ab_type,
        static_cast<int>(ldb), layout.b_stride[0], &beta, out, c_type, ldc, layout.c_stride[0],
        static_cast<int>(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return Status::ok();
  }
  if (layout.rank == 2 && layout.shape[0] <= 64 && !pointer_batches) {
    // Two batch levels (e.g. batch x heads of a [B, S, N, D] tensor): a strided batch over the
    // inner level per outer index beats building pointer arrays.
    const int64_t ab = elem_bytes(gemm_elem), cb = elem_bytes(out_elem);
    for (int64_t i = 0; i < layout.shape[0]; ++i) {
      STRATA_CUBLAS_CALL(cublasGemmStridedBatchedEx(
          handle, ta, tb, m, n, k, &alpha, static_cast<const char*>(r.data) + i * layout.a_stride[0] * ab, ab_type,
          static_cast<int>(lda), layout.a_stride[1], static_cast<const char*>(l.data) + i * layout.b_stride[0] * ab,
          ab_type, static_cast<int>(ldb), layout.b_stride[1], &beta,
          static_cast<char*>(out) + i * layout.c_stride[0] * cb, c_type, ldc, layout.c_stride[1],
          static_cast<int>(layout.shape[1]), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return Status::ok();
  }
  STRATA_RETURN_IF_ERROR(pointers.allocate(3 * batch * static_cast<int64_t>(sizeof(void*))));
  void** base = static_cast<void**>(pointers.get());
  const void** a_ptrs = static_cast<const void**>(static_cast<void*>(base));
  const void** b_ptrs = static_cast<const void**>(static_cast<void*>(base + batch));
  void** c_ptrs = base + 2 * batch;
  STRATA_RETURN_IF_ERROR(kernels::batch_pointers(layout, batch, r.data, elem_bytes(gemm_elem), l.data,
                                                 elem_bytes(gemm_elem), out, elem_bytes(out_elem), a_ptrs, b_ptrs,
                                                 c_ptrs, stream));
  STRATA_CUBLAS_CALL(cublasGemmBatchedEx(handle, ta, tb, m, n, k, &alpha, a_ptrs, ab_type, static_cast<int>(lda),
                                         b_ptrs, ab_type, static_cast<int>(ldb), &beta, c_ptrs, c_type, ldc,
                                         static_cast<int>(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return Status::ok();
}

}  // namespace strata::runtime::cuda
