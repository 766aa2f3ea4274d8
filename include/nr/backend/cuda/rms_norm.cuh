// nr/backend/cuda/rms_norm.cuh — RMSNorm on the device, forward and backward (ops/rms_norm.hpp).
//
// Include the headers under nr/backend/cuda/ only from .cu files compiled by nvcc (target nr::cuda).
//
//   rstd[r] = 1 / sqrt(mean_c x[r, c]^2 + eps)        y[r, c] = x[r, c] * rstd[r] * w[c]
//   x, y (R, C); w (C,); rstd (R,) written by the forward and saved for backward.
//
// Backward, gradients ACCUMULATED with +=, G = dL/dy (R, C), saved x, w, rstd; per row r:
//   dx[k] += rstd G[k] w[k] - rstd^3 x[k] / C * sum_j G[j] w[j] x[j]
//   dw[c] += sum_r G[r, c] x[r, c] rstd[r]          (column_sum_acc)
// One block of row_block threads per row; the row sums (of x^2 and of G w x) go through CUB's
// BlockReduce in float (the CPU accumulates them in double).
#pragma once

#include <cub/block/block_reduce.cuh>

#include <cstdint>

#include "nr/backend/cuda/launch.cuh"

namespace nr::cuda {

namespace kernels {

template <int BLOCK>
__global__ void rms_norm_forward(float* __restrict__ y, float* __restrict__ rstd, const float* __restrict__ x,
                                 const float* __restrict__ w, int64_t C, float eps) {
  using Reduce = cub::BlockReduce<float, BLOCK>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ float row_rstd;
  const int64_t r = blockIdx.x;
  const float* xr = x + r * C;
  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += BLOCK) ss += xr[c] * xr[c];
  const float total = Reduce(tmp).Sum(ss);
  if (threadIdx.x == 0) {
    row_rstd = rsqrtf(total / static_cast<float>(C) + eps);
    rstd[r] = row_rstd;
  }
  __syncthreads();
  const float s = row_rstd;
  float* yr = y + r * C;
  for (int64_t c = threadIdx.x; c < C; c += BLOCK) yr[c] = (xr[c] * s) * w[c];
}

template <int BLOCK>
__global__ void rms_norm_backward_dx(float* __restrict__ dx, const float* __restrict__ g, const float* __restrict__ x,
                                     const float* __restrict__ w, const float* __restrict__ rstd, int64_t C) {
  using Reduce = cub::BlockReduce<float, BLOCK>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ float row_k;
  const int64_t r = blockIdx.x;
  const float* gr = g + r * C;
  const float* xr = x + r * C;
  const float s = rstd[r];
  float dot = 0.0f;  // sum_j G[j] w[j] x[j]
  for (int64_t c = threadIdx.x; c < C; c += BLOCK) dot += gr[c] * w[c] * xr[c];
  const float total = Reduce(tmp).Sum(dot);
  if (threadIdx.x == 0) row_k = s * s * s * total / static_cast<float>(C);  // rstd^3 dot / C
  __syncthreads();
  const float k = row_k;
  float* dxr = dx + r * C;
  for (int64_t c = threadIdx.x; c < C; c += BLOCK) dxr[c] += s * gr[c] * w[c] - k * xr[c];
}

}  // namespace kernels

// y (R, C), rstd (R,) from x (R, C) and w (C,).
inline void rms_norm_forward(Context& ctx, float* y, float* rstd, const float* x, const float* w, int64_t R, int64_t C,
                             float eps) {
  if (R == 0 || C == 0) return;
  kernels::rms_norm_forward<row_block><<<static_cast<unsigned>(R), row_block, 0, ctx.stream()>>>(y, rstd, x, w, C, eps);
  NR_CUDA_CHECK_LAUNCH();
}

// dx (R, C) += ..., dw (C,) += ... (either may be null).
inline void rms_norm_backward(Context& ctx, float* dx, float* dw, const float* g, const float* x, const float* w,
                              const float* rstd, int64_t R, int64_t C) {
  if (R == 0 || C == 0) return;
  if (dx) {
    kernels::rms_norm_backward_dx<row_block><<<static_cast<unsigned>(R), row_block, 0, ctx.stream()>>>(dx, g, x, w, rstd, C);
    NR_CUDA_CHECK_LAUNCH();
  }
  if (dw) column_sum_acc(ctx, g, x, rstd, dw, R, C, 1.0f);
}

}  // namespace nr::cuda
