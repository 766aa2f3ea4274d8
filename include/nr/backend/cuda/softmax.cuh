// nr/backend/cuda/softmax.cuh — softmax over the last dimension on the device (ops/softmax.hpp), and
// cross-entropy against integer targets with a fused log-softmax (ops/cross_entropy.hpp).
//
// Include the headers under nr/backend/cuda/ only from .cu files compiled by nvcc (target nr::cuda).
//
// Softmax, x, y (R, C):
//   y[r, c] = exp(x[r, c] - m[r]) / sum_j exp(x[r, j] - m[r]),   m[r] = max_j x[r, j]
//   backward (+=), G = dL/dy, saved y:   dx[k] += y[k] (G[k] - sum_c G[c] y[c])
//
// Cross-entropy, logits z (N, V), targets t (N,) on the device, optional weights w (N,):
//   lse[n] = m + log sum_v exp(z[n, v] - m)        nll[n] = lse[n] - z[n, t[n]]
//   loss   = sum_n w[n] nll[n] / wsum              (rows with w[n] = 0 contribute nothing)
//   backward (+=), g = dL/dloss (a device scalar), saved lse (N,):
//   dz[n, v] += g w[n] / wsum (exp(z[n, v] - lse[n]) - [v == t[n]])
// The caller validates the weights and computes wsum on the host, as the CPU op does. The sum
// over rows is cub::DeviceReduce::Sum over the per-row terms. One block per row; row maxima and
// sums go through CUB's BlockReduce in float (the CPU sums in double).
#pragma once

#include <cub/block/block_reduce.cuh>
#include <cub/device/device_reduce.cuh>

#include <cfloat>
#include <cstdint>
#include <memory>

#include "nr/backend/cuda/device_tensor.cuh"
#include "nr/backend/cuda/launch.cuh"

namespace nr::cuda {

namespace kernels {

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Row maximum and sum of exp(x - max), both broadcast to every thread of the block.
template <int BLOCK>
__device__ void row_max_sumexp(const float* __restrict__ xr, int64_t C, float& m, float& sum) {
  using Reduce = cub::BlockReduce<float, BLOCK>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ float shared_m, shared_sum;
  float local = -FLT_MAX;
  for (int64_t c = threadIdx.x; c < C; c += BLOCK) local = fmaxf(local, xr[c]);
  const float mx = Reduce(tmp).Reduce(local, MaxOp{});
  if (threadIdx.x == 0) shared_m = mx;
  __syncthreads();
  m = shared_m;
  float s = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += BLOCK) s += expf(xr[c] - m);
  const float total = Reduce(tmp).Sum(s);  // tmp reuse is safe: the barrier above separates the two
  if (threadIdx.x == 0) shared_sum = total;
  __syncthreads();
  sum = shared_sum;
}

template <int BLOCK>
__global__ void softmax_forward(float* __restrict__ y, const float* __restrict__ x, int64_t C) {
  const int64_t r = blockIdx.x;
  const float* xr = x + r * C;
  float m, sum;
  row_max_sumexp<BLOCK>(xr, C, m, sum);
  const float inv = 1.0f / sum;
  float* yr = y + r * C;
  for (int64_t c = threadIdx.x; c < C; c += BLOCK) yr[c] = expf(xr[c] - m) * inv;
}

template <int BLOCK>
__global__ void softmax_backward(float* __restrict__ dx, const float* __restrict__ g, const float* __restrict__ y,
                                 int64_t C) {
  using Reduce = cub::BlockReduce<float, BLOCK>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ float shared_dot;
  const int64_t r = blockIdx.x;
  const float* gr = g + r * C;
  const float* yr = y + r * C;
  float dot = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += BLOCK) dot += gr[c] * yr[c];
  const float total = Reduce(tmp).Sum(dot);
  if (threadIdx.x == 0) shared_dot = total;
  __syncthreads();
  const float d = shared_dot;
  float* dxr = dx + r * C;
  for (int64_t c = threadIdx.x; c < C; c += BLOCK) dxr[c] += yr[c] * (gr[c] - d);
}

// lse[n], and term[n] = w[n] * nll[n] (0 for a masked row) for the loss sum.
template <int BLOCK>
__global__ void cross_entropy_rows(float* __restrict__ lse, float* __restrict__ term, const float* __restrict__ z,
                                   const int32_t* __restrict__ t, const float* __restrict__ w, int64_t V) {
  const int64_t n = blockIdx.x;
  const float* zn = z + n * V;
  float m, sum;
  row_max_sumexp<BLOCK>(zn, V, m, sum);
  if (threadIdx.x == 0) {
    const float l = m + logf(sum);
    lse[n] = l;
    const float wn = w ? w[n] : 1.0f;
    term[n] = wn == 0.0f ? 0.0f : wn * (l - zn[t[n]]);
  }
}

