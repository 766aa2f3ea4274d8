// nr/optim/adamw.hpp — Adam with decoupled weight decay (Loshchilov & Hutter, 2019).
//
// For each trainable parameter p with gradient g, at step t = 1, 2, ...:
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   p = p - lr * wd * p                                    (decoupled decay, matrices only)
//   p = p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
// Betas default to 0.9 / 0.95 as in the neutral-residues paper (Appendix B). Weight decay
// applies to parameters with 2 or more dimensions (weight matrices, embeddings), not to norm
// gains, as is customary for transformers. Only parameters that require grad are tracked, so a
// frozen backbone costs no optimizer memory.
#pragma once

#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "nr/autograd/var.hpp"
#include "nr/ops/op_support.hpp"

namespace nr {

struct AdamWConfig {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

class AdamW {
 public:
  struct Slot {
    std::string name;
    Var param;
    Tensor exp_avg;     // m, same shape as the parameter
    Tensor exp_avg_sq;  // v
    bool decay = true;
  };

  AdamW() = default;
  // `params`: (name, Var) pairs; those not requiring grad are skipped.
  AdamW(const std::vector<std::pair<std::string, Var>>& params, AdamWConfig cfg) : cfg_(cfg) {
    for (const auto& [name, p] : params) {
      if (!p.requires_grad()) continue;
      slots_.push_back(Slot{name, p, Tensor::zeros(p.shape()), Tensor::zeros(p.shape()), p.shape().rank() >= 2});
    }
  }

  AdamWConfig& config() { return cfg_; }
  int64_t step_count() const { return step_; }
  void set_step_count(int64_t s) { step_ = s; }
  std::vector<Slot>& slots() { return slots_; }

  // One update with learning rate `lr` (the schedule's value for this step). Parameters without
  // a gradient this step (unused by the loss) are left unchanged.
  void step(double lr) {
    ++step_;
    const double bc1 = 1.0 - std::pow(cfg_.beta1, static_cast<double>(step_));
    const double bc2 = 1.0 - std::pow(cfg_.beta2, static_cast<double>(step_));
    const float b1 = static_cast<float>(cfg_.beta1), b2 = static_cast<float>(cfg_.beta2);
    const float step_size = static_cast<float>(lr / bc1);
    const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
    const float eps = static_cast<float>(cfg_.eps);
    for (Slot& s : slots_) {
      if (!s.param.has_grad()) continue;
      const float decay = s.decay ? static_cast<float>(1.0 - lr * cfg_.weight_decay) : 1.0f;
      float* p = s.param.value().data();
      const float* g = s.param.grad().data();
      float* m = s.exp_avg.data();
      float* v = s.exp_avg_sq.data();
      const int64_t n = s.param.numel();
#pragma omp parallel for if (n > detail::parallel_grain)
      for (int64_t i = 0; i < n; ++i) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        p[i] = p[i] * decay - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
      }
    }
  }

  void zero_grad() {
    for (Slot& s : slots_) s.param.zero_grad();
  }

 private:
  AdamWConfig cfg_;
  std::vector<Slot> slots_;
  int64_t step_ = 0;
};

}  // namespace nr
