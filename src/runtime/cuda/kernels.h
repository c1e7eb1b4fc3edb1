// Internal to the cuda backend: host-side launchers of the device kernels, on raw device pointers.
// Every launcher enqueues on `stream` and checks the launch; none synchronises. Float math is fp32
// whatever the storage type (bf16 or f32); integer tensors are int32.
#pragma once

#include <cuda_runtime.h>

#include "cuda_common.h"

namespace strata::runtime::cuda::kernels {

// --- layout (layout.cu) ------------------------------------------------------------------------
// dst_view[i] = src_view[i] for every index of their common shape (converting element types).
Status copy_view(void* dst, Elem dst_elem, View dst_view, const void* src, Elem src_elem, View src_view,
                 cudaStream_t stream);
// A contiguous row-major view of `shape`.
View contiguous(const int64_t* shape, int32_t rank);
Status fill(void* dst, Elem elem, int64_t count, float value, cudaStream_t stream);

enum class ReduceKind { sum, max, mean };
// y[kept] = reduce over the dims where `reduced[d]` of x[shape]; y is contiguous over the kept dims.
Status reduce(ReduceKind kind, const void* x, Elem x_elem, const int64_t* shape, int32_t rank, const bool* reduced,
              void* y, Elem y_elem, cudaStream_t stream);

// --- elementwise (elementwise.cu) --------------------------------------------------------------
enum class Unary { neg, exp, log, tanh, sqrt, rsqrt, relu, gelu, scale, step, indicator };
Status unary(Unary op, float scalar, const void* x, Elem x_elem, void* y, Elem y_elem, int64_t count,
             cudaStream_t stream);
enum class Binary { add, sub, mul, div, max, gelu_grad };
// y[shape] = op(a_view, b_view); the views are a's and b's (broadcast) strides over y's shape.
Status binary(Binary op, const void* a, Elem a_elem, View a_view, const void* b, Elem b_elem, View b_view, void* y,
              Elem y_elem, cudaStream_t stream);
// dst = dst + factor * src, elementwise over `count` (in place on dst).
Status axpy(void* dst, Elem dst_elem, const void* src, Elem src_elem, float factor, int64_t count, cudaStream_t stream);
Status scale_in_place(void* dst, Elem elem, float factor, int64_t count, cudaStream_t stream);

struct AdamParams {
  float lr, beta1, beta2, eps, weight_decay, bias1, bias2;  // bias1 = 1 - beta1^t, bias2 = 1 - beta2^t
};
// AdamW over `count` parameters into fp32 param_out, m_out, v_out; when param_bf16 is not null it
// also gets param_out rounded to bf16 (the copy the next forward's GEMMs read), in the same pass.
Status adam(const AdamParams& p, const void* param, Elem param_elem, const void* grad, Elem grad_elem, const void* m,
            Elem m_elem, const void* v, Elem v_elem, void* param_out, void* m_out, void* v_out, void* param_bf16,
            int64_t count, cudaStream_t stream);
// One tensor of a batched AdamW update: fp32 param, m, v and outputs, a bf16 or fp32 gradient,
// and the bf16 copy of the new parameters when param_bf16 is not null (as adam()).
struct AdamTensor {
  const void* param = nullptr;
  const void* grad = nullptr;
  Elem grad_elem = Elem::f32;
  const void* m = nullptr;
  const void* v = nullptr;
  void* param_out = nullptr;
  void* m_out = nullptr;
  void* v_out = nullptr;
  void* param_bf16 = nullptr;
  int64_t count = 0;
};
// Whether adam_batch takes the tensor: its gradient bf16 or fp32, every pointer 16-byte aligned.
bool adam_batchable(const AdamTensor& t);
// AdamW over n tensors in one launch per kAdamBatch of them (a few launches instead of one or two
// a tensor, and no half-empty last wave per tensor); every value bit for bit what adam() writes.
inline constexpr int kAdamBatch = 48;
Status adam_batch(const AdamParams& p, const AdamTensor* tensors, int64_t n, cudaStream_t stream);
Status sgd(float lr, const void* param, Elem param_elem, const void* grad, Elem grad_elem, void* param_out,
           int64_t count, cudaStream_t stream);

// --- neural-network ops (nn.cu) ----------------------------------------------------------------
// Bad ids or labels clamp and set *error_flag = flag_code (read back at the next synchronisation).
Status gather(const void* table, Elem table_elem, const int32_t* ids, int64_t id_count, int64_t vocab, int64_t row,
              void* out, Elem out_elem, int32_t* error_flag, int32_t flag_code, cudaStream_t stream);
// Deterministic scatter-add: ids are sorted (stable) and each row is summed in token order.
Status gather_grad(const int32_t* ids, int64_t id_count, const void* dy, Elem dy_elem, int64_t vocab, int64_t row,
                   void* dtable, Elem dtable_elem, int32_t* error_flag, int32_t flag_code, cudaStream_t stream);
// Over the middle dim of x seen as [outer, n, inner].
Status softmax(const void* x, Elem x_elem, int64_t outer, int64_t n, int64_t inner, void* y, Elem y_elem,
               cudaStream_t stream);
// y = softmax(x + bias) over the last dim of x[rows, n]: bias element j of row r at
// offset_of(bias_rows, r) + j * bias_col (bias_rows: a view over x's leading dims, strides 0 where
// the bias broadcasts). The causal mask folded into attention's softmax.
Status softmax_bias(const void* x, Elem x_elem, const void* bias, Elem bias_elem, const View& bias_rows,
                    int64_t bias_col, int64_t rows, int64_t n, void* y, Elem y_elem, cudaStream_t stream);
Status softmax_grad(const void* y, Elem y_elem, const void* dy, Elem dy_elem, int64_t outer, int64_t n, int64_t inner,
                    void* dx, Elem dx_elem, cudaStream_t stream);
Status layer_norm(const void* x, Elem x_elem, const void* gamma, Elem gamma_elem, const void* beta, Elem beta_elem,
                  int64_t rows, int64_t h, float eps, void* y, Elem y_elem, cudaStream_t stream);
Status layer_norm_grad(const void* x, Elem x_elem, const void* gamma, Elem gamma_elem, const void* dy, Elem dy_elem,
                       int64_t rows, int64_t h, float eps, void* dx, Elem dx_elem, void* dgamma, Elem dgamma_elem,
                       void* dbeta, Elem dbeta_elem, cudaStream_t stream);
// loss[0] = mean over rows of -log softmax(logits)[label] (fp32 scalar).
Status cross_entropy(const void* logits, Elem logits_elem, const int32_t* labels, int64_t rows, int64_t vocab,
                     void* loss, Elem loss_elem, int32_t* error_flag, int32_t flag_code, cudaStream_t stream);
// dlogits = (softmax - onehot) * dloss[0] / rows.
Status cross_entropy_grad(const void* logits, Elem logits_elem, const int32_t* labels, const void* dloss,
                          Elem dloss_elem, int64_t rows, int64_t vocab, void* dlogits, Elem dlogits_elem,
                          int32_t* error_flag, int32_t flag_code, cudaStream_t stream);

// --- fused attention (attention.cu) ------------------------------------------------------------
// q[batch, s, d], k[batch, t, d], v[batch, t, dv], out[batch, s, dv] contiguous in one element type
// (converted to bf16 for the tensor cores, fp32 accumulation), lse[batch, s] fp32; the bias is read
// through `bias_view`, its strides over the scores' [lead..., s, t] (0 where it broadcasts; the
// leading dims multiply to batch). d and dv at most 128.
struct AttentionProblem {
  int64_t batch = 0, s = 0, t = 0, d = 0, dv = 0;
  int64_t heads = 0;  // layout bsnd ([B, S, N, D] tensors, batch = B * N): N; 0 for [..., S, D]
  // Elements between two rows (tokens) of q, k, v and of dq, dk, dv, when they lie in one packed
  // buffer (bsnd: [B, S, 3, N, D], pitch 3 N D; a multiple of 8); 0: each in its own tensor.
  int64_t qkv_pitch = 0;
  float scale = 1.0f;
  const void* bias = nullptr;
  Elem bias_elem = Elem::f32;
  View bias_view;
};
// A bias entry at or below kMaskedBias masks its logit (-inf; the op's definition, see
// ir::kAttentionMaskedBias), so a 64 x 64 (query, key) block of the bias whose every entry is
// masked is skipped exactly, and a row whose every entry is masked gets out 0 and lse -inf.
// (Recomputing P from lse in the backward could not be exact for a row of finite -1e9s: fp32 keeps
// neither the scores nor log T next to 1e9.)
inline constexpr float kMaskedBias = -1e6f;
// Scratch the launchers need (device memory, any contents): the block flags, and for the backward
// an fp32 dq accumulator and the rows' dout . out.
int64_t attention_workspace_bytes(const AttentionProblem& a, bool backward);
Status attention_forward(const AttentionProblem& a, const void* q, const void* k, const void* v, Elem elem, void* out,
                         float* lse, void* workspace, cudaStream_t stream);
Status attention_backward(const AttentionProblem& a, const void* q, const void* k, const void* v, const void* out,
                          const void* dout, const float* lse, Elem elem, void* dq, void* dk, void* dv, void* workspace,
                          cudaStream_t stream);

// --- Dot support (dot_pointers.cu) -------------------------------------------------------------
// For a batched GEMM over arbitrary batch layouts: pointers[i] = base + offset(i) * elem_bytes for
// the three operands, where offset(i) unravels i over batch_shape with each operand's strides.
struct BatchLayout {
  int32_t rank = 0;
  int64_t shape[kMaxRank] = {};
  int64_t a_stride[kMaxRank] = {};
  int64_t b_stride[kMaxRank] = {};
  int64_t c_stride[kMaxRank] = {};
};
Status batch_pointers(const BatchLayout& layout, int64_t batch, const void* a, int64_t a_bytes, const void* b,
                      int64_t b_bytes, void* c, int64_t c_bytes, const void** a_ptrs, const void** b_ptrs,
                      void** c_ptrs, cudaStream_t stream);

}  // namespace strata::runtime::cuda::kernels
