// nr/ops/stick_breaking_attention.hpp — causal stick-breaking self-attention (ModuleFormer,
// Section 3.2 and Appendix A; a simplification of the geometric attention of Csordás et al. 2021).
//
// For each batch element b and query head h, which reads key/value head g = h / (H / Hkv) (the
// grouping of ops/attention.hpp), and each query step i with the keys j <= i:
//   z_ij = q_i . k_j * scale,  scale = 1 / sqrt(D)                     (the match logit)
//   p_ij = sigmoid(z_ij)                                               (Eq. 3: "key j matches")
//   A_ij = p_ij * prod_{j < l <= i} (1 - p_il)                         (Eq. 4: the stick-breaking
//                                                                       process from i backwards)
//   o_i  = sum_{j <= i} A_ij v_j                                       (Eq. 5, before W_o)
// A_ij is the probability that j is the most recent matching key. sum_j A_ij <= 1: the rest of the
// stick, prod_{l <= i} (1 - p_il), attends to nothing (it vanishes as the context grows,
// Appendix A). No softmax and no position embedding: the order of the product encodes positions.
//
// Log space, with cumulative sums (as the paper says, after Csordás et al.): with the
// log-sigmoid ls(z) = log sigmoid(z) = min(z, 0) - log1p(exp(-|z|)) and log(1 - sigmoid(z)) =
// ls(-z),
//   log A_ij = ls(z_ij) + S_ij,    S_ij = sum_{j < l <= i} ls(-z_il)
// and S_ij is a running sum over j = i, i-1, ..., 0 (accumulated in double). Every term is <= 0,
// so exp never overflows and long products never underflow to garbage.
//
// Shapes (B batch, T time, H query heads, Hkv key/value heads, D head size), as causal_attention
// (the layout of ops/attention_heads.hpp):
//   q (B, T, H*D), k (B, past + T, Hkv*D), v (B, past + T, Hkv*D)  ->  out (B, T, H*D)
// With past > 0 (generation with a KV cache) query row i is step past + i and the sums above run
// over the keys j <= past + i.
//
// Backward (gradients accumulated with +=), with dO = dL/dO; per (b, h), recomputing z, p and A
// from the saved q and k (nothing but the inputs and the output is saved):
//   dV_g  += A^T dO
//   dA_ij  = dO_i . v_j
//   c_ij   = dA_ij A_ij
//   d log A_ij / d z_im = 1 - p_im  (m = j),   -p_im  (j < m <= i),   0  (m < j), so
//   dz_im  = c_im (1 - p_im) - p_im sum_{j < m} c_ij                   (a prefix sum along the row)
//   dQ_h  += dZ K_g * scale
//   dK_g  += dZ^T Q_h * scale
// As in causal_attention, the backward runs one (b, g) pair per thread and loops over the group's
// query heads inside, so no two threads write the same dK_g or dV_g. As in causal_attention,
// query rows are processed in blocks of up to 64, a block [i0, i1) meeting only the keys [0, past + i1),
// so the products skip most of the masked upper triangle; each thread owns scratch buffers of
// 3 (64, Tk) floats (z, A and dA / dZ of the current block), allocated once per call.
// The transcendental work per (query, key) pair: exp and log once for both log-sigmoids, exp for
// A (forward, and again in the backward's recomputation), exp for the sigmoids of the backward.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <omp.h>

#include "nr/ops/attention_heads.hpp"
#include "nr/ops/op_support.hpp"

// GCC 12's false -Wmaybe-uninitialized inside Eigen's vectorised products (see
// ops/attention_heads.hpp), over the kernels below only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace nr::cpu {

