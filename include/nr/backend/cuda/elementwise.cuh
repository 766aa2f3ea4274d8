// nr/backend/cuda/elementwise.cuh — add, sub, mul of two tensors and scaling, forward and backward, on
// the device, with the conventions of ops/elementwise.hpp.
//
// Include the headers under nr/backend/cuda/ only from .cu files compiled by nvcc (target nr::cuda).
//
//   add: y = a + b     sub: y = a - b     mul: y = a * b     scale: y = s a
//   a, y (R, C) (any shape seen as R rows of C); b either (R, C) like a, or (C,) broadcast over
//   the rows (`broadcast` true).
//
// Backward, gradients ACCUMULATED with +=, G = dL/dy (R, C), saved: a and b (mul only):
//   add: da += G      db += G          sub: da += G    db -= G
//   mul: da += G * b  db += G * a      scale: da += s G
// A broadcast b receives the column sums over the rows (column_sum_acc, launch.cuh, summed in
// float in a fixed order; the CPU sums in double).
#pragma once

#include <cstdint>

#include "nr/backend/cuda/launch.cuh"

namespace nr::cuda {

enum class BinaryKind { add, sub, mul };

namespace kernels {

template <BinaryKind KIND>
__global__ void binary(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y, int64_t n,
                       int64_t C, bool broadcast) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float bv = b[broadcast ? i % C : i];
    if constexpr (KIND == BinaryKind::add) y[i] = a[i] + bv;
    if constexpr (KIND == BinaryKind::sub) y[i] = a[i] - bv;
    if constexpr (KIND == BinaryKind::mul) y[i] = a[i] * bv;
  }
}

// y[i] = s x[i] (accumulate false) or y[i] += s x[i] (accumulate true).
template <bool ACCUMULATE>
__global__ void scale(const float* __restrict__ x, float s, float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (ACCUMULATE)
      y[i] += s * x[i];
    else
      y[i] = s * x[i];
  }
}

// d[i] += g[i] * w[broadcast ? i % C : i].
template <int = 0>
__global__ void mul_acc(const float* __restrict__ g, const float* __restrict__ w, float* __restrict__ d, int64_t n,
                        int64_t C, bool broadcast) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    d[i] += g[i] * w[broadcast ? i % C : i];
}

}  // namespace kernels

// y (R*C) = a (R*C) op b (R*C, or C when broadcast).
inline void binary_forward(Context& ctx, BinaryKind kind, const float* a, const float* b, float* y, int64_t R,
                           int64_t C, bool broadcast) {
  const int64_t n = R * C;
  if (n == 0) return;
  const unsigned grid = elementwise_grid(n);
  cudaStream_t s = ctx.stream();
  switch (kind) {
    case BinaryKind::add: kernels::binary<BinaryKind::add><<<grid, elementwise_block, 0, s>>>(a, b, y, n, C, broadcast); break;
    case BinaryKind::sub: kernels::binary<BinaryKind::sub><<<grid, elementwise_block, 0, s>>>(a, b, y, n, C, broadcast); break;
    case BinaryKind::mul: kernels::binary<BinaryKind::mul><<<grid, elementwise_block, 0, s>>>(a, b, y, n, C, broadcast); break;
  }
  NR_CUDA_CHECK_LAUNCH();
}

// y (n) = s x (n).
inline void scale_forward(Context& ctx, const float* x, float s, float* y, int64_t n) {
  if (n == 0) return;
  kernels::scale<false><<<elementwise_grid(n), elementwise_block, 0, ctx.stream()>>>(x, s, y, n);
  NR_CUDA_CHECK_LAUNCH();
}

// y (n) += s x (n).
inline void axpy(Context& ctx, float s, const float* x, float* y, int64_t n) {
  if (n == 0) return;
  kernels::scale<true><<<elementwise_grid(n), elementwise_block, 0, ctx.stream()>>>(x, s, y, n);
  NR_CUDA_CHECK_LAUNCH();
}

// dx (n) += s G (n): the backward of scale.
inline void scale_backward(Context& ctx, const float* g, float s, float* dx, int64_t n) { axpy(ctx, s, g, dx, n); }

// da, db += ... for y = a op b (see the header comment); either gradient may be null.
// a and b are read for mul only.
inline void binary_backward(Context& ctx, BinaryKind kind, const float* g, const float* a, const float* b, float* da,
                            float* db, int64_t R, int64_t C, bool broadcast) {
  const int64_t n = R * C;
  if (n == 0) return;
  const unsigned grid = elementwise_grid(n);
  if (da) {
    if (kind == BinaryKind::mul) {
      kernels::mul_acc<<<grid, elementwise_block, 0, ctx.stream()>>>(g, b, da, n, C, broadcast);
      NR_CUDA_CHECK_LAUNCH();
    } else {
      axpy(ctx, 1.0f, g, da, n);
    }
  }
  if (db) {
    const float sign = kind == BinaryKind::sub ? -1.0f : 1.0f;
    if (broadcast) {
      column_sum_acc(ctx, g, kind == BinaryKind::mul ? a : nullptr, nullptr, db, R, C, sign);
    } else if (kind == BinaryKind::mul) {
      kernels::mul_acc<<<grid, elementwise_block, 0, ctx.stream()>>>(g, a, db, n, C, false);
      NR_CUDA_CHECK_LAUNCH();
    } else {
      axpy(ctx, sign, g, db, n);
    }
  }
}

}  // namespace nr::cuda
