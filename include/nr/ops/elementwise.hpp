// nr/ops/elementwise.hpp — addition, subtraction and multiplication of two tensors, and scaling.
//
//   add(a, b) = a + b      sub(a, b) = a - b      mul(a, b) = a * b      scale(a, s) = s a
//
// Shapes: a (..., C); b either
//   (..., C)  the same shape as a, or
//   (C,)      a row vector broadcast over every row of a (a bias, a per-channel scale),
//             with C = a's last dimension and R = a.numel() / C rows.
// The output has a's shape. Any other b is a ShapeError naming both shapes.
//
// Backward (accumulated with +=), G = dL/dy (..., C), saved: a and b (for mul only):
//   add:  da += G          db += G
//   sub:  da += G          db -= G
//   mul:  da += G * b      db += G * a
// When b was broadcast, its gradient is the sum over the rows it was broadcast to:
//   db[c] += sum_r G[r, c]        (add),    -sum_r G[r, c] (sub),    sum_r G[r, c] a[r, c] (mul)
// and these column sums accumulate in double.
//
// The operators a + b, a - b, a * b (two Vars) and a * s, s * a (a float) are the same ops.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <fmt/format.h>

#include "nr/ops/op_support.hpp"

namespace nr::cpu {

// y[i] = op(a[i], b[i]) for i < n.
template <class Op>
inline void binary_same(const float* a, const float* b, float* y, int64_t n, Op op) {
#pragma omp parallel for if (n > nr::detail::parallel_grain)
  for (int64_t i = 0; i < n; ++i) y[i] = op(a[i], b[i]);
}

// y[r, c] = op(a[r, c], b[c]) for a, y (R, C) and b (C).
template <class Op>
inline void binary_rows(const float* a, const float* b, float* y, int64_t R, int64_t C, Op op) {
#pragma omp parallel for if (R * C > nr::detail::parallel_grain)
  for (int64_t r = 0; r < R; ++r) {
    const float* ar = a + r * C;
    float* yr = y + r * C;
    for (int64_t c = 0; c < C; ++c) yr[c] = op(ar[c], b[c]);
  }
}

// y[i] = s * x[i] for i < n.
inline void scale_copy(const float* x, float s, float* y, int64_t n) {
#pragma omp parallel for if (n > nr::detail::parallel_grain)
  for (int64_t i = 0; i < n; ++i) y[i] = s * x[i];
}

// y[i] += s * x[i] for i < n.
inline void axpy(float s, const float* x, float* y, int64_t n) {
#pragma omp parallel for if (n > nr::detail::parallel_grain)
  for (int64_t i = 0; i < n; ++i) y[i] += s * x[i];
}

// d[i] += g[i] * w[i] for i < n.
inline void mul_acc(const float* g, const float* w, float* d, int64_t n) {
#pragma omp parallel for if (n > nr::detail::parallel_grain)
  for (int64_t i = 0; i < n; ++i) d[i] += g[i] * w[i];
}

// d[r, c] += g[r, c] * w[c] for g, d (R, C) and w (C).
inline void mul_acc_rows(const float* g, const float* w, float* d, int64_t R, int64_t C) {
#pragma omp parallel for if (R * C > nr::detail::parallel_grain)
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) d[r * C + c] += g[r * C + c] * w[c];
}

// d[c] += s * sum_r g[r, c] * w[r, c] for g, w (R, C) and d (C); w may be null (taken as 1).
// Columns are split into blocks, each summed over all rows by one thread in double.
inline void column_sum_acc(const float* g, const float* w, float* d, int64_t R, int64_t C, float s) {
  constexpr int64_t block = 256;
  const int64_t blocks = (C + block - 1) / block;
#pragma omp parallel for if (R * C > nr::detail::parallel_grain)
  for (int64_t k = 0; k < blocks; ++k) {
    const int64_t c0 = k * block, c1 = std::min(C, c0 + block);
    double acc[block] = {};
    for (int64_t r = 0; r < R; ++r) {
      const float* gr = g + r * C;
      if (w) {
        const float* wr = w + r * C;
        for (int64_t c = c0; c < c1; ++c) acc[c - c0] += static_cast<double>(gr[c]) * wr[c];
      } else {
        for (int64_t c = c0; c < c1; ++c) acc[c - c0] += gr[c];
      }
    }
    for (int64_t c = c0; c < c1; ++c) d[c] += static_cast<float>(s * acc[c - c0]);
  }
}

}  // namespace nr::cpu

