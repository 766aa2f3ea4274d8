// nr/backend/cuda/launch.cuh — launch sizes shared by the kernels, the column-sum reduction, and
// F32 <-> BF16 conversion.
//
// Include the headers under nr/backend/cuda/ only from .cu files compiled by nvcc (target nr::cuda).
//
// Elementwise kernels use grid-stride loops over int64 indices with `elementwise_block`
// threads per block and at most `max_grid` blocks. Row kernels (RMSNorm, softmax,
// cross-entropy) use one block of `row_block` threads per row and CUB's BlockReduce.
//
// Kernels in these headers are templates (often on their block size): a header-only library may
// be included by several .cu files of one program, and a template kernel is defined once.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "nr/backend/cuda/check.cuh"
#include "nr/backend/cuda/context.cuh"

namespace nr::cuda {

inline constexpr int elementwise_block = 256;
inline constexpr int row_block = 256;
inline constexpr int64_t max_grid = 65536;

// Blocks for n elements, grid-stride beyond max_grid * elementwise_block.
inline unsigned elementwise_grid(int64_t n) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + elementwise_block - 1) / elementwise_block, 1, max_grid));
}

namespace kernels {

// d[c] += s * sum_r g[r, c] * (w ? w[r, c] : 1) * (rs ? rs[r] : 1) for g, w (R, C), rs (R,).
// Block (32, 8): 32 consecutive columns (coalesced reads), 8 row phases summed through shared
// memory in a fixed order, so the result is deterministic.
template <int ROWS = 8>
__global__ void column_sum_acc(const float* __restrict__ g, const float* __restrict__ w, const float* __restrict__ rs,
                               float* __restrict__ d, int64_t R, int64_t C, float s) {
  __shared__ float partial[ROWS][32];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  float acc = 0.0f;
  if (c < C)
    for (int64_t r = threadIdx.y; r < R; r += ROWS) {
      float v = g[r * C + c];
      if (w) v *= w[r * C + c];
      if (rs) v *= rs[r];
      acc += v;
    }
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float total = 0.0f;
    for (int k = 0; k < ROWS; ++k) total += partial[k][threadIdx.x];
    d[c] += s * total;
  }
}

template <class From, class To>
__global__ void convert(const From* __restrict__ x, To* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (std::is_same_v<To, __nv_bfloat16>)
      y[i] = __float2bfloat16_rn(static_cast<float>(x[i]));
    else
      y[i] = static_cast<To>(__bfloat162float(x[i]));
  }
}

}  // namespace kernels

// d (C,) += s * column sums of g (R, C), optionally weighted by w (R, C) and a row scale rs (R,).
inline void column_sum_acc(Context& ctx, const float* g, const float* w, const float* rs, float* d, int64_t R,
                           int64_t C, float s) {
  if (R == 0 || C == 0) return;
  const dim3 block(32, 8);
  const unsigned grid = static_cast<unsigned>((C + 31) / 32);
  kernels::column_sum_acc<8><<<grid, block, 0, ctx.stream()>>>(g, w, rs, d, R, C, s);
  NR_CUDA_CHECK_LAUNCH();
}

// y (n) = x (n) rounded to BF16 (round to nearest even).
inline void to_bf16(Context& ctx, const float* x, __nv_bfloat16* y, int64_t n) {
  if (n == 0) return;
  kernels::convert<float, __nv_bfloat16><<<elementwise_grid(n), elementwise_block, 0, ctx.stream()>>>(x, y, n);
  NR_CUDA_CHECK_LAUNCH();
}

// y (n) = x (n) widened to F32 (exact).
inline void to_f32(Context& ctx, const __nv_bfloat16* x, float* y, int64_t n) {
  if (n == 0) return;
  kernels::convert<__nv_bfloat16, float><<<elementwise_grid(n), elementwise_block, 0, ctx.stream()>>>(x, y, n);
  NR_CUDA_CHECK_LAUNCH();
}

}  // namespace nr::cuda
