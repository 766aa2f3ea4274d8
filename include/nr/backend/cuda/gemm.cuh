// nr/backend/cuda/gemm.cuh — matrix products through cuBLAS (cublasGemmStridedBatchedEx), and the
// forward and backward of nr::matmul on the device.
//
// Include the headers under nr/backend/cuda/ only from .cu files compiled by nvcc (target nr::cuda).
//
//   C = alpha op(A) op(B) + beta C     row-major, like nr::cpu::gemm; op(X) = X or X^T
//   A (M, K) or stored (K, M) when trans_a;  B (K, N) or stored (N, K) when trans_b;  C (M, N)
//
// cuBLAS is column-major. A row-major matrix X (r, c) is the column-major X^T (c, r) with the
// same memory, so C^T = op(B)^T op(A)^T is computed with cuBLAS's operands swapped: m = N,
// n = M, first operand B, second operand A, and leading dimensions equal to the stored row
// lengths (K or M for A, N or K for B, N for C).
//
// Precision (GemmPrecision, Context::gemm_precision):
//   fp32  CUDA_R_32F inputs, CUBLAS_COMPUTE_32F                   (the default; CPU-exact inputs)
//   tf32  CUDA_R_32F inputs, CUBLAS_COMPUTE_32F_FAST_TF32          (tensor cores, 10-bit mantissa)
//   bf16  inputs converted to CUDA_R_16BF in scratch memory, CUBLAS_COMPUTE_32F, F32 output
//
// matmul: the shapes of nr::matmul (ops/matmul.hpp) planned by plan_matmul (the same rules: a 2-D
// B is shared by every batch, and then, without trans_a, all rows of A form one product).
// Backward, gradients ACCUMULATED (beta = 1), with G = dL/dC, exactly as on the CPU:
//   dA (M, K) += G op(B)^T            (trans_a: dA (K, M) += op(B) G^T)
//   dB (K, N) += op(A)^T G            (trans_b: dB (N, K) += G^T op(A))
// A shared B's gradient sums over the batches: one product per batch, in batch order, on the
// stream (a strided batched call would write the same dB concurrently).
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <climits>
#include <cstdint>

#include <fmt/format.h>

#include "nr/backend/cuda/device_tensor.cuh"
#include "nr/backend/cuda/launch.cuh"
#include "nr/core/shape.hpp"
#include "nr/ops/matmul_plan.hpp"

namespace nr::cuda {

namespace detail {

inline int gemm_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX) throw ValueError(fmt::format("cuda::gemm: {} = {} does not fit cuBLAS's int", what, v));
  return static_cast<int>(v);
}

// The column-major call behind a row-major product; types and compute mode already chosen.
inline void gemm_ex(Context& ctx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
                    cudaDataType_t a_type, int64_t a_step, const void* B, cudaDataType_t b_type, int64_t b_step,
                    float beta, float* C, int64_t c_step, int64_t batches, cublasComputeType_t compute) {
  const int m = gemm_int(N, "N"), n = gemm_int(M, "M"), k = gemm_int(K, "K");
  const int lda = gemm_int(ta ? M : K, "lda"), ldb = gemm_int(tb ? K : N, "ldb"), ldc = gemm_int(N, "ldc");
  const int count = gemm_int(batches, "batches");
  NR_CUBLAS_CHECK(cublasGemmStridedBatchedEx(ctx.cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                             m, n, k, &alpha, B, b_type, ldb, b_step, A, a_type, lda, a_step, &beta, C,
                                             CUDA_R_32F, ldc, c_step, count, compute, CUBLAS_GEMM_DEFAULT));
}

}  // namespace detail

