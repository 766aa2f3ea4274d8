// nr/nn/recompute.hpp — activation recomputation ("gradient checkpointing") for one block.
//
// A training step normally keeps every op's saved tensors on the tape until the backward pass:
// for SmolLM2 at 4 x 512 tokens that is about 130 MB per block (norms, q / k / v, the attention
// output, the FFN's gate / up / product), 3.9 GB over 30 blocks, most of a LoRA step's memory.
// recompute_block(layer, x, ctx) keeps only the block's input and output instead:
//
//   forward   y = layer(x, ctx) on a scratch tape, which is then dropped (the block's
//             activations are freed at once); one closure goes on the active tape
//   backward  that closure runs layer(x, ctx') again on a fresh tape (same input, same weights,
//             same precision: the same values), seeds it with d(loss)/dy and replays it, which
//             adds the block's contribution to dL/dx and to the parameters' gradients; then its
//             tape, the recomputed activations and dL/dy are freed
//
// Peak memory becomes the blocks' inputs (4.7 MB each for SmolLM2 at 4 x 512) plus one block's
// activations, at the price of a second forward pass of every block (about a third more work
// for full fine-tuning, half more for a frozen backbone, whose backward skips weight gradients).
// The same trade as `gradient_checkpointing_enable()` in Hugging Face transformers.
//
// Local losses (ForwardContext::local_losses, e.g. the l1 loss of neutral residues) work: the
// forward's loss values stay in ctx, and the recomputation seeds its own copies with their
// gradients. ctx' is a copy of ctx without local losses or statistics, so nothing is counted
// twice. Requirements: the block is deterministic (no dropout, which nr's blocks do not have),
// and `layer` outlives the backward pass (the closure refers to it, as closures refer to
// parameters).
#pragma once

#include <utility>
#include <vector>

#include "nr/autograd/tape.hpp"
#include "nr/autograd/var.hpp"
#include "nr/nn/module.hpp"
#include "nr/ops/elementwise.hpp"

namespace nr {

namespace detail {
// dst.grad += src.grad (when src has one), allocating dst's buffer as needed.
inline void add_grad(const Var& dst, const Var& src) {
  if (!src.has_grad() || !dst.requires_grad()) return;
  Tensor& g = dst.grad_buffer();
  const Tensor& s = src.grad();
  if (g.numel() != s.numel())
    throw ShapeError(fmt::format("recompute_block: the recomputed value has {} elements, the original {}", g.numel(),
                                 s.numel()));
  cpu::axpy(1.0f, s.data(), g.data(), g.numel());
}
}  // namespace detail

// layer(x, ctx) whose activations are recomputed in the backward pass instead of kept; see the
// top of this file. Without gradient recording it is layer(x, ctx).
template <class Layer>
Var recompute_block(const Layer& layer, const Var& x, ForwardContext& ctx) {
  if (!grad_enabled()) return layer(x, ctx);
  const size_t first_loss = ctx.local_losses.size();
  Var y;
  {
    Tape scratch;
    TapeScope scope(scratch);
    y = layer(x, ctx);
  }  // the scratch tape and with it every activation of the block are released here
  std::vector<Var> losses(ctx.local_losses.begin() + static_cast<std::ptrdiff_t>(first_loss), ctx.local_losses.end());
  bool needs_backward = y.requires_grad() && !y.same_as(x);
  for (const Var& l : losses) needs_backward = needs_backward || l.requires_grad();
  if (!needs_backward) return y;

  ForwardContext replay = ctx;  // tags and flags; no losses or statistics to add twice
  replay.local_losses.clear();
  replay.collect_stats = false;
  replay.stats.clear();
  replay.counts.clear();
  replay.histograms.clear();
  active_tape().record([&layer, x, y, losses, replay]() {
    bool seeded = y.has_grad();
    for (const Var& l : losses) seeded = seeded || l.has_grad();
    if (!seeded) return;
    Tape tape;
    TapeScope scope(tape);
    ForwardContext c = replay;
    const Var y2 = layer(x, c);
    if (c.local_losses.size() != losses.size())
      throw Error(fmt::format("recompute_block: the block added {} local losses when recomputed, {} the first time",
                              c.local_losses.size(), losses.size()));
    detail::add_grad(y2, y);
    for (size_t i = 0; i < losses.size(); ++i) detail::add_grad(c.local_losses[i], losses[i]);
    y.drop_grad();  // every consumer of y has run: its gradient is no longer read
    tape.replay_backward();
  });
  return y;
}

}  // namespace nr
