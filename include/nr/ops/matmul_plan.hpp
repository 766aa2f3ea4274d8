// nr/ops/matmul_plan.hpp — the shapes of a (batched, optionally transposed) matrix product:
// which GEMMs compute C = op(A) op(B), shared by the CPU op (ops/matmul.hpp) and the CUDA
// kernels (backend/cuda/gemm.cuh). Shape logic only: no BLAS, no OpenMP, no CUDA.
#pragma once

#include <cstdint>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/core/shape.hpp"

namespace nr {

struct MatmulOptions {
  bool trans_a = false;  // use A^T (swap A's last two dimensions)
  bool trans_b = false;  // use B^T
};

namespace detail {

struct MatmulPlan {
  int64_t batches = 1;   // number of products
  int64_t M = 0, N = 0, K = 0;
  bool trans_a = false, trans_b = false;
  bool shared_b = false;  // B is 2-D and used by every batch
  bool flatten = false;   // shared B and A not transposed: one GEMM over all rows
  Shape out_shape;
  // Element distances between consecutive products (0: B shared).
  int64_t a_step() const { return M * K; }
  int64_t b_step() const { return shared_b ? 0 : K * N; }
  int64_t c_step() const { return M * N; }
};

// `op` names the operation in the ShapeError ("matmul", "cuda::matmul").
inline MatmulPlan plan_matmul(const Shape& a, const Shape& b, MatmulOptions o, const char* op = "matmul") {
  auto fail = [&](const char* why) {
    return ShapeError(fmt::format("{}{}{}: cannot multiply {} by {}: {}", op, o.trans_a ? " (A transposed)" : "",
                                  o.trans_b ? " (B transposed)" : "", a.str(), b.str(), why));
  };
  if (a.rank() < 2 || b.rank() < 2) throw fail("both operands need at least 2 dimensions");
  MatmulPlan p;
  p.trans_a = o.trans_a;
  p.trans_b = o.trans_b;
  p.M = o.trans_a ? a.dim(-1) : a.dim(-2);
  p.K = o.trans_a ? a.dim(-2) : a.dim(-1);
  const int64_t kb = o.trans_b ? b.dim(-1) : b.dim(-2);
  p.N = o.trans_b ? b.dim(-2) : b.dim(-1);
  if (p.K != kb) throw fail("inner dimensions differ");
  p.shared_b = b.rank() == 2;
  if (!p.shared_b) {
    if (a.rank() != b.rank()) throw fail("batched operands need the same rank");
    for (int i = 0; i < a.rank() - 2; ++i)
      if (a[i] != b[i]) throw fail("batch dimensions differ");
  }
  for (int i = 0; i < a.rank() - 2; ++i) {
    p.batches *= a[i];
    p.out_shape.push_back(a[i]);
  }
  p.out_shape.push_back(p.M);
  p.out_shape.push_back(p.N);
  p.flatten = p.shared_b && !o.trans_a;
  if (p.flatten) {
    p.M *= p.batches;
    p.batches = 1;
  }
  return p;
}

}  // namespace detail
}  // namespace nr
