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
//   per chunk  z_c (R, V) = x_c W^T, then lse and nll of the chunk's rows.
// When a gradient will be needed (grad mode on and x or W requiring grad), the chunk's gradient is
// taken in the same pass, since the upstream gradient g = dL/dloss of a scalar loss only scales
// it: with k[n] = w[n] / sum(w), z_c is turned in place into
//               dz_c[n, v] = k[n] (exp(z[n, v] - lse[n]) - [v == t[n]])      (R, V)
//   gx_c (R, C) = dz_c W          (when x requires grad)
//   gw   (V, C) += dz_c^T x_c     (when W requires grad; a frozen head costs nothing)
// and the backward adds g gx and g gw to the gradients (+=). So the op runs exactly the products
// of linear + cross_entropy (three per chunk, two with a frozen head) and never recomputes the
// logits; it holds gx (N, C) and, for a trainable head, gw (V, C) from the forward to the backward.
// A chunk whose tokens all have weight 0 gets no gradient products. Under NoGrad (evaluation) only
// the forward products run. The weight is converted once per call to the products' dtype (BF16 when
// BF16 compute is active), not once per chunk.
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

// The weight as a GEMM operand in the dtype the products run in, converted once per call (not
// once per chunk): a float32 head is rounded to BF16 once when BF16 compute is active, a BF16 one
// widened once when it is not. `keep` owns the converted copy.
struct LceWeight {
  cpu::GemmInput in;
  std::shared_ptr<Storage> keep;
};
inline LceWeight lce_weight_operand(const Tensor& w, const LceDims& d) {
  LceWeight r;
  const DType compute = bf16_gemm_active() ? DType::bf16 : DType::f32;
  r.in = cpu::gemm_detail::convert_operand(cpu::GemmInput{element_at(w, 0), w.dtype(), d.C}, d.V, d.C, compute, r.keep);
  return r;
}

// sum_n w[n] nll[n] / wsum (w = 1 when empty); masked rows are skipped (0 * inf would be NaN).
inline double lce_mean(const std::vector<double>& nll, std::span<const float> w, double wsum) {
  double total = 0.0;
  for (size_t n = 0; n < nll.size(); ++n) {
    const double wn = w.empty() ? 1.0 : static_cast<double>(w[n]);
    if (wn != 0.0) total += wn * nll[n];
  }
  return total / wsum;
}

