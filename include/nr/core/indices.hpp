// nr/core/indices.hpp — integer tensors: token ids, class targets, expert assignments.
//
// Indices are never differentiated, so they are a plain vector of int32 with a shape rather
// than a Tensor. Shapes follow the tensors they index: token ids (B, T), targets (B, T).
#pragma once

#include <cstdint>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/core/shape.hpp"

namespace nr {

struct Indices {
  std::vector<int32_t> data;
  Shape shape;

  Indices() = default;
  Indices(std::vector<int32_t> values, const Shape& s) : data(std::move(values)), shape(s) {
    if (static_cast<int64_t>(data.size()) != shape.numel())
      throw ShapeError(fmt::format("Indices: {} values cannot fill shape {}", data.size(), shape.str()));
  }

  int64_t numel() const { return static_cast<int64_t>(data.size()); }
  int32_t operator[](int64_t i) const { return data[static_cast<size_t>(i)]; }

  // Throws ValueError naming `what` when any index falls outside [0, limit).
  void check_range(int64_t limit, const char* what) const {
    for (int64_t i = 0; i < numel(); ++i) {
      const int32_t v = data[static_cast<size_t>(i)];
      if (v < 0 || v >= limit)
        throw ValueError(fmt::format("{}: index {} at position {} is outside [0, {})", what, v, i, limit));
    }
  }
};

}  // namespace nr
