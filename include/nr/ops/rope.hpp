// nr/ops/rope.hpp — rotary position embedding (RoPE), Hugging Face "rotate_half" convention.
//
// x (B, T, H*D) holds H heads of size D side by side in its last dimension (any leading
// dimensions before T act as batch). Each head's D dims are split into halves x1 = [0, D/2) and
// x2 = [D/2, D); pair i = (x1_i, x2_i) is rotated by the angle pos * inv_freq[i]:
//
//   inv_freq[i] = 1 / theta^(2i / D)               i < D/2
//   a           = pos * inv_freq[i]                pos = position_offset + t
//   out1_i      = x1_i cos a - x2_i sin a
//   out2_i      = x2_i cos a + x1_i sin a
//
// Numerics follow Hugging Face's LlamaRotaryEmbedding in float32: inv_freq is computed as
// 1.0f / powf(theta, float(2i) / float(D)), the angle as float(pos) * inv_freq (one float
// multiply), then cos and sin of that float angle (evaluated in double and rounded to float).
// The (T, D/2) cos / sin tables are built per call, with the most recent one cached per thread.
//
// Backward (gradients ACCUMULATED with += into x.grad), with G = dL/dout (B, T, H*D) and the
// saved cos / sin tables (T, D/2). The rotation is orthogonal, so its transpose is the inverse
// rotation (angle -a):
//   dx1_i += G1_i cos a + G2_i sin a      (out1 depends on x1 through cos, out2 through sin)
//   dx2_i += G2_i cos a - G1_i sin a      (out2 depends on x2 through cos, out1 through -sin)
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "nr/ops/op_support.hpp"

namespace nr {

// cos / sin of pos * inv_freq[i] for positions offset .. offset + T - 1 and i < D/2.
struct RopeTable {
  int64_t T = 0, D = 0, offset = 0;
  double theta = 0.0;
  std::vector<float> cos;  // (T, D/2)
  std::vector<float> sin;  // (T, D/2)
};

// Builds the table with Hugging Face's float32 arithmetic (see the header comment).
inline RopeTable make_rope_table(int64_t T, int64_t D, double theta, int64_t offset) {
  RopeTable tab{T, D, offset, theta, {}, {}};
  const int64_t half = D / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[static_cast<size_t>(i)] =
        1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / static_cast<float>(D));
  tab.cos.resize(static_cast<size_t>(T * half));
  tab.sin.resize(static_cast<size_t>(T * half));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(offset + t) * inv_freq[static_cast<size_t>(i)];
      tab.cos[static_cast<size_t>(t * half + i)] = static_cast<float>(std::cos(static_cast<double>(angle)));
      tab.sin[static_cast<size_t>(t * half + i)] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  return tab;
}

namespace detail {
// The most recent table of this thread: consecutive calls (q and k of every layer) share it.
inline std::shared_ptr<const RopeTable> rope_table(int64_t T, int64_t D, double theta, int64_t offset) {
  thread_local std::shared_ptr<const RopeTable> last;
  if (!last || last->T != T || last->D != D || last->theta != theta || last->offset != offset)
    last = std::make_shared<const RopeTable>(make_rope_table(T, D, theta, offset));
  return last;
}
}  // namespace detail

}  // namespace nr

namespace nr::cpu {

// out (N, T, H*D) = rotation of x (N, T, H*D) by the angles of cos / sin (T, D/2).
inline void rope_forward(float* out, const float* x, const float* cos, const float* sin, int64_t N, int64_t T,
                         int64_t H, int64_t D) {
  const int64_t half = D / 2;
#pragma omp parallel for collapse(2) if (N * T * H * D > detail::parallel_grain)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t t = 0; t < T; ++t) {
      const float* c = cos + t * half;
      const float* s = sin + t * half;
      for (int64_t h = 0; h < H; ++h) {
        const int64_t base = (n * T + t) * H * D + h * D;
        const float* x1 = x + base;
        const float* x2 = x1 + half;
        float* o1 = out + base;
        float* o2 = o1 + half;
        for (int64_t i = 0; i < half; ++i) {
          o1[i] = x1[i] * c[i] - x2[i] * s[i];
          o2[i] = x2[i] * c[i] + x1[i] * s[i];
        }
      }
    }
}

// dx (N, T, H*D) += inverse rotation of g (N, T, H*D).
inline void rope_backward(float* dx, const float* g, const float* cos, const float* sin, int64_t N, int64_t T,
                          int64_t H, int64_t D) {
  const int64_t half = D / 2;
#pragma omp parallel for collapse(2) if (N * T * H * D > detail::parallel_grain)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t t = 0; t < T; ++t) {
      const float* c = cos + t * half;
      const float* s = sin + t * half;
      for (int64_t h = 0; h < H; ++h) {
        const int64_t base = (n * T + t) * H * D + h * D;
        const float* g1 = g + base;
        const float* g2 = g1 + half;
        float* d1 = dx + base;
        float* d2 = d1 + half;
        for (int64_t i = 0; i < half; ++i) {
          d1[i] += g1[i] * c[i] + g2[i] * s[i];
          d2[i] += g2[i] * c[i] - g1[i] * s[i];
        }
      }
    }
}

}  // namespace nr::cpu

namespace nr {

// x (B, T, H*D) -> (B, T, H*D) with head h, time t rotated to position position_offset + t.
// D = x.shape().back() / n_heads must be a whole even number.
inline Var rope(const Var& x, int64_t n_heads, double theta = 10000.0, int64_t position_offset = 0) {
  detail::expect_dense(x, "rope", "x");
  const Shape& xs = x.shape();
  if (n_heads < 1) throw ValueError(fmt::format("rope: n_heads must be positive, got {}", n_heads));
  if (!(theta > 0.0) || !std::isfinite(theta))
    throw ValueError(fmt::format("rope: theta must be a finite positive number, got {}", theta));
  if (position_offset < 0)
    throw ValueError(fmt::format("rope: position_offset must be >= 0, got {}", position_offset));
  if (xs.rank() < 2)
    throw ShapeError(fmt::format("rope: input {} needs at least 2 dimensions (T, H*D)", xs.str()));
  const int64_t HD = xs.back();
  if (HD % n_heads != 0 || (HD / n_heads) % 2 != 0)
    throw ShapeError(fmt::format("rope: last dimension {} of input {} does not split into {} heads of an even size",
                                 HD, xs.str(), n_heads));
  const int64_t H = n_heads, D = HD / n_heads;
  const int64_t T = xs.dim(-2);
  const int64_t N = T * HD == 0 ? 0 : xs.numel() / (T * HD);

  const std::shared_ptr<const RopeTable> tab = detail::rope_table(T, D, theta, position_offset);
  Tensor y = Tensor::empty(xs);
  cpu::rope_forward(y.data(), x.value().data(), tab->cos.data(), tab->sin.data(), N, T, H, D);

  Var out(std::move(y), any_requires_grad(x));
  if (out.requires_grad()) {
    active_tape().record([x, out, tab, N, T, H, D]() {
      const float* g = detail::output_grad(out);  // (B, T, H*D)
      if (!g) return;
      // Saved: the cos / sin tables (T, D/2) only; the input is not needed.
      cpu::rope_backward(x.grad_buffer().data(), g, tab->cos.data(), tab->sin.data(), N, T, H, D);
    });
  }
  return out;
}

}  // namespace nr
