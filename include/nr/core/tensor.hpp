// nr/core/tensor.hpp — a strided view on reference-counted storage.
//
// A Tensor is a shape, per-dimension strides (in elements), an offset and a shared storage block.
// Freshly made tensors are contiguous and row-major; views (reshape, transpose of the last two
// dimensions, slicing along the first dimension) share the storage. Kernels require contiguous
// inputs except GEMM, which reads a transposed view directly through BLAS's transpose flag.
//
// float32 is the only element type the CPU kernels compute in; the dtype tag exists so that a
// bf16 storage (checkpoints, the CUDA backend's mixed precision) has somewhere to be recorded.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/core/shape.hpp"

namespace nr {

enum class Device : uint8_t { cpu, cuda };
enum class DType : uint8_t { f32, bf16 };

inline const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }
inline const char* dtype_name(DType t) { return t == DType::f32 ? "F32" : "BF16"; }
inline size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 2; }

// A block of memory owned by one or more tensors. CPU memory is 64-byte aligned so that vector
// loads never straddle cache lines. Other devices plug in their own allocator and deleter.
struct Storage {
  void* ptr = nullptr;
  size_t bytes = 0;
  Device device = Device::cpu;
  void (*deleter)(void*) = nullptr;

  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  Storage(void* p, size_t n, Device d, void (*del)(void*)) : ptr(p), bytes(n), device(d), deleter(del) {}
  ~Storage() {
    if (ptr && deleter) deleter(ptr);
  }

  static std::shared_ptr<Storage> allocate_cpu(size_t bytes) {
    const size_t rounded = std::max<size_t>(64, (bytes + 63) / 64 * 64);
    void* p = std::aligned_alloc(64, rounded);
    if (!p) throw std::bad_alloc();
    return std::make_shared<Storage>(p, bytes, Device::cpu, &std::free);
  }
};

class Tensor {
 public:
  using Strides = std::array<int64_t, Shape::max_rank>;

  Tensor() = default;

