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
//
// Row masks (for gradient-masking methods such as MIGU, optim/gradient_mask.hpp): a slot's
// row_mask, when not empty, holds one flag per row (dimension 0, an output unit of a [out, in]
// weight). A row flagged 0 is not updated at all by the step: its value stays bit for bit (no
// Adam update and no decoupled decay, which would otherwise still move it) and its moments see a
// zero gradient (m = beta1 m, v = beta2 v). Pre-step hooks run at the start of every step(), after
// the caller's backward pass and clipping: that is where a mask method sets the row masks.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
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
    std::vector<uint8_t> row_mask = {};  // one flag per row (dim 0); empty: every row is updated
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

  // Adds f, called as f(*this) at the start of every step() (before any parameter changes).
  void add_pre_step_hook(std::function<void(AdamW&)> f) { pre_step_hooks_.push_back(std::move(f)); }

  // One update with learning rate `lr` (the schedule's value for this step). Parameters without
  // a gradient this step (unused by the loss) are left unchanged.
  void step(double lr) {
    for (auto& hook : pre_step_hooks_) hook(*this);
    for (const Slot& s : slots_)  // every mask is checked before any parameter changes
      if (!s.row_mask.empty() && static_cast<int64_t>(s.row_mask.size()) != rows_of(s))
        throw ValueError(fmt::format("AdamW: row mask of '{}' has {} flags for the {} rows of shape {}", s.name,
                                     s.row_mask.size(), rows_of(s), s.param.shape().str()));
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
      if (s.row_mask.empty()) {
#pragma omp parallel for if (n > detail::parallel_grain)
        for (int64_t i = 0; i < n; ++i) {
          m[i] = b1 * m[i] + (1.0f - b1) * g[i];
          v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
          p[i] = p[i] * decay - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
        }
        continue;
      }
      const int64_t rows = rows_of(s);
      const int64_t cols = rows > 0 ? n / rows : 0;
      const uint8_t* keep = s.row_mask.data();
#pragma omp parallel for if (n > detail::parallel_grain)
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i0 = r * cols, i1 = i0 + cols;
        if (keep[r]) {
          for (int64_t i = i0; i < i1; ++i) {
            m[i] = b1 * m[i] + (1.0f - b1) * g[i];
            v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
            p[i] = p[i] * decay - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
          }
        } else {  // masked row: zero gradient for the moments, no change to the value
          for (int64_t i = i0; i < i1; ++i) {
            m[i] = b1 * m[i];
            v[i] = b2 * v[i];
          }
        }
      }
    }
  }

  void zero_grad() {
    for (Slot& s : slots_) s.param.zero_grad();
  }

 private:
  // Rows of a parameter for its row mask: dimension 0 (a scalar is one row).
  static int64_t rows_of(const Slot& s) { return s.param.shape().rank() >= 1 ? s.param.shape()[0] : 1; }

  AdamWConfig cfg_;
  std::vector<Slot> slots_;
  std::vector<std::function<void(AdamW&)>> pre_step_hooks_;
  int64_t step_ = 0;
};

}  // namespace nr
