// nr/ops/matmul.hpp — matrix product, batched, with optionally transposed operands.
//
//   C = op(A) op(B),   op(X) = X or X^T (the last two dimensions), through cpu::gemm (OpenBLAS
//   or oneDNN, FP32 or BF16: backend/cpu/gemm.hpp).
//
// Shapes (op applied):
//   A (..., M, K) and B (K, N)        -> C (..., M, N)   B shared by every batch (a Linear layer:
//                                                         x (B, T, C) times W^T with W [out, in])
//   A (..., M, K) and B (..., K, N)   -> C (..., M, N)   one product per batch, same leading dims
//
// Backward (gradients accumulated with +=, BLAS beta = 1), with G = dL/dC:
//   dA = G op(B)^T     (stored transposed again when A was used transposed: dA = op(B) G^T)
//   dB = op(A)^T G     (or dB = G^T op(A) when B was used transposed)
// Saved for backward: A and B themselves (no copy; the Var handles keep them alive).
//
// BF16 operands. Either operand may hold bfloat16 values (Tensor dtype BF16) provided it does
// not require grad: a frozen weight kept once in BF16 (store_as_bf16 below: half the memory of
// float32). C and every gradient stay float32. Products with it run BF16 x BF16 -> FP32 when
// BF16 compute is active (set_precision(Precision::bf16) on a CPU with AVX512_BF16), including
// the backward's dA = G op(B)^T, which is how gradients flow through a frozen BF16 weight to the
// activations; otherwise the weight is widened to float32 (exactly) for each product.
#pragma once

#include <fmt/format.h>

#include "nr/backend/cpu/gemm.hpp"
#include "nr/ops/matmul_plan.hpp"
#include "nr/ops/op_support.hpp"

