// nr/ops/exp_poly.hpp — exp(x) in float as plain arithmetic, so that loops calling it vectorise.
//
// std::exp is an opaque call into libm that the compiler cannot vectorise (without -ffast-math),
// which made the SiLU of the gated FFN (one exp per element, twice per step) cost as much as a
// tenth of a training step. exp_poly is the classic range reduction (Cody & Waite) followed by a
// polynomial (the Cephes expf coefficients):
//   n = round(x log2 e),  r = x - n ln 2           (ln 2 split in two constants: r is exact)
//   e^r ~ 1 + r + r^2 P(r),  |r| <= ln 2 / 2       (P of degree 5)
//   e^x = 2^n e^r                                  (2^n built from its exponent bits)
// Relative error below 2e-7 (2 ulp) over the clamped range. Inputs are clamped to
// [-87.3, 88.7], so the result is always a finite normal float: e^-100 gives 1.2e-38 instead of
// 3.7e-44 (a difference far below float resolution for every use in nr: sigmoid, SiLU).
// NaN propagates (the comparisons of the clamp keep it), as does +inf -> 2^128 -> inf.
#pragma once

#include <bit>
#include <cstdint>

namespace nr::pointwise {

inline float exp_poly(float x) {
  x = x < 88.7f ? x : 88.7f;
  x = x > -87.3f ? x : -87.3f;
  // Round x log2(e) to the nearest integer: adding and subtracting 1.5 * 2^23 leaves the integer.
  const float shifter = 12582912.0f;
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // ln 2 = 0.693359375 - 2.12194440e-4
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 128)
  return er * std::bit_cast<float>(bits);
}

}  // namespace nr::pointwise
