// nr/backend/cuda/device_tensor.cuh — a contiguous tensor in device memory, and integer ids on the device.
//
// Include the headers under nr/backend/cuda/ only from .cu files compiled by nvcc (target nr::cuda).
//
//   DeviceTensor x = DeviceTensor::from_host(ctx, host_tensor);    // (..., C) f32, async copy
//   DeviceTensor y = DeviceTensor::empty(ctx, x.shape());          // from the caching allocator
//   ... kernels ...
//   nr::Tensor back = y.to_host(ctx);                              // copies, synchronises
//
// A DeviceTensor is a Shape, a dtype (F32, or BF16 for mixed precision) and a reference-counted
// block of device memory from device_allocator(), always contiguous and row-major. Copies are
// shallow (they share the block, like nr::Tensor); the block goes back to the allocator with the
// last copy, on the stream of the Context that allocated it. Every transfer is ordered on the
// Context's stream: from_host returns once the host data has been read (pageable memory is
// staged by the driver), to_host returns once the data has arrived.
//
// DeviceIndices holds int32 ids (tokens, targets) with their shape and the range [min, max] of
// the values, measured on the host at upload, so that ops can check ids against a vocabulary
// without reading device memory back.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "nr/core/indices.hpp"
#include "nr/core/tensor.hpp"
#include "nr/backend/cuda/context.cuh"

namespace nr::cuda {

namespace detail {

// A block of device memory returned to the allocator when the last owner lets go.
struct DeviceBlock {
  void* ptr = nullptr;
  size_t bytes = 0;
  DeviceBlock(void* p, size_t n) : ptr(p), bytes(n) {}
  DeviceBlock(const DeviceBlock&) = delete;
  DeviceBlock& operator=(const DeviceBlock&) = delete;
  ~DeviceBlock() {
    try {
      device_allocator().deallocate(ptr);
    } catch (...) {  // a destructor must not throw; the allocator only throws on foreign pointers
    }
  }
};

inline std::shared_ptr<DeviceBlock> allocate_block(Context& ctx, size_t bytes) {
  return std::make_shared<DeviceBlock>(ctx.allocate(bytes), bytes);
}

}  // namespace detail

class DeviceTensor {
 public:
  DeviceTensor() = default;

  // Uninitialised memory for `shape` on ctx's device.
  static DeviceTensor empty(Context& ctx, const Shape& shape, DType dtype = DType::f32) {
    DeviceTensor t;
    t.shape_ = shape;
    t.dtype_ = dtype;
    t.block_ = detail::allocate_block(ctx, static_cast<size_t>(shape.numel()) * dtype_size(dtype));
    return t;
  }

  static DeviceTensor zeros(Context& ctx, const Shape& shape, DType dtype = DType::f32) {
    DeviceTensor t = empty(ctx, shape, dtype);
    t.zero_(ctx);
    return t;
  }

  // An F32 copy of a CPU tensor (any strides; made contiguous on the host first).
  static DeviceTensor from_host(Context& ctx, const Tensor& host) {
    if (!host.defined()) throw ValueError("DeviceTensor::from_host: the host tensor is undefined");
    if (host.device() != Device::cpu || host.dtype() != DType::f32)
      throw DeviceError(fmt::format("DeviceTensor::from_host: expected an F32 CPU tensor, got {} on {}",
                                    dtype_name(host.dtype()), device_name(host.device())));
    const Tensor src = host.contiguous();
    DeviceTensor t = empty(ctx, src.shape());
    if (t.bytes() > 0)
      NR_CUDA_CHECK(cudaMemcpyAsync(t.raw(), src.data(), t.bytes(), cudaMemcpyHostToDevice, ctx.stream()));
    return t;
  }

  // A CPU F32 tensor with this tensor's values (BF16 values are widened exactly). Synchronises.
  Tensor to_host(Context& ctx) const {
    Tensor out = Tensor::empty(shape_);
    if (numel() == 0) return out;
    if (dtype_ == DType::f32) {
      NR_CUDA_CHECK(cudaMemcpyAsync(out.data(), raw(), bytes(), cudaMemcpyDeviceToHost, ctx.stream()));
      ctx.synchronize();
      return out;
    }
    std::vector<__nv_bfloat16> tmp(static_cast<size_t>(numel()));
    NR_CUDA_CHECK(cudaMemcpyAsync(tmp.data(), raw(), bytes(), cudaMemcpyDeviceToHost, ctx.stream()));
    ctx.synchronize();
    float* o = out.data();
    for (size_t i = 0; i < tmp.size(); ++i) o[i] = __bfloat162float(tmp[i]);
    return out;
  }

