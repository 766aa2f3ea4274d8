// nr/backend/cuda/check.cuh — every CUDA runtime and cuBLAS call goes through one of these macros.
//
// Include the headers under nr/backend/cuda/ only from .cu files compiled by nvcc (target nr::cuda).
//
//   NR_CUDA_CHECK(cudaMalloc(&p, bytes));       a cudaError_t other than cudaSuccess throws
//   NR_CUBLAS_CHECK(cublasCreate(&handle));     a cublasStatus_t other than SUCCESS throws
//   NR_CUDA_CHECK_LAUNCH();                     after a kernel launch: launch errors throw
//
// The exception is nr::cuda::CudaError (an nr::DeviceError, so an nr::Error): its message names
// the file and line of the call, the call itself, and the error's name and description, e.g.
//   "CUDA error at nr/backend/cuda/allocator.cuh:120: cudaMalloc(&p, bytes) returned
//    cudaErrorMemoryAllocation (out of memory)".
// Kernels run asynchronously: an error inside a kernel is reported by a later checked call on
// the same stream (the next copy or synchronisation), which names that later call.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "nr/core/error.hpp"

namespace nr::cuda {

// A failed CUDA runtime or cuBLAS call.
struct CudaError : DeviceError {
  using DeviceError::DeviceError;
};

namespace detail {

inline std::string call_site(const char* file, int line, const char* expr) {
  return std::string(file) + ":" + std::to_string(line) + ": " + expr;
}

inline void check_cuda(cudaError_t status, const char* expr, const char* file, int line) {
  if (status == cudaSuccess) return;
  throw CudaError("CUDA error at " + call_site(file, line, expr) + " returned " + cudaGetErrorName(status) + " (" +
                  cudaGetErrorString(status) + ")");
}

inline void check_cublas(cublasStatus_t status, const char* expr, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw CudaError("cuBLAS error at " + call_site(file, line, expr) + " returned " + cublasGetStatusName(status) +
                  " (" + cublasGetStatusString(status) + ")");
}

}  // namespace detail

}  // namespace nr::cuda

#define NR_CUDA_CHECK(expr) ::nr::cuda::detail::check_cuda((expr), #expr, __FILE__, __LINE__)
#define NR_CUBLAS_CHECK(expr) ::nr::cuda::detail::check_cublas((expr), #expr, __FILE__, __LINE__)
// Reports a bad launch configuration (or an earlier asynchronous error) right after <<<...>>>.
#define NR_CUDA_CHECK_LAUNCH() NR_CUDA_CHECK(cudaGetLastError())
