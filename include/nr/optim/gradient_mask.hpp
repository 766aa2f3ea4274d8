// nr/optim/gradient_mask.hpp — MIGU's magnitude-based gradient mask (the MIGU paper, Section 3.2
// "Updating gradient via a magnitude-based mask", Section 3.3 for Transformers and LoRA).
//
// For a weight W (out, in) whose layer recorded its output magnitudes during the forward pass
// (an OutputMagnitudes record, below, fed by the layers of ext/migu.hpp), with threshold ratio T
// (default 0.7):
//   n_i  = the batch's magnitude of output unit i: the mean over tokens of the normalised
//          magnitude |h_i| / sum_j |h_j| (the "normalized magnitude distribution" the paper
//          computes per token and averages over the batch), or of |h_i| itself with
//          normalize_per_token = false;
//   t    = floor(T * out)                                     (Eq. 3)
//   M_i  = 1 for the out - t units with the largest n_i, else 0 (Eq. 4-5; ties to the lower index)
//   W   <- W - eta * M (.) grad W                             (Eq. 6: only rows with M_i = 1 move)
// Row i of W (HF [out, in] layout) is unit i's weight vector w_i, so the mask keeps whole rows:
// the kept fraction is 1 - T within one row (exactly (out - floor(T out)) / out).
//
// With Adam, zeroing the masked gradient rows is not enough: the momentum of earlier steps and
// the decoupled weight decay would still move those rows. The mask therefore masks the UPDATE, as
// Eq. 6 does: apply() zeroes the masked gradient rows AND sets the optimizer slot's row_mask
// (optim/adamw.hpp), so a masked row keeps its value bit for bit (no Adam step, no weight decay)
// while its moments see a zero gradient. Parameters no layer recorded (embeddings, norms,
// lm_head, which the paper leaves out) are not masked. Gradient clipping in train_step runs
// before the mask, on the full gradient.
//
// LoRA (Section 3.3): A (r, in) is masked by the magnitudes of x_A = x A^T, exactly as a linear
// layer. For B (out, r) the paper's text says it uses the layer output x_O = x W^T + s x_B
// "rather than" x_B (the equation numbers it cites are swapped); lora_b_source = layer_output
// (default) follows that, branch_output uses the LoRA branch x_B = s x_A B^T instead.
//
// This header sees parameters and records only, never modules: mask.add(param, record) registers
// one parameter. Walking a model to register its layers is ext/migu.hpp's job; with it included,
// MiguMask(model, cfg) calls the register_migu_sources(mask, model) that ext/migu.hpp defines
// for its layer types (found by argument-dependent lookup; any other model type may provide one).
//
// Use: build the model from MiguLinear / MiguLoraLinear layers (MiguLlama, MiguLoraLlama, in
// ext/migu.hpp), enable LoRA if wanted, create the optimizer, then
//   nr::MiguMask migu(model, {.threshold = 0.7});
//   migu.attach(opt);               // apply() runs at the start of every opt.step()
// and train as usual (nr::train_step). Without attach(), call migu.apply(opt) between backward and
// opt.step(). Parameters are matched by identity (Var), so create the mask after enable_lora().
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "nr/core/tensor.hpp"
#include "nr/optim/adamw.hpp"

namespace nr {

// Per-unit output magnitudes summed over the tokens seen since the last clear(): what a layer
// records during a training forward pass, for every token (row) of its output y (..., units),
//   raw[i]        += |h_i|                       the L1 magnitude of unit i
//   normalized[i] += |h_i| / sum_j |h_j|         the token's normalised magnitude distribution.
struct OutputMagnitudes {
  std::vector<double> raw;         // (units,) sum over tokens of |h_i|
  std::vector<double> normalized;  // (units,) sum over tokens of |h_i| / sum_j |h_j|
  int64_t tokens = 0;

  // y (..., units): one token per row.
  void add(const Tensor& y) {
    const int64_t units = y.shape().back(), rows = y.shape().rows();
    if (static_cast<int64_t>(raw.size()) != units) {
      raw.assign(static_cast<size_t>(units), 0.0);
      normalized.assign(static_cast<size_t>(units), 0.0);
      tokens = 0;
    }
    const Tensor c = y.contiguous();
    const float* p = c.data();
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = p + r * units;
      double l1 = 0.0;
      for (int64_t i = 0; i < units; ++i) l1 += std::abs(static_cast<double>(row[i]));
      const double inv = l1 > 0.0 ? 1.0 / l1 : 0.0;
      for (int64_t i = 0; i < units; ++i) {
        const double a = std::abs(static_cast<double>(row[i]));
        raw[static_cast<size_t>(i)] += a;
        normalized[static_cast<size_t>(i)] += a * inv;
      }
    }
    tokens += rows;
  }
  void clear() {
    std::fill(raw.begin(), raw.end(), 0.0);
    std::fill(normalized.begin(), normalized.end(), 0.0);
    tokens = 0;
  }
};

enum class MiguLoraSource { layer_output, branch_output };

