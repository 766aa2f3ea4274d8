// nr/ops/attention.hpp — fused causal self-attention with grouped-query heads (GQA).
//
// For each batch element b and query head h, which reads key/value head g = h / (H / Hkv)
// (Hugging Face `repeat_kv` grouping: consecutive query heads share one key/value head):
//   S = Q_h K_g^T * scale,   scale = 1 / sqrt(D)                     (T, T)
//   S_ij = -inf for j > i                                             (causal mask)
//   P = softmax_rows(S),     L_i = log sum_j exp(S_ij)                (T, T), (T,)
//   O_h = P V_g                                                       (T, D)
//
// Shapes (B batch, T time, H query heads, Hkv key/value heads, D head size), the layout of
// ops/attention_heads.hpp:
//   q (B, T, H*D), k (B, past + T, Hkv*D), v (B, past + T, Hkv*D)  ->  out (B, T, H*D)
// Rotary embeddings are applied by the caller beforehand. With past > 0 (generation with a KV
// cache) the first `past` keys are earlier tokens: query row i is position past + i and its mask
// lets it see the keys j <= past + i; S above is then (T, past + T). past = 0 is the usual case.
//
// Fused means the (B, H, T, T) probabilities are never stored. Each (b, h) pair is processed in
// blocks of up to 64 query rows; each thread owns one scratch buffer, allocated once per call,
// holding the scores of its current row block: (64, T) floats in the forward, P and dP (2 x (64, T),
// half a (T, T) block at T = 256) in the backward. Only the row log-sum-exp L (B, H, T) is saved for
// the backward pass, which recomputes P = exp(S - L) block by block (as in FlashAttention-2).
// Causality is exploited: row block [i0, i1) only meets keys [0, past + i1), and the scores above
// the diagonal are computed only inside the diagonal block.
//
// Backward (gradients accumulated with +=), with dO = dL/dO and, per (b, h):
//   P    = exp(Q K^T * scale - L)          recomputed from the saved q, k and L
//   dV  += P^T dO                          (P is zero above the diagonal)
//   dP   = dO V^T
//   D_i  = sum_d dO_id O_id                = sum_j P_ij dP_ij (softmax's row correction)
//   dS   = P * (dP - D_i)                  (elementwise; the softmax backward)
//   dQ  += dS K * scale
//   dK  += dS^T Q * scale
// With GQA the H / Hkv query heads of a group all add into the same dK_g and dV_g: the backward
// runs one (b, g) pair per thread and loops over the group's query heads inside, so no two
// threads ever write the same gradient memory.
// Saved for backward: q, k, v and the output itself (no copies; the Var handles keep them alive)
// and L (B, H, T).
//
// The per-head products use Eigen (single-threaded inside the OpenMP region) on maps that read
// the interleaved head columns in place through an outer stride.
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

// out (B, T, H*D) = causal softmax(q k^T * scale) v per head; lse (B, H, T) receives the row
// log-sum-exp of the scaled scores (may be null when no backward will follow).
inline void attention_forward(const float* q,  // (B, T, H*D)
                              const float* k,  // (B, Tk, Hkv*D), Tk = past + T
                              const float* v,  // (B, Tk, Hkv*D)
                              float* out,      // (B, T, H*D)
                              float* lse,      // (B, H, T) or null
                              const AttentionDims& d) {
  using namespace heads;
  const int64_t B = d.B, T = d.T, Tk = d.Tk, past = d.past(), H = d.H, D = d.D, group = d.group();
  const int64_t qs = H * D, ks = d.Hkv * D;  // row strides
  const int64_t bt = std::min(T, block_rows);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  if (B * H * T == 0) return;

#pragma omp parallel
  {
    // 64-byte aligned, so that Eigen's vectorised reductions split the same way in every run
    // (an address-dependent split would change the rounding: see docs/reliability.md).
    Tensor scratch_buf = Tensor::empty(Shape{bt * Tk});  // scores of one row block (bt, Tk)
    float* const scratch = scratch_buf.data();
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / group;
        const auto K = head(k + b * Tk * ks + g * D, Tk, D, ks);  // (Tk, D)
        const auto V = head(v + b * Tk * ks + g * D, Tk, D, ks);  // (Tk, D)
        for (int64_t i0 = 0; i0 < T; i0 += bt) {
          // rows [i0, i1) see keys [0, past + i1)
          const int64_t n = std::min(bt, T - i0), i1 = i0 + n, keys = past + i1;
          const auto Q = head(q + (b * T + i0) * qs + h * D, n, D, qs);  // (n, D)
          Block P(scratch, n, keys);                                      // (n, keys)
          P.noalias() = Q * K.topRows(keys).transpose();
          for (int64_t r = 0; r < n; ++r) {
            const int64_t len = past + i0 + r + 1;  // row i = i0 + r attends to keys 0..past+i
            auto row = P.row(r).head(len).array();
            const float m = row.maxCoeff() * scale;
            row = (row * scale - m).exp();
            const float sum = row.sum();
            row *= 1.0f / sum;
            P.row(r).tail(keys - len).setZero();  // masked keys
            if (lse) lse[(b * H + h) * T + i0 + r] = m + std::log(sum);
          }
          head(out + (b * T + i0) * qs + h * D, n, D, qs).noalias() = P * V.topRows(keys);
        }
      }
    }
  }
}