  // Overwrites this tensor with a CPU tensor of the same shape (F32 only).
  void copy_from_host(Context& ctx, const Tensor& host) {
    expect_same_shape(shape_, host.shape(), "DeviceTensor::copy_from_host");
    require_f32("copy_from_host");
    const Tensor src = host.contiguous();
    if (bytes() > 0)
      NR_CUDA_CHECK(cudaMemcpyAsync(raw(), src.data(), bytes(), cudaMemcpyHostToDevice, ctx.stream()));
  }

  void zero_(Context& ctx) {
    if (bytes() > 0) NR_CUDA_CHECK(cudaMemsetAsync(raw(), 0, bytes(), ctx.stream()));
  }

  bool defined() const { return block_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return shape_.numel(); }
  DType dtype() const { return dtype_; }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

  float* data() {
    require_f32("data");
    return static_cast<float*>(raw());
  }
  const float* data() const {
    require_f32("data");
    return static_cast<const float*>(raw());
  }
  __nv_bfloat16* bf16_data() {
    require_bf16();
    return static_cast<__nv_bfloat16*>(raw());
  }
  const __nv_bfloat16* bf16_data() const {
    require_bf16();
    return static_cast<const __nv_bfloat16*>(raw());
  }

  // The same memory seen with another shape of the same number of elements.
  DeviceTensor reshape(const Shape& s) const {
    if (s.numel() != numel())
      throw ShapeError(fmt::format("DeviceTensor::reshape: cannot view {} as {}", shape_.str(), s.str()));
    DeviceTensor t = *this;
    t.shape_ = s;
    return t;
  }

 private:
  void* raw() const { return block_ ? block_->ptr : nullptr; }
  void require_f32(const char* what) const {
    if (dtype_ != DType::f32)
      throw DeviceError(fmt::format("DeviceTensor::{}: tensor {} holds {}, not F32", what, shape_.str(), dtype_name(dtype_)));
  }
  void require_bf16() const {
    if (dtype_ != DType::bf16)
      throw DeviceError(fmt::format("DeviceTensor::bf16_data: tensor {} holds {}, not BF16", shape_.str(), dtype_name(dtype_)));
  }

  Shape shape_;
  DType dtype_ = DType::f32;
  std::shared_ptr<detail::DeviceBlock> block_;
};

class DeviceIndices {
 public:
  DeviceIndices() = default;

  static DeviceIndices from_host(Context& ctx, const Indices& ids) {
    if (ids.numel() != ids.shape.numel())
      throw ShapeError(fmt::format("DeviceIndices::from_host: {} values claim shape {}", ids.numel(), ids.shape.str()));
    DeviceIndices d;
    d.shape_ = ids.shape;
    d.n_ = ids.numel();
    if (d.n_ > 0) {
      const auto [lo, hi] = std::minmax_element(ids.data.begin(), ids.data.end());
      d.min_ = *lo;
      d.max_ = *hi;
    }
    const size_t bytes = static_cast<size_t>(d.n_) * sizeof(int32_t);
    d.block_ = detail::allocate_block(ctx, bytes);
    if (bytes > 0)
      NR_CUDA_CHECK(cudaMemcpyAsync(d.block_->ptr, ids.data.data(), bytes, cudaMemcpyHostToDevice, ctx.stream()));
    return d;
  }

  // Throws ValueError naming `what` when a value lies outside [0, limit).
  void check_range(int64_t limit, const char* what) const {
    if (n_ > 0 && (min_ < 0 || max_ >= limit))
      throw ValueError(fmt::format("{}: ids range over [{}, {}], outside [0, {})", what, min_, max_, limit));
  }

  const Shape& shape() const { return shape_; }
  int64_t numel() const { return n_; }
  const int32_t* data() const { return block_ ? static_cast<const int32_t*>(block_->ptr) : nullptr; }
  int32_t min() const { return min_; }
  int32_t max() const { return max_; }

 private:
  Shape shape_;
  int64_t n_ = 0;
  int32_t min_ = 0, max_ = -1;
  std::shared_ptr<detail::DeviceBlock> block_;
};

}  // namespace nr::cuda
