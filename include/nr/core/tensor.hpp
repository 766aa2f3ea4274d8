// nr/core/tensor.hpp — a strided view on reference-counted storage.
//
// A Tensor is a shape, per-dimension strides (in elements), an offset and a shared storage block.
// Freshly made tensors are contiguous and row-major; views (reshape, transpose of the last two
// dimensions, slicing along the first dimension) share the storage. Kernels require contiguous
// inputs except GEMM, which reads a transposed view directly through BLAS's transpose flag.
//
// float32 is the element type the CPU kernels compute in. bfloat16 (the top 16 bits of a float32:
// sign, 8-bit exponent, 7 stored mantissa bits) is a storage type: frozen weights kept as BF16
// (ops/matmul.hpp, store_frozen_as_bf16), read only by the GEMMs (backend/cpu/gemm.hpp) and by
// to(DType::f32); checkpoints and the CUDA backend's mixed precision record it too.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include <sys/mman.h>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/core/shape.hpp"

namespace nr {

enum class Device : uint8_t { cpu, cuda };
enum class DType : uint8_t { f32, bf16 };

inline const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }
inline const char* dtype_name(DType t) { return t == DType::f32 ? "F32" : "BF16"; }
inline size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 2; }

// float32 -> bfloat16 bits, rounded to nearest, ties to even; NaN stays a (quiet) NaN, and values
// beyond bf16's largest finite value round to infinity, as IEEE rounding does.
inline uint16_t bf16_bits_from_float(float f) {
  uint32_t u = 0;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
// bfloat16 bits -> float32 (exact: the low 16 mantissa bits are zero).
inline float float_from_bf16_bits(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f = 0.0f;
  std::memcpy(&f, &u, 4);
  return f;
}

namespace detail {

// Whether this build runs under AddressSanitizer (GCC defines the macro, clang has the feature).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool address_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool address_sanitizer = true;
#else
inline constexpr bool address_sanitizer = false;
#endif
#else
inline constexpr bool address_sanitizer = false;
#endif

// A size-bucketed cache of freed CPU storage blocks, so that the steady state of a training loop
// (the same activation and gradient shapes every step) allocates nothing from the system: a block
// freed by one step is handed out again in the next, without page faults or zero-filling by the
// kernel. Blocks are 64-byte aligned; a request is rounded up to its bucket size:
//   up to 1 MiB    a multiple of 64 bytes
//   above          a multiple of 1/16 of the power of two below it (at most 6.25 % waste)
// Thread-safe (one mutex; allocation is rare next to the work done on a block). Deterministic:
// which block a request gets depends only on the sequence of requests and releases, and every
// block has the same alignment, so results never depend on it. The cache holds at most
// limit() bytes of free blocks (default 4 GiB, or NR_STORAGE_CACHE_MB from the environment);
// beyond that, freed blocks go back to the system. trim() releases every cached block.
// Blocks above 1 MiB are mapped from the system (mmap) and unmapped when they go back, not taken
// from malloc's heap: a stream of ever-different large sizes (the rows routed to each expert,
// which change every step) fragments that heap until freed memory can no longer be reused, and a
// 135 M-parameter model with new experts grew by gigabytes a step; mapped blocks always return.
// Under AddressSanitizer every block comes from malloc instead, so that the sanitizer guards it
// with redzones and sees every allocation (tests track the largest one a hostile file causes).
class StorageCache {
 public:
  static StorageCache& instance() {
    static StorageCache* cache = new StorageCache();  // never destroyed: tensors may outlive statics
    return *cache;
  }

  static size_t bucket_size(size_t bytes) {
    const size_t b = std::max<size_t>(64, (bytes + 63) / 64 * 64);
    if (b <= (size_t{1} << 20)) return b;
    size_t pow2 = size_t{1} << 20;
    while (pow2 <= b / 2) pow2 *= 2;  // largest power of two <= b
    const size_t step = pow2 / 16;
    return (b + step - 1) / step * step;
  }

  // A block of bucket_size(bytes) bytes; `capacity` receives that size.
  void* acquire(size_t bytes, size_t& capacity) {
    capacity = bucket_size(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(capacity);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= capacity;
        return p;
      }
    }
    void* p = system_alloc(capacity);
    if (!p) {
      trim();  // give the cached blocks back and try once more
      p = system_alloc(capacity);
      if (!p) throw std::bad_alloc();
    }
    return p;
  }

  void release(void* p, size_t capacity) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_bytes_ + capacity <= limit_) {
        free_[capacity].push_back(p);
        cached_bytes_ += capacity;
        return;
      }
    }
    system_free(p, capacity);
  }

  // Frees every cached block.
  void trim() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) system_free(p, size);
    free_.clear();
    cached_bytes_ = 0;
  }

  size_t cached_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_bytes_;
  }
  size_t limit() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return limit_;
  }
  void set_limit(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      limit_ = bytes;
      if (cached_bytes_ <= limit_) return;
    }
    trim();
  }

 private:
  // Larger blocks are mapped (see above); none under AddressSanitizer.
  static constexpr size_t mapped_above = address_sanitizer ? SIZE_MAX : size_t{1} << 20;

  // A block of `capacity` (a bucket size) bytes, 64-byte aligned (mapped blocks: page aligned);
  // null when the system has no memory.
  static void* system_alloc(size_t capacity) {
    if (capacity <= mapped_above) return std::aligned_alloc(64, capacity);
    void* p = mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  static void system_free(void* p, size_t capacity) {
    if (capacity <= mapped_above) std::free(p);
    else munmap(p, capacity);
  }

  StorageCache() {
    if (const char* env = std::getenv("NR_STORAGE_CACHE_MB")) {
      char* end = nullptr;
      const unsigned long long mb = std::strtoull(env, &end, 10);
      if (end != env && *end == '\0') limit_ = static_cast<size_t>(mb) << 20;
    }
  }

  mutable std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // bucket size -> free blocks
  size_t cached_bytes_ = 0;
  size_t limit_ = size_t{4} << 30;
};

}  // namespace detail

