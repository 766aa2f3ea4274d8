// nr/ops/lora_linear.hpp — a linear layer with its low-rank (LoRA) update, in one op and one
// output tensor (LoRA: Hu et al., 2022, "LoRA: Low-Rank Adaptation of Large Language Models").
//
//   y = x W^T + s (x A^T) B^T          s = scaling (alpha / r in LoraLinear)
//
// Dimension letters: N rows (every leading dimension of x flattened: B * T), I in features,
// O out features, r the rank.
//   x (..., I)  float32 (or BF16 when frozen)       -> y (..., O) float32
//   W (O, I)    the base weight: float32, or stored as BF16 when frozen (store_as_bf16 in
//               ops/matmul.hpp), exactly as linear() takes it
//   A (r, I), B (O, r)   the low-rank factors (trainable, float32)
//
// Why it exists: the composition linear(x, W) + linear(linear(x, A), B) * s records four ops, and
// the tape keeps each op's output alive until backward: x W^T, (x A^T) B^T, its scaled copy and
// the sum, four (N, O) tensors where one is needed (and backward then gives each a gradient of the
// same size). For SmolLM2-135M with gate/up/down targeted and batches of 4 x 512 tokens, the
// three extra tensors are about 2.7 GB over the 30 layers, and their gradients as much again:
// `nrlab bench --method lora --rank 16 --batch 4 --ctx 512` peaked at 11.0 GB (FP32) / 11.3 GB
// (BF16) resident with the composition and peaks at 6.1 / 6.3 GB with this op, at the same speed.
// Here there is one output and three products:
//   y  = x W^T                      (GEMM, beta = 0)
//   h  = x A^T                      (N, r), kept for backward when B requires grad
//   y += s h B^T                    (GEMM with alpha = s, beta = 1: accumulated into y in place)
//
// Backward, with dy = dL/dy (N, O) and g = dy B (N, r) computed once (the gradient reaching h,
// before the scaling), every term accumulated (+=) into the inputs' gradients, and inputs that do
// not require grad skipped (a frozen W costs no product):
//   dx (N, I) += dy W  +  s g A        (through the base weight, then through the LoRA branch)
//   dA (r, I) += s g^T x               (h = x A^T, and dL/dh = s g)
//   dB (O, r) += s dy^T h              (the branch is s h B^T)
//   dW (O, I) += dy^T x                (only when W requires grad)
// Saved for backward: x, W, A, B (the Var handles, no copies) and h (N x r floats).
//
// Every product goes through cpu::gemm (OpenBLAS or oneDNN, FP32 or BF16 per the process
// settings, threaded on nr's OpenMP threads: backend/cpu/gemm.hpp), as linear does.
// Errors: ShapeError naming every shape when they do not fit; Error for an operand stored as BF16
// that requires grad; DeviceError for a tensor not on the CPU.
#pragma once

#include <cstdint>
#include <utility>

#include <fmt/format.h>

#include "nr/backend/cpu/gemm.hpp"
#include "nr/ops/matmul.hpp"
#include "nr/ops/op_support.hpp"

