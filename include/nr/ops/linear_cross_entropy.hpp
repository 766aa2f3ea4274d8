// nr/ops/linear_cross_entropy.hpp — the output projection and the cross-entropy, fused and chunked,
// so that the (N, V) logits never exist in full.
//
//   z[n, v] = sum_c x[n, c] W[v, c]                 (logits: linear(x, W), W stored [V, C] as lm_head)
//   lse[n]  = log sum_v exp(z[n, v])                (shifted by the row maximum)
//   nll[n]  = lse[n] - z[n, t[n]]
//   loss    = sum_n w[n] nll[n] / sum_n w[n]        (w = 1 without token weights: the mean)
//
// Same result as cross_entropy(linear(x, W), t, w) (ops/cross_entropy.hpp), without its memory:
// for SmolLM2's vocabulary V = 49 152 and N = 4 x 512 tokens the logits alone are 403 MB of float32,
// and their gradient as much again. Here the rows are processed in chunks of R rows (R x V floats
// of scratch, about 64 MB by default: LinearCrossEntropyOptions::chunk_rows):
//   forward   z_c (R, V) = x_c W^T, then lse and nll of the chunk's rows; saved: lse (N,) only.
//   backward  (g = dL/dloss, k[n] = g w[n] / sum(w)) per chunk, the logits are recomputed and
//             turned in place into
//               dz_c[n, v] = k[n] (exp(z[n, v] - lse[n]) - [v == t[n]])      (R, V)
//             dx_c (R, C) += dz_c W          (when x requires grad)
//             dW   (V, C) += dz_c^T x_c      (when W requires grad; a frozen head costs nothing)
// Gradients are accumulated with +=. The recomputation costs one more product of the size of the
// forward's; a chunk whose tokens all have weight 0 is skipped in the backward.
//
// Shapes: x (N..., C) float32, e.g. (B, T, C); W (V, C) float32, or BF16 when frozen (see
// store_as_bf16 in ops/matmul.hpp); targets t: Indices of shape N...; optional weights w of length
// N = numel(N...). The products go through cpu::gemm (OpenBLAS or oneDNN, FP32 or BF16 per the
// process settings); exponentials use exp_poly (relative error below 2e-7), sums and logarithms
// are in double. Errors: ShapeError for shapes that do not fit, ValueError for targets outside
// [0, V) and for invalid weights, Error for a BF16 weight that requires grad.
//
// linear_cross_entropy_per_token() returns nll[n] in double (natural log) for evaluation (bits
// per byte, multiple-choice scores); it records nothing and is not differentiable.
//
// Usage, for a language model whose last hidden states are h (B, T, C) after the final norm:
//   Var loss = nr::linear_cross_entropy(h, model.lm_head_weight, targets);   // instead of
//   Var loss = nr::cross_entropy(nr::linear(h, model.lm_head_weight), targets);
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "nr/backend/cpu/gemm.hpp"
#include "nr/core/indices.hpp"
#include "nr/ops/exp_poly.hpp"
#include "nr/ops/matmul.hpp"
#include "nr/ops/op_support.hpp"

