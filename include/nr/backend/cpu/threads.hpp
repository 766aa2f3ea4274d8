// nr/backend/cpu/threads.hpp — one thread setting for BLAS and OpenMP.
//
// OpenBLAS keeps its own thread pool and nr's elementwise loops use OpenMP. Both are sized from
// one number so they never oversubscribe the cores: set_num_threads(k) (or NR_NUM_THREADS=k in
// the environment, read once by init_threads_from_env) applies k to both. GEMMs are never called
// from inside an OpenMP parallel region with more than one BLAS thread.
#pragma once

#include <cstdlib>
#include <string>

#include <cblas.h>
#include <omp.h>

#include <fmt/format.h>

#include "nr/core/error.hpp"

namespace nr {

inline int& num_threads_setting() {
  static int n = 0;  // 0 = not set yet: libraries' own defaults
  return n;
}

inline void set_num_threads(int n) {
  if (n < 1) throw ValueError(fmt::format("set_num_threads: thread count must be at least 1, got {}", n));
  num_threads_setting() = n;
  openblas_set_num_threads(n);
  omp_set_num_threads(n);
}

inline int num_threads() {
  const int n = num_threads_setting();
  return n > 0 ? n : omp_get_max_threads();
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
  return num_threads();
}

}  // namespace nr
