// nr/ops/silu.hpp — the sigmoid-weighted linear unit (SiLU, "swish"), Elfwing et al. 2018.
//
//   y = silu(x) = x * sigmoid(x)                x, y (...) any shape
//
// Backward (accumulated with +=), g = dL/dy, saved: the input x; with s = sigmoid(x):
//   dy/dx = s + x * s * (1 - s) = s * (1 + x * (1 - s))
//   dx += g * s * (1 + x * (1 - s))
// The stable sigmoid of sigmoid.hpp keeps both finite for any finite x.
#pragma once

#include "nr/ops/sigmoid.hpp"
#include "nr/ops/unary.hpp"

namespace nr {

namespace pointwise {

struct Silu {
  float value(float x) const { return x * sigmoid(x); }
  float derivative(float x, float /*y*/) const {
    const float s = sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
  }
};

}  // namespace pointwise

// y (...) = x * sigmoid(x), x (...).
inline Var silu(const Var& x) { return detail::unary_op(x, "silu", pointwise::Silu{}); }

}  // namespace nr