namespace nr {

struct LinearCrossEntropyOptions {
  // Rows per chunk; 0 chooses about 64 MB of logits per chunk (16 Mi floats / V rows, a multiple
  // of 16, between 16 and 1024).
  int64_t chunk_rows = 0;
};

namespace cpu {

// The maximum of z (V,) and sum_v exp(z[v] - m) (in double), each over fixed groups of lanes
// that the compiler maps onto vector registers (a plain running max or double sum is a serial
// dependency chain that it may not reorder without -ffast-math).
inline float lce_row_max(const float* z, int64_t V) {
  constexpr int L = 16;
  float lanes[L];
  std::fill_n(lanes, L, z[0]);
  int64_t v = 0;
  for (; v + L <= V; v += L)
    for (int j = 0; j < L; ++j) lanes[j] = std::max(lanes[j], z[v + j]);
  float m = lanes[0];
  for (int j = 1; j < L; ++j) m = std::max(m, lanes[j]);
  for (; v < V; ++v) m = std::max(m, z[v]);
  return m;
}
inline double lce_row_sum_exp(const float* z, int64_t V, float m) {
  constexpr int L = 8;
  double lanes[L] = {};
  int64_t v = 0;
  for (; v + L <= V; v += L)
    for (int j = 0; j < L; ++j) lanes[j] += static_cast<double>(pointwise::exp_poly(z[v + j] - m));
  double sum = 0.0;
  for (int j = 0; j < L; ++j) sum += lanes[j];
  for (; v < V; ++v) sum += static_cast<double>(pointwise::exp_poly(z[v] - m));
  return sum;
}

// lse (R,) and nll (R,) for the logits z (R, V) of one chunk, rows in parallel.
inline void lce_rows_forward(const float* z, const int32_t* t, int64_t R, int64_t V, float* lse, double* nll) {
#pragma omp parallel for schedule(static) if (R * V > nr::detail::parallel_grain && !omp_in_parallel())
  for (int64_t n = 0; n < R; ++n) {
    const float* zn = z + n * V;
    const float m = lce_row_max(zn, V);
    const double l = static_cast<double>(m) + std::log(lce_row_sum_exp(zn, V, m));
    lse[n] = static_cast<float>(l);
    nll[n] = l - static_cast<double>(zn[t[n]]);
  }
}

// z (R, V) becomes dz = k[n] (exp(z - lse[n]) - onehot(t[n])) in place; k[n] = scale * w[n]
// (w null: all ones).
inline void lce_rows_backward(float* z, const float* lse, const int32_t* t, const float* w, float scale, int64_t R,
                              int64_t V) {
#pragma omp parallel for schedule(static) if (R * V > nr::detail::parallel_grain && !omp_in_parallel())
  for (int64_t n = 0; n < R; ++n) {
    float* zn = z + n * V;
    const float k = w ? scale * w[n] : scale;
    if (k == 0.0f) {  // masked token: no gradient
      std::fill_n(zn, V, 0.0f);
      continue;
    }
    const float l = lse[n];
    for (int64_t v = 0; v < V; ++v) zn[v] = k * pointwise::exp_poly(zn[v] - l);  // softmax term
    zn[t[n]] -= k;                                                                // one-hot term
  }
}

}  // namespace cpu

namespace detail {

struct LceDims {
  int64_t N = 0, C = 0, V = 0, chunk = 0;
};

// Checks x (N..., C), W (V, C) and targets (N...); returns the sizes and the chunk length.
inline LceDims check_linear_cross_entropy(const Tensor& x, const Tensor& w, const Indices& targets,
                                          const LinearCrossEntropyOptions& o, const char* op) {
  for (const auto& [t, name] : {std::pair<const Tensor&, const char*>{x, "x"}, {w, "weight"}}) {
    if (!t.defined()) throw Error(fmt::format("{}: argument '{}' is undefined", op, name));
    if (t.device() != Device::cpu)
      throw DeviceError(fmt::format("{}: argument '{}' lives on {}; this op has no {} kernel in this build", op, name,
                                    device_name(t.device()), device_name(t.device())));
    if (!t.is_contiguous())
      throw ShapeError(fmt::format("{}: argument '{}' of shape {} must be contiguous", op, name, t.shape().str()));
  }
  if (x.dtype() != DType::f32)
    throw Error(fmt::format("{}: x of shape {} must be float32, not {}", op, x.shape().str(), dtype_name(x.dtype())));
  const Shape& xs = x.shape();
  if (xs.rank() < 2 || w.shape().rank() != 2 || w.shape().dim(1) != xs.back() || w.shape().dim(0) == 0)
    throw ShapeError(fmt::format("{}: x {} does not fit weight {} (expected x (N..., C) and weight (V, C) with V > 0)",
                                 op, xs.str(), w.shape().str()));
  Shape lead;
  for (int i = 0; i + 1 < xs.rank(); ++i) lead.push_back(xs[i]);
  if (!(lead == targets.shape))
    throw ShapeError(fmt::format("{}: x {} needs targets of shape {}, got {}", op, xs.str(), lead.str(), targets.shape.str()));
  if (targets.numel() != targets.shape.numel())
    throw ShapeError(fmt::format("{}: targets hold {} values but claim shape {}", op, targets.numel(), targets.shape.str()));
  if (o.chunk_rows < 0) throw ValueError(fmt::format("{}: chunk_rows must be >= 0 (0: automatic), got {}", op, o.chunk_rows));
  LceDims d;
  d.N = targets.numel();
  d.C = xs.back();
  d.V = w.shape().dim(0);
  targets.check_range(d.V, op);
  d.chunk = o.chunk_rows > 0 ? o.chunk_rows : std::clamp<int64_t>((int64_t{1} << 24) / d.V / 16 * 16, 16, 1024);
  d.chunk = std::max<int64_t>(1, std::min(d.chunk, d.N));
  return d;
}

// nll (N,) and lse (N,) (lse may be null) of the whole batch, chunk by chunk.
inline void lce_forward(const Tensor& x, const Tensor& w, const Indices& targets, const LceDims& d, double* nll, float* lse) {
  Tensor z = Tensor::empty(Shape{d.chunk, d.V});  // (R, V) the chunk's logits
  std::vector<float> lse_chunk(static_cast<size_t>(d.chunk));
  for (int64_t r0 = 0; r0 < d.N; r0 += d.chunk) {
    const int64_t R = std::min(d.chunk, d.N - r0);
    cpu::gemm(false, true, R, d.V, d.C, 1.0f, x.data() + r0 * d.C, DType::f32, element_at(w, 0), w.dtype(), 0.0f, z.data());
    cpu::lce_rows_forward(z.data(), targets.data.data() + r0, R, d.V, lse ? lse + r0 : lse_chunk.data(), nll + r0);
  }
}

}  // namespace detail

// x (N..., C), weight (V, C), targets (N...), token weights (N,) or empty -> scalar loss (shape ()).
inline Var linear_cross_entropy(const Var& x, const Var& weight, const Indices& targets,
                                std::span<const float> token_weights = {}, LinearCrossEntropyOptions o = {}) {
  const char* op = "linear_cross_entropy";
  if (!x.defined() || !weight.defined()) throw Error(fmt::format("{}: x or weight is an undefined Var", op));
  const detail::LceDims d = detail::check_linear_cross_entropy(x.value(), weight.value(), targets, o, op);
  if (weight.value().dtype() != DType::f32 && weight.requires_grad())
    throw Error(fmt::format("{}: the weight {} is stored as {} and requires grad; only frozen weights may be BF16", op,
                            weight.shape().str(), dtype_name(weight.value().dtype())));
  if (d.N == 0) throw ValueError(fmt::format("{}: x {} holds no tokens to average over", op, x.shape().str()));
  const bool weighted = !token_weights.empty();
  double wsum = static_cast<double>(d.N);
  if (weighted) {
    if (static_cast<int64_t>(token_weights.size()) != d.N)
      throw ShapeError(fmt::format("{}: {} token weights for x {} ({} tokens)", op, token_weights.size(), x.shape().str(), d.N));
    wsum = 0.0;
    for (size_t i = 0; i < token_weights.size(); ++i) {
      if (!(token_weights[i] >= 0.0f) || !std::isfinite(token_weights[i]))
        throw ValueError(fmt::format("{}: weight {} at position {} must be finite and >= 0", op, token_weights[i], i));
      wsum += token_weights[i];
    }
    if (!(wsum > 0.0)) throw ValueError(fmt::format("{}: the token weights sum to zero (every token is masked)", op));
  }

  Tensor lse = Tensor::empty(Shape{d.N});  // (N,) saved for the backward
  std::vector<double> nll(static_cast<size_t>(d.N));
  detail::lce_forward(x.value(), weight.value(), targets, d, nll.data(), lse.data());
  double total = 0.0;
  for (int64_t n = 0; n < d.N; ++n) {
    const double wn = weighted ? static_cast<double>(token_weights[static_cast<size_t>(n)]) : 1.0;
    if (wn != 0.0) total += wn * nll[static_cast<size_t>(n)];  // skip masked rows (0 * inf = NaN)
  }

  Var out(Tensor::scalar(static_cast<float>(total / wsum)), any_requires_grad(x, weight));
  if (out.requires_grad()) {
    // The closure owns copies of the targets and weights: the caller's may not outlive it.
    auto w = std::make_shared<const std::vector<float>>(token_weights.begin(), token_weights.end());
    active_tape().record([x, weight, out, lse, targets, w, wsum, d]() {
      const float* g = detail::output_grad(out);  // () the upstream scalar
      if (!g) return;
      const float scale = static_cast<float>(static_cast<double>(g[0]) / wsum);
      const Tensor& X = x.value();       // (N, C)
      const Tensor& W = weight.value();  // (V, C), F32 or BF16
      const void* Wp = detail::element_at(W, 0);
      bool dx_fresh = false, dw_fresh = false;
      float* dX = x.requires_grad() ? x.grad_buffer_for_overwrite(dx_fresh).data() : nullptr;      // (N, C)
      float* dW = weight.requires_grad() ? weight.grad_buffer_for_overwrite(dw_fresh).data() : nullptr;  // (V, C)
      bool dw_written = false;
      Tensor dz = Tensor::empty(Shape{d.chunk, d.V});  // (R, V) logits, then their gradient
      for (int64_t r0 = 0; r0 < d.N; r0 += d.chunk) {
        const int64_t R = std::min(d.chunk, d.N - r0);
        const float* wr = w->empty() ? nullptr : w->data() + r0;
        const bool all_masked = wr && std::all_of(wr, wr + R, [](float v) { return v == 0.0f; });
        if (all_masked || scale == 0.0f) {  // no gradient from these rows
          if (dX && dx_fresh) std::fill_n(dX + r0 * d.C, R * d.C, 0.0f);
          continue;
        }
        const float* xc = X.data() + r0 * d.C;  // (R, C)
        // Recompute the logits z_c (R, V) = x_c W^T and turn them into dz_c.
        cpu::gemm(false, true, R, d.V, d.C, 1.0f, xc, DType::f32, Wp, W.dtype(), 0.0f, dz.data());
        cpu::lce_rows_backward(dz.data(), lse.data() + r0, targets.data.data() + r0, wr, scale, R, d.V);
        if (dX)  // dx_c (R, C) += dz_c (R, V) W (V, C)   (rows of dX are disjoint across chunks)
          cpu::gemm(false, false, R, d.C, d.V, 1.0f, dz.data(), DType::f32, Wp, W.dtype(), dx_fresh ? 0.0f : 1.0f,
                    dX + r0 * d.C);
        if (dW) {  // dW (V, C) += dz_c^T (V, R) x_c (R, C)
          cpu::gemm(true, false, d.V, d.C, R, 1.0f, dz.data(), DType::f32, xc, DType::f32,
                    dw_fresh && !dw_written ? 0.0f : 1.0f, dW);
          dw_written = true;
        }
      }
      if (dW && dw_fresh && !dw_written) std::fill_n(dW, d.V * d.C, 0.0f);
    });
  }
  return out;
}

// Per-token negative log-likelihoods nll[n] = -log softmax(x[n] W^T)[t[n]] (natural log), in
// double, for x (N..., C), weight (V, C) and targets (N...). Records nothing; NOT differentiable.
inline std::vector<double> linear_cross_entropy_per_token(const Tensor& x, const Tensor& weight, const Indices& targets,
                                                          LinearCrossEntropyOptions o = {}) {
  const detail::LceDims d =
      detail::check_linear_cross_entropy(x, weight, targets, o, "linear_cross_entropy_per_token");
  std::vector<double> nll(static_cast<size_t>(d.N));
  if (d.N > 0) detail::lce_forward(x, weight, targets, d, nll.data(), nullptr);
  return nll;
}

inline std::vector<double> linear_cross_entropy_per_token(const Var& x, const Var& weight, const Indices& targets,
                                                          LinearCrossEntropyOptions o = {}) {
  return linear_cross_entropy_per_token(x.value(), weight.value(), targets, o);
}

}  // namespace nr
