// nr/ops/reshape.hpp — a new shape for the same elements, without copying.
//
//   y = reshape(x, s)        x (...) contiguous, y (s), y.numel() == x.numel()
// y's value is a view sharing x's storage (row-major order is unchanged). One dimension given as
// -1 in the initializer-list overload is inferred: reshape(x, {-1, C}) gives (R, C).
//
// Backward (accumulated with +=), G = dL/dy (s): the gradient is the same elements under x's
// shape, so nothing is saved:
//   dx += G        (element by element, in row-major order)
// y gets its own gradient buffer (a Var's gradient is never a view of another's).
#pragma once

#include <cstdint>
#include <initializer_list>

#include "nr/ops/elementwise.hpp"
#include "nr/ops/op_support.hpp"

namespace nr {

namespace detail {

inline Var reshape_view(const Var& x, Tensor view) {
  Var out(std::move(view), any_requires_grad(x));
  if (out.requires_grad()) {
    active_tape().record([x, out]() {
      const float* g = output_grad(out);  // (s)
      if (!g) return;
      cpu::axpy(1.0f, g, x.grad_buffer().data(), x.numel());  // dx += G
    });
  }
  return out;
}

}  // namespace detail

// y (s) = x (...) viewed with shape s; ShapeError naming both shapes when the counts differ.
inline Var reshape(const Var& x, const Shape& s) {
  detail::expect_dense(x, "reshape", "x");
  return detail::reshape_view(x, x.value().reshape(s));
}

// As above, with at most one dimension given as -1 and inferred from the element count.
inline Var reshape(const Var& x, std::initializer_list<int64_t> dims) {
  detail::expect_dense(x, "reshape", "x");
  return detail::reshape_view(x, x.value().reshape(dims));
}

}  // namespace nr
