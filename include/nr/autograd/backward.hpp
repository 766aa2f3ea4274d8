// nr/autograd/backward.hpp — runs the tape backwards from a scalar loss.
#pragma once

#include "nr/autograd/tape.hpp"
#include "nr/autograd/var.hpp"

namespace nr {

// Seeds d(loss)/d(loss) = 1 and replays the active tape in reverse; gradients accumulate into
// every value that requires grad. The tape is cleared afterwards, releasing the activations.
inline void backward(Var& loss) {
  if (loss.numel() != 1)
    throw ShapeError(fmt::format("backward: the loss must hold one element, got shape {}", loss.shape().str()));
  if (!loss.requires_grad()) {
    active_tape().clear();
    throw Error("backward: the loss does not depend on any value that requires grad");
  }
  loss.grad_buffer().data()[0] += 1.0f;
  active_tape().replay_backward();
}

// Backpropagates from a non-scalar output with a given upstream gradient d(loss)/d(out) of the
// same shape (vector-Jacobian product). Used by gradient checks and by multi-output losses.
inline void backward(Var& out, const Tensor& grad_out) {
  expect_same_shape(out.shape(), grad_out.shape(), "backward(out, grad_out)");
  if (!out.requires_grad()) {
    active_tape().clear();
    throw Error("backward: the output does not depend on any value that requires grad");
  }
  Tensor& g = out.grad_buffer();
  const Tensor src = grad_out.contiguous();
  for (int64_t i = 0; i < g.numel(); ++i) g.data()[i] += src.data()[i];
  active_tape().replay_backward();
}

}  // namespace nr
