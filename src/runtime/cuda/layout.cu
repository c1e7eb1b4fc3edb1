// Layout kernels: one strided copy serves transpose, broadcast, slice, pad, concat, reshape and
// casts; reductions over any set of axes, in fixed summation order (no atomics) for reproducibility.
#include <algorithm>
#include <vector>

#include "device_util.cuh"
#include "kernels.h"

namespace strata::runtime::cuda::kernels {
namespace {

using device::grid_for;
using device::kThreads;
using device::load;
using device::offset_of;
using device::store;

// Drops size-1 dims and merges neighbouring dims that are contiguous in every view.
void collapse(View* views, int count) {
  View& first = views[0];
  int32_t out = 0;
  for (int32_t d = 0; d < first.rank; ++d) {
    if (first.shape[d] == 1) continue;
    bool merge = out > 0;
    for (int k = 0; k < count && merge; ++k) {
      merge = views[k].stride[out - 1] == views[k].stride[d] * views[k].shape[d];
    }
    for (int k = 0; k < count; ++k) {
      if (merge) {
        views[k].shape[out - 1] *= views[k].shape[d];
        views[k].stride[out - 1] = views[k].stride[d];
      } else {
        views[k].shape[out] = views[k].shape[d];
        views[k].stride[out] = views[k].stride[d];
      }
    }
    if (!merge) ++out;
  }
  for (int k = 0; k < count; ++k) {
    views[k].rank = out;
    if (out == 0) {  // a single element
      views[k].rank = 1;
      views[k].shape[0] = 1;
      views[k].stride[0] = 1;
    }
  }
}

template <typename T>
__global__ void copy_same_kernel(T* dst, View dv, const T* src, View sv, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    dst[offset_of(dv, i)] = src[offset_of(sv, i)];
  }
}

// Under 2^31 elements into a contiguous destination (transpose, slice, broadcast): 32-bit index
// arithmetic on the source side only.
template <typename T>
__global__ void gather_copy_kernel(T* dst, const T* src, View sv, uint32_t count) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x) {
    dst[i] = src[device::offset_of32(sv, i)];
  }
}

// A permuting copy whose source is contiguous along dim `a` but the destination along the last
// dim L: 32 x 32 tiles through shared memory, so that both the reads (along a) and the writes
// (along L) are coalesced. blockIdx.z walks the remaining dims.
template <typename T>
__global__ void tiled_permute_kernel(T* dst, View dv, const T* src, View sv, int32_t a, int64_t rest) {
  __shared__ T tile[32][33];
  const int32_t last = dv.rank - 1;
  const int64_t l0 = blockIdx.x * int64_t{32}, a0 = blockIdx.y * int64_t{32};
  for (int64_t z = blockIdx.z; z < rest; z += gridDim.z) {
    int64_t flat = z, sbase = sv.offset, dbase = dv.offset;
    for (int32_t d = last - 1; d >= 0; --d) {
      if (d == a) continue;
      const int64_t i = flat % dv.shape[d];
      flat /= dv.shape[d];
      sbase += i * sv.stride[d];
      dbase += i * dv.stride[d];
    }
    for (int j = threadIdx.y; j < 32; j += blockDim.y) {
      const int64_t ia = a0 + threadIdx.x, il = l0 + j;
      if (ia < dv.shape[a] && il < dv.shape[last]) tile[j][threadIdx.x] = src[sbase + ia * sv.stride[a] + il * sv.stride[last]];
    }
    __syncthreads();
    for (int j = threadIdx.y; j < 32; j += blockDim.y) {
      const int64_t il = l0 + threadIdx.x, ia = a0 + j;
      if (ia < dv.shape[a] && il < dv.shape[last]) dst[dbase + ia * dv.stride[a] + il * dv.stride[last]] = tile[threadIdx.x][j];
    }
    __syncthreads();
  }
}

// Same-type copy of 16-byte words (a view's element is a vector of 16 / elem_bytes values).
__global__ void copy_words_kernel(uint4* dst, View dv, const uint4* src, View sv, uint32_t count) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x) {
    dst[device::offset_of32(dv, i)] = src[device::offset_of32(sv, i)];
  }
}

