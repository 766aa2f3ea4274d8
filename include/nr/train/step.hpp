// nr/train/step.hpp — one optimisation step: forward, local losses, backward, clip, update.
//
//   loss_total = LM cross-entropy + sum of the local losses the modules put in the context
//   backward(loss_total); norm = clip_grad_norm(max_norm); AdamW step at the schedule's lr
// The forward context carries the batch's domain tags. With `original_of_tag` (one flag per
// domain of the sampler's mixture: 1 = original or original-like data), it also carries each
// sequence's flag, ForwardContext::original[b] = original_of_tag[tags[b]], which the local losses
// of extensions read (the l1 loss of neutral residues applies to original-domain sequences only).
// Left empty (pretraining), `original` stays empty and those losses are skipped.
// recompute_blocks trades a second forward pass of every block for its activations' memory
// (nn/recompute.hpp); the step's result is the same.
// A non-finite loss or gradient norm throws NumericError naming the step (and, for gradients,
// the first parameter holding a non-finite value) before any weight is touched, so the last
// good state (and checkpoint) stays intact.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nr/autograd/backward.hpp"
#include "nr/core/error.hpp"
#include "nr/data/sampler.hpp"
#include "nr/nn/module.hpp"
#include "nr/ops/elementwise.hpp"
#include "nr/optim/adamw.hpp"
#include "nr/optim/clip.hpp"

namespace nr {

struct StepResult {
  double loss = 0.0;        // language-modelling loss (mean nats per token)
  double local_loss = 0.0;  // sum of the local losses
  double grad_norm = 0.0;   // before clipping
};

// Name of the first trainable parameter whose gradient holds a NaN or Inf ("" when none).
inline std::string first_non_finite_grad(std::vector<AdamW::Slot>& slots) {
  for (AdamW::Slot& s : slots) {
    if (!s.param.has_grad()) continue;
    const float* g = s.param.grad().data();
    for (int64_t i = 0; i < s.param.numel(); ++i)
      if (!std::isfinite(g[i])) return s.name;
  }
  return "";
}

// ForwardContext::original for a batch: original_of_tag[tag] per sequence. Throws ValueError
// naming the sequence when a tag has no flag.
inline std::vector<uint8_t> original_flags(const std::vector<int>& tags, const std::vector<uint8_t>& original_of_tag) {
  std::vector<uint8_t> flags(tags.size());
  for (size_t b = 0; b < tags.size(); ++b) {
    const int tag = tags[b];
    if (tag < 0 || static_cast<size_t>(tag) >= original_of_tag.size())
      throw ValueError(fmt::format("train_step: sequence {} has domain tag {}, but original_of_tag holds {} flags", b,
                                   tag, original_of_tag.size()));
    flags[b] = original_of_tag[static_cast<size_t>(tag)] ? 1 : 0;
  }
  return flags;
}

template <class Model>
StepResult train_step(Model& model, AdamW& opt, const Batch& batch, double lr, double max_grad_norm, int64_t step,
                      const std::vector<uint8_t>& original_of_tag = {}, bool recompute_blocks = false) {
  ForwardContext ctx;
  ctx.recompute_blocks = recompute_blocks;
  ctx.domain_tags = batch.tags;
  if (!original_of_tag.empty()) ctx.original = original_flags(batch.tags, original_of_tag);
  Var lm = model.loss(batch.inputs, batch.targets, ctx);
  Var total = lm;
  StepResult r;
  for (const Var& l : ctx.local_losses) {
    r.local_loss += l.item();
    total = total + l;
  }
  r.loss = lm.item();
  if (!std::isfinite(r.loss) || !std::isfinite(r.local_loss)) {
    active_tape().clear();
    opt.zero_grad();
    throw NumericError(fmt::format("step {}: the loss is not finite (language-model loss {}, local losses {})", step,
                                   r.loss, r.local_loss));
  }
  backward(total);
  r.grad_norm = clip_grad_norm(opt.slots(), max_grad_norm);
  if (!std::isfinite(r.grad_norm)) {
    const std::string where = first_non_finite_grad(opt.slots());
    opt.zero_grad();
    throw NumericError(fmt::format("step {}: the gradient norm is not finite; first non-finite gradient in '{}'", step,
                                   where.empty() ? "?" : where));
  }
  opt.step(lr);
  opt.zero_grad();
  return r;
}

}  // namespace nr