namespace nr {

namespace detail {

enum class BinaryKind { add, sub, mul };

inline const char* binary_name(BinaryKind k) {
  return k == BinaryKind::add ? "add" : k == BinaryKind::sub ? "sub" : "mul";
}

// a (..., C) op b, with b (..., C) or b (C,) broadcast over the rows of a.
inline Var binary_op(const Var& a, const Var& b, BinaryKind kind) {
  const char* name = binary_name(kind);
  expect_dense(a, name, "a");
  expect_dense(b, name, "b");
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  const bool same = sa == sb;
  const bool rows = !same && sb.rank() == 1 && sa.rank() >= 1 && sa.back() == sb[0];
  if (!same && !rows)
    throw ShapeError(fmt::format("{}: b of shape {} does not fit a of shape {} (b must have a's shape, or be a row "
                                 "vector (C,) with C = a's last dimension)",
                                 name, sb.str(), sa.str()));
  const int64_t n = a.numel();
  const int64_t C = rows ? sb[0] : n;  // with the same shape: one row of n columns
  const int64_t R = C > 0 ? n / C : 0;

  Tensor y = Tensor::empty(sa);  // (..., C)
  const float* A = a.value().data();
  const float* B = b.value().data();
  auto apply = [&](auto op) {
    if (rows)
      cpu::binary_rows(A, B, y.data(), R, C, op);
    else
      cpu::binary_same(A, B, y.data(), n, op);
  };
  switch (kind) {
    case BinaryKind::add: apply([](float u, float v) { return u + v; }); break;
    case BinaryKind::sub: apply([](float u, float v) { return u - v; }); break;
    case BinaryKind::mul: apply([](float u, float v) { return u * v; }); break;
  }

  Var out(std::move(y), any_requires_grad(a, b));
  if (out.requires_grad()) {
    active_tape().record([a, b, out, kind, rows, n, R, C]() {
      const float* g = output_grad(out);  // (..., C)
      if (!g) return;
      if (a.requires_grad()) {
        if (kind != BinaryKind::mul) {  // da += G, a plain copy when da does not exist yet
          bool fresh = false;
          float* da = a.grad_buffer_for_overwrite(fresh).data();  // (..., C)
          if (fresh)
            std::memcpy(da, g, static_cast<size_t>(n) * sizeof(float));
          else
            cpu::axpy(1.0f, g, da, n);
        } else {
          float* da = a.grad_buffer().data();  // (..., C)
          if (rows)  // da[r, c] += G[r, c] * b[c]
            cpu::mul_acc_rows(g, b.value().data(), da, R, C);
          else  // da += G * b
            cpu::mul_acc(g, b.value().data(), da, n);
        }
      }
      if (b.requires_grad()) {
        float* db = b.grad_buffer().data();  // (..., C) or (C,)
        const float sign = kind == BinaryKind::sub ? -1.0f : 1.0f;
        if (kind != BinaryKind::mul) {
          if (rows)  // db[c] += +-sum_r G[r, c]
            cpu::column_sum_acc(g, nullptr, db, R, C, sign);
          else  // db += +-G
            cpu::axpy(sign, g, db, n);
        } else {
          if (rows)  // db[c] += sum_r G[r, c] a[r, c]
            cpu::column_sum_acc(g, a.value().data(), db, R, C, 1.0f);
          else  // db += G * a
            cpu::mul_acc(g, a.value().data(), db, n);
        }
      }
    });
  }
  return out;
}

}  // namespace detail

// y (..., C) = a (..., C) + b, b (..., C) or (C,).
inline Var add(const Var& a, const Var& b) { return detail::binary_op(a, b, detail::BinaryKind::add); }
// y (..., C) = a (..., C) - b, b (..., C) or (C,).
inline Var sub(const Var& a, const Var& b) { return detail::binary_op(a, b, detail::BinaryKind::sub); }
// y (..., C) = a (..., C) * b elementwise, b (..., C) or (C,).
inline Var mul(const Var& a, const Var& b) { return detail::binary_op(a, b, detail::BinaryKind::mul); }

// y (...) = s * a (...). Backward: da += s * G.
inline Var scale(const Var& a, float s) {
  detail::expect_dense(a, "scale", "a");
  const int64_t n = a.numel();
  Tensor y = Tensor::empty(a.shape());  // (...)
  cpu::scale_copy(a.value().data(), s, y.data(), n);

  Var out(std::move(y), any_requires_grad(a));
  if (out.requires_grad()) {
    active_tape().record([a, out, s, n]() {
      const float* g = detail::output_grad(out);
      if (!g) return;
      cpu::axpy(s, g, a.grad_buffer().data(), n);  // da += s * G
    });
  }
  return out;
}

inline Var operator+(const Var& a, const Var& b) { return add(a, b); }
inline Var operator-(const Var& a, const Var& b) { return sub(a, b); }
inline Var operator*(const Var& a, const Var& b) { return mul(a, b); }
inline Var operator*(const Var& a, float s) { return scale(a, s); }
inline Var operator*(float s, const Var& a) { return scale(a, s); }

}  // namespace nr