template <int = 0>
__global__ void divide_scalar(float* __restrict__ out, const float* __restrict__ total, float inv_wsum) {
  out[0] = total[0] * inv_wsum;
}

template <int BLOCK>
__global__ void cross_entropy_backward(float* __restrict__ dz, const float* __restrict__ z, const float* __restrict__ lse,
                                       const int32_t* __restrict__ t, const float* __restrict__ w,
                                       const float* __restrict__ g, float inv_wsum, int64_t V) {
  const int64_t n = blockIdx.x;
  const float k = g[0] * inv_wsum * (w ? w[n] : 1.0f);  // this token's share of the loss
  if (k == 0.0f) return;                                 // masked token: no gradient
  const float* zn = z + n * V;
  float* dn = dz + n * V;
  const float l = lse[n];
  const int32_t target = t[n];
  for (int64_t v = threadIdx.x; v < V; v += BLOCK) dn[v] += k * (expf(zn[v] - l) - (v == target ? 1.0f : 0.0f));
}

}  // namespace kernels

// y (R, C) = softmax of each row of x (R, C).
inline void softmax_forward(Context& ctx, float* y, const float* x, int64_t R, int64_t C) {
  if (R == 0 || C == 0) return;
  kernels::softmax_forward<row_block><<<static_cast<unsigned>(R), row_block, 0, ctx.stream()>>>(y, x, C);
  NR_CUDA_CHECK_LAUNCH();
}

// dx (R, C) += y (G - sum(G y)) row by row.
inline void softmax_backward(Context& ctx, float* dx, const float* g, const float* y, int64_t R, int64_t C) {
  if (R == 0 || C == 0) return;
  kernels::softmax_backward<row_block><<<static_cast<unsigned>(R), row_block, 0, ctx.stream()>>>(dx, g, y, C);
  NR_CUDA_CHECK_LAUNCH();
}

// loss (a device scalar) and lse (N,) from logits z (N, V), targets t (N,) already range-checked,
// weights w (N,) or null, and wsum = sum of the weights (N when w is null), validated by the caller.
inline void cross_entropy_forward(Context& ctx, float* loss, float* lse, const float* z, const int32_t* t,
                                  const float* w, double wsum, int64_t N, int64_t V) {
  if (N == 0 || V == 0) throw ValueError("cuda::cross_entropy_forward: no tokens or an empty vocabulary");
  if (!(wsum > 0.0)) throw ValueError("cuda::cross_entropy_forward: the token weights must have a positive sum");
  DeviceTensor term = DeviceTensor::empty(ctx, Shape{N});
  DeviceTensor total = DeviceTensor::empty(ctx, Shape{1});
  kernels::cross_entropy_rows<row_block><<<static_cast<unsigned>(N), row_block, 0, ctx.stream()>>>(
      lse, term.data(), z, t, w, V);
  NR_CUDA_CHECK_LAUNCH();
  size_t temp_bytes = 0;
  NR_CUDA_CHECK(cub::DeviceReduce::Sum(nullptr, temp_bytes, term.data(), total.data(), N, ctx.stream()));
  const std::shared_ptr<detail::DeviceBlock> temp = detail::allocate_block(ctx, temp_bytes);
  NR_CUDA_CHECK(cub::DeviceReduce::Sum(temp->ptr, temp_bytes, term.data(), total.data(), N, ctx.stream()));
  kernels::divide_scalar<<<1, 1, 0, ctx.stream()>>>(loss, total.data(), static_cast<float>(1.0 / wsum));
  NR_CUDA_CHECK_LAUNCH();
}

// dz (N, V) += g w[n] / wsum (softmax(z[n]) - onehot(t[n])); g is a device scalar.
inline void cross_entropy_backward(Context& ctx, float* dz, const float* z, const float* lse, const int32_t* t,
                                   const float* w, const float* g, double wsum, int64_t N, int64_t V) {
  if (N == 0 || V == 0) return;
  kernels::cross_entropy_backward<row_block><<<static_cast<unsigned>(N), row_block, 0, ctx.stream()>>>(
      dz, z, lse, t, w, g, static_cast<float>(1.0 / wsum), V);
  NR_CUDA_CHECK_LAUNCH();
}

}  // namespace nr::cuda
