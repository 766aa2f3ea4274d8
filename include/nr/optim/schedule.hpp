// nr/optim/schedule.hpp — learning-rate schedules: linear warmup, then cosine or constant.
//
//   step < warmup:   lr = peak * (step + 1) / warmup
//   cosine:          lr = min + (peak - min) * (1 + cos(pi * progress)) / 2,
//                    progress = (step - warmup) / (total - warmup) in [0, 1]
//   constant:        lr = peak
// `step` counts from 0; min = peak * min_ratio.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "nr/core/error.hpp"

namespace nr {

struct LrSchedule {
  enum class Kind { cosine, constant };
  double peak = 1e-3;
  int64_t warmup = 0;
  int64_t total = 1;
  Kind kind = Kind::cosine;
  double min_ratio = 0.1;

  double at(int64_t step) const {
    if (warmup > 0 && step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
    if (kind == Kind::constant || total <= warmup) return peak;
    const double progress =
        std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup)));
    const double lo = peak * min_ratio;
    return lo + (peak - lo) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * progress));
  }

  static Kind parse_kind(const std::string& s) {
    if (s == "cosine") return Kind::cosine;
    if (s == "constant") return Kind::constant;
    throw ValueError(fmt::format("unknown learning-rate schedule '{}' (cosine, constant)", s));
  }
};

}  // namespace nr
