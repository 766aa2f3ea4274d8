// nr/backend/cpu/gemm.hpp — matrix products through OpenBLAS's cblas_sgemm.
//
//   C (M, N) = alpha * op(A) op(B) + beta * C,   op(X) = X or X^T
//
// All matrices are row-major. A is (M, K) when not transposed and (K, M) when transposed; B is
// (K, N) or (N, K). beta = 1 accumulates into C, which is how gradients are summed (+=).
//
// Threading (threads.hpp): OpenBLAS runs single-threaded, and a product worth splitting is cut
// along the longer of M and N into blocks of at least 64 (a multiple of 16, the kernels' register
// tile), up to 4 blocks per thread, which the OpenMP threads take dynamically: on a busy machine a
// thread that loses its core leaves its remaining blocks to the others instead of holding
// everyone at the barrier. Each block is an independent cblas_sgemm on the same operands (A's
// rows or B's columns of that block); re-packing the shared operand per block costs about
// 1 / (2 * block) of the block's work. The blocks depend only on the shape and the thread count,
// and every element of C is computed inside one block, so results are the same in every run
// with a given thread count (an element may round differently than in one unsplit call, since
// OpenBLAS treats a block's edges differently). Inside an OpenMP parallel region (attention,
// experts) a product runs on the calling thread only.
#pragma once

#include <algorithm>
#include <cstdint>

#include <cblas.h>
#include <omp.h>

#include "nr/backend/cpu/threads.hpp"

namespace nr::cpu {

// Products below this many multiply-adds run on one thread: splitting costs more than it saves.
inline constexpr double gemm_split_min_madds = 1 << 18;

// The single-threaded product on raw operands (no splitting).
inline void gemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                        int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // C = beta C, and beta = 0 must clear C even if it held garbage (or NaN)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A, static_cast<int>(lda), B,
              static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

inline void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const int threads = omp_in_parallel() ? 1 : num_threads();
  const double madds = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  const bool split_rows = M >= N;
  const int64_t extent = split_rows ? M : N;
  const int64_t tiles = (extent + 15) / 16;  // 16-wide tiles of the split dimension
  const int parts = static_cast<int>(std::min<int64_t>(4 * static_cast<int64_t>(threads), tiles / 4));
  if (threads <= 1 || parts <= 1 || madds < gemm_split_min_madds) {
    gemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Block p covers [begin(p), begin(p + 1)) of the split dimension, in whole tiles.
  auto begin = [&](int p) { return std::min(extent, tiles * p / parts * 16); };
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int p = 0; p < parts; ++p) {
    const int64_t b0 = begin(p), b1 = begin(p + 1);
    if (b1 <= b0) continue;
    if (split_rows)  // rows [b0, b1) of C and of op(A)
      gemm_serial(trans_a, trans_b, b1 - b0, N, K, alpha, trans_a ? A + b0 : A + b0 * lda, lda, B, ldb, beta,
                  C + b0 * ldc, ldc);
    else  // columns [b0, b1) of C and of op(B)
      gemm_serial(trans_a, trans_b, M, b1 - b0, K, alpha, A, lda, trans_b ? B + b0 * ldb : B + b0, ldb, beta, C + b0,
                  ldc);
  }
}

// Convenience for dense row-major operands: leading dimensions follow from the shapes.
inline void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 const float* B, float beta, float* C) {
  gemm(trans_a, trans_b, M, N, K, alpha, A, trans_a ? M : K, B, trans_b ? K : N, beta, C, N);
}

}  // namespace nr::cpu
