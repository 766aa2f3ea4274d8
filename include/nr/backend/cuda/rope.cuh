// nr/backend/cuda/rope.cuh — rotary position embedding on the device, Hugging Face "rotate_half"
// convention, forward and backward (ops/rope.hpp).
//
// Include the headers under nr/backend/cuda/ only from .cu files compiled by nvcc (target nr::cuda).
//
// x, out (N, T, H*D): H heads of size D; in each head the pair i = (x1_i, x2_i) = (x[i], x[i+D/2])
// is rotated by a = (offset + t) * inv_freq[i], inv_freq[i] = 1 / theta^(2i / D):
//   out1_i = x1_i cos a - x2_i sin a          out2_i = x2_i cos a + x1_i sin a
// Backward (+=), the inverse rotation of G:
//   dx1_i += G1_i cos a + G2_i sin a          dx2_i += G2_i cos a - G1_i sin a
//
// The cos / sin tables (T, D/2) are built on the host with exactly the float arithmetic of
// nr::make_rope_table (ops/rope.hpp), then uploaded, so that both backends rotate by the same
// float angles; the tests compare the tables bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "nr/core/tensor.hpp"
#include "nr/backend/cuda/device_tensor.cuh"
#include "nr/backend/cuda/launch.cuh"

namespace nr::cuda {

// cos / sin of (offset + t) * inv_freq[i] for t < T, i < D/2, on the device.
struct DeviceRopeTable {
  int64_t T = 0, D = 0, offset = 0;
  double theta = 0.0;
  DeviceTensor cos;  // (T, D/2)
  DeviceTensor sin;  // (T, D/2)
};

// The host tables, computed as make_rope_table in ops/rope.hpp does (keep the two identical).
inline void rope_host_tables(int64_t T, int64_t D, double theta, int64_t offset, Tensor& cos_t, Tensor& sin_t) {
  const int64_t half = D / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[static_cast<size_t>(i)] =
        1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / static_cast<float>(D));
  cos_t = Tensor::empty(Shape{T, half});
  sin_t = Tensor::empty(Shape{T, half});
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(offset + t) * inv_freq[static_cast<size_t>(i)];
      cos_t.data()[t * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin_t.data()[t * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
}

inline DeviceRopeTable make_device_rope_table(Context& ctx, int64_t T, int64_t D, double theta, int64_t offset) {
  if (D <= 0 || D % 2 != 0) throw ShapeError(fmt::format("cuda::rope: head size {} must be even and positive", D));
  if (!(theta > 0.0) || !std::isfinite(theta))
    throw ValueError(fmt::format("cuda::rope: theta must be a finite positive number, got {}", theta));
  if (offset < 0) throw ValueError(fmt::format("cuda::rope: position offset must be >= 0, got {}", offset));
  Tensor c, s;
  rope_host_tables(T, D, theta, offset, c, s);
  return DeviceRopeTable{T, D, offset, theta, DeviceTensor::from_host(ctx, c), DeviceTensor::from_host(ctx, s)};
}

namespace kernels {

// One thread per pair (n, t, h, i); BACKWARD selects the inverse rotation and accumulation.
template <bool BACKWARD>
__global__ void rope(float* __restrict__ out, const float* __restrict__ x, const float* __restrict__ cos,
                     const float* __restrict__ sin, int64_t N, int64_t T, int64_t H, int64_t D) {
  const int64_t half = D / 2;
  const int64_t pairs = N * T * H * half;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < pairs;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = p % half;
    const int64_t row = p / half;  // (n * T + t) * H + h
    const int64_t t = (row / H) % T;
    const int64_t base = row * D;
    const float c = cos[t * half + i], s = sin[t * half + i];
    const float a1 = x[base + i], a2 = x[base + half + i];
    if constexpr (!BACKWARD) {
      out[base + i] = a1 * c - a2 * s;
      out[base + half + i] = a2 * c + a1 * s;
    } else {
      out[base + i] += a1 * c + a2 * s;
      out[base + half + i] += a2 * c - a1 * s;
    }
  }
}

}  // namespace kernels

// out (N, T, H*D) = rotation of x (N, T, H*D) by the table's angles (table.T == T, table.D == D).
inline void rope_forward(Context& ctx, float* out, const float* x, const DeviceRopeTable& tab, int64_t N, int64_t H) {
  const int64_t n = N * tab.T * H * (tab.D / 2);
  if (n == 0) return;
  kernels::rope<false><<<elementwise_grid(n), elementwise_block, 0, ctx.stream()>>>(out, x, tab.cos.data(), tab.sin.data(),
                                                                                    N, tab.T, H, tab.D);
  NR_CUDA_CHECK_LAUNCH();
}

// dx (N, T, H*D) += inverse rotation of G (N, T, H*D).
inline void rope_backward(Context& ctx, float* dx, const float* g, const DeviceRopeTable& tab, int64_t N, int64_t H) {
  const int64_t n = N * tab.T * H * (tab.D / 2);
  if (n == 0) return;
  kernels::rope<true><<<elementwise_grid(n), elementwise_block, 0, ctx.stream()>>>(dx, g, tab.cos.data(), tab.sin.data(),
                                                                                   N, tab.T, H, tab.D);
  NR_CUDA_CHECK_LAUNCH();
}

}  // namespace nr::cuda
