// nr/ops/entropy.hpp — the Shannon entropy (in nats) of each row of a probability matrix.
//
//   y[r] = H(p_r) = -sum_c p[r, c] log p[r, c]        p (..., C) seen as R rows,  y (...)
//
// The output drops the last dimension: p (N, E) gives (N,), a single distribution p (E,) gives a
// scalar (). Rows are expected to hold probabilities (>= 0, summing to 1) but the op does not
// check it: it is the plain function above. By the usual convention 0 log 0 = 0: entries <= 0
// contribute nothing. A mixture of experts uses it for the conditional entropy H(e | x) and the
// marginal entropy H(e) of its routing distribution (ModuleFormer, Sections 4.1 and 4.2).
// The sums accumulate in double. A rank-0 input or an empty last dimension throws ShapeError.
//
// Backward (gradients ACCUMULATED with += into p.grad), with g = dL/dy (...) and the saved input
// p: d(-p log p)/dp = -(log p + 1), so
//   dp[r, c] += -g[r] (log max(p[r, c], p_min) + 1),     p_min = FLT_MIN (about 1.2e-38).
// The true derivative is +infinity at p = 0; clamping the logarithm keeps it finite (about 86),
// which is what a softmax that underflowed to 0 needs: its backward multiplies this gradient by
// p = 0 again, so the clamped value never reaches the logits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include <fmt/format.h>

#include "nr/ops/op_support.hpp"

namespace nr::cpu {

inline constexpr float entropy_p_min = std::numeric_limits<float>::min();

// y[r] = -sum_c p[r, c] log p[r, c] (terms with p <= 0 skipped), in double.
inline void entropy_forward(const float* p, float* y, int64_t R, int64_t C) {
#pragma omp parallel for if (R * C > nr::detail::parallel_grain)
  for (int64_t r = 0; r < R; ++r) {
    const float* pr = p + r * C;
    double h = 0.0;
    for (int64_t c = 0; c < C; ++c)
      if (pr[c] > 0.0f) h -= static_cast<double>(pr[c]) * std::log(static_cast<double>(pr[c]));
    y[r] = static_cast<float>(h);
  }
}

// dp[r, c] += -g[r] (log max(p[r, c], p_min) + 1).
inline void entropy_backward(const float* p, const float* g, float* dp, int64_t R, int64_t C) {
#pragma omp parallel for if (R * C > nr::detail::parallel_grain)
  for (int64_t r = 0; r < R; ++r) {
    const float* pr = p + r * C;
    float* dr = dp + r * C;
    for (int64_t c = 0; c < C; ++c) dr[c] -= g[r] * (std::log(std::max(pr[c], entropy_p_min)) + 1.0f);
  }
}

}  // namespace nr::cpu

namespace nr {

// y (...) = entropy of each row of p (..., C).
inline Var entropy(const Var& p) {
  detail::expect_dense(p, "entropy", "p");
  const Shape& ps = p.shape();
  if (ps.rank() < 1 || ps.back() == 0)
    throw ShapeError(fmt::format("entropy: input {} needs at least one dimension and a non-empty last dimension",
                                 ps.str()));
  const int64_t C = ps.back(), R = ps.rows();
  Shape out_shape;
  for (int i = 0; i + 1 < ps.rank(); ++i) out_shape.push_back(ps[i]);

  Tensor y = Tensor::empty(out_shape);  // (...)
  cpu::entropy_forward(p.value().data(), y.data(), R, C);

  Var out(std::move(y), any_requires_grad(p));
  if (out.requires_grad()) {
    active_tape().record([p, out, R, C]() {
      const float* g = detail::output_grad(out);  // (...), R values
      if (!g) return;
      // Saved: the input p.
      cpu::entropy_backward(p.value().data(), g, p.grad_buffer().data(), R, C);
    });
  }
  return out;
}

}  // namespace nr
