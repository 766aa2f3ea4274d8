// nr/autograd/var.hpp — a value that may carry a gradient.
//
// A Var is a cheap handle (shared ownership) on a node holding:
//   value          the tensor computed by the forward pass,
//   grad           d(loss)/d(value), same shape, allocated (as zeros) on first accumulation,
//   requires_grad  whether gradients flow into this value at all.
// A frozen value (requires_grad = false: data, frozen backbone weights) never allocates a
// gradient, and ops skip the backward work that would only feed it.
//
// Var has handle semantics, like shared_ptr: copies share the node, and a const handle may still
// accumulate into the node's gradient (backward closures hold const copies of their inputs).
//
// Gradients accumulate: every backward closure *adds* (+=) its contribution, so a value used
// twice receives the sum. zero_grad() resets before the next step.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "nr/autograd/tape.hpp"
#include "nr/core/tensor.hpp"

namespace nr {

struct VarNode {
  Tensor value;
  Tensor grad;
  bool requires_grad = false;
};

class Var {
 public:
  Var() = default;
  explicit Var(Tensor value, bool requires_grad = false)
      : node_(std::make_shared<VarNode>(VarNode{std::move(value), Tensor{}, requires_grad})) {}

  // A trainable leaf (a parameter).
  static Var parameter(Tensor value) { return Var(std::move(value), true); }
  // A value that never receives a gradient (inputs, frozen weights).
  static Var constant(Tensor value) { return Var(std::move(value), false); }

  bool defined() const { return node_ != nullptr; }
  const Tensor& value() const { return node().value; }
  Tensor& value() { return node().value; }
  const Shape& shape() const { return node().value.shape(); }
  int64_t numel() const { return node().value.numel(); }
  float item() const { return node().value.item(); }

  bool requires_grad() const { return node().requires_grad; }
  // Freezing releases the gradient memory.
  void set_requires_grad(bool r) {
    node().requires_grad = r;
    if (!r) node().grad = Tensor{};
  }

  bool has_grad() const { return node().grad.defined(); }
  const Tensor& grad() const {
    if (!has_grad()) throw Error(fmt::format("Var of shape {} has no gradient", shape().str()));
    return node().grad;
  }
  // The gradient buffer, allocated as zeros on first use. Only for values that require grad.
  Tensor& grad_buffer() const {
    VarNode& n = node();
    if (!n.requires_grad) throw Error(fmt::format("grad_buffer: Var of shape {} does not require grad", shape().str()));
    if (!n.grad.defined()) n.grad = Tensor::zeros(n.value.shape());
    return n.grad;
  }
  // The gradient buffer for a backward step that writes its whole contribution at once. When no
  // gradient exists yet, the buffer is allocated uninitialised and `fresh` is set: the caller
  // must then overwrite (=) every element instead of accumulating (+=), which saves zero-filling
  // and re-reading it. Otherwise this is grad_buffer() and `fresh` is false.
  Tensor& grad_buffer_for_overwrite(bool& fresh) const {
    VarNode& n = node();
    if (!n.requires_grad) throw Error(fmt::format("grad_buffer: Var of shape {} does not require grad", shape().str()));
    fresh = !n.grad.defined();
    if (fresh) n.grad = Tensor::empty(n.value.shape());
    return n.grad;
  }
  void zero_grad() const {
    if (node().grad.defined()) node().grad.zero_();
  }
  // Releases the gradient memory entirely (it is re-allocated on the next accumulation).
  void drop_grad() const { node().grad = Tensor{}; }

  // True when both handles refer to the same node.
  bool same_as(const Var& o) const { return node_ == o.node_; }

 private:
  VarNode& node() const {
    if (!node_) throw Error("use of an undefined Var");
    return *node_;
  }
  std::shared_ptr<VarNode> node_;
};

// Whether an op with these inputs must record a backward closure.
template <class... Vars>
inline bool any_requires_grad(const Vars&... vs) {
  return grad_enabled() && (vs.requires_grad() || ...);
}

}  // namespace nr