// Views whose last dim is unit-stride in both, with every other stride, the offsets and the last
// dim's length multiples of `vec` elements, become views of 16-byte words. False when they are not.
bool as_words(View* views, int64_t vec, const void* dst, const void* src) {
  if (reinterpret_cast<uintptr_t>(dst) % 16 != 0 || reinterpret_cast<uintptr_t>(src) % 16 != 0) return false;
  for (int k = 0; k < 2; ++k) {
    const View& v = views[k];
    const int32_t last = v.rank - 1;
    if (v.stride[last] != 1 || v.shape[last] % vec != 0 || v.offset % vec != 0) return false;
    for (int32_t d = 0; d < last; ++d) {
      if (v.stride[d] % vec != 0) return false;
    }
  }
  for (int k = 0; k < 2; ++k) {
    View& v = views[k];
    v.shape[v.rank - 1] /= vec;
    v.offset /= vec;
    for (int32_t d = 0; d < v.rank - 1; ++d) v.stride[d] /= vec;
  }
  return true;
}

// The dim along which v has unit stride, or -1.
int32_t unit_dim(const View& v) {
  for (int32_t d = 0; d < v.rank; ++d) {
    if (v.stride[d] == 1 && v.shape[d] > 1) return d;
  }
  return -1;
}

__global__ void copy_convert_kernel(void* dst, Elem de, View dv, const void* src, Elem se, View sv, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    store(dst, de, offset_of(dv, i), load(src, se, offset_of(sv, i)));
  }
}

__global__ void fill_kernel(void* dst, Elem e, int64_t count, float value) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    store(dst, e, i, value);
  }
}

// One warp per output; the reduced elements are contiguous (the innermost dims).
template <int kKind>
__global__ void reduce_rows_kernel(const void* x, Elem xe, int64_t rows, int64_t n, void* y, Elem ye) {
  const int64_t warp = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= rows) return;
  float acc = kKind == 1 ? -INFINITY : 0.0f;
  for (int64_t j = lane; j < n; j += 32) {
    const float v = load(x, xe, warp * n + j);
    acc = kKind == 1 ? fmaxf(acc, v) : acc + v;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, acc, o);
    acc = kKind == 1 ? fmaxf(acc, w) : acc + w;
  }
  if (lane == 0) store(y, ye, warp, kKind == 2 ? acc / static_cast<float>(n) : acc);
}

// General case, pass 1: thread (o, c) reduces chunk c of output o's elements into partial[c][o].
template <int kKind>
__global__ void reduce_partial_kernel(const void* x, Elem xe, View kept, View red, int64_t outputs, int64_t total,
                                      int64_t chunk, int64_t chunks, float* partial) {
  const int64_t o = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t c = blockIdx.y;
  if (o >= outputs || c >= chunks) return;
  const int64_t base = offset_of(kept, o);
  float acc = kKind == 1 ? -INFINITY : 0.0f;
  const int64_t end = min(total, (c + 1) * chunk);
  for (int64_t r = c * chunk; r < end; ++r) {
    const float v = load(x, xe, base + offset_of(red, r));
    acc = kKind == 1 ? fmaxf(acc, v) : acc + v;
  }
  partial[c * outputs + o] = acc;
}

// Pass 2: y[o] = combine partial[0..chunks)[o] in order.
template <int kKind>
__global__ void reduce_final_kernel(const float* partial, int64_t outputs, int64_t chunks, int64_t total, void* y,
                                    Elem ye) {
  for (int64_t o = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; o < outputs; o += int64_t{gridDim.x} * blockDim.x) {
    float acc = kKind == 1 ? -INFINITY : 0.0f;
    for (int64_t c = 0; c < chunks; ++c) {
      const float v = partial[c * outputs + o];
      acc = kKind == 1 ? fmaxf(acc, v) : acc + v;
    }
    store(y, ye, o, kKind == 2 ? acc / static_cast<float>(total) : acc);
  }
}

