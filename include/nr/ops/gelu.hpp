// nr/ops/gelu.hpp — the Gaussian error linear unit, tanh approximation (Hendrycks & Gimpel 2016),
// as PyTorch's gelu(x, approximate='tanh') and Hugging Face's "gelu_pytorch_tanh" (Gemma).
//
//   y = gelu(x) = 0.5 x (1 + tanh(u)),   u = k (x + c x^3),   k = sqrt(2 / pi), c = 0.044715
//   x, y (...) any shape
//
// Backward (accumulated with +=), g = dL/dy, saved: the input x; with t = tanh(u):
//   dy/dx = 0.5 (1 + t)  +  0.5 x (1 - t^2) k (1 + 3 c x^2)
//           [through x]     [through tanh: sech^2(u) du/dx]
//   dx += g * dy/dx
//
// For |x| > 10, u exceeds 43 and tanh(u) rounds to +-1 in float, so x is clamped to [-10, 10]
// inside u and du/dx: the results are the same and x^3 cannot overflow for huge inputs.
#pragma once

#include <algorithm>
#include <cmath>

#include "nr/ops/unary.hpp"

namespace nr {

namespace pointwise {

struct GeluTanh {
  static constexpr float k = 0.7978845608028654f;  // sqrt(2 / pi)
  static constexpr float c = 0.044715f;

  float value(float x) const {
    const float xc = std::clamp(x, -10.0f, 10.0f);
    const float t = std::tanh(k * (xc + c * xc * xc * xc));
    return 0.5f * x * (1.0f + t);
  }
  float derivative(float x, float /*y*/) const {
    const float xc = std::clamp(x, -10.0f, 10.0f);
    const float t = std::tanh(k * (xc + c * xc * xc * xc));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * c * xc * xc);
  }
};

}  // namespace pointwise

// y (...) = gelu_tanh(x (...)).
inline Var gelu(const Var& x) { return detail::unary_op(x, "gelu", pointwise::GeluTanh{}); }

}  // namespace nr
