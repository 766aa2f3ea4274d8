// nr/ops/elu.hpp — the exponential linear unit (Clevert et al. 2016), the gate of neutral
// residues' adapters.
//
//   y = elu(x) = x                       if x > 0
//                alpha (exp(x) - 1)      otherwise            x, y (...) any shape
// (computed with expm1 so that small negative x keeps its precision).
//
// Backward (accumulated with +=), g = dL/dy, saved: the input x and the output y:
//   dy/dx = 1                            if x > 0
//           alpha exp(x) = y + alpha     otherwise (the left derivative at the kink x = 0)
//   dx += g * dy/dx
#pragma once

#include <cmath>

#include "nr/ops/unary.hpp"

namespace nr {

namespace pointwise {

struct Elu {
  float alpha = 1.0f;

  float value(float x) const { return x > 0.0f ? x : alpha * std::expm1(x); }
  float derivative(float x, float y) const { return x > 0.0f ? 1.0f : y + alpha; }
};

}  // namespace pointwise

// y (...) = elu(x (...)); alpha sets the negative saturation (y -> -alpha as x -> -infinity).
inline Var elu(const Var& x, float alpha = 1.0f) { return detail::unary_op(x, "elu", pointwise::Elu{alpha}); }

}  // namespace nr
