// nr/backend/cuda/embedding.cuh — embedding lookup on the device and its scatter-add backward
// (ops/embedding.hpp).
//
// Include the headers under nr/backend/cuda/ only from .cu files compiled by nvcc (target nr::cuda).
//
//   out[n, c] = W[ids[n], c]          W (V, C); ids (N,) on the device; out (N, C)
// Backward (+=), G = dL/dout (N, C), saved ids:
//   dW[ids[n], c] += G[n, c]          for every token n
// Repeated ids would race under one thread per token, and atomicAdd would make the sums depend
// on timing. Instead the (id, token) pairs are sorted by id with cub::DeviceRadixSort (stable:
// tokens of one id stay in ascending order), and one thread per (run of equal ids, column) adds
// the run's gradients to dW in token order, starting from dW's value: the same additions in the
// same order as the CPU loop, so the result is deterministic and equal to the CPU's.
#pragma once

#include <cub/device/device_radix_sort.cuh>

#include <cstdint>
#include <memory>

#include "nr/backend/cuda/device_tensor.cuh"
#include "nr/backend/cuda/launch.cuh"

namespace nr::cuda {

namespace kernels {

template <int = 0>
__global__ void embedding_forward(float* __restrict__ out, const float* __restrict__ w, const int32_t* __restrict__ ids,
                                  int64_t N, int64_t C) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < N * C;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / C, c = i % C;
    out[i] = w[static_cast<int64_t>(ids[n]) * C + c];
  }
}

template <int = 0>
__global__ void iota(int32_t* __restrict__ v, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    v[i] = static_cast<int32_t>(i);
}

// Threads (p, c) with p the first position of a run of equal sorted ids add the run's rows.
template <int = 0>
__global__ void embedding_backward_runs(float* __restrict__ dw, const float* __restrict__ g,
                                        const int32_t* __restrict__ sorted_ids, const int32_t* __restrict__ tokens,
                                        int64_t N, int64_t C) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < N * C;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = i / C, c = i % C;
    const int32_t id = sorted_ids[p];
    if (p > 0 && sorted_ids[p - 1] == id) continue;  // not the start of a run
    float acc = dw[static_cast<int64_t>(id) * C + c];
    for (int64_t q = p; q < N && sorted_ids[q] == id; ++q) acc += g[static_cast<int64_t>(tokens[q]) * C + c];
    dw[static_cast<int64_t>(id) * C + c] = acc;
  }
}

}  // namespace kernels

// out (N, C) = rows ids (N,) of w (V, C). Check the ids first (DeviceIndices::check_range).
inline void embedding_forward(Context& ctx, float* out, const float* w, const int32_t* ids, int64_t N, int64_t C) {
  if (N == 0 || C == 0) return;
  kernels::embedding_forward<<<elementwise_grid(N * C), elementwise_block, 0, ctx.stream()>>>(out, w, ids, N, C);
  NR_CUDA_CHECK_LAUNCH();
}

// dw (V, C) += scatter of g (N, C) to the rows ids (N,), deterministic (see the header comment).
inline void embedding_backward(Context& ctx, float* dw, const float* g, const int32_t* ids, int64_t N, int64_t V,
                               int64_t C) {
  if (N == 0 || C == 0) return;
  if (N > INT32_MAX) throw ValueError("cuda::embedding_backward: more than 2^31 - 1 tokens");
  int end_bit = 1;
  while (end_bit < 31 && (int64_t{1} << end_bit) < V) ++end_bit;  // ids < V fit in end_bit bits
  const int n = static_cast<int>(N);
  DeviceTensor buffers = DeviceTensor::empty(ctx, Shape{3, N});  // token order, sorted ids, sorted tokens (int32)
  int32_t* tokens_in = reinterpret_cast<int32_t*>(buffers.data());
  int32_t* ids_out = tokens_in + N;
  int32_t* tokens_out = ids_out + N;
  kernels::iota<<<elementwise_grid(N), elementwise_block, 0, ctx.stream()>>>(tokens_in, N);
  NR_CUDA_CHECK_LAUNCH();
  size_t temp_bytes = 0;
  NR_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, ids, ids_out, tokens_in, tokens_out, n, 0, end_bit,
                                                ctx.stream()));
  const std::shared_ptr<detail::DeviceBlock> temp = detail::allocate_block(ctx, temp_bytes);
  NR_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp->ptr, temp_bytes, ids, ids_out, tokens_in, tokens_out, n, 0, end_bit,
                                                ctx.stream()));
  kernels::embedding_backward_runs<<<elementwise_grid(N * C), elementwise_block, 0, ctx.stream()>>>(dw, g, ids_out,
                                                                                                    tokens_out, N, C);
  NR_CUDA_CHECK_LAUNCH();
}

}  // namespace nr::cuda
