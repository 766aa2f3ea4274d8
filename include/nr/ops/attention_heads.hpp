// nr/ops/attention_heads.hpp — what the attention kernels share: their dimensions, the argument
// checks, and Eigen views of one head inside the interleaved (T, heads*D) layout.
//
// Shapes (B batch, T query steps, Tk key steps, H query heads, Hkv key/value heads, D head size):
//   q (B, T, H*D), k (B, Tk, Hkv*D), v (B, Tk, Hkv*D)  ->  out (B, T, H*D)
// Head h occupies columns [h*D, (h+1)*D) of every row of q and out (head g likewise in k and v):
// the layout the q/k/v Linear projections produce and the output projection consumes, so no
// transposes are needed around the kernels. Query head h reads key/value head g = h / (H / Hkv)
// (Hugging Face `repeat_kv` grouping: consecutive query heads share one key/value head).
//
// Keys may run ahead of the queries: Tk = past + T, where the first `past` keys belong to tokens
// processed earlier (a KV cache during generation, nn/attention.hpp). Query row i then sits at
// absolute position past + i and sees the keys j <= past + i. past = 0 is plain causal
// self-attention (T = Tk).
#pragma once

#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "nr/ops/op_support.hpp"

// GCC 12's AVX-512 intrinsics headers raise false -Wmaybe-uninitialized warnings (GCC bug 105593,
// fixed in GCC 13) wherever Eigen's vectorised products are instantiated under -march=native:
// silence that one warning over Eigen (and, in the kernel headers, over the kernels), only there.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Dense>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace nr::cpu {

struct AttentionDims {
  int64_t B = 0;    // batch
  int64_t T = 0;    // query steps
  int64_t H = 0;    // query heads
  int64_t Hkv = 0;  // key/value heads (divides H)
  int64_t D = 0;    // head size
  int64_t Tk = 0;   // key steps, past + T

  int64_t past() const { return Tk - T; }  // keys before the first query
  int64_t group() const { return H / Hkv; }
};

namespace heads {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// One head's rows inside an interleaved (T, heads*D) matrix: consecutive rows are `stride` apart.
using HeadView = Eigen::Map<const RowMajor, 0, Eigen::OuterStride<>>;
using HeadViewMut = Eigen::Map<RowMajor, 0, Eigen::OuterStride<>>;
// A dense block of a per-thread scratch buffer.
using Block = Eigen::Map<RowMajor>;

// Query rows per block: a block of rows [i0, i1) only meets the keys [0, past + i1), and the
// scratch holds the scores of `block_rows` query rows against up to Tk keys.
inline constexpr int64_t block_rows = 64;

// Head `h`'s (rows, D) rows starting at `base`, rows `stride` floats apart.
inline HeadView head(const float* base, int64_t rows, int64_t D, int64_t stride) {
  return HeadView(base, rows, D, Eigen::OuterStride<>(stride));
}
inline HeadViewMut head(float* base, int64_t rows, int64_t D, int64_t stride) {
  return HeadViewMut(base, rows, D, Eigen::OuterStride<>(stride));
}

}  // namespace heads
}  // namespace nr::cpu

namespace nr::detail {

// Checks q (B, T, H*D), k, v (B, past + T, Hkv*D) and the head counts for the attention op `op`;
// throws ValueError (head counts, past) or ShapeError (shapes) naming all three shapes.
inline cpu::AttentionDims attention_dims(const char* op, const Var& q, const Var& k, const Var& v, int64_t n_heads,
                                         int64_t n_kv_heads, int64_t past) {
  expect_dense(q, op, "q");
  expect_dense(k, op, "k");
  expect_dense(v, op, "v");
  if (n_heads < 1 || n_kv_heads < 1 || n_heads % n_kv_heads != 0)
    throw ValueError(fmt::format("{}: n_heads = {} must be a positive multiple of n_kv_heads = {} (grouped-query heads)",
                                 op, n_heads, n_kv_heads));
  if (past < 0) throw ValueError(fmt::format("{}: past = {} key steps must be >= 0", op, past));
  const Shape& qs = q.shape();
  const Shape& ks = k.shape();
  const Shape& vs = v.shape();
  auto fail = [&](const std::string& why) {
    return ShapeError(fmt::format("{}: q {}, k {}, v {} with {} query and {} key/value heads: {}", op, qs.str(),
                                  ks.str(), vs.str(), n_heads, n_kv_heads, why));
  };
  if (qs.rank() != 3 || ks.rank() != 3 || vs.rank() != 3) throw fail("expected (B, T, heads*D) for all three");
  if (!(ks == vs)) throw fail("k and v must have the same shape");
  if (qs[0] != ks[0] || qs[1] + past != ks[1])
    throw fail(past == 0 ? std::string("batch and time dimensions differ")
                         : fmt::format("batch and time dimensions differ (k and v must hold past {} + {} steps)", past,
                                       qs[1]));
  if (qs[2] == 0 || qs[2] % n_heads != 0)
    throw fail(fmt::format("q's last dimension {} is not a positive multiple of {} heads", qs[2], n_heads));
  const cpu::AttentionDims d{.B = qs[0], .T = qs[1], .H = n_heads, .Hkv = n_kv_heads, .D = qs[2] / n_heads, .Tk = ks[1]};
  if (ks[2] != n_kv_heads * d.D)
    throw fail(fmt::format("k's last dimension {} is not {} key/value heads of size {}", ks[2], n_kv_heads, d.D));
  return d;
}

}  // namespace nr::detail
