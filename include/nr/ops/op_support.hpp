// nr/ops/op_support.hpp — small helpers shared by the primitive ops.
//
// The pattern every op follows:
//   1. check the input shapes and throw ShapeError naming them;
//   2. compute the output tensor;
//   3. if any input requires grad (and recording is on), record a closure that reads the
//      output's gradient and adds (+=) each input's share into that input's gradient buffer,
//      skipping inputs that do not require grad.
#pragma once

#include <cstdint>

#include <omp.h>

#include "nr/autograd/var.hpp"
#include "nr/core/tensor.hpp"

namespace nr::detail {

// Elementwise loops run in parallel only above this size; below it the fork/join costs more
// than it saves.
inline constexpr int64_t parallel_grain = 1 << 15;

// Output gradient of a recorded op, or nullptr when nothing downstream produced one (the output
// did not influence the loss), in which case the backward closure has nothing to do.
inline const float* output_grad(const Var& out) { return out.has_grad() ? out.grad().data() : nullptr; }

// Checks that a Var holds a contiguous CPU float tensor before a kernel reads it raw.
inline void expect_dense(const Var& v, const char* op, const char* arg) {
  const Tensor& t = v.value();
  if (!t.defined()) throw Error(fmt::format("{}: argument '{}' is undefined", op, arg));
  if (t.device() != Device::cpu)
    throw DeviceError(fmt::format("{}: argument '{}' lives on {}; this op has no {} kernel in this build", op, arg,
                                  device_name(t.device()), device_name(t.device())));
  if (!t.is_contiguous())
    throw ShapeError(fmt::format("{}: argument '{}' of shape {} must be contiguous", op, arg, t.shape().str()));
}

}  // namespace nr::detail
