// nr/backend/cuda/allocator.cuh — a caching allocator for device memory.
//
// Include the headers under nr/backend/cuda/ only from .cu files compiled by nvcc (target nr::cuda).
//
// cudaMalloc and cudaFree are slow (cudaFree synchronises the whole device), and a training step
// asks for the same activation and gradient sizes every step. The allocator therefore keeps
// freed blocks in free lists keyed by (device, stream, bucket size) and hands them out again:
// once the first step has run, a step calls cudaMalloc zero times.
//
// Bucket sizes (what a request of `bytes` is rounded up to):
//   up to 1 MiB   a multiple of 512 bytes
//   above         a multiple of 1/16 of the largest power of two <= the size (<= 6.25 % waste)
//
// Streams: a block freed on stream S goes back to S's free list and is handed out only to later
// requests on S. Work on one stream runs in order, so a kernel that still reads the block when
// it is freed has finished before the next owner's kernels start; no event is needed. A Context
// calls forget_stream() before it destroys its stream (see context.cuh).
//
// Out of memory: the allocator frees every cached block (cudaFree) and tries once more; if that
// fails too it throws CudaError with the request and the current statistics.
//
// Thread-safe: one mutex around the free lists and the table of live blocks. The backend is a
// template parameter so that the bookkeeping can be tested without a GPU (HostBackend, used by
// tests/cuda); CudaMallocBackend is the real one.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "nr/backend/cuda/check.cuh"

namespace nr::cuda {

// cudaMalloc / cudaFree on the current device. allocate() returns nullptr when the device is out
// of memory (the caller then frees its cache and retries) and throws on any other error.
struct CudaMallocBackend {
  static void* allocate(size_t bytes) {
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, bytes);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // clear the (non-sticky) error so later checks do not report it
      return nullptr;
    }
    NR_CUDA_CHECK(status);
    return p;
  }
  static void release(void* p) { NR_CUDA_CHECK(cudaFree(p)); }
  static int current_device() {
    int d = 0;
    NR_CUDA_CHECK(cudaGetDevice(&d));
    return d;
  }
};

// std::malloc / std::free standing in for the device: for testing the cache without a GPU.
struct HostBackend {
  static void* allocate(size_t bytes) { return std::malloc(bytes); }
  static void release(void* p) { std::free(p); }
  static int current_device() { return 0; }
};

struct AllocatorStats {
  size_t bytes_in_use = 0;       // handed out and not yet freed (bucket sizes)
  size_t bytes_cached = 0;       // in the free lists
  size_t peak_bytes_in_use = 0;  // the largest bytes_in_use seen
  uint64_t malloc_calls = 0;     // backend allocations (cudaMalloc)
  uint64_t free_calls = 0;       // backend releases (cudaFree)
  uint64_t cache_hits = 0;       // requests served from a free list
};

template <class Backend>
class CachingAllocator {
 public:
  CachingAllocator() = default;  // touches no device: the first allocate() does
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;
  ~CachingAllocator() { trim(); }

  static size_t bucket_size(size_t bytes) {
    constexpr size_t small = size_t{1} << 20;
    if (bytes <= small) return bytes == 0 ? 512 : (bytes + 511) / 512 * 512;
    size_t pow2 = small;
    while (pow2 <= bytes / 2) pow2 *= 2;  // largest power of two <= bytes
    const size_t step = pow2 / 16;
    return (bytes + step - 1) / step * step;
  }

  // A block of at least `bytes` bytes for use on `stream` (nullptr for zero bytes).
  void* allocate(size_t bytes, cudaStream_t stream) {
    if (bytes == 0) return nullptr;
    const size_t size = bucket_size(bytes);
    const int device = Backend::current_device();
    const Key key{device, stream, size};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(key);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        stats_.bytes_cached -= size;
        ++stats_.cache_hits;
        note_live(p, Block{device, stream, size});
        return p;
      }
    }
    void* p = Backend::allocate(size);
    if (!p) {
      trim();  // give every cached block back and try once more
      p = Backend::allocate(size);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (!p)
      throw CudaError("CUDA device " + std::to_string(device) + " is out of memory: " + std::to_string(bytes) +
                      " bytes requested (bucket " + std::to_string(size) + "), " + std::to_string(stats_.bytes_in_use) +
                      " bytes in use by nr, cache already released");
    ++stats_.malloc_calls;
    note_live(p, Block{device, stream, size});
    return p;
  }

  // Returns a block from allocate() to its stream's free list. nullptr is ignored; a pointer that
  // this allocator did not hand out throws ValueError.
  void deallocate(void* p) {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) throw ValueError("CachingAllocator::deallocate: pointer was not allocated here");
    const Block b = it->second;
    live_.erase(it);
    stats_.bytes_in_use -= b.size;
    free_[Key{b.device, b.stream, b.size}].push_back(p);
    stats_.bytes_cached += b.size;
  }

  // Releases every cached block to the backend (cudaFree). Blocks in use are untouched.
  void trim() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [key, blocks] : free_)
      for (void* p : blocks) {
        Backend::release(p);
        ++stats_.free_calls;
      }
    free_.clear();
    stats_.bytes_cached = 0;
  }

  // Called (after synchronising the stream) before a stream is destroyed: frees the blocks cached
  // for it, and blocks still in use on it go back to the default stream's lists when freed.
  void forget_stream(cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = free_.begin(); it != free_.end();) {
      if (std::get<1>(it->first) == stream) {
        for (void* p : it->second) {
          Backend::release(p);
          ++stats_.free_calls;
          stats_.bytes_cached -= std::get<2>(it->first);
        }
        it = free_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [p, b] : live_)
      if (b.stream == stream) b.stream = nullptr;
  }

  AllocatorStats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  using Key = std::tuple<int, cudaStream_t, size_t>;  // device, stream, bucket size
  struct Block {
    int device;
    cudaStream_t stream;
    size_t size;
  };

  void note_live(void* p, Block b) {  // with mutex_ held
    live_[p] = b;
    stats_.bytes_in_use += b.size;
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }

  mutable std::mutex mutex_;
  std::map<Key, std::vector<void*>> free_;
  std::unordered_map<void*, Block> live_;
  AllocatorStats stats_;
};

using DeviceAllocator = CachingAllocator<CudaMallocBackend>;

// The process-wide device allocator, made on first use (never in a static initialiser) and never
// destroyed: device memory may still be freed by objects that outlive static destruction, after
// which the CUDA runtime may already be gone.
inline DeviceAllocator& device_allocator() {
  static DeviceAllocator* allocator = new DeviceAllocator();
  return *allocator;
}

}  // namespace nr::cuda