// C = alpha op(A) op(B) + beta C for `batches` products; a_step, b_step, c_step are the element
// distances between consecutive batches (b_step = 0: B shared; c_step must not be 0 when
// batches > 1). All pointers are device pointers; A and B are F32.
inline void gemm(Context& ctx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t a_step, const float* B, int64_t b_step, float beta, float* C, int64_t c_step,
                 int64_t batches = 1) {
  if (batches > 1 && c_step == 0) throw ValueError("cuda::gemm: batched products cannot share one output (c_step 0)");
  if (M == 0 || N == 0 || batches == 0) return;
  switch (ctx.gemm_precision) {
    case GemmPrecision::fp32:
    case GemmPrecision::tf32: {
      const cublasComputeType_t compute =
          ctx.gemm_precision == GemmPrecision::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      detail::gemm_ex(ctx, ta, tb, M, N, K, alpha, A, CUDA_R_32F, a_step, B, CUDA_R_32F, b_step, beta, C, c_step,
                      batches, compute);
      return;
    }
    case GemmPrecision::bf16: {
      // Scratch BF16 copies of the operands (stream-ordered: reused safely by later requests).
      const int64_t a_n = (batches - 1) * a_step + M * K, b_n = (batches - 1) * b_step + K * N;
      DeviceTensor a16 = DeviceTensor::empty(ctx, Shape{a_n}, DType::bf16);
      DeviceTensor b16 = DeviceTensor::empty(ctx, Shape{b_n}, DType::bf16);
      to_bf16(ctx, A, a16.bf16_data(), a_n);
      to_bf16(ctx, B, b16.bf16_data(), b_n);
      detail::gemm_ex(ctx, ta, tb, M, N, K, alpha, a16.bf16_data(), CUDA_R_16BF, a_step, b16.bf16_data(), CUDA_R_16BF,
                      b_step, beta, C, c_step, batches, CUBLAS_COMPUTE_32F);
      return;
    }
  }
}

// The same product with BF16 operands already on the device (F32 accumulation and output).
inline void gemm_bf16(Context& ctx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const __nv_bfloat16* A, int64_t a_step, const __nv_bfloat16* B, int64_t b_step, float beta,
                      float* C, int64_t c_step, int64_t batches = 1) {
  if (batches > 1 && c_step == 0) throw ValueError("cuda::gemm_bf16: batched products cannot share one output");
  if (M == 0 || N == 0 || batches == 0) return;
  detail::gemm_ex(ctx, ta, tb, M, N, K, alpha, A, CUDA_R_16BF, a_step, B, CUDA_R_16BF, b_step, beta, C, c_step, batches,
                  CUBLAS_COMPUTE_32F);
}

// The products behind matmul(a, b) for operand shapes a, b: the CPU op's plan
// (ops/matmul_plan.hpp), so both backends accept and reject the same shapes.
using nr::detail::MatmulPlan;
inline MatmulPlan plan_matmul(const Shape& a, const Shape& b, bool trans_a, bool trans_b) {
  return nr::detail::plan_matmul(a, b, MatmulOptions{.trans_a = trans_a, .trans_b = trans_b}, "cuda::matmul");
}

inline void matmul_forward(Context& ctx, const MatmulPlan& p, const float* A, const float* B, float* C) {
  gemm(ctx, p.trans_a, p.trans_b, p.M, p.N, p.K, 1.0f, A, p.a_step(), B, p.b_step(), 0.0f, C, p.c_step(), p.batches);
}

// dA += ..., dB += ... from G = dL/dC (see the header comment); dA or dB may be null.
inline void matmul_backward(Context& ctx, const MatmulPlan& p, const float* G, const float* A, const float* B, float* dA,
                            float* dB) {
  const int64_t as = p.a_step(), bs = p.b_step(), cs = p.c_step();
  if (dA) {
    if (!p.trans_a)  // dA (M, K) += G (M, N) op(B)^T
      gemm(ctx, false, !p.trans_b, p.M, p.K, p.N, 1.0f, G, cs, B, bs, 1.0f, dA, as, p.batches);
    else  // dA (K, M) += op(B) (K, N) G^T
      gemm(ctx, p.trans_b, true, p.K, p.M, p.N, 1.0f, B, bs, G, cs, 1.0f, dA, as, p.batches);
  }
  if (dB) {
    // A shared dB (bs = 0) takes one product per batch, in order; otherwise one batched call.
    const int64_t calls = bs == 0 ? p.batches : 1, per_call = bs == 0 ? 1 : p.batches;
    for (int64_t i = 0; i < calls; ++i) {
      const float* Ai = A + i * as;
      const float* Gi = G + i * cs;
      if (!p.trans_b)  // dB (K, N) += op(A)^T (K, M) G (M, N)
        gemm(ctx, !p.trans_a, false, p.K, p.N, p.M, 1.0f, Ai, as, Gi, cs, 1.0f, dB, bs, per_call);
      else  // dB (N, K) += G^T (N, M) op(A) (M, K)
        gemm(ctx, true, p.trans_a, p.N, p.K, p.M, 1.0f, Gi, cs, Ai, as, 1.0f, dB, bs, per_call);
    }
  }
}

}  // namespace nr::cuda
