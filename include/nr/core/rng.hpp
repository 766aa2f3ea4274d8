// nr/core/rng.hpp — a seeded random generator and the initialisers built on it.
//
// std::normal_distribution and friends are implementation-defined, so the same seed could give
// different weights with another standard library. nr draws raw 64-bit words from
// std::mt19937_64 (whose output the standard fixes) and turns them into floats itself, so a seed
// means the same numbers everywhere.
//
// Initialisers (fan_in = number of inputs of a layer, e.g. `in` for a [out, in] weight):
//   normal_(t, mean, std)        N(mean, std^2)
//   uniform_(t, lo, hi)          U[lo, hi)
//   kaiming_normal_(t, fan_in)   N(0, 2 / fan_in)                       (He et al. 2015)
//   kaiming_uniform_(t, fan_in)  U(-b, b), b = sqrt(6 / ((1 + a^2) fan_in)), a = sqrt(5) as in
//                                PyTorch's default Linear init (b = 1 / sqrt(fan_in))
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

#include "nr/core/tensor.hpp"

namespace nr {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : engine_(seed) {}

  uint64_t next_u64() { return engine_(); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n).
  int64_t randint(int64_t n) {
    if (n <= 0) throw ValueError(fmt::format("Rng::randint: n must be positive, got {}", n));
    return static_cast<int64_t>(engine_() % static_cast<uint64_t>(n));
  }
  // Standard normal by Box-Muller; the second value of each pair is kept for the next call.
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = 2.0 * 3.14159265358979323846 * u2;
    spare_ = r * std::sin(theta);
    has_spare_ = true;
    return r * std::cos(theta);
  }
  // A new generator whose stream is decorrelated from this one (for per-module seeding).
  Rng split() { return Rng(engine_() ^ 0x9E3779B97F4A7C15ull); }

 private:
  std::mt19937_64 engine_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

inline void normal_(Tensor& t, double mean, double std, Rng& rng) {
  t.require_contiguous("normal_");
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(mean + std * rng.normal());
}

inline void uniform_(Tensor& t, double lo, double hi, Rng& rng) {
  t.require_contiguous("uniform_");
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(rng.uniform(lo, hi));
}

inline void kaiming_normal_(Tensor& t, int64_t fan_in, Rng& rng) {
  if (fan_in <= 0) throw ValueError(fmt::format("kaiming_normal_: fan_in must be positive, got {}", fan_in));
  normal_(t, 0.0, std::sqrt(2.0 / static_cast<double>(fan_in)), rng);
}

inline void kaiming_uniform_(Tensor& t, int64_t fan_in, Rng& rng, double a = std::sqrt(5.0)) {
  if (fan_in <= 0) throw ValueError(fmt::format("kaiming_uniform_: fan_in must be positive, got {}", fan_in));
  const double bound = std::sqrt(6.0 / ((1.0 + a * a) * static_cast<double>(fan_in)));
  uniform_(t, -bound, bound, rng);
}

}  // namespace nr