template <int kKind>
Status reduce_impl(const void* x, Elem xe, const int64_t* shape, int32_t rank, const bool* reduced, void* y, Elem ye,
                   cudaStream_t stream) {
  // Split x's dims into kept and reduced views (both over x's storage).
  View kept, red;
  int64_t stride = 1;
  std::vector<int64_t> strides(static_cast<size_t>(rank));
  for (int32_t d = rank - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= shape[d];
  }
  bool innermost = true;  // every reduced dim comes after every kept dim of size > 1
  bool seen_reduced = false;
  for (int32_t d = 0; d < rank; ++d) {
    View& v = reduced[d] ? red : kept;
    v.shape[v.rank] = shape[d];
    v.stride[v.rank] = strides[d];
    ++v.rank;
    if (reduced[d]) seen_reduced = true;
    if (!reduced[d] && seen_reduced && shape[d] > 1) innermost = false;
  }
  const int64_t outputs = kept.numel(), total = red.numel();
  if (outputs == 0) return Status::ok();
  if (total == 0) {
    STRATA_RETURN_IF_ERROR(fill(y, ye, outputs, kKind == 1 ? -INFINITY : 0.0f, stream));
    return Status::ok();
  }
  if (innermost && total >= 32) {
    const int64_t threads = outputs * 32;
    reduce_rows_kernel<kKind><<<static_cast<unsigned>((threads + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
        x, xe, outputs, total, y, ye);
    STRATA_CUDA_LAUNCHED("reduce_rows");
    return Status::ok();
  }
  collapse(&kept, 1);
  collapse(&red, 1);
  // Enough (output, chunk) threads to fill the chip, chunks of at least 64 elements.
  int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(total / 64, (int64_t{1} << 18) / outputs));
  chunks = std::min<int64_t>(chunks, 65535);
  const int64_t chunk = (total + chunks - 1) / chunks;
  chunks = (total + chunk - 1) / chunk;
  float* partial = nullptr;
  STRATA_CUDA_CALL(cudaMallocAsync(reinterpret_cast<void**>(&partial), sizeof(float) * outputs * chunks, stream));
  const dim3 grid(static_cast<unsigned>((outputs + kThreads - 1) / kThreads), static_cast<unsigned>(chunks));
  reduce_partial_kernel<kKind><<<grid, kThreads, 0, stream>>>(x, xe, kept, red, outputs, total, chunk, chunks, partial);
  STRATA_CUDA_LAUNCHED("reduce_partial");
  reduce_final_kernel<kKind><<<grid_for(outputs), kThreads, 0, stream>>>(partial, outputs, chunks, total, y, ye);
  STRATA_CUDA_LAUNCHED("reduce_final");
  STRATA_CUDA_CALL(cudaFreeAsync(partial, stream));
  return Status::ok();
}

__global__ void batch_pointers_kernel(BatchLayout layout, int64_t batch, const char* a, int64_t ab, const char* b,
                                      int64_t bb, char* c, int64_t cb, const void** ap, const void** bp, void** cp) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < batch; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t flat = i, ao = 0, bo = 0, co = 0;
    for (int32_t d = layout.rank - 1; d >= 0; --d) {
      const int64_t idx = flat % layout.shape[d];
      flat /= layout.shape[d];
      ao += idx * layout.a_stride[d];
      bo += idx * layout.b_stride[d];
      co += idx * layout.c_stride[d];
    }
    ap[i] = a + ao * ab;
    bp[i] = b + bo * bb;
    cp[i] = c + co * cb;
  }
}

}  // namespace

View contiguous(const int64_t* shape, int32_t rank) {
  View v;
  v.rank = rank;
  int64_t stride = 1;
  for (int32_t d = rank - 1; d >= 0; --d) {
    v.shape[d] = shape[d];
    v.stride[d] = stride;
    stride *= shape[d];
  }
  return v;
}