namespace stick_breaking_detail {

// log(1 + e) for e in [0, 1]: two terms of the series below 1e-3 (error < e^3 / 3 < 4e-10),
// log(1 + e) above (absolute error about 6e-8). Much cheaper than std::log1p for floats.
inline float log1p_small(float e) { return e < 1e-3f ? e * (1.0f - 0.5f * e) : std::log(1.0f + e); }

// For the rows i = first + r of a block (first = past + i0: absolute steps), Z (n, keys) holds the
// scaled logits z_ij (only j <= i is read); writes A (n, keys), zero for j > i. Z and A may not
// alias; lsn (keys) is scratch. Per element, one exp and one log give both log-sigmoids, ls(z) = min(z, 0) - L and
// ls(-z) = min(-z, 0) - L with L = log1p(exp(-|z|)), and one more exp gives A; the running sum
// S is kept in double.
inline void stick_breaking_weights(const heads::Block& Z, heads::Block& A, float* lsn, int64_t first) {
  const int64_t n = Z.rows(), keys = Z.cols();
  for (int64_t r = 0; r < n; ++r) {
    const int64_t i = first + r;
    for (int64_t j = 0; j <= i; ++j) {  // log-sigmoids of the row
      const float z = Z(r, j);
      const float L = log1p_small(std::exp(-std::abs(z)));
      A(r, j) = std::min(z, 0.0f) - L;  // ls(z_ij), for now
      lsn[j] = std::min(-z, 0.0f) - L;  // ls(-z_ij) = log(1 - p_ij)
    }
    double s = 0.0;  // S_ij = sum_{j < l <= i} ls(-z_il), built from j = i downwards
    for (int64_t j = i; j >= 0; --j) {
      A(r, j) = std::exp(static_cast<float>(A(r, j) + s));
      s += lsn[j];
    }
    for (int64_t j = i + 1; j < keys; ++j) A(r, j) = 0.0f;
  }
}

}  // namespace stick_breaking_detail

// out (B, T, H*D) = stick-breaking attention of q over k, v (see the top of this file).
inline void stick_breaking_forward(const float* q,  // (B, T, H*D)
                                   const float* k,  // (B, Tk, Hkv*D), Tk = past + T
                                   const float* v,  // (B, Tk, Hkv*D)
                                   float* out,      // (B, T, H*D)
                                   const AttentionDims& d) {
  using namespace heads;
  using namespace stick_breaking_detail;
  const int64_t B = d.B, T = d.T, Tk = d.Tk, past = d.past(), H = d.H, Hkv = d.Hkv, D = d.D, group = d.group();
  const int64_t qs = H * D, ks = Hkv * D, bt = std::min(T, block_rows);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  if (B * H * T == 0) return;

#pragma omp parallel
  {
    // 64-byte aligned, so that Eigen's vectorised reductions split the same way in every run
    // (an address-dependent split would change the rounding: see docs/reliability.md).
    Tensor scratch_buf = Tensor::empty(Shape{2 * bt * Tk + Tk});  // Z, A of a block, a row of ls(-z)
    float* const scratch = scratch_buf.data();
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / group;
        const auto K = head(k + b * Tk * ks + g * D, Tk, D, ks);  // (Tk, D)
        const auto V = head(v + b * Tk * ks + g * D, Tk, D, ks);  // (Tk, D)
        for (int64_t i0 = 0; i0 < T; i0 += bt) {
          const int64_t n = std::min(bt, T - i0), i1 = i0 + n, keys = past + i1;
          const auto Q = head(q + (b * T + i0) * qs + h * D, n, D, qs);  // (n, D)
          Block Z(scratch, n, keys), A(scratch + bt * Tk, n, keys);
          Z.noalias() = (Q * K.topRows(keys).transpose()) * scale;
          stick_breaking_weights(Z, A, scratch + 2 * bt * Tk, past + i0);
          head(out + (b * T + i0) * qs + h * D, n, D, qs).noalias() = A * V.topRows(keys);
        }
      }
    }
  }
}

