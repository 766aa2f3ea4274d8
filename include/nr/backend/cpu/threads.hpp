// nr/backend/cpu/threads.hpp — one thread setting, one thread pool.
//
// nr's loops, fused kernels and matrix products all run on OpenMP's thread pool. OpenBLAS is kept
// single-threaded (openblas_set_num_threads(1)); a large GEMM is split by cpu::gemm into one block
// of rows (or columns) per OpenMP thread, each block a single-threaded cblas_sgemm. So there is
// one pool of k threads, never two pools (OpenBLAS's own pthreads and OpenMP's) spinning against
// each other on the same cores, and no nesting: a GEMM called inside an OpenMP region runs on the
// calling thread alone. oneDNN (backend/cpu/onednn.hpp; Debian's libdnnl is built on OpenMP)
// runs on the same OpenMP pool and splits a product itself.
//
// set_num_threads(k) (or NR_NUM_THREADS=k in the environment, read by init_threads_from_env and,
// when no setting was made, by the first GEMM) sets k for all of it. Without any setting, k is
// OpenMP's default (OMP_NUM_THREADS, else the number of cores).
#pragma once

#include <cstdlib>
#include <string>

#include <cblas.h>
#include <omp.h>

#include <fmt/format.h>

#include "nr/core/error.hpp"

namespace nr {

inline int& num_threads_setting() {
  static int n = 0;  // 0 = not set yet
  return n;
}

inline void set_num_threads(int n) {
  if (n < 1) throw ValueError(fmt::format("set_num_threads: thread count must be at least 1, got {}", n));
  num_threads_setting() = n;
  openblas_set_num_threads(1);  // BLAS runs on the OpenMP threads (cpu::gemm splits the work)
  omp_set_num_threads(n);
}

// Applies NR_NUM_THREADS when set; returns the thread count in force.
inline int init_threads_from_env() {
  if (const char* env = std::getenv("NR_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end == env || *end != '\0' || n < 1)
      throw ValueError(fmt::format("NR_NUM_THREADS must be a positive integer, got '{}'", env));
    set_num_threads(static_cast<int>(n));
  }
  if (num_threads_setting() == 0) set_num_threads(omp_get_max_threads());
  return num_threads_setting();
}

inline int num_threads() {
  const int n = num_threads_setting();
  return n > 0 ? n : init_threads_from_env();
}

}  // namespace nr