Status copy_view(void* dst, Elem de, View dv, const void* src, Elem se, View sv, cudaStream_t stream) {
  STRATA_CHECK(dv.rank == sv.rank, "copy_view: ranks differ");
  for (int32_t d = 0; d < dv.rank; ++d) STRATA_CHECK(dv.shape[d] == sv.shape[d], "copy_view: shapes differ");
  const int64_t count = dv.numel();
  if (count == 0) return Status::ok();
  View views[2] = {dv, sv};
  collapse(views, 2);
  const bool dst_flat = views[0].rank == 1 && views[0].stride[0] == 1;
  if (de == se && dst_flat && views[1].rank == 1 && views[1].stride[0] == 1) {
    const int64_t b = elem_bytes(de);
    STRATA_CUDA_CALL(cudaMemcpyAsync(static_cast<char*>(dst) + views[0].offset * b,
                                     static_cast<const char*>(src) + views[1].offset * b,
                                     static_cast<size_t>(count * b), cudaMemcpyDeviceToDevice, stream));
    return Status::ok();
  }
  // Rows contiguous on both sides (slices, concats, pads, head transposes with the head dim kept
  // last): 16-byte words instead of 2- or 4-byte elements.
  if (de == se && views[0].rank == views[1].rank) {
    View words[2] = {views[0], views[1]};
    const int64_t vec = 16 / elem_bytes(de);
    if (as_words(words, vec, dst, src) && count / vec < (int64_t{1} << 31)) {
      const int64_t n = count / vec;
      copy_words_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<uint4*>(dst), words[0],
                                                               static_cast<const uint4*>(src), words[1],
                                                               static_cast<uint32_t>(n));
      STRATA_CUDA_LAUNCHED("copy_words");
      return Status::ok();
    }
  }
  const int32_t last = views[0].rank - 1;
  const int32_t a = unit_dim(views[1]);
  if (de == se && views[0].stride[last] == 1 && a >= 0 && a != last && views[0].shape[a] >= 16 &&
      views[0].shape[last] >= 16) {
    const int64_t rest = count / (views[0].shape[a] * views[0].shape[last]);
    const dim3 grid(static_cast<unsigned>((views[0].shape[last] + 31) / 32),
                    static_cast<unsigned>((views[0].shape[a] + 31) / 32),
                    static_cast<unsigned>(std::min<int64_t>(rest, 65535)));
    if (grid.y <= 65535) {
      const dim3 block(32, 8);
      if (elem_bytes(de) == 4) {
        tiled_permute_kernel<int32_t><<<grid, block, 0, stream>>>(static_cast<int32_t*>(dst), views[0],
                                                                   static_cast<const int32_t*>(src), views[1], a, rest);
      } else {
        tiled_permute_kernel<uint16_t><<<grid, block, 0, stream>>>(
            static_cast<uint16_t*>(dst), views[0], static_cast<const uint16_t*>(src), views[1], a, rest);
      }
      STRATA_CUDA_LAUNCHED("tiled_permute");
      return Status::ok();
    }
  }
  if (de == se && dst_flat && count < (int64_t{1} << 31)) {
    const int64_t b = elem_bytes(de);
    const auto n = static_cast<uint32_t>(count);
    if (b == 4) {
      gather_copy_kernel<int32_t><<<grid_for(count), kThreads, 0, stream>>>(
          static_cast<int32_t*>(dst) + views[0].offset, static_cast<const int32_t*>(src), views[1], n);
    } else {
      gather_copy_kernel<uint16_t><<<grid_for(count), kThreads, 0, stream>>>(
          static_cast<uint16_t*>(dst) + views[0].offset, static_cast<const uint16_t*>(src), views[1], n);
    }
  } else if (de == se && elem_bytes(de) == 4) {
    copy_same_kernel<int32_t><<<grid_for(count), kThreads, 0, stream>>>(
        static_cast<int32_t*>(dst), views[0], static_cast<const int32_t*>(src), views[1], count);
  } else if (de == se) {
    copy_same_kernel<uint16_t><<<grid_for(count), kThreads, 0, stream>>>(
        static_cast<uint16_t*>(dst), views[0], static_cast<const uint16_t*>(src), views[1], count);
  } else {
    copy_convert_kernel<<<grid_for(count), kThreads, 0, stream>>>(dst, de, views[0], src, se, views[1], count);
  }
  STRATA_CUDA_LAUNCHED("copy_view");
  return Status::ok();
}

Status fill(void* dst, Elem elem, int64_t count, float value, cudaStream_t stream) {
  if (count == 0) return Status::ok();
  fill_kernel<<<grid_for(count), kThreads, 0, stream>>>(dst, elem, count, value);
  STRATA_CUDA_LAUNCHED("fill");
  return Status::ok();
}

Status reduce(ReduceKind kind, const void* x, Elem xe, const int64_t* shape, int32_t rank, const bool* reduced, void* y,
              Elem ye, cudaStream_t stream) {
  switch (kind) {
    case ReduceKind::sum: return reduce_impl<0>(x, xe, shape, rank, reduced, y, ye, stream);
    case ReduceKind::max: return reduce_impl<1>(x, xe, shape, rank, reduced, y, ye, stream);
    case ReduceKind::mean: return reduce_impl<2>(x, xe, shape, rank, reduced, y, ye, stream);
  }
  return make_error("", "", "reduce: unknown kind");
}

Status batch_pointers(const BatchLayout& layout, int64_t batch, const void* a, int64_t a_bytes, const void* b,
                      int64_t b_bytes, void* c, int64_t c_bytes, const void** a_ptrs, const void** b_ptrs,
                      void** c_ptrs, cudaStream_t stream) {
  if (batch == 0) return Status::ok();
  batch_pointers_kernel<<<grid_for(batch), kThreads, 0, stream>>>(
      layout, batch, static_cast<const char*>(a), a_bytes, static_cast<const char*>(b), b_bytes, static_cast<char*>(c),
      c_bytes, a_ptrs, b_ptrs, c_ptrs);
  STRATA_CUDA_LAUNCHED("batch_pointers");
  return Status::ok();
}

}  // namespace strata::runtime::cuda::kernels
