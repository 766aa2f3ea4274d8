// nr/nn/embedding.hpp — token embedding table, ids (B, T) -> vectors (B, T, C).
#pragma once

#include "nr/core/rng.hpp"
#include "nr/nn/module.hpp"
#include "nr/ops/embedding.hpp"

namespace nr {

struct Embedding {
  Var weight;  // (V, C)

  Embedding() = default;
  Embedding(int64_t vocab, int64_t dim, Rng& rng, double std = 0.02) {
    Tensor w = Tensor::empty(Shape{vocab, dim});
    normal_(w, 0.0, std, rng);
    weight = Var::parameter(std::move(w));
  }

  Var operator()(const Indices& ids) const { return embedding(weight, ids); }

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) { f(prefix + "weight", weight); }
};

}  // namespace nr