struct MiguConfig {
  double threshold = 0.7;                                     // T: the fraction of rows masked
  bool normalize_per_token = true;                            // n from per-token L1-normalised magnitudes
  MiguLoraSource lora_b_source = MiguLoraSource::layer_output;  // what masks LoRA's B
};

class MiguMask {
 public:
  MiguMask() : state_(std::make_shared<State>()) {}
  explicit MiguMask(MiguConfig cfg) : MiguMask() {
    if (!(cfg.threshold >= 0.0 && cfg.threshold <= 1.0))
      throw ValueError(fmt::format("MIGU: threshold ratio T must be in [0, 1], got {}", cfg.threshold));
    state_->config = cfg;
  }
  // Registers the recorded parameters of `source` (a model) through the register_migu_sources
  // (mask, source) found for its type: ext/migu.hpp defines it for models built from MiguLinear
  // / MiguLoraLinear projections (q, k, v, o, gate, up and down, those the blocks have).
  template <class Source>
    requires requires(MiguMask& m, Source& s) { register_migu_sources(m, s); }
  MiguMask(Source& source, MiguConfig cfg) : MiguMask(cfg) {
    register_migu_sources(*this, source);
  }

  const MiguConfig& config() const { return state_->config; }
  // Number of registered parameters (a LoRA layer registers W, A and B).
  size_t size() const { return state_->entries.size(); }

  // Registers one parameter whose rows are masked by the magnitudes of `source`.
  void add(const Var& param, std::shared_ptr<OutputMagnitudes> source) {
    state_->entries.push_back(Entry{param, std::move(source)});
  }

  // The keep flags of Eq. 4-5 for magnitudes n (one per row): the out - floor(T out) largest.
  static std::vector<uint8_t> top_rows(const std::vector<double>& n, double threshold) {
    const int64_t out = static_cast<int64_t>(n.size());
    const int64_t masked = static_cast<int64_t>(std::floor(threshold * static_cast<double>(out)));
    std::vector<int64_t> order(static_cast<size_t>(out));
    std::iota(order.begin(), order.end(), int64_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return n[static_cast<size_t>(a)] > n[static_cast<size_t>(b)]; });
    std::vector<uint8_t> keep(static_cast<size_t>(out), 0);
    for (int64_t i = 0; i < out - masked; ++i) keep[static_cast<size_t>(order[static_cast<size_t>(i)])] = 1;
    return keep;
  }

  // For every optimizer slot of a registered parameter: computes its mask from the magnitudes
  // recorded since the last call, zeroes the masked gradient rows, stores the mask as the slot's
  // row_mask (so the step leaves those rows unchanged) and clears the record. A parameter whose
  // layer recorded nothing since (no training forward) gets no mask.
  void apply(AdamW& opt) const { apply_state(*state_, opt); }

  // Runs apply() at the start of every opt.step(). The hook shares this mask's state, so it stays
  // valid even if this MiguMask object goes away first. Attaching twice to the same optimizer is
  // a ValueError (the second apply would find nothing recorded and lift the masks).
  void attach(AdamW& opt) const {
    if (std::find(state_->attached.begin(), state_->attached.end(), &opt) != state_->attached.end())
      throw ValueError("MIGU: this mask is already attached to this optimizer");
    state_->attached.push_back(&opt);
    std::shared_ptr<State> s = state_;
    opt.add_pre_step_hook([s](AdamW& o) { apply_state(*s, o); });
  }

 private:
  struct Entry {
    Var param;
    std::shared_ptr<OutputMagnitudes> source;
  };
  struct State {
    MiguConfig config;
    std::vector<Entry> entries;
    std::vector<const AdamW*> attached;  // optimizers with a hook (to refuse a second one)
  };

  static void apply_state(State& st, AdamW& opt) {
    for (AdamW::Slot& slot : opt.slots()) {
      const Entry* e = nullptr;
      for (const Entry& cand : st.entries)
        if (cand.param.same_as(slot.param)) e = &cand;
      if (!e) continue;
      OutputMagnitudes& rec = *e->source;
      const int64_t rows = slot.param.shape()[0];
      if (rec.tokens == 0) {
        slot.row_mask.clear();
        continue;
      }
      const std::vector<double>& n = st.config.normalize_per_token ? rec.normalized : rec.raw;
      if (static_cast<int64_t>(n.size()) != rows)
        throw ShapeError(fmt::format("MIGU: '{}' has {} rows but its layer recorded {} output units", slot.name, rows,
                                     n.size()));
      slot.row_mask = top_rows(n, st.config.threshold);
      if (slot.param.has_grad()) {  // M (.) grad W
        float* g = slot.param.grad_buffer().data();
        const int64_t cols = slot.param.numel() / rows;
        for (int64_t r = 0; r < rows; ++r)
          if (!slot.row_mask[static_cast<size_t>(r)]) std::fill(g + r * cols, g + (r + 1) * cols, 0.0f);
      }
      rec.clear();
    }
  }

  std::shared_ptr<State> state_;
};

}  // namespace nr