  // ---- construction ------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32) {
    Tensor t;
    t.shape_ = shape;
    t.dtype_ = dtype;
    t.storage_ = Storage::allocate_cpu(static_cast<size_t>(shape.numel()) * dtype_size(dtype));
    t.strides_ = contiguous_strides(shape);
    return t;
  }
  static Tensor zeros(const Shape& shape) {
    Tensor t = empty(shape);
    std::memset(t.storage_->ptr, 0, t.storage_->bytes);
    return t;
  }
  static Tensor full(const Shape& shape, float value) {
    Tensor t = empty(shape);
    std::fill_n(t.data(), t.numel(), value);
    return t;
  }
  static Tensor ones(const Shape& shape) { return full(shape, 1.0f); }
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape) {
    if (static_cast<int64_t>(values.size()) != shape.numel())
      throw ShapeError(fmt::format("Tensor::from_vector: {} values cannot fill shape {} ({} elements)",
                                   values.size(), shape.str(), shape.numel()));
    Tensor t = empty(shape);
    std::copy(values.begin(), values.end(), t.data());
    return t;
  }
  static Tensor scalar(float value) { return full(Shape{}, value); }
  // Wraps memory a tensor does not own (for example a memory-mapped file); the caller keeps it
  // alive for as long as the tensor and its views are used.
  static Tensor borrow(float* data, const Shape& shape) {
    Tensor t;
    t.shape_ = shape;
    t.storage_ = std::make_shared<Storage>(data, static_cast<size_t>(shape.numel()) * 4, Device::cpu, nullptr);
    t.strides_ = contiguous_strides(shape);
    return t;
  }

  // ---- metadata ----------------------------------------------------------------------------
  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_.dim(i); }
  int64_t numel() const { return shape_.numel(); }
  int64_t stride(int i) const { return strides_[static_cast<size_t>(i < 0 ? rank() + i : i)]; }
  const Strides& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::cpu; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  bool is_contiguous() const {
    int64_t expected = 1;
    for (int i = rank() - 1; i >= 0; --i) {
      if (shape_[i] != 1 && strides_[static_cast<size_t>(i)] != expected) return false;
      expected *= shape_[i];
    }
    return true;
  }
  // True when this is a contiguous tensor whose last two dimensions were swapped by transpose().
  bool is_transposed_matrix() const {
    if (rank() < 2) return false;
    Tensor t = *this;
    std::swap(t.shape_[rank() - 1], t.shape_[rank() - 2]);
    std::swap(t.strides_[static_cast<size_t>(rank() - 1)], t.strides_[static_cast<size_t>(rank() - 2)]);
    return t.is_contiguous() && !is_contiguous();
  }

  // ---- element access ----------------------------------------------------------------------
  float* data() { return typed_data(); }
  const float* data() const { return const_cast<Tensor*>(this)->typed_data(); }

  float item() const {
    if (numel() != 1) throw ShapeError(fmt::format("Tensor::item: shape {} has {} elements, not 1", shape_.str(), numel()));
    return data()[0];
  }
  // Element at a multi-index, honouring strides (for tests and debugging, not for kernels).
  float at(std::initializer_list<int64_t> index) const {
    if (static_cast<int>(index.size()) != rank())
      throw ShapeError(fmt::format("Tensor::at: {} indices for shape {}", index.size(), shape_.str()));
    int64_t off = 0;
    int i = 0;
    for (int64_t k : index) {
      if (k < 0 || k >= shape_[i])
        throw ShapeError(fmt::format("Tensor::at: index {} out of range in dimension {} of shape {}", k, i, shape_.str()));
      off += k * strides_[static_cast<size_t>(i++)];
    }
    return data()[off];
  }
  std::vector<float> to_vector() const {
    Tensor c = contiguous();
    return std::vector<float>(c.data(), c.data() + c.numel());
  }

  // ---- views -------------------------------------------------------------------------------
  // Same storage, new shape; one dimension may be -1 and is inferred. Requires contiguity.
  Tensor reshape(std::initializer_list<int64_t> dims) const {
    Shape s;
    int infer = -1;
    int64_t known = 1;
    int i = 0;
    for (int64_t d : dims) {
      if (d == -1) {
        if (infer >= 0) throw ShapeError(fmt::format("reshape {}: more than one -1", shape_.str()));
        infer = i;
        s.push_back(1);
      } else {
        s.push_back(d);
        known *= d;
      }
      ++i;
    }
    if (infer >= 0) {
      if (known == 0 || numel() % known != 0)
        throw ShapeError(fmt::format("reshape: cannot infer -1 to view shape {} ({} elements) as {}", shape_.str(), numel(), s.str()));
      s[infer] = numel() / known;
    }
    return reshape(s);
  }
  Tensor reshape(const Shape& s) const {
    if (s.numel() != numel())
      throw ShapeError(fmt::format("reshape: shape {} ({} elements) cannot be viewed as {} ({} elements)",
                                   shape_.str(), numel(), s.str(), s.numel()));
    if (!is_contiguous())
      throw ShapeError(fmt::format("reshape: tensor of shape {} is not contiguous; call contiguous() first", shape_.str()));
    Tensor t = *this;
    t.shape_ = s;
    t.strides_ = contiguous_strides(s);
    return t;
  }
  // Swaps the last two dimensions without copying.
  Tensor transpose() const {
    if (rank() < 2) throw ShapeError(fmt::format("transpose: shape {} has fewer than 2 dimensions", shape_.str()));
    Tensor t = *this;
    std::swap(t.shape_[rank() - 1], t.shape_[rank() - 2]);
    std::swap(t.strides_[static_cast<size_t>(rank() - 1)], t.strides_[static_cast<size_t>(rank() - 2)]);
    return t;
  }
  // Rows [begin, end) of the first dimension, sharing storage.
  Tensor slice(int64_t begin, int64_t end) const {
    if (rank() < 1) throw ShapeError("slice: a scalar has no first dimension");
    if (begin < 0 || end > shape_[0] || begin > end)
      throw ShapeError(fmt::format("slice [{}, {}) out of range for shape {}", begin, end, shape_.str()));
    Tensor t = *this;
    t.shape_[0] = end - begin;
    t.offset_ += begin * strides_[0];
    return t;
  }

  // ---- copies ------------------------------------------------------------------------------
  Tensor contiguous() const {
    if (is_contiguous()) return *this;
    Tensor out = empty(shape_, dtype_);
    copy_strided(out.data());
    return out;
  }
  Tensor clone() const {
    Tensor out = empty(shape_, dtype_);
    if (is_contiguous())
      std::memcpy(out.data(), data(), static_cast<size_t>(numel()) * sizeof(float));
    else
      copy_strided(out.data());
    return out;
  }
  void fill_(float v) {
    require_contiguous("fill_");
    std::fill_n(data(), numel(), v);
  }
  void zero_() { fill_(0.0f); }
  // Copies the values of src (same shape) into this tensor's memory.
  void copy_(const Tensor& src) {
    expect_same_shape(shape_, src.shape_, "copy_");
    require_contiguous("copy_");
    Tensor c = src.contiguous();
    std::memcpy(data(), c.data(), static_cast<size_t>(numel()) * sizeof(float));
  }

  void require_contiguous(const char* what) const {
    if (!is_contiguous())
      throw ShapeError(fmt::format("{}: tensor of shape {} must be contiguous", what, shape_.str()));
  }

  static Strides contiguous_strides(const Shape& s) {
    Strides st{};
    int64_t acc = 1;
    for (int i = s.rank() - 1; i >= 0; --i) {
      st[static_cast<size_t>(i)] = acc;
      acc *= s[i];
    }
    return st;
  }

 private:
  float* typed_data() {
    if (!storage_) throw Error("Tensor: access to an undefined (empty) tensor");
    if (dtype_ != DType::f32)
      throw Error(fmt::format("Tensor: float access to a {} tensor of shape {}", dtype_name(dtype_), shape_.str()));
    return static_cast<float*>(storage_->ptr) + offset_;
  }
  void copy_strided(float* out) const {
    const float* src = data();
    const int r = rank();
    std::array<int64_t, Shape::max_rank> idx{};
    const int64_t n = numel();
    for (int64_t k = 0; k < n; ++k) {
      int64_t off = 0;
      for (int i = 0; i < r; ++i) off += idx[static_cast<size_t>(i)] * strides_[static_cast<size_t>(i)];
      out[k] = src[off];
      for (int i = r - 1; i >= 0; --i) {
        if (++idx[static_cast<size_t>(i)] < shape_[i]) break;
        idx[static_cast<size_t>(i)] = 0;
      }
    }
  }

  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;
  Shape shape_;
  Strides strides_{};
  DType dtype_ = DType::f32;
};

}  // namespace nr