namespace nr {

// x (..., I), weight (O, I), a (r, I), b (O, r) -> y (..., O) = x W^T + scaling (x A^T) B^T.
inline Var lora_linear(const Var& x, const Var& weight, const Var& a, const Var& b, float scaling) {
  const char* op = "lora_linear";
  detail::expect_dense(x, op, "x");
  detail::expect_dense(weight, op, "weight");
  detail::expect_dense(a, op, "A");
  detail::expect_dense(b, op, "B");
  detail::check_linear_shapes(x.shape(), weight.shape(), op);
  const Shape &xs = x.shape(), &ws = weight.shape(), &as = a.shape(), &bs = b.shape();
  const int64_t I = ws.dim(1), O = ws.dim(0);
  if (as.rank() != 2 || as.dim(1) != I || bs.rank() != 2 || bs.dim(0) != O || bs.dim(1) != as.dim(0))
    throw ShapeError(fmt::format("{}: x {} and weight {} (out {}, in {}) need A (r, {}) and B ({}, r) with the same r; "
                                 "got A {} and B {}",
                                 op, xs.str(), ws.str(), O, I, I, O, as.str(), bs.str()));
  for (const auto& [v, name] : {std::pair<const Var&, const char*>{x, "x"}, {weight, "weight"}, {a, "A"}, {b, "B"}})
    detail::expect_bf16_frozen(v, op, name);
  const int64_t r = as.dim(0);
  int64_t rows = 1;  // N: the leading dimensions of x flattened (counted, not numel / I: I may be 0)
  for (int i = 0; i + 1 < xs.rank(); ++i) rows *= xs[i];
  Shape out_shape = xs;
  out_shape[out_shape.rank() - 1] = O;

  const Tensor &X = x.value(), &W = weight.value(), &Av = a.value(), &Bv = b.value();
  const DType xt = X.dtype(), wt = W.dtype(), at = Av.dtype(), bt = Bv.dtype();
  constexpr DType f32 = DType::f32;
  Tensor y = Tensor::empty(out_shape);  // (N, O)
  Tensor h = Tensor::empty(Shape{rows, r});  // (N, r)
  cpu::gemm(false, true, rows, O, I, 1.0f, detail::element_at(X, 0), xt, detail::element_at(W, 0), wt, 0.0f, y.data());
  cpu::gemm(false, true, rows, r, I, 1.0f, detail::element_at(X, 0), xt, detail::element_at(Av, 0), at, 0.0f, h.data());
  cpu::gemm(false, true, rows, O, r, scaling, h.data(), f32, detail::element_at(Bv, 0), bt, 1.0f, y.data());

  Var out(std::move(y), any_requires_grad(x, weight, a, b));
  if (!out.requires_grad()) return out;
  if (!b.requires_grad()) h = Tensor{};  // only dB reads h: a frozen B lets it go now
  active_tape().record([x, weight, a, b, out, h, rows, I, O, r, scaling, xt, wt, at, bt]() {
    const float* dy = detail::output_grad(out);  // (N, O)
    if (!dy) return;
    const Tensor &X = x.value(), &W = weight.value(), &Av = a.value();
    // A gradient that does not exist yet is written with beta = 0 (grad_buffer_for_overwrite).
    auto grad_of = [](const Var& v, float& beta) {
      bool fresh = false;
      float* p = v.grad_buffer_for_overwrite(fresh).data();
      beta = fresh ? 0.0f : 1.0f;
      return p;
    };
    float beta = 1.0f;
    // g = dy B (N, r), shared by dx and dA.
    Tensor g;
    if (x.requires_grad() || a.requires_grad()) {
      g = Tensor::empty(Shape{rows, r});
      cpu::gemm(false, false, rows, r, O, 1.0f, dy, f32, detail::element_at(b.value(), 0), bt, 0.0f, g.data());
    }
    if (x.requires_grad()) {
      float* dx = grad_of(x, beta);
      // dx (N, I) += dy (N, O) W (O, I), then += s g (N, r) A (r, I)
      cpu::gemm(false, false, rows, I, O, 1.0f, dy, f32, detail::element_at(W, 0), wt, beta, dx);
      cpu::gemm(false, false, rows, I, r, scaling, g.data(), f32, detail::element_at(Av, 0), at, 1.0f, dx);
    }
    if (a.requires_grad()) {  // dA (r, I) += s g^T (r, N) x (N, I)
      float* dA = grad_of(a, beta);
      cpu::gemm(true, false, r, I, rows, scaling, g.data(), f32, detail::element_at(X, 0), xt, beta, dA);
    }
    g = Tensor{};
    if (b.requires_grad()) {  // dB (O, r) += s dy^T (O, N) h (N, r)
      float* dB = grad_of(b, beta);
      cpu::gemm(true, false, O, r, rows, scaling, dy, f32, h.data(), f32, beta, dB);
    }
    if (weight.requires_grad()) {  // dW (O, I) += dy^T (O, N) x (N, I)
      float* dW = grad_of(weight, beta);
      cpu::gemm(true, false, O, I, rows, 1.0f, dy, f32, detail::element_at(X, 0), xt, beta, dW);
    }
  });
  return out;
}

}  // namespace nr
