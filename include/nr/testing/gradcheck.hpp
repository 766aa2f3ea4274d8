// nr/testing/gradcheck.hpp — finite-difference gradient checks, shipped for users' own modules.
//
// For a function f of some input Vars producing an output Var y, pick a fixed random
// projection R (same shape as y) and consider the scalar s = sum(y * R). Then
//   analytic:  ds/dx from one backward pass seeded with dL/dy = R;
//   numeric:   ds/dx_i ~ (s(x_i + eps) - s(x_i - eps)) / (2 eps)   (central differences).
// The kernels compute in float32; s and the differences are accumulated in double so that the
// only float error left is the forward's own rounding, which eps = 1e-3 keeps far below the
// tolerance on the small shapes used in tests. Both gradients are compared element by element
// with |analytic - numeric| <= atol + rtol * |numeric|.
#pragma once

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nr/autograd/backward.hpp"
#include "nr/autograd/var.hpp"
#include "nr/core/rng.hpp"

namespace nr::testing {

struct GradcheckOptions {
  double eps = 1e-3;
  double atol = 2e-3;
  double rtol = 2e-2;
  uint64_t seed = 1234;
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0.0;  // largest |analytic - numeric| over every checked element
  int64_t checked = 0;         // number of elements compared
  std::string report;          // the first mismatches, one per line
};

using GradcheckFn = std::function<Var(const std::vector<Var>&)>;

inline GradcheckResult gradcheck(const GradcheckFn& f, std::vector<Var> inputs, GradcheckOptions opt = {}) {
  GradcheckResult res;
  Tape tape;
  TapeScope scope(tape);

  // Analytic gradients from one backward pass with upstream gradient R.
  for (Var& x : inputs)
    if (x.requires_grad()) x.drop_grad();
  Var y = f(inputs);
  Rng rng(opt.seed);
  Tensor R = Tensor::empty(y.shape());
  uniform_(R, -1.0, 1.0, rng);
  backward(y, R);

  auto projected = [&]() {
    NoGrad ng;
    const Var out = f(inputs);
    const Tensor v = out.value().contiguous();
    double s = 0.0;
    for (int64_t i = 0; i < v.numel(); ++i) s += static_cast<double>(v.data()[i]) * R.data()[i];
    return s;
  };

  for (size_t k = 0; k < inputs.size(); ++k) {
    Var& x = inputs[k];
    if (!x.requires_grad()) continue;
    const Tensor analytic = x.has_grad() ? x.grad().clone() : Tensor::zeros(x.shape());
    float* p = x.value().data();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const float saved = p[i];
      p[i] = static_cast<float>(saved + opt.eps);
      const double up = projected();
      p[i] = static_cast<float>(saved - opt.eps);
      const double down = projected();
      p[i] = saved;
      // The perturbation actually applied in float, not the nominal 2 eps.
      const double h = static_cast<double>(static_cast<float>(saved + opt.eps)) -
                       static_cast<double>(static_cast<float>(saved - opt.eps));
      const double numeric = (up - down) / h;
      const double a = analytic.data()[i];
      const double err = std::abs(a - numeric);
      res.max_abs_error = std::max(res.max_abs_error, err);
      ++res.checked;
      if (err > opt.atol + opt.rtol * std::abs(numeric)) {
        if (res.ok || res.report.size() < 2000)
          res.report += fmt::format("input {} element {}: analytic {:.6g} numeric {:.6g}\n", k, i, a, numeric);
        res.ok = false;
      }
    }
  }
  return res;
}

// A random input for gradient checks: values in [-1, 1), trainable.
inline Var random_var(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Rng rng(seed);
  Tensor t = Tensor::empty(shape);
  uniform_(t, lo, hi, rng);
  return Var::parameter(std::move(t));
}

}  // namespace nr::testing
