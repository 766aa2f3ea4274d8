// nr/backend/cuda/adamw.cuh — one fused AdamW step over all the parameters of a model on the device,
// with the formula of optim/adamw.hpp.
//
// Include the headers under nr/backend/cuda/ only from .cu files compiled by nvcc (target nr::cuda).
//
// For each parameter element p with gradient g, moments m and v, at step t = 1, 2, ...:
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   p = p decay - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//   decay = 1 - lr wd for tensors with 2 or more dimensions (matrices, embeddings), 1 otherwise.
// A row mask (one flag per row, dimension 0) freezes the rows flagged 0: p keeps its value and
// the moments see a zero gradient (m = beta1 m, v = beta2 v), as on the CPU.
// The step constants are computed on the host in double, then rounded to float, as on the CPU.
//
// Fused: every parameter is a segment {p, g, m, v, n, cols, decay flag, row mask}; a table of
// segments and a map from block to (segment, first element) are uploaded once, when the
// optimizer is built, and each step is one kernel launch whatever the number of tensors
// (no cudaMalloc, no host-to-device copy per step).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include <fmt/format.h>

#include "nr/backend/cuda/device_tensor.cuh"
#include "nr/backend/cuda/launch.cuh"

namespace nr::cuda {

struct AdamWSegment {
  float* param = nullptr;           // (n,) device
  const float* grad = nullptr;      // (n,) device
  float* exp_avg = nullptr;         // (n,) device, m
  float* exp_avg_sq = nullptr;      // (n,) device, v
  int64_t numel = 0;
  int64_t cols = 0;                 // elements per row (dimension 0) for the row mask
  int32_t decay = 1;                // 1: decoupled weight decay applies
  const uint8_t* row_mask = nullptr;  // (rows,) device, or null: every row is updated
};

struct AdamWStepConstants {
  float b1, b2, step_size, inv_sqrt_bc2, eps, decay;
};

namespace kernels {

template <int BLOCK, int CHUNK>
__global__ void adamw_step(const AdamWSegment* __restrict__ segments, const int64_t* __restrict__ block_segment,
                           const int64_t* __restrict__ block_start, AdamWStepConstants k) {
  const AdamWSegment s = segments[block_segment[blockIdx.x]];
  const int64_t start = block_start[blockIdx.x];
  const int64_t end = start + CHUNK < s.numel ? start + CHUNK : s.numel;
  const float decay = s.decay ? k.decay : 1.0f;
  for (int64_t i = start + threadIdx.x; i < end; i += BLOCK) {
    const float g = s.grad[i];
    if (s.row_mask && !s.row_mask[i / s.cols]) {  // masked row: moments decay, value unchanged
      s.exp_avg[i] = k.b1 * s.exp_avg[i];
      s.exp_avg_sq[i] = k.b2 * s.exp_avg_sq[i];
      continue;
    }
    const float m = k.b1 * s.exp_avg[i] + (1.0f - k.b1) * g;
    const float v = k.b2 * s.exp_avg_sq[i] + (1.0f - k.b2) * g * g;
    s.exp_avg[i] = m;
    s.exp_avg_sq[i] = v;
    s.param[i] = s.param[i] * decay - k.step_size * m / (sqrtf(v) * k.inv_sqrt_bc2 + k.eps);
  }
}

}  // namespace kernels

class FusedAdamW {
 public:
  static constexpr int block = 256;
  static constexpr int chunk = 4096;  // elements per block

  double lr = 1e-3, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;

  // Builds the tables for `segments` (device pointers that stay valid while this object lives).
  FusedAdamW(Context& ctx, std::vector<AdamWSegment> segments) : segments_(std::move(segments)) {
    std::vector<int64_t> seg_of_block, start_of_block;
    for (size_t i = 0; i < segments_.size(); ++i) {
      const AdamWSegment& s = segments_[i];
      if (s.numel < 0 || (s.row_mask && s.cols <= 0))
        throw ValueError(fmt::format("cuda::FusedAdamW: segment {} has numel {} and cols {}", i, s.numel, s.cols));
      for (int64_t start = 0; start < s.numel; start += chunk) {
        seg_of_block.push_back(static_cast<int64_t>(i));
        start_of_block.push_back(start);
      }
    }
    blocks_ = static_cast<int64_t>(seg_of_block.size());
    if (blocks_ == 0) return;
    const size_t seg_bytes = segments_.size() * sizeof(AdamWSegment);
    const size_t map_bytes = static_cast<size_t>(blocks_) * sizeof(int64_t);
    table_ = detail::allocate_block(ctx, seg_bytes + 2 * map_bytes);
    char* base = static_cast<char*>(table_->ptr);
    NR_CUDA_CHECK(cudaMemcpyAsync(base, segments_.data(), seg_bytes, cudaMemcpyHostToDevice, ctx.stream()));
    NR_CUDA_CHECK(cudaMemcpyAsync(base + seg_bytes, seg_of_block.data(), map_bytes, cudaMemcpyHostToDevice, ctx.stream()));
    NR_CUDA_CHECK(cudaMemcpyAsync(base + seg_bytes + map_bytes, start_of_block.data(), map_bytes,
                                  cudaMemcpyHostToDevice, ctx.stream()));
    ctx.synchronize();  // the host vectors die here; pageable copies must have been staged anyway
  }

  int64_t step_count() const { return step_; }
  void set_step_count(int64_t s) { step_ = s; }

  // One update of every segment with learning rate `lr_now` (the schedule's value).
  void step(Context& ctx, double lr_now) {
    ++step_;
    const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step_));
    const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step_));
    const AdamWStepConstants k{static_cast<float>(beta1),        static_cast<float>(beta2),
                               static_cast<float>(lr_now / bc1), static_cast<float>(1.0 / std::sqrt(bc2)),
                               static_cast<float>(eps),          static_cast<float>(1.0 - lr_now * weight_decay)};
    if (blocks_ == 0) return;
    const size_t seg_bytes = segments_.size() * sizeof(AdamWSegment);
    const char* base = static_cast<const char*>(table_->ptr);
    const auto* segs = reinterpret_cast<const AdamWSegment*>(base);
    const auto* seg_of_block = reinterpret_cast<const int64_t*>(base + seg_bytes);
    const int64_t* start_of_block = seg_of_block + blocks_;
    kernels::adamw_step<block, chunk><<<static_cast<unsigned>(blocks_), block, 0, ctx.stream()>>>(segs, seg_of_block,
                                                                                                 start_of_block, k);
    NR_CUDA_CHECK_LAUNCH();
  }

 private:
  std::vector<AdamWSegment> segments_;
  std::shared_ptr<detail::DeviceBlock> table_;
  int64_t blocks_ = 0;
  int64_t step_ = 0;
};

}  // namespace nr::cuda
