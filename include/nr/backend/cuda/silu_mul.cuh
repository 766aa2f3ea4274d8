// nr/backend/cuda/silu_mul.cuh — the SwiGLU core silu(gate) * up on the device, forward and backward
// (ops/gated_activation.hpp, nr::silu_mul).
//
// Include the headers under nr/backend/cuda/ only from .cu files compiled by nvcc (target nr::cuda).
//
//   y = silu(gate) * up,   silu(x) = x s(x),   s(x) = 1 / (1 + e^-x)     gate, up, y (n) any shape
//
// Backward, gradients ACCUMULATED with +=, G = dL/dy, saved: gate and up (the activation is
// recomputed, never stored):
//   dgate += G up s (1 + gate (1 - s))        dup += G silu(gate)
// The sigmoid uses expf (the CPU uses a vectorisable polynomial exp: they differ by a few ulp).
// For large negative x, e^-x overflows to inf and s = 0, so both formulas stay finite.
#pragma once

#include <cstdint>

#include "nr/backend/cuda/launch.cuh"

namespace nr::cuda {

namespace kernels {

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

template <int = 0>
__global__ void silu_mul_forward(const float* __restrict__ gate, const float* __restrict__ up, float* __restrict__ y,
                                 int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float x = gate[i];
    y[i] = x * sigmoid(x) * up[i];
  }
}

template <int = 0>
__global__ void silu_mul_backward(const float* __restrict__ gate, const float* __restrict__ up,
                                  const float* __restrict__ g, float* __restrict__ dgate, float* __restrict__ dup,
                                  int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float x = gate[i];
    const float s = sigmoid(x);
    if (dgate) dgate[i] += g[i] * up[i] * (s * (1.0f + x * (1.0f - s)));
    if (dup) dup[i] += g[i] * (x * s);
  }
}

}  // namespace kernels

// y (n) = silu(gate (n)) * up (n).
inline void silu_mul_forward(Context& ctx, const float* gate, const float* up, float* y, int64_t n) {
  if (n == 0) return;
  kernels::silu_mul_forward<<<elementwise_grid(n), elementwise_block, 0, ctx.stream()>>>(gate, up, y, n);
  NR_CUDA_CHECK_LAUNCH();
}

// dgate (n) += ..., dup (n) += ... (either may be null).
inline void silu_mul_backward(Context& ctx, const float* gate, const float* up, const float* g, float* dgate, float* dup,
                              int64_t n) {
  if (n == 0 || (!dgate && !dup)) return;
  kernels::silu_mul_backward<<<elementwise_grid(n), elementwise_block, 0, ctx.stream()>>>(gate, up, g, dgate, dup, n);
  NR_CUDA_CHECK_LAUNCH();
}

}  // namespace nr::cuda
