// nr/backend/cuda/context.cuh — is there a usable GPU, and the stream + cuBLAS handle that work runs on.
//
// Include the headers under nr/backend/cuda/ only from .cu files compiled by nvcc (target nr::cuda).
//
//   std::string why;
//   if (!nr::cuda::available(&why)) { /* run on the CPU; `why` says what is missing */ }
//   nr::cuda::Context ctx;           // device 0; creates nothing yet
//   ... kernels take ctx and run on ctx.stream(); GEMMs use ctx.cublas() ...
//   ctx.synchronize();
//
// available() probes once, on its first call (never from a static initialiser), and remembers
// the answer: cudaGetDeviceCount must succeed and find a device, the program must hold kernels
// for that device's architecture (CMAKE_CUDA_ARCHITECTURES), and cublasCreate must succeed.
//
// A Context owns one non-blocking stream and one cuBLAS handle bound to it, both created lazily
// on first use. Everything launched through a Context runs in order on its stream; copies back
// to the host synchronise it. Use a Context from one thread at a time (one per model or worker).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>
#include <utility>

#include "nr/backend/cuda/allocator.cuh"
#include "nr/backend/cuda/check.cuh"

namespace nr::cuda {

// How cuBLAS multiplies float matrices (see gemm.cuh). fp32 is the default: exact comparisons
// with the CPU backend.
enum class GemmPrecision {
  fp32,  // FP32 inputs, FP32 arithmetic
  tf32,  // FP32 inputs rounded to TF32 (10-bit mantissa) in the tensor cores, FP32 accumulation
  bf16,  // inputs converted to BF16 (8-bit mantissa), FP32 accumulation and output
};

inline const char* gemm_precision_name(GemmPrecision p) {
  switch (p) {
    case GemmPrecision::fp32: return "fp32";
    case GemmPrecision::tf32: return "tf32";
    case GemmPrecision::bf16: return "bf16";
  }
  return "?";
}

namespace detail {

template <int>
__global__ void probe_kernel() {}

struct Availability {
  bool ok = false;
  std::string reason;  // empty when ok
};

inline std::string cuda_error_text(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}

inline Availability probe_device() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return {false, "cudaGetDeviceCount failed: " + cuda_error_text(e) + " (no NVIDIA driver or no GPU visible)"};
  }
  if (count == 0) return {false, "cudaGetDeviceCount found no CUDA device"};
  cudaDeviceProp prop{};
  if (const cudaError_t p = cudaGetDeviceProperties(&prop, 0); p != cudaSuccess) {
    (void)cudaGetLastError();
    return {false, "cudaGetDeviceProperties(0) failed: " + cuda_error_text(p)};
  }
  cudaFuncAttributes attr{};
  if (const cudaError_t f = cudaFuncGetAttributes(&attr, probe_kernel<0>); f != cudaSuccess) {
    (void)cudaGetLastError();
    return {false, "this program holds no kernels for device 0 (" + std::string(prop.name) + ", sm_" +
                       std::to_string(prop.major) + std::to_string(prop.minor) +
                       "): rebuild with CMAKE_CUDA_ARCHITECTURES including " + std::to_string(prop.major) +
                       std::to_string(prop.minor) + " (" + cuda_error_text(f) + ")"};
  }
  cublasHandle_t handle = nullptr;
  if (const cublasStatus_t s = cublasCreate(&handle); s != CUBLAS_STATUS_SUCCESS)
    return {false, std::string("cublasCreate failed: ") + cublasGetStatusName(s) + " (" + cublasGetStatusString(s) + ")"};
  cublasDestroy(handle);
  return {true, {}};
}

}  // namespace detail

// True when CUDA work can run here; otherwise false, with the reason in *reason when given.
inline bool available(std::string* reason = nullptr) {
  static const detail::Availability result = detail::probe_device();  // first call only
  if (reason) *reason = result.reason;
  return result.ok;
}

class Context {
 public:
  explicit Context(int device = 0) : device_(device) {}
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  Context(Context&& o) noexcept
      : gemm_precision(o.gemm_precision),
        device_(o.device_),
        stream_(std::exchange(o.stream_, nullptr)),
        cublas_(std::exchange(o.cublas_, nullptr)) {}
  Context& operator=(Context&&) = delete;

  // Waits for the stream, returns its cached blocks, then destroys the handle and the stream.
  // Errors are ignored here (a destructor must not throw); synchronize() first to see them.
  ~Context() {
    if (cublas_) cublasDestroy(cublas_);
    if (stream_) {
      (void)cudaStreamSynchronize(stream_);
      try {
        device_allocator().forget_stream(stream_);
      } catch (...) {
      }
      (void)cudaStreamDestroy(stream_);
    }
  }

  int device() const { return device_; }

  // The stream this context's work runs on (created on first use, non-blocking).
  cudaStream_t stream() {
    if (!stream_) {
      NR_CUDA_CHECK(cudaSetDevice(device_));
      NR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    }
    return stream_;
  }

  // The cuBLAS handle (created on first use, bound to stream(), scalars passed from the host).
  cublasHandle_t cublas() {
    if (!cublas_) {
      cudaStream_t s = stream();
      NR_CUBLAS_CHECK(cublasCreate(&cublas_));
      NR_CUBLAS_CHECK(cublasSetStream(cublas_, s));
      NR_CUBLAS_CHECK(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST));
    }
    return cublas_;
  }

  // Blocks until everything launched on the stream has finished; reports asynchronous errors.
  void synchronize() {
    if (stream_) NR_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // Device memory for this context's stream, from the caching allocator.
  void* allocate(size_t bytes) { return device_allocator().allocate(bytes, stream()); }
  void deallocate(void* p) { device_allocator().deallocate(p); }

  GemmPrecision gemm_precision = GemmPrecision::fp32;  // how float GEMMs run (gemm.cuh)

 private:
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
};

}  // namespace nr::cuda