// Accumulates (+=) dq, dk, dv from dout; any of the three may be null (not needed).
inline void stick_breaking_backward(const float* q,     // (B, T, H*D)
                                    const float* k,     // (B, Tk, Hkv*D), Tk = past + T
                                    const float* v,     // (B, Tk, Hkv*D)
                                    const float* dout,  // (B, T, H*D)
                                    float* dq,          // (B, T, H*D)   or null
                                    float* dk,          // (B, Tk, Hkv*D) or null
                                    float* dv,          // (B, Tk, Hkv*D) or null
                                    const AttentionDims& d) {
  using namespace heads;
  using namespace stick_breaking_detail;
  const int64_t B = d.B, T = d.T, Tk = d.Tk, past = d.past(), H = d.H, Hkv = d.Hkv, D = d.D, group = d.group();
  const int64_t qs = H * D, ks = Hkv * D, bt = std::min(T, block_rows);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  if (B * H * T == 0 || !(dq || dk || dv)) return;

#pragma omp parallel
  {
    // 64-byte aligned, so that Eigen's vectorised reductions split the same way in every run
    // (an address-dependent split would change the rounding: see docs/reliability.md).
    Tensor scratch_buf = Tensor::empty(Shape{3 * bt * Tk + Tk});  // Z, A, dA (then dZ), a row
    float* const scratch = scratch_buf.data();
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t g = 0; g < Hkv; ++g) {  // this thread owns dK_g and dV_g
        const auto K = head(k + b * Tk * ks + g * D, Tk, D, ks);  // (Tk, D)
        const auto V = head(v + b * Tk * ks + g * D, Tk, D, ks);  // (Tk, D)
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          for (int64_t i0 = 0; i0 < T; i0 += bt) {
            const int64_t n = std::min(bt, T - i0), i1 = i0 + n, keys = past + i1;
            const int64_t row0 = (b * T + i0) * qs + h * D;
            const auto Q = head(q + row0, n, D, qs);      // (n, D)
            const auto dO = head(dout + row0, n, D, qs);  // (n, D)
            Block Z(scratch, n, keys), A(scratch + bt * Tk, n, keys), dZ(scratch + 2 * bt * Tk, n, keys);
            Z.noalias() = (Q * K.topRows(keys).transpose()) * scale;
            stick_breaking_weights(Z, A, scratch + 3 * bt * Tk, past + i0);
            if (dv) head(dv + b * Tk * ks + g * D, keys, D, ks).noalias() += A.transpose() * dO;  // dV += A^T dO
            if (!(dq || dk)) continue;
            dZ.noalias() = dO * V.topRows(keys).transpose();  // dA_ij = dO_i . v_j
            for (int64_t r = 0; r < n; ++r) {
              const int64_t i = past + i0 + r;
              double prefix = 0.0;  // sum_{j < m} c_ij
              for (int64_t m = 0; m <= i; ++m) {
                const float z = Z(r, m);
                const float e = std::exp(-std::abs(z)), inv = 1.0f / (1.0f + e);
                const float p = z >= 0.0f ? inv : e * inv, one_minus_p = z >= 0.0f ? e * inv : inv;  // stable sigmoids
                const double c = static_cast<double>(dZ(r, m)) * A(r, m);                          // c_im
                dZ(r, m) = static_cast<float>((c * one_minus_p - p * prefix) * scale);  // scale folded in
                prefix += c;
              }
              for (int64_t m = i + 1; m < keys; ++m) dZ(r, m) = 0.0f;
            }
            if (dq) head(dq + row0, n, D, qs).noalias() += dZ * K.topRows(keys);                      // dQ += dZ K s
            if (dk) head(dk + b * Tk * ks + g * D, keys, D, ks).noalias() += dZ.transpose() * Q;  // dK += dZ^T Q s
          }
        }
      }
    }
  }
}

}  // namespace nr::cpu

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace nr {

// Causal stick-breaking attention with grouped-query heads; see the top of this file.
//   q (B, T, H*D), k (B, past + T, Hkv*D), v (B, past + T, Hkv*D) -> (B, T, H*D), H = n_heads,
//   Hkv = n_kv_heads; query row i is step past + i (past > 0: keys from a KV cache).
inline Var stick_breaking_attention(const Var& q, const Var& k, const Var& v, int64_t n_heads, int64_t n_kv_heads,
                                    int64_t past = 0) {
  const cpu::AttentionDims d =
      detail::attention_dims("stick_breaking_attention", q, k, v, n_heads, n_kv_heads, past);
  const Shape& qs = q.shape();

  Tensor o = Tensor::empty(qs);  // (B, T, H*D)
  cpu::stick_breaking_forward(q.value().data(), k.value().data(), v.value().data(), o.data(), d);

  Var out(std::move(o), any_requires_grad(q, k, v));
  if (out.requires_grad()) {
    active_tape().record([q, k, v, out, d]() {
      const float* g = detail::output_grad(out);
      if (!g) return;
      // Saved: q, k, v (the Var handles); z, p and A are recomputed.
      cpu::stick_breaking_backward(q.value().data(), k.value().data(), v.value().data(), g,
                                   q.requires_grad() ? q.grad_buffer().data() : nullptr,
                                   k.requires_grad() ? k.grad_buffer().data() : nullptr,
                                   v.requires_grad() ? v.grad_buffer().data() : nullptr, d);
    });
  }
  return out;
}

}  // namespace nr
