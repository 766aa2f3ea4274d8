// nr/ops/silu.hpp — the sigmoid-weighted linear unit (SiLU, "swish"), Elfwing et al. 2018.
//
//   y = silu(x) = x * sigmoid(x)                x, y (...) any shape
//
// Backward (accumulated with +=), g = dL/dy, saved: the input x; with s = sigmoid(x):
//   dy/dx = s + x * s * (1 - s) = s * (1 + x * (1 - s))
//   dx += g * s * (1 + x * (1 - s))
// sigmoid(x) = 1 / (1 + e^-x) with e^-x from exp_poly (vectorisable, clamped so that it stays
// finite): s is finite and in [0, 1] for any finite x, so both formulas are too.
#pragma once

#include "nr/ops/exp_poly.hpp"
#include "nr/ops/sigmoid.hpp"
#include "nr/ops/unary.hpp"

namespace nr {

namespace pointwise {

// The logistic function through exp_poly, for the loops that must vectorise (SiLU).
inline float sigmoid_poly(float x) { return 1.0f / (1.0f + exp_poly(-x)); }

struct Silu {
  float value(float x) const { return x * sigmoid_poly(x); }
  float derivative(float x, float /*y*/) const {
    const float s = sigmoid_poly(x);
    return s * (1.0f + x * (1.0f - s));
  }
};

}  // namespace pointwise

// y (...) = x * sigmoid(x), x (...).
inline Var silu(const Var& x) { return detail::unary_op(x, "silu", pointwise::Silu{}); }

}  // namespace nr