// Accumulates (+=) dq, dk, dv from dout; any of the three may be null (not needed).
inline void attention_backward(const float* q,     // (B, T, H*D)
                               const float* k,     // (B, Tk, Hkv*D), Tk = past + T
                               const float* v,     // (B, Tk, Hkv*D)
                               const float* out,   // (B, T, H*D)    the forward's output
                               const float* lse,   // (B, H, T)      the forward's log-sum-exp
                               const float* dout,  // (B, T, H*D)
                               float* dq,          // (B, T, H*D)    or null
                               float* dk,          // (B, Tk, Hkv*D) or null
                               float* dv,          // (B, Tk, Hkv*D) or null
                               const AttentionDims& d) {
  using namespace heads;
  const int64_t B = d.B, T = d.T, Tk = d.Tk, past = d.past(), H = d.H, Hkv = d.Hkv, D = d.D, group = d.group();
  const int64_t qs = H * D, ks = Hkv * D;
  const int64_t bt = std::min(T, block_rows);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const bool need_ds = dq || dk;  // dS feeds dq and dk only
  if (B * H * T == 0 || !(need_ds || dv)) return;

#pragma omp parallel
  {
    // P (bt, Tk) and dP, overwritten by dS, (bt, Tk) of the current row block.
    // 64-byte aligned, so that Eigen's vectorised reductions split the same way in every run
    // (an address-dependent split would change the rounding: see docs/reliability.md).
    Tensor scratch_buf = Tensor::empty(Shape{(need_ds ? 2 : 1) * bt * Tk});
    float* const scratch = scratch_buf.data();
    std::vector<float> row_corr(static_cast<size_t>(bt));  // D_i of the block's rows
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t g = 0; g < Hkv; ++g) {  // one key/value head: this thread owns dK_g and dV_g
        const auto K = head(k + b * Tk * ks + g * D, Tk, D, ks);  // (Tk, D)
        const auto V = head(v + b * Tk * ks + g * D, Tk, D, ks);  // (Tk, D)
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          const float* L = lse + (b * H + h) * T;  // (T,)
          for (int64_t i0 = 0; i0 < T; i0 += bt) {
            const int64_t n = std::min(bt, T - i0), i1 = i0 + n, keys = past + i1;
            const int64_t row0 = (b * T + i0) * qs + h * D;  // first element of this block in q-layout
            const auto Q = head(q + row0, n, D, qs);         // (n, D)
            const auto dO = head(dout + row0, n, D, qs);     // (n, D)
            // Recompute P = exp(S * scale - L) from the saved L; zero above the diagonal.
            Block P(scratch, n, keys);  // (n, keys)
            P.noalias() = Q * K.topRows(keys).transpose();
            for (int64_t r = 0; r < n; ++r) {
              const int64_t len = past + i0 + r + 1;
              auto row = P.row(r).head(len).array();
              row = (row * scale - L[i0 + r]).exp();
              P.row(r).tail(keys - len).setZero();
            }
            // dV[0, keys) += P^T dO
            if (dv) head(dv + b * Tk * ks + g * D, keys, D, ks).noalias() += P.transpose() * dO;
            if (!need_ds) continue;
            // dP = dO V^T, then dS = P * (dP - D_i) * scale in place (scale folded in once here).
            Block dS(scratch + bt * Tk, n, keys);  // (n, keys)
            dS.noalias() = dO * V.topRows(keys).transpose();
            const auto O = head(out + row0, n, D, qs);  // (n, D)
            for (int64_t r = 0; r < n; ++r) row_corr[static_cast<size_t>(r)] = dO.row(r).dot(O.row(r));
            for (int64_t r = 0; r < n; ++r)
              dS.row(r).array() =
                  P.row(r).array() * (dS.row(r).array() - row_corr[static_cast<size_t>(r)]) * scale;
            // dQ[i0, i1) += dS K[0, keys)   and   dK[0, keys) += dS^T Q[i0, i1)
            if (dq) head(dq + row0, n, D, qs).noalias() += dS * K.topRows(keys);
            if (dk) head(dk + b * Tk * ks + g * D, keys, D, ks).noalias() += dS.transpose() * Q;
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

// Causal multi-head attention with grouped-query heads; see the top of this file.
//   q (B, T, H*D), k (B, past + T, Hkv*D), v (B, past + T, Hkv*D) -> (B, T, H*D), H = n_heads,
//   Hkv = n_kv_heads; query row i is position past + i (past > 0: keys from a KV cache).
inline Var causal_attention(const Var& q, const Var& k, const Var& v, int64_t n_heads, int64_t n_kv_heads,
                            int64_t past = 0) {
  const cpu::AttentionDims d = detail::attention_dims("causal_attention", q, k, v, n_heads, n_kv_heads, past);
  const Shape& qs = q.shape();

  const bool record = any_requires_grad(q, k, v);
  Tensor o = Tensor::empty(qs);                                                  // (B, T, H*D)
  Tensor lse = record ? Tensor::empty(Shape{d.B, d.H, d.T}) : Tensor{};          // (B, H, T)
  cpu::attention_forward(q.value().data(), k.value().data(), v.value().data(), o.data(),
                         record ? lse.data() : nullptr, d);

  Var out(std::move(o), record);
  if (record) {
    active_tape().record([q, k, v, out, lse, d]() {
      const float* g = detail::output_grad(out);
      if (!g) return;
      cpu::attention_backward(q.value().data(), k.value().data(), v.value().data(), out.value().data(),
                              lse.data(), g, q.requires_grad() ? q.grad_buffer().data() : nullptr,
                              k.requires_grad() ? k.grad_buffer().data() : nullptr,
                              v.requires_grad() ? v.grad_buffer().data() : nullptr, d);
    });
  }
  return out;
}

}  // namespace nr
