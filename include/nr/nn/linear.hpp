// nr/nn/linear.hpp — a bias-free linear layer, y = x W^T, W stored [out, in] (Hugging Face).
#pragma once

#include "nr/core/rng.hpp"
#include "nr/nn/module.hpp"
#include "nr/ops/matmul.hpp"

namespace nr {

struct Linear {
  Var weight;  // (out, in)

  Linear() = default;
  // Weights drawn from N(0, std^2); std = 0.02 is the Hugging Face Llama initializer_range.
  Linear(int64_t in, int64_t out, Rng& rng, double std = 0.02) {
    Tensor w = Tensor::empty(Shape{out, in});
    normal_(w, 0.0, std, rng);
    weight = Var::parameter(std::move(w));
  }

  int64_t in_features() const { return weight.shape()[1]; }
  int64_t out_features() const { return weight.shape()[0]; }

  Var operator()(const Var& x) const { return linear(x, weight); }  // (..., in) -> (..., out)

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) { f(prefix + "weight", weight); }
};

}  // namespace nr
