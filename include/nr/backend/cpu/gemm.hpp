// nr/backend/cpu/gemm.hpp — matrix products through OpenBLAS's cblas_sgemm.
//
//   C (M, N) = alpha * op(A) op(B) + beta * C,   op(X) = X or X^T
//
// All matrices are row-major. A is (M, K) when not transposed and (K, M) when transposed; B is
// (K, N) or (N, K). beta = 1 accumulates into C, which is how gradients are summed (+=).
#pragma once

#include <cstdint>

#include <cblas.h>

namespace nr::cpu {

inline void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                 int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
              static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

// Convenience for dense row-major operands: leading dimensions follow from the shapes.
inline void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, const float* B, float beta, float* C) {
  gemm(trans_a, trans_b, M, N, K, alpha, A, trans_a ? M : K, B, trans_b ? K : N, beta, C, N);
}

}  // namespace nr::cpu
