// nr/ops/sigmoid.hpp — the logistic function, computed without overflow.
//
//   y = sigmoid(x) = 1 / (1 + exp(-x))          x, y (...) any shape
//
// Stable form: with e = exp(-|x|) in (0, 1],
//   x >= 0:  y = 1 / (1 + e)        x < 0:  y = e / (1 + e)
// so exp never sees a positive argument and y is finite (0 <= y <= 1) for every finite x,
// including |x| = 100 where exp(-x) alone would overflow.
//
// Backward (accumulated with +=), g = dL/dy, saved: the output y:
//   dx += g * y * (1 - y)
#pragma once

#include <cmath>

#include "nr/ops/unary.hpp"

namespace nr {

namespace pointwise {

// The scalar logistic function; also used by silu, silu_mul and bce_with_logits.
inline float sigmoid(float x) {
  const float e = std::exp(-std::abs(x));
  const float r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}

struct Sigmoid {
  float value(float x) const { return sigmoid(x); }
  float derivative(float /*x*/, float y) const { return y * (1.0f - y); }
};

}  // namespace pointwise

// y (...) = sigmoid(x (...)).
inline Var sigmoid(const Var& x) { return detail::unary_op(x, "sigmoid", pointwise::Sigmoid{}); }

}  // namespace nr