// Bytes of freed CPU tensor memory kept for reuse, and its cap (see detail::StorageCache).
inline size_t storage_cache_bytes() { return detail::StorageCache::instance().cached_bytes(); }
inline void set_storage_cache_limit(size_t bytes) { detail::StorageCache::instance().set_limit(bytes); }
// Returns every cached block to the system (for example after training, before a long evaluation).
inline void trim_storage_cache() { detail::StorageCache::instance().trim(); }

// A block of memory owned by one or more tensors. CPU memory is 64-byte aligned so that vector
// loads never straddle cache lines, and comes from (and returns to) the storage cache above.
// Other devices plug in their own allocator and deleter.
struct Storage {
  void* ptr = nullptr;
  size_t bytes = 0;
  Device device = Device::cpu;
  void (*deleter)(void*) = nullptr;
  size_t pooled_capacity = 0;  // > 0: the block belongs to the CPU storage cache (its bucket size)

  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  Storage(void* p, size_t n, Device d, void (*del)(void*)) : ptr(p), bytes(n), device(d), deleter(del) {}
  ~Storage() {
    if (!ptr) return;
    if (pooled_capacity > 0)
      detail::StorageCache::instance().release(ptr, pooled_capacity);
    else if (deleter)
      deleter(ptr);
  }

  static std::shared_ptr<Storage> allocate_cpu(size_t bytes) {
    size_t capacity = 0;
    void* p = detail::StorageCache::instance().acquire(bytes, capacity);
    auto s = std::make_shared<Storage>(p, bytes, Device::cpu, nullptr);
    s->pooled_capacity = capacity;
    return s;
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

  // The raw bfloat16 bits of a BF16 tensor (see bf16_bits_from_float); throws for other dtypes.
  uint16_t* bf16_data() { return bf16_ptr(); }
  const uint16_t* bf16_data() const { return const_cast<Tensor*>(this)->bf16_ptr(); }

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
    if (dtype_ != DType::f32) {  // BF16: a byte copy of a contiguous tensor
      require_contiguous("clone (BF16)");
      std::memcpy(out.bf16_data(), bf16_data(), static_cast<size_t>(numel()) * dtype_size(dtype_));
    } else if (is_contiguous()) {
      std::memcpy(out.data(), data(), static_cast<size_t>(numel()) * sizeof(float));
    } else {
      copy_strided(out.data());
    }
    return out;
  }
  // A contiguous copy in another element type: F32 -> BF16 rounds to nearest even (half the
  // memory), BF16 -> F32 is exact; the same dtype gives a plain copy (clone()).
  Tensor to(DType target) const {
    if (target == dtype_) return clone();
    Tensor out = empty(shape_, target);
    const int64_t n = numel();
    if (target == DType::bf16) {
      const Tensor src = contiguous();
      const float* in = src.data();
      uint16_t* o = out.bf16_data();
      for (int64_t i = 0; i < n; ++i) o[i] = bf16_bits_from_float(in[i]);
    } else {
      require_contiguous("to(F32) of a BF16 tensor");
      const uint16_t* in = bf16_data();
      float* o = out.data();
      for (int64_t i = 0; i < n; ++i) o[i] = float_from_bf16_bits(in[i]);
    }
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
  uint16_t* bf16_ptr() {
    if (!storage_) throw Error("Tensor: access to an undefined (empty) tensor");
    if (dtype_ != DType::bf16)
      throw Error(fmt::format("Tensor: BF16 access to a {} tensor of shape {}", dtype_name(dtype_), shape_.str()));
    return static_cast<uint16_t*>(storage_->ptr) + offset_;
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
