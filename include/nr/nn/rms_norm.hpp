// nr/nn/rms_norm.hpp — RMSNorm module: y = x / sqrt(mean(x^2) + eps) * g, g initialised to ones.
#pragma once

#include "nr/nn/module.hpp"
#include "nr/ops/rms_norm.hpp"

namespace nr {

struct RMSNorm {
  Var weight;  // (C,)
  double eps = 1e-5;

  RMSNorm() = default;
  RMSNorm(int64_t dim, double eps_) : weight(Var::parameter(Tensor::ones(Shape{dim}))), eps(eps_) {}

  Var operator()(const Var& x) const { return rms_norm(x, weight, static_cast<float>(eps)); }  // (..., C)

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) { f(prefix + "weight", weight); }
};

}  // namespace nr