namespace nr {

namespace detail {
// The element `offset` of a dense tensor of any dtype, as an untyped pointer.
inline const void* element_at(const Tensor& t, int64_t offset) {
  if (t.dtype() == DType::bf16) return t.bf16_data() + offset;
  return t.data() + offset;
}
inline void expect_bf16_frozen(const Var& v, const char* op, const char* arg) {
  if (v.value().dtype() != DType::f32 && v.requires_grad())
    throw Error(fmt::format("{}: argument '{}' of shape {} is stored as {} and requires grad; only frozen values may "
                            "be kept in BF16 (trainable ones stay float32)",
                            op, arg, v.shape().str(), dtype_name(v.value().dtype())));
}
}  // namespace detail

inline Var matmul(const Var& a, const Var& b, MatmulOptions o = {}) {
  detail::expect_dense(a, "matmul", "A");
  detail::expect_dense(b, "matmul", "B");
  detail::expect_bf16_frozen(a, "matmul", "A");
  detail::expect_bf16_frozen(b, "matmul", "B");
  const detail::MatmulPlan p = detail::plan_matmul(a.shape(), b.shape(), o);
  const int64_t M = p.M, N = p.N, K = p.K;
  const int64_t a_step = p.a_step(), b_step = p.b_step(), c_step = p.c_step();
  const DType at = a.value().dtype(), bt = b.value().dtype();

  Tensor c = Tensor::empty(p.out_shape);
  for (int64_t i = 0; i < p.batches; ++i)
    cpu::gemm(o.trans_a, o.trans_b, M, N, K, 1.0f, detail::element_at(a.value(), i * a_step), at,
              detail::element_at(b.value(), i * b_step), bt, 0.0f, c.data() + i * c_step);

  Var out(std::move(c), any_requires_grad(a, b));
  if (out.requires_grad()) {
    active_tape().record([a, b, out, p, o, a_step, b_step, c_step, at, bt]() mutable {
      const float* g = detail::output_grad(out);
      if (!g) return;
      constexpr DType f32 = DType::f32;
      // A gradient that does not exist yet is written with beta = 0, sparing its zero-fill (see
      // grad_buffer_for_overwrite): by every batch when each writes its own slice, by the first
      // only when a shared B's gradient sums over the batches (b_step = 0).
      if (a.requires_grad()) {  // then A is float32; B may be BF16 (a frozen weight)
        bool fresh = false;
        float* dA = a.grad_buffer_for_overwrite(fresh).data();
        for (int64_t i = 0; i < p.batches; ++i) {
          const float beta = fresh && (i == 0 || a_step != 0) ? 0.0f : 1.0f;
          const void* B = detail::element_at(b.value(), i * b_step);
          if (!o.trans_a)  // dA (M, K) += G (M, N) op(B)^T
            cpu::gemm(false, !o.trans_b, p.M, p.K, p.N, 1.0f, g + i * c_step, f32, B, bt, beta, dA + i * a_step);
          else  // dA (K, M) += op(B) (K, N) G^T
            cpu::gemm(o.trans_b, true, p.K, p.M, p.N, 1.0f, B, bt, g + i * c_step, f32, beta, dA + i * a_step);
        }
      }
      if (b.requires_grad()) {
        bool fresh = false;
        float* dB = b.grad_buffer_for_overwrite(fresh).data();
        for (int64_t i = 0; i < p.batches; ++i) {
          const float beta = fresh && (i == 0 || b_step != 0) ? 0.0f : 1.0f;
          const void* A = detail::element_at(a.value(), i * a_step);
          if (!o.trans_b)  // dB (K, N) += op(A)^T (K, M) G (M, N)
            cpu::gemm(!o.trans_a, false, p.K, p.N, p.M, 1.0f, A, at, g + i * c_step, f32, beta, dB + i * b_step);
          else  // dB (N, K) += G^T (N, M) op(A) (M, K)
            cpu::gemm(true, o.trans_a, p.N, p.K, p.M, 1.0f, g + i * c_step, f32, A, at, beta, dB + i * b_step);
        }
      }
    });
  }
  return out;
}

namespace detail {
// The shape rule of y = x W^T, shared by linear and the fused layers built on it (lora_linear):
// x (..., in) with at least 2 dimensions, W (out, in). `op` names the caller in the ShapeError.
inline void check_linear_shapes(const Shape& x, const Shape& w, const char* op) {
  if (w.rank() != 2 || x.rank() < 2 || x.back() != w.dim(1))
    throw ShapeError(fmt::format("{}: input {} does not fit weight {} (expected [out, in] with in = {})", op, x.str(),
                                 w.str(), w.rank() == 2 ? w.dim(1) : -1));
}
}  // namespace detail

// y = x W^T for a weight stored [out, in] as in Hugging Face: x (..., in) -> y (..., out), where x
// has at least 2 dimensions (rows, in).
inline Var linear(const Var& x, const Var& weight) {
  detail::check_linear_shapes(x.shape(), weight.shape(), "linear");
  return matmul(x, weight, {.trans_b = true});
}

// ---- BF16 storage of frozen weights -------------------------------------------------------------
//
// store_as_bf16(w) replaces a frozen weight's float32 value by its bfloat16 rounding (half the
// memory; relative change at most 2^-8 per element), in place: every module holding the Var sees
// it. Only matmul / linear (and linear_cross_entropy) read BF16 values; any other op given one
// throws nr::Error ("float access to a BF16 tensor"), so do not convert weights that embedding
// lookups or element-wise ops read (the token embedding, also when the output head is tied to
// it, and norm weights). Throws ValueError for a Var that requires grad. store_as_f32 undoes the
// storage change (the values stay rounded), e.g. before unfreezing or saving the weight.
//
// store_frozen_as_bf16(w) is the policy for model loaders: it converts a frozen 2-D float32
// weight when BF16 compute is active (bf16_gemm_active()) and returns whether it did; trainable
// weights, their gradients and the optimizer's state always stay float32.
inline void store_as_bf16(Var& w) {
  if (w.requires_grad())
    throw ValueError(fmt::format("store_as_bf16: the weight of shape {} requires grad; only frozen weights may be "
                                 "kept in BF16", w.shape().str()));
  if (w.value().dtype() == DType::bf16) return;
  w.value() = w.value().to(DType::bf16);
}

inline void store_as_f32(Var& w) {
  if (w.value().dtype() == DType::f32) return;
  w.value() = w.value().to(DType::f32);
}

inline bool store_frozen_as_bf16(Var& w) {
  if (w.requires_grad() || w.value().dtype() != DType::f32 || w.shape().rank() != 2 || !bf16_gemm_active()) return false;
  store_as_bf16(w);
  return true;
}

}  // namespace nr
