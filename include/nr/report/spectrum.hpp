// nr/report/spectrum.hpp — singular values of a weight matrix (the paper's Figure 3).
//
// The neutral-residues paper (Section 3, "Adapter gating & local loss", Figure 3) compares the
// singular values of the adapters' gating matrix W_g, normalised by the largest one, with those
// of the backbone FFN's gating matrix: a vanilla adapter's spectrum is much more skewed (its
// projections are close to colinear), a gated one's less so. Computed with Eigen's
// divide-and-conquer SVD in double precision.
#pragma once

#include <vector>

// GCC 12 at -O3 with AVX-512 reports false -Wmaybe-uninitialized inside its own intrinsics
// headers when Eigen's SVD is inlined (GCC bug 105593); silenced for this header only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <Eigen/SVD>

#include "nr/core/tensor.hpp"

namespace nr {

// Singular values of a 2-D tensor, in decreasing order, divided by the largest (all zeros for a
// zero matrix).
inline std::vector<double> normalized_singular_values(const Tensor& w) {
  if (w.rank() != 2) throw ShapeError(fmt::format("normalized_singular_values: expected a matrix, got shape {}", w.shape().str()));
  const Tensor c = w.contiguous();
  Eigen::MatrixXd m(c.dim(0), c.dim(1));
  for (int64_t i = 0; i < c.dim(0); ++i)
    for (int64_t j = 0; j < c.dim(1); ++j) m(i, j) = c.data()[i * c.dim(1) + j];
  const Eigen::VectorXd s = Eigen::BDCSVD<Eigen::MatrixXd>(m).singularValues();
  std::vector<double> out(static_cast<size_t>(s.size()));
  const double top = s.size() > 0 ? s(0) : 0.0;
  for (Eigen::Index i = 0; i < s.size(); ++i) out[static_cast<size_t>(i)] = top > 0.0 ? s(i) / top : 0.0;
  return out;
}

}  // namespace nr

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
