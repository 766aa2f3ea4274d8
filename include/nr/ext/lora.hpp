// nr/ext/lora.hpp — low-rank adaptation of linear layers (Hu et al., 2022).
//
//   y = x W^T + (alpha / r) * (x A^T) B^T       W (out, in) frozen, A (r, in), B (out, r)
//
// A starts Kaiming-uniform (bound 1 / sqrt(in), as PEFT does) or Gaussian N(0, 1/r^2), and B
// starts at zero, so at initialisation the layer computes exactly x W^T. The neutral-residues
// paper (Section 4.1, "Baseline extension strategies") puts all LoRA parameters in the FFN
// projections, which is the default target set here; attention projections can be targeted for
// the ablation of Section 3. Tensor names follow PEFT: "<layer>.lora_A.weight",
// "<layer>.lora_B.weight".
//
// LoraLinear is a drop-in for Linear: compose it into a backbone at compile time
// (LoraLlama below), then enable_lora() chooses the targets and the rank at run time. A
// LoraLinear whose rank is 0 is a plain linear layer.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nr/core/rng.hpp"
#include "nr/nn/language_model.hpp"
#include "nr/ops/lora_linear.hpp"
#include "nr/ops/matmul.hpp"

namespace nr {

struct LoraConfig {
  int64_t rank = 8;
  double alpha = 16.0;  // scaling = alpha / rank
  std::vector<std::string> targets = {"gate_proj", "up_proj", "down_proj"};
  bool gaussian_init = false;  // A ~ N(0, 1/r^2) instead of Kaiming-uniform

  static const std::vector<std::string>& all_targets() {
    static const std::vector<std::string> t = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    return t;
  }
  bool targets_layer(const std::string& name) const {
    return std::find(targets.begin(), targets.end(), name) != targets.end();
  }
  void validate() const {
    if (rank < 1) throw ValueError(fmt::format("LoRA: rank must be at least 1, got {}", rank));
    if (targets.empty()) throw ValueError("LoRA: no target layer given");
    for (const std::string& t : targets)
      if (std::find(all_targets().begin(), all_targets().end(), t) == all_targets().end())
        throw ValueError(fmt::format("LoRA: unknown target '{}' (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                                     "down_proj)", t));
  }
};

struct LoraLinear {
  Var weight;        // (out, in), the frozen base weight
  Var lora_A;        // (r, in)   undefined while rank is 0
  Var lora_B;        // (out, r)
  float scaling = 0.0f;

  LoraLinear() = default;
  LoraLinear(int64_t in, int64_t out, Rng& rng, double std = 0.02) {
    Tensor w = Tensor::empty(Shape{out, in});
    normal_(w, 0.0, std, rng);
    weight = Var::parameter(std::move(w));
  }

  int64_t rank() const { return lora_A.defined() ? lora_A.shape()[0] : 0; }
  int64_t in_features() const { return weight.shape()[1]; }
  int64_t out_features() const { return weight.shape()[0]; }

  void enable(int64_t r, double alpha, bool gaussian, Rng& rng) {
    Tensor a = Tensor::empty(Shape{r, in_features()});
    if (gaussian)
      normal_(a, 0.0, 1.0 / static_cast<double>(r), rng);
    else
      kaiming_uniform_(a, in_features(), rng);
    lora_A = Var::parameter(std::move(a));
    lora_B = Var::parameter(Tensor::zeros(Shape{out_features(), r}));
    scaling = static_cast<float>(alpha / static_cast<double>(r));
  }

  // One fused op (ops/lora_linear.hpp): the tape keeps one (..., out) output per layer instead of
  // the four that linear + linear(linear) * scaling would.
  Var operator()(const Var& x) const {  // (..., in) -> (..., out)
    if (rank() == 0) return linear(x, weight);
    return lora_linear(x, weight, lora_A, lora_B, scaling);
  }

  // Folds the low-rank update into W (W += scaling * B A) and removes A and B.
  void merge() {
    if (rank() == 0) return;
    NoGrad no_grad;
    cpu::gemm(false, false, out_features(), in_features(), rank(), scaling, lora_B.value().data(),
              lora_A.value().data(), 1.0f, weight.value().data());
    lora_A = Var();
    lora_B = Var();
    scaling = 0.0f;
  }

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) {
    f(prefix + "weight", weight);
    if (rank() > 0) {
      f(prefix + "lora_A.weight", lora_A);
      f(prefix + "lora_B.weight", lora_B);
    }
  }
};

// A Llama backbone whose every projection can carry a LoRA update.
using LoraLlamaBlock = Block<Attention<LoraLinear>, GatedFfn<Silu, LoraLinear>>;
using LoraLlama = LanguageModel<LoraLlamaBlock>;

// Calls f(name, linear) for every projection of a layer ("q_proj", ..., "down_proj").
template <class BlockT, class F>
void for_each_projection(BlockT& layer, F&& f) {
  f("q_proj", layer.self_attn.q_proj);
  f("k_proj", layer.self_attn.k_proj);
  f("v_proj", layer.self_attn.v_proj);
  f("o_proj", layer.self_attn.o_proj);
  f("gate_proj", layer.mlp.gate_proj);
  f("up_proj", layer.mlp.up_proj);
  f("down_proj", layer.mlp.down_proj);
}

// Adds rank-r updates to the target projections of every layer.
template <class Model>
void enable_lora(Model& model, const LoraConfig& cfg, Rng& rng) {
  cfg.validate();
  for (auto& layer : model.layers)
    for_each_projection(layer, [&](const std::string& name, LoraLinear& lin) {
      if (cfg.targets_layer(name)) lin.enable(cfg.rank, cfg.alpha, cfg.gaussian_init, rng);
    });
}

// Number of LoRA parameters per unit of rank over the whole model: sum over targets of in + out.
template <class Model>
int64_t lora_params_per_rank(Model& model, const LoraConfig& cfg) {
  int64_t n = 0;
  for (auto& layer : model.layers)
    for_each_projection(layer, [&](const std::string& name, LoraLinear& lin) {
      if (cfg.targets_layer(name)) n += lin.in_features() + lin.out_features();
    });
  return n;
}

template <class Model>
void merge_lora(Model& model) {
  for (auto& layer : model.layers)
    for_each_projection(layer, [](const std::string&, LoraLinear& lin) { lin.merge(); });
}

}  // namespace nr
