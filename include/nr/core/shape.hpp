// nr/core/shape.hpp — the shape of a tensor: up to 6 dimensions stored inline.
//
// Shapes are small values copied freely; storing the dimensions inline keeps the steady-state
// training step free of heap allocation. Dimension letters used across nr:
//   B batch, T time (sequence), C channels (model width), H heads, D head size,
//   V vocabulary, F hidden width of a feed-forward block, E experts.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include <fmt/format.h>

#include "nr/core/error.hpp"

namespace nr {

class Shape {
 public:
  static constexpr int max_rank = 6;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) {
    if (dims.size() > max_rank)
      throw ShapeError(fmt::format("Shape: rank {} exceeds the maximum of {}", dims.size(), max_rank));
    for (int64_t d : dims) push_back(d);
  }

  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[static_cast<size_t>(i)]; }
  int64_t& operator[](int i) { return dims_[static_cast<size_t>(i)]; }
  // Negative indices count from the end: dim(-1) is the last dimension.
  int64_t dim(int i) const {
    const int k = i < 0 ? rank_ + i : i;
    if (k < 0 || k >= rank_)
      throw ShapeError(fmt::format("Shape {}: no dimension {}", str(), i));
    return dims_[static_cast<size_t>(k)];
  }
  int64_t back() const { return dim(-1); }

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<size_t>(i)];
    return n;
  }
  // Product of all dimensions but the last: the number of rows of a row-major matrix view.
  int64_t rows() const { return rank_ == 0 ? 1 : numel() / back(); }

  void push_back(int64_t d) {
    if (rank_ == max_rank)
      throw ShapeError(fmt::format("Shape: rank exceeds the maximum of {}", max_rank));
    if (d < 0) throw ShapeError(fmt::format("Shape: negative dimension {}", d));
    dims_[static_cast<size_t>(rank_++)] = d;
  }
  // The same shape with the last dimension replaced.
  Shape with_back(int64_t d) const {
    Shape s = *this;
    s.dims_[static_cast<size_t>(rank_ - 1)] = d;
    return s;
  }

  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[static_cast<size_t>(i)] != b.dims_[static_cast<size_t>(i)]) return false;
    return true;
  }

  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < rank_; ++i) {
      if (i) s += ", ";
      s += std::to_string(dims_[static_cast<size_t>(i)]);
    }
    if (rank_ == 1) s += ",";
    return s + ")";
  }

 private:
  std::array<int64_t, max_rank> dims_{};
  int rank_ = 0;
};

// Throws ShapeError naming both shapes when they differ.
inline void expect_same_shape(const Shape& a, const Shape& b, const char* what) {
  if (!(a == b))
    throw ShapeError(fmt::format("{}: shapes {} and {} differ", what, a.str(), b.str()));
}

}  // namespace nr

template <>
struct fmt::formatter<nr::Shape> : fmt::formatter<std::string> {
  auto format(const nr::Shape& s, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(s.str(), ctx);
  }
};