// nll (N,) of the whole batch, chunk by chunk.
inline void lce_forward(const Tensor& x, const Tensor& w, const Indices& targets, const LceDims& d, double* nll) {
  const LceWeight wr = lce_weight_operand(w, d);
  Tensor z = Tensor::empty(Shape{d.chunk, d.V});  // (R, V) the chunk's logits
  std::vector<float> lse(static_cast<size_t>(d.chunk));
  for (int64_t r0 = 0; r0 < d.N; r0 += d.chunk) {
    const int64_t R = std::min(d.chunk, d.N - r0);
    cpu::gemm(false, true, R, d.V, d.C, 1.0f, cpu::GemmInput{x.data() + r0 * d.C, DType::f32, d.C}, wr.in, 0.0f,
              z.data(), d.V);
    cpu::lce_rows_forward(z.data(), targets.data.data() + r0, R, d.V, lse.data(), nll + r0);
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

  const bool dx_needed = grad_enabled() && x.requires_grad();
  const bool dw_needed = grad_enabled() && weight.requires_grad();
  std::vector<double> nll(static_cast<size_t>(d.N));
  if (!dx_needed && !dw_needed) {  // no gradient will be asked for: the forward alone
    detail::lce_forward(x.value(), weight.value(), targets, d, nll.data());
    return Var(Tensor::scalar(static_cast<float>(detail::lce_mean(nll, token_weights, wsum))), false);
  }

  // The gradient of the loss with respect to x and W is known up to the upstream scalar g as soon
  // as a chunk's lse is: dz_c = k (softmax - onehot) with k[n] = w[n] / sum(w). So each chunk's
  // logits are turned into dz_c right away and multiplied into gx = dL/dx / g (N, C) and gw =
  // dL/dW / g (V, C); the backward only scales them by g. Three products per chunk when both
  // gradients are needed, two with a frozen head: exactly the products of the unfused ops, with
  // no recomputation of the logits.
  const Tensor& X = x.value();       // (N, C)
  const Tensor& W = weight.value();  // (V, C), F32 or BF16
  Tensor gx = dx_needed ? Tensor::empty(Shape{d.N, d.C}) : Tensor{};
  Tensor gw = dw_needed ? Tensor::empty(Shape{d.V, d.C}) : Tensor{};
  const detail::LceWeight wr = detail::lce_weight_operand(W, d);  // W once in the products' dtype
  Tensor z = Tensor::empty(Shape{d.chunk, d.V});       // (R, V) logits, then their gradient
  std::vector<float> lse(static_cast<size_t>(d.chunk));
  const float scale = static_cast<float>(1.0 / wsum);
  bool gw_written = false;
  for (int64_t r0 = 0; r0 < d.N; r0 += d.chunk) {
    const int64_t R = std::min(d.chunk, d.N - r0);
    const float* xc = X.data() + r0 * d.C;                                      // (R, C)
    const float* wc = weighted ? token_weights.data() + r0 : nullptr;           // (R,) or none
    cpu::gemm(false, true, R, d.V, d.C, 1.0f, cpu::GemmInput{xc, DType::f32, d.C}, wr.in, 0.0f, z.data(), d.V);
    cpu::lce_rows_forward(z.data(), targets.data.data() + r0, R, d.V, lse.data(), nll.data() + r0);
    if (wc && std::all_of(wc, wc + R, [](float v) { return v == 0.0f; })) {  // masked chunk: no gradient
      if (dx_needed) std::fill_n(gx.data() + r0 * d.C, R * d.C, 0.0f);
      continue;
    }
    cpu::lce_rows_backward(z.data(), lse.data(), targets.data.data() + r0, wc, scale, R, d.V);  // z := dz_c
    if (dx_needed)  // gx_c (R, C) = dz_c (R, V) W (V, C)   (rows of gx are disjoint across chunks)
      cpu::gemm(false, false, R, d.C, d.V, 1.0f, cpu::GemmInput{z.data(), DType::f32, d.V}, wr.in, 0.0f,
                gx.data() + r0 * d.C, d.C);
    if (dw_needed) {  // gw (V, C) += dz_c^T (V, R) x_c (R, C)
      cpu::gemm(true, false, d.V, d.C, R, 1.0f, z.data(), DType::f32, xc, DType::f32, gw_written ? 1.0f : 0.0f,
                gw.data());
      gw_written = true;
    }
  }
  if (dw_needed && !gw_written) gw.zero_();
  z = Tensor{};  // the chunk's scratch goes back to the storage cache before the rest of the step

  Var out(Tensor::scalar(static_cast<float>(detail::lce_mean(nll, token_weights, wsum))), true);
  active_tape().record([x, weight, out, gx, gw]() {
    const float* g = detail::output_grad(out);  // () the upstream scalar
    if (!g) return;
    const float k = g[0];
    for (const auto& [v, u] : {std::pair<const Var&, const Tensor&>{x, gx}, {weight, gw}}) {
      if (!u.defined()) continue;
      bool fresh = false;
      float* dst = v.grad_buffer_for_overwrite(fresh).data();
      const float* src = u.data();
      const int64_t n = u.numel();
      if (fresh) {
#pragma omp parallel for schedule(static) if (n > nr::detail::parallel_grain && !omp_in_parallel())
        for (int64_t i = 0; i < n; ++i) dst[i] = k * src[i];
      } else {
#pragma omp parallel for schedule(static) if (n > nr::detail::parallel_grain && !omp_in_parallel())
        for (int64_t i = 0; i < n; ++i) dst[i] += k * src[i];
      }
    }
  });
  return out;
}

// Per-token negative log-likelihoods nll[n] = -log softmax(x[n] W^T)[t[n]] (natural log), in
// double, for x (N..., C), weight (V, C) and targets (N...). Records nothing; NOT differentiable.
inline std::vector<double> linear_cross_entropy_per_token(const Tensor& x, const Tensor& weight, const Indices& targets,
                                                          LinearCrossEntropyOptions o = {}) {
  const detail::LceDims d =
      detail::check_linear_cross_entropy(x, weight, targets, o, "linear_cross_entropy_per_token");
  std::vector<double> nll(static_cast<size_t>(d.N));
  if (d.N > 0) detail::lce_forward(x, weight, targets, d, nll.data());
  return nll;
}

inline std::vector<double> linear_cross_entropy_per_token(const Var& x, const Var& weight, const Indices& targets,
                                                          LinearCrossEntropyOptions o = {}) {
  return linear_cross_entropy_per_token(x.value(), weight.value(), targets, o);
}

}  // namespace nr
