// nr/ops/matmul.hpp — matrix product, batched, with optionally transposed operands.
//
//   C = op(A) op(B),   op(X) = X or X^T (the last two dimensions), through cblas_sgemm.
//
// Shapes (op applied):
//   A (..., M, K) and B (K, N)        -> C (..., M, N)   B shared by every batch (a Linear layer:
//                                                         x (B, T, C) times W^T with W [out, in])
//   A (..., M, K) and B (..., K, N)   -> C (..., M, N)   one product per batch, same leading dims
//
// Backward (gradients accumulated with +=, BLAS beta = 1), with G = dL/dC:
//   dA = G op(B)^T     (stored transposed again when A was used transposed: dA = op(B) G^T)
//   dB = op(A)^T G     (or dB = G^T op(A) when B was used transposed)
// Saved for backward: A and B themselves (no copy; the Var handles keep them alive).
#pragma once

#include <fmt/format.h>

#include "nr/backend/cpu/gemm.hpp"
#include "nr/ops/matmul_plan.hpp"
#include "nr/ops/op_support.hpp"

namespace nr {

inline Var matmul(const Var& a, const Var& b, MatmulOptions o = {}) {
  detail::expect_dense(a, "matmul", "A");
  detail::expect_dense(b, "matmul", "B");
  const detail::MatmulPlan p = detail::plan_matmul(a.shape(), b.shape(), o);
  const int64_t M = p.M, N = p.N, K = p.K;
  const int64_t a_step = p.a_step(), b_step = p.b_step(), c_step = p.c_step();

  Tensor c = Tensor::empty(p.out_shape);
  for (int64_t i = 0; i < p.batches; ++i)
    cpu::gemm(o.trans_a, o.trans_b, M, N, K, 1.0f, a.value().data() + i * a_step, b.value().data() + i * b_step, 0.0f,
              c.data() + i * c_step);

  Var out(std::move(c), any_requires_grad(a, b));
  if (out.requires_grad()) {
    active_tape().record([a, b, out, p, o, a_step, b_step, c_step]() mutable {
      const float* g = detail::output_grad(out);
      if (!g) return;
      const float* A = a.value().data();
      const float* B = b.value().data();
      // A gradient that does not exist yet is written with beta = 0, sparing its zero-fill (see
      // grad_buffer_for_overwrite): by every batch when each writes its own slice, by the first
      // only when a shared B's gradient sums over the batches (b_step = 0).
      if (a.requires_grad()) {
        bool fresh = false;
        float* dA = a.grad_buffer_for_overwrite(fresh).data();
        for (int64_t i = 0; i < p.batches; ++i) {
          const float beta = fresh && (i == 0 || a_step != 0) ? 0.0f : 1.0f;
          if (!o.trans_a)  // dA (M, K) += G (M, N) op(B)^T
            cpu::gemm(false, !o.trans_b, p.M, p.K, p.N, 1.0f, g + i * c_step, B + i * b_step, beta, dA + i * a_step);
          else  // dA (K, M) += op(B) (K, N) G^T
            cpu::gemm(o.trans_b, true, p.K, p.M, p.N, 1.0f, B + i * b_step, g + i * c_step, beta, dA + i * a_step);
        }
      }
      if (b.requires_grad()) {
        bool fresh = false;
        float* dB = b.grad_buffer_for_overwrite(fresh).data();
        for (int64_t i = 0; i < p.batches; ++i) {
          const float beta = fresh && (i == 0 || b_step != 0) ? 0.0f : 1.0f;
          if (!o.trans_b)  // dB (K, N) += op(A)^T (K, M) G (M, N)
            cpu::gemm(!o.trans_a, false, p.K, p.N, p.M, 1.0f, A + i * a_step, g + i * c_step, beta, dB + i * b_step);
          else  // dB (N, K) += G^T (N, M) op(A) (M, K)
            cpu::gemm(true, o.trans_a, p.N, p.K, p.M, 1.0f, g + i * c_step, A + i * a_step, beta, dB + i * b_step);
        }
      }
    });
  }
  return out;
}

// y = x W^T for a weight stored [out, in] as in Hugging Face: x (..., in) -> y (..., out), where x
// has at least 2 dimensions (rows, in).
inline Var linear(const Var& x, const Var& weight) {
  if (weight.shape().rank() != 2 || x.shape().rank() < 2 || x.shape().back() != weight.shape().dim(1))
    throw ShapeError(fmt::format("linear: input {} does not fit weight {} (expected [out, in] with in = {})",
                                 x.shape().str(), weight.shape().str(), weight.shape().rank() == 2 ? weight.shape().dim(1) : -1));
  return matmul(x, weight, {.trans_b = true});
}

}  // namespace nr
